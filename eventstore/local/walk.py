"""The one segment walk: the log's segments in order, and what the scanner makes of them.

`SegmentWalk` opens the segments of the log one after another and hands each
to its caller as a `Visit`, whose `Visit.frames` feeds it to a `FrameScanner`
(through `segment.scan`) and yields what the scanner classifies: `Frame`s and
`Damage`s. Every reader of the log goes through it with its own policy:
reads, `follow` and writers catching up (`reader`: raise, or stop at a
tail), open, `verify` and salvage (`recovery.Walker`: raise, collect or
repair), compaction (raise), salvage's rewrite (keep what is intact) and the
dump tool (print). The walk decides nothing about damage and never writes;
it owns what makes one view of a directory that writers change meanwhile
consistent ([F-30]):

- The next segment is never taken from a listing alone. After a segment
  whose frames end before seq E, the walk opens ``E.seg``, else ``E.zseg``
  (compaction renames before it unlinks, so one of them exists). A listing,
  taken when the walk first needs one and again when names and listing
  disagree, only says whether later segments exist: a segment that does not
  start at E (a hole, or an overlap) is handed on only when E is still
  absent after a fresh listing.
- A plain segment whose frames ended cleanly, whose successor E is absent
  while a later segment is listed, may have grown since it was read (a writer
  appended, then rolled over): its new bytes are read first.
- A walk that does not hold the commit lock (``locked=False``) and meets
  damage in a plain segment lists the segments (is this one the last?), then
  reads the segment again once from its last good frame before it hands the
  damage on: the bytes may have been a commit being written, or a dead
  writer's torn tail that a writer was cutting and writing over.
- ``resync`` says where the scan searches past damage ([F-15]): never,
  everywhere (salvage, verify, dump), or only in the last plain segment
  (strict reading, to tell a torn tail from corruption, [F-13]).
"""
from __future__ import annotations

import bisect
import enum
from dataclasses import dataclass
from typing import Iterator, Sequence

from ..errors import CorruptionError
from ..fs import FileSystem
from .frame import Damage, Frame, FrameScanner, check_frame, payload_length
from .layout import FRAME_HEADER_SIZE, FRAME_MAGIC, MAX_FRAME_PAYLOAD, SEGMENT_HEADER_SIZE, ZERO_DIGEST
from .segment import SegmentRef, SegmentStream, find_segment, list_segments, scan

__all__ = ["Cursor", "Resync", "SegmentWalk", "Visit"]


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
        if frame.ts > self.last_ts:
            self.last_ts = frame.ts

    def enter(self, other: Cursor) -> None:
        """Take ``other``'s position."""
        self.segment, self.offset, self.next_seq = other.segment, other.offset, other.next_seq
        self.digest, self.last_ts = other.digest, max(self.last_ts, other.last_ts)


class Resync(enum.Enum):
    """Where a walk searches for a valid frame after damage ([F-15])."""

    NEVER = "never"
    TAIL = "tail"  # only in the last plain segment: a torn tail, or corruption ([F-13])
    ALWAYS = "always"


