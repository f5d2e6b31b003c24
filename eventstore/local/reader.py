"""Reading the segment log: frames from a `Cursor`, events, and the live tail.

`Cursor` is a position in the log: the segment the next frame is in, its
offset there, the seq it must carry and the chain digest before it. `frames`
walks the segments from a cursor (re-listing them as compaction renames
`N.seg` to `N.zseg` and writers roll over), advances the cursor past every
frame it passes, and stops at a torn or still-being-written tail. It raises
`CorruptionError` where the log has a hole or damage a reader must not skip
([F-14]). Readers take no lock; they never write ([F-16]).
`read_events` and `follow` build the `Store.read` / `Store.follow` iterators
on it; a writer's leader uses the same walk to catch up with other writers.
"""
from __future__ import annotations

import bisect
import time
from dataclasses import dataclass
from typing import Callable, Iterator

from ..codec import decode_commit, pack
from ..errors import CorruptionError
from ..event import Event
from ..fs import FileSystem
from .frame import Damage, Frame, FrameScanner, is_gap
from .layout import SEGMENT_HEADER_SIZE, ZERO_DIGEST
from .segment import SegmentRef, SegmentStream, list_segments, scan, segment_path

__all__ = ["Cursor", "LogReader", "TailCallback"]

TailCallback = Callable[[SegmentRef, Damage], None]


@dataclass
class Cursor:
    """Where the next frame of the log is (or will be), and what it must continue."""

    segment: int  # first seq (name) of the segment holding the next frame
    offset: int  # byte offset of the next frame in that (plain) segment
    next_seq: int  # the seq the next frame must start with
    digest: bytes  # the chain digest after the last frame passed
    last_ts: int = 0  # the time of the last commit passed

    @classmethod
    def start(cls) -> Cursor:
        """The start of an empty log."""
        return cls(1, SEGMENT_HEADER_SIZE, 1, ZERO_DIGEST)

    @classmethod
    def unset(cls) -> Cursor:
        """No position yet: the first walk finds one (by seq) and keeps it up to date."""
        return cls(0, 0, 0, ZERO_DIGEST)

    def copy(self) -> Cursor:
        return Cursor(self.segment, self.offset, self.next_seq, self.digest, self.last_ts)

    def past(self, segment: int, frame: Frame) -> None:
        """Move past ``frame`` of ``segment``."""
        self.segment, self.offset = segment, frame.offset + frame.size
        self.next_seq, self.digest = frame.first_seq + frame.count, frame.digest
        self.last_ts = max(self.last_ts, frame.ts)


