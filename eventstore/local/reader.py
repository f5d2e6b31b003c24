"""Reading the segment log: frames from a `Cursor`, events, and the live tail.

`Cursor` (defined with the walk, re-exported here) is a position in the log:
the segment the next frame is in, its offset there, the seq it must carry and
the chain digest before it. `frames` is the reading policy over the one
segment walk (`walk.SegmentWalk`, which follows `N.seg` to `N.zseg` and new
segments by name while writers roll over and compact, [F-30]): it advances
the cursor past every frame it passes, and stops at a torn or
still-being-written tail. It raises `CorruptionError` where the log has a
hole or damage a reader must not skip ([F-14]). Readers take no lock; they
never write ([F-16]).
`read_events` and `follow` build the `Store.read` / `Store.follow` iterators
on it; a writer's leader uses the same walk to catch up with other writers.
"""
from __future__ import annotations

import time
from typing import Callable, Iterator

from ..codec import decode_commit, pack
from ..errors import CorruptionError
from ..event import Event
from ..fs import FileSystem
from .frame import Damage, Frame, is_gap
from .segment import SegmentRef, segment_path
from .walk import Cursor, SegmentWalk

__all__ = ["Cursor", "LogReader", "TailCallback"]

TailCallback = Callable[[SegmentRef, Damage], None]


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
               verify_chain: bool = False, on_tail: TailCallback | None = None,
               locked: bool = False) -> Iterator[Frame]:
        """Valid frames holding seqs >= ``start`` (and <= ``bound``); stops at a torn tail.

        With ``cursor`` the walk starts there (when it is at or before ``start``)
        and moves it past every frame it passes, gap frames included.
        ``verify_chain`` checks each frame's digest against the one before (a
        writer catching up with others does). ``on_tail`` is told about damage
        that ends the last segment (a torn tail, or a write still in progress).
        ``locked``: the caller holds the commit lock, so nobody writes meanwhile.
        """
        walk = SegmentWalk(self.fs, self.seg_dir, verify_chain=verify_chain, locked=locked)
        if cursor is not None and cursor.next_seq <= start and cursor.segment:
            visits = walk.visits(cursor)
        else:
            visits = walk.visits(seq=start)
        at = cursor if cursor is not None else Cursor.unset()
        for visit in visits:
            ref = visit.ref
            if visit.follows is not None and ref.first_seq != visit.follows:
                raise self._hole(ref, visit.follows)
            if visit.at is not at:  # even if no frame follows yet (a new empty segment)
                at.enter(visit.at)
            segment = ref.first_seq
            damage: Damage | None = None
            for frame in visit.frames():
                if isinstance(frame, Damage):
                    if ref.compressed or not visit.last:  # damage in a sealed segment ([F-14])
                        raise CorruptionError(ref.path, frame.offset, frame.reason)
                    if damage is not None:  # a whole frame after damage, which breaks the chain:
                        raise CorruptionError(ref.path, damage.offset, damage.reason)  # not a torn tail
                    damage = frame
                    continue
                if damage is not None:  # valid data after damage: not a torn tail ([F-14])
                    raise CorruptionError(ref.path, damage.offset, damage.reason)
                if bound is not None and frame.first_seq > bound:
                    return
                at.past(segment, frame)
                if frame.last_seq >= start and not is_gap(frame.payload):
                    yield frame
            if damage is not None:  # the end of what is valid now
                if on_tail is not None:
                    on_tail(ref, damage)
                return

    @staticmethod
    def _hole(ref: SegmentRef, expected: int) -> CorruptionError:
        if ref.first_seq > expected:
            return CorruptionError(ref.path, 0, f"seqs {expected}-{ref.first_seq - 1} are missing "
                                                f"(the log continues at seq {ref.first_seq})")
        return CorruptionError(ref.path, 0, f"segment starts at seq {ref.first_seq}, expected {expected}")

    def decode(self, frame: Frame) -> list[Event]:
        """The events of a valid frame of this log (damage named by its segment and offset)."""
        return decode_commit(frame.payload, frame.first_seq, frame.count, frame.ts, self.seg_dir, frame.offset)

    def decoded(self, start: int, bound: int | None, cursor: Cursor | None = None, *,
                verify_chain: bool = False, on_tail: TailCallback | None = None, locked: bool = False
                ) -> Iterator[tuple[Frame, list[Event]]]:
        """Each frame from ``start`` with its events (all of them, even those before ``start``)."""
        for frame in self.frames(start, bound, cursor, verify_chain=verify_chain, on_tail=on_tail,
                                 locked=locked):
            yield frame, self.decode(frame)

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
            for e in self.decode(frame):
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