class Visit:
    """One segment as the walk reads it.

    ``ref`` is the file opened (``N.zseg`` when compaction replaced ``N.seg``
    meanwhile); ``at`` is where the walk enters it (the start position for the
    first segment, else its first frame); ``follows`` is the seq the segment
    before ended at (None for the first segment), so a caller can tell a hole
    or an overlap.
    """

    def __init__(self, walk: SegmentWalk, stream: SegmentStream, at: Cursor | None,
                 follows: int | None, last: bool | None = None) -> None:
        self.walk = walk
        self.stream = stream
        self.ref = ref = stream.ref
        self.follows = follows
        self.at = at if at is not None else Cursor(ref.first_seq, SEGMENT_HEADER_SIZE, ref.first_seq,
                                                   stream.prev_digest)
        self.scanner: FrameScanner | None = None
        self._last = last

    @property
    def last(self) -> bool:
        """No segment follows this one (asked of a fresh listing, once)."""
        if self._last is None:
            self._last = not self.walk.later_exists(self.ref)
        return self._last

    @property
    def next_seq(self) -> int:
        """The seq after the last frame read (or before the first one)."""
        return self.scanner.expected_seq if self.scanner is not None else self.at.next_seq

    def frames(self, start: int | None = None, expected: int | None = None, digest: bytes | None = None,
               *, verify_chain: bool | None = None, restart: bool = False,
               overlap: bool = False) -> Iterator[Frame | Damage]:
        """Frames and damage from ``start`` (default: ``at``, or byte 0 of a refused header).

        The scanner expects seq ``expected`` chained from ``digest`` (default:
        ``at``'s); ``restart`` accepts the first frame's stored digest.
        A header a lenient walk refused is the first `Damage`. ``overlap``: the
        segment starts below ``expected`` (it overlaps seqs the log holds before
        it): its frames are searched for the first one carrying ``expected`` or
        more ([F-15]) after a first `Damage` of kind ``overlap``. See the module
        docstring for the re-read and the growth this applies.
        """
        stream, at = self.stream, self.at
        preset = stream.header_damage
        if start is None:
            start = 0 if preset is not None else at.offset
        if overlap and preset is None:
            preset = Damage(start - 1, "the segment overlaps seqs held before it", "overlap")
        scanner = FrameScanner(start, at.next_seq if expected is None else expected,
                               at.digest if digest is None else digest, end=stream.end,
                               verify_chain=self.walk.verify_chain if verify_chain is None else verify_chain)
        if restart:
            scanner.restart_chain()
        scanner.damage = preset
        self.scanner = scanner
        again = not (self.walk.locked or self.ref.compressed)  # one re-read, for a walk without the lock
        while True:
            for item in scan(stream, scanner, scanner.position, resync=self._resync):
                if again and item.__class__ is Damage and item is not preset:
                    again = False
                    # list first: a segment after this one then proves it was sealed before the re-read
                    self._last = not self.walk.later_exists(self.ref)
                    stream.refresh()
                    break
                yield item
            else:
                if scanner.damage is None and self._grew():
                    scanner.rewind(stream.end)
                    continue
                return
            scanner.rewind(stream.end)  # read again from the last good frame

    def frame_ending_at(self, offset: int) -> Frame | None:
        """The CRC-valid frame of this segment that ends exactly at ``offset``, if any.

        Plain segments: searches the last MiB before ``offset`` backwards for a
        frame header whose length ends there (then, for a larger last frame,
        hops from header to header from the segment's start), in the file this
        visit opened; compressed ones are scanned again. Used only to confirm
        a snapshot taken at the very end of the log ([F-21]).
        """
        if self.ref.compressed:
            found = None
            try:
                for again in SegmentWalk.over(self.walk.fs, [self.ref], resync=Resync.NEVER).visits():
                    for item in again.frames():
                        if item.__class__ is Damage or item.offset >= offset:
                            break
                        found = item
            except CorruptionError:
                return None
            return found if isinstance(found, Frame) and found.offset + found.size == offset else None
        read = self.stream.read_at
        # usually the last frame is small: look for its header just before ``offset``
        window = min(offset - SEGMENT_HEADER_SIZE, _BACKWARD_WINDOW)
        tail = read(offset - window, window)
        i = len(tail)
        while (i := tail.rfind(FRAME_MAGIC, 0, i)) >= 0:
            if i + FRAME_HEADER_SIZE <= len(tail) and i + FRAME_HEADER_SIZE + payload_length(tail, i) == len(tail):
                frame = _whole_frame(tail[i:], offset - window + i)
                if frame is not None:
                    return frame
        if window == offset - SEGMENT_HEADER_SIZE:
            return None  # the whole segment was searched
        pos = SEGMENT_HEADER_SIZE
        while pos < offset:
            head = read(pos, FRAME_HEADER_SIZE)
            if len(head) < FRAME_HEADER_SIZE:
                return None
            length = payload_length(head)
            if head[:4] != FRAME_MAGIC or length == 0 or length > MAX_FRAME_PAYLOAD:
                return None
            if pos + FRAME_HEADER_SIZE + length == offset:
                return _whole_frame(head + read(pos + FRAME_HEADER_SIZE, length), pos)
            pos += FRAME_HEADER_SIZE + length
        return None

    def _resync(self, damage: Damage) -> bool:
        mode = self.walk.resync
        if mode is Resync.ALWAYS:
            return True
        return mode is Resync.TAIL and not self.ref.compressed and self.last

    def _grew(self) -> bool:
        """A clean end of a plain segment: did a writer append to it before rolling over?"""
        walk = self.walk
        if walk.locked or walk.fixed or self.ref.compressed:
            return False
        assert self.scanner is not None
        end = self.scanner.expected_seq
        later = walk.listed_after(self.ref)
        if later is None or later.first_seq <= end:
            return False
        if end > self.ref.first_seq and walk.find(end) is not None:  # (empty so far: that name is its own)
            return False
        return self.stream.refresh()


_BACKWARD_WINDOW = 1 << 20


def _whole_frame(data: bytes, pos: int) -> Frame | None:
    """``data`` as one frame at segment offset ``pos`` if its magic, length and CRC check."""
    frame = check_frame(data, pos)
    return frame if isinstance(frame, Frame) and frame.size == len(data) else None