class LogReader:
    """The read side of one store's segment log."""

    def __init__(self, fs: FileSystem, seg_dir: str) -> None:
        self.fs = fs
        self.seg_dir = seg_dir

    def moved(self, cursor: Cursor) -> bool:
        """Whether the log may have grown past ``cursor`` (a few `stat` calls; false when it has not)."""
        fs = self.fs
        try:
            if fs.size(segment_path(self.seg_dir, cursor.segment)) != cursor.offset:
                return True
        except FileNotFoundError:  # compressed meanwhile (it may have grown first), or none yet
            return True
        return cursor.next_seq != cursor.segment and (
            fs.exists(segment_path(self.seg_dir, cursor.next_seq))
            or fs.exists(segment_path(self.seg_dir, cursor.next_seq, compressed=True)))

    def frames(self, start: int, bound: int | None, cursor: Cursor | None = None, *,
               verify_chain: bool = False, on_tail: TailCallback | None = None) -> Iterator[Frame]:
        """Valid frames holding seqs >= ``start`` (and <= ``bound``); stops at a torn tail.

        With ``cursor`` the walk starts there (when it is at or before ``start``)
        and moves it past every frame it passes, gap frames included.
        ``verify_chain`` checks each frame's digest against the one before (a
        writer catching up with others does). ``on_tail`` is told about damage
        that ends the last segment (a torn tail, or a write still in progress).
        """
        refs = list_segments(self.fs, self.seg_dir)
        if not refs:
            return
        firsts = [r.first_seq for r in refs]
        expected: int | None = None
        if cursor is not None and cursor.segment in firsts and cursor.next_seq <= start:
            i = firsts.index(cursor.segment)
            at: Cursor | None = cursor.copy()
        else:
            i, at = max(bisect.bisect_right(firsts, start) - 1, 0), None
            if firsts[i] > start:  # nothing holds the seqs from `start` to the first segment
                raise self._hole(refs[i], start)
        while i < len(refs):
            ref = refs[i]
            stream = self._open(ref)
            if at is None:
                if expected is not None and ref.first_seq != expected:
                    raise self._hole(ref, expected)
                at = Cursor(ref.first_seq, SEGMENT_HEADER_SIZE, ref.first_seq, stream.prev_digest)
                if cursor is not None:  # even if no frame follows yet (a new empty segment)
                    _assign(cursor, at)
            last = i == len(refs) - 1
            for frame in self._scan(ref, stream, at, last, verify_chain, on_tail):
                if bound is not None and frame.first_seq > bound:
                    return
                at.past(ref.first_seq, frame)
                if cursor is not None:
                    _assign(cursor, at)
                if frame.last_seq >= start and not is_gap(frame.payload):
                    yield frame
            expected, at = at.next_seq, None
            i += 1

    def _open(self, ref: SegmentRef) -> SegmentStream:
        try:
            return SegmentStream(self.fs, ref)  # follows a compaction that replaced it
        except FileNotFoundError:
            raise CorruptionError(ref.path, None, "segment vanished while reading") from None

    @staticmethod
    def _hole(ref: SegmentRef, expected: int) -> CorruptionError:
        if ref.first_seq > expected:
            return CorruptionError(ref.path, 0, f"seqs {expected}-{ref.first_seq - 1} are missing "
                                                f"(the log continues at seq {ref.first_seq})")
        return CorruptionError(ref.path, 0, f"segment starts at seq {ref.first_seq}, expected {expected}")

    @staticmethod
    def _scan(ref: SegmentRef, stream: SegmentStream, at: Cursor, last: bool, verify_chain: bool,
              on_tail: TailCallback | None) -> Iterator[Frame]:
        """The frames of one segment from ``at``; in the last one, stop at a torn tail."""
        scanner = FrameScanner(at.offset, at.next_seq, at.digest, end=stream.end, verify_chain=verify_chain)
        damage: Damage | None = None
        for item in scan(stream, scanner, at.offset, resync=last):
            if isinstance(item, Damage):
                if not last:
                    raise CorruptionError(ref.path, item.offset, item.reason)
                damage = item
                continue
            if damage is not None:  # valid data after damage: not a torn tail ([F-14])
                raise CorruptionError(ref.path, damage.offset, damage.reason)
            yield item
        if damage is not None and on_tail is not None:
            on_tail(ref, damage)

    def decoded(self, start: int, bound: int | None, cursor: Cursor | None = None, *,
                verify_chain: bool = False, on_tail: TailCallback | None = None
                ) -> Iterator[tuple[Frame, list[Event]]]:
        """Each frame from ``start`` with its events (all of them, even those before ``start``)."""
        for frame in self.frames(start, bound, cursor, verify_chain=verify_chain, on_tail=on_tail):
            yield frame, decode_commit(frame.payload, frame.first_seq, frame.count, frame.ts,
                                       self.seg_dir, frame.offset)

    def read_events(self, start: int, stop: int | None, key: str | None, types: set[str] | None,
                    bound: int | None, cursor: Cursor | None = None) -> Iterator[Event]:
        """Events with ``start <= seq < stop`` (and ``<= bound``), optionally filtered."""
        # A commit holding the key (or a type) holds its msgpack encoding verbatim, so a
        # substring test skips decoding the commits that cannot match (exact: no misses).
        needles = [pack(key)] if key is not None else [pack(t) for t in types] if types else []
        for frame in self.frames(start, bound, cursor):
            if stop is not None and frame.first_seq >= stop:
                return
            if needles and not any(n in frame.payload for n in needles):
                continue
            for e in decode_commit(frame.payload, frame.first_seq, frame.count, frame.ts,
                                   self.seg_dir, frame.offset):
                if e.seq < start or (bound is not None and e.seq > bound):
                    continue
                if stop is not None and e.seq >= stop:
                    return
                if (key is None or e.key == key) and (types is None or e.type in types):
                    yield e

    def follow(self, next_seq: int, poll: float, timeout: float | None,
               bound: Callable[[], int | None], closed: Callable[[], bool]) -> Iterator[Event]:
        """Events from ``next_seq`` as they are committed, until ``timeout`` idle seconds or close."""
        cursor = Cursor.unset()
        idle_since = time.monotonic()
        while not closed():
            got = False
            for e in self.read_events(next_seq, None, None, None, bound(), cursor):
                got = True
                next_seq = e.seq + 1
                yield e
            if got:
                idle_since = time.monotonic()
            elif timeout is not None and time.monotonic() - idle_since >= timeout:
                return
            else:
                time.sleep(poll)


def _assign(target: Cursor, source: Cursor) -> None:
    target.segment, target.offset, target.next_seq = source.segment, source.offset, source.next_seq
    target.digest, target.last_ts = source.digest, source.last_ts