class SegmentWalk:
    """The segments of one log directory (or exactly the files given), in log order."""

    def __init__(self, fs: FileSystem, seg_dir: str, *, lenient: bool = False, verify_chain: bool = False,
                 resync: Resync = Resync.TAIL, locked: bool = False,
                 refs: Sequence[SegmentRef] | None = None) -> None:
        self.fs, self.seg_dir = fs, seg_dir
        self.lenient = lenient  # damaged headers and zstd streams are kept as damage ([F-27])
        self.verify_chain = verify_chain
        self.resync = resync
        self.locked = locked  # the caller holds the commit lock: no writer changes the log
        self.fixed = refs is not None
        self._refs: list[SegmentRef] = list(refs) if refs is not None else []
        self._firsts = [r.first_seq for r in self._refs]
        self._listed = self.fixed

    @classmethod
    def over(cls, fs: FileSystem, refs: Sequence[SegmentRef], *, lenient: bool = False,
             verify_chain: bool = False, resync: Resync = Resync.TAIL, locked: bool = False) -> SegmentWalk:
        """A walk over exactly ``refs``, in that order (one segment, or the files a tool was given)."""
        return cls(fs, "", lenient=lenient, verify_chain=verify_chain, resync=resync, locked=locked, refs=refs)

    # -- names and listings --------------------------------------------------------------------
    def relist(self) -> list[SegmentRef]:
        """List the directory again (a fixed walk keeps its files); returns the listing."""
        if not self.fixed:
            try:
                self._refs = list_segments(self.fs, self.seg_dir)
            except FileNotFoundError:
                self._refs = []
            self._firsts = [r.first_seq for r in self._refs]
            self._listed = True
        return self._refs

    def listed_after(self, ref: SegmentRef) -> SegmentRef | None:
        """The first segment of the listing (taken now if there is none yet) named after ``ref``."""
        if not self._listed:
            self.relist()
        i = bisect.bisect_right(self._firsts, ref.first_seq)
        return self._refs[i] if i < len(self._refs) else None

    def later_exists(self, ref: SegmentRef) -> bool:
        """Whether a segment named after ``ref`` exists now (a fresh listing)."""
        self.relist()
        return self.listed_after(ref) is not None

    def find(self, first_seq: int) -> SegmentRef | None:
        """The segment named ``first_seq`` now, by name."""
        return find_segment(self.fs, self.seg_dir, first_seq)

    # -- the walk ----------------------------------------------------------------------------------
    def visits(self, at: Cursor | None = None, *, seq: int | None = None) -> Iterator[Visit]:
        """The segments from position ``at``, or from the one holding ``seq``, or (neither) from
        the first segment of the log; a fixed walk visits its files in order."""
        if self.fixed:
            for i, given in enumerate(self._refs):
                yield Visit(self, SegmentStream(self.fs, given, lenient=self.lenient), None, None,
                            last=i == len(self._refs) - 1)
            return
        want = at.next_seq if at is not None else seq if seq is not None else 1
        ref = self._first(at, want)
        follows = None
        if ref is not None and (at is None or ref.first_seq != at.segment):
            at = None  # start at the segment's first frame (the position's segment is gone)
            if ref.first_seq > want:
                follows = want  # nothing holds the seqs before it: the caller reports the hole
        while ref is not None:
            visit = Visit(self, self._open(ref), at, follows)
            yield visit
            follows = visit.next_seq
            ref, at = self._next(visit.ref, follows), None

    def _first(self, at: Cursor | None, seq: int) -> SegmentRef | None:
        """The segment the walk starts in: ``at``'s, else the one holding ``seq``, else the first."""
        if at is not None:
            ref = self.find(at.segment)
            if ref is not None:
                return ref
        for _ in range(2):  # a segment being renamed may be missing from one listing
            refs = self.relist()
            i = bisect.bisect_right(self._firsts, seq) - 1
            if i >= 0:
                return refs[i]
            first = self.find(1)  # the log's first segment holds seq 1 ([F-03])
            if first is not None:
                return first
        return self._refs[0] if self._refs else None

    def _next(self, prev: SegmentRef, end: int) -> SegmentRef | None:
        """The segment after ``prev``, whose frames ended before seq ``end``."""
        later = self.listed_after(prev)
        if later is not None and later.first_seq <= end:
            return later  # the next one (opening it follows a rename), or an overlap to report
        if end <= prev.first_seq:  # no frame in it: by name it would be itself
            return later
        found = self.find(end)
        if found is not None or later is None:
            return found
        self.relist()  # a later segment is listed and `end` is absent: look again before a hole
        found = self.find(end)
        return found if found is not None else self.listed_after(prev)

    def _open(self, ref: SegmentRef) -> SegmentStream:
        try:
            return SegmentStream(self.fs, ref, lenient=self.lenient)  # follows N.seg -> N.zseg
        except FileNotFoundError:
            pass
        again = self.find(ref.first_seq)
        if again is not None:
            try:
                return SegmentStream(self.fs, again, lenient=self.lenient)
            except FileNotFoundError:
                pass
        raise CorruptionError(ref.path, None, "segment vanished while reading")
