"""The policy walk of open, `verify` and salvage, over the one segment walk.

`Walker` reads the log through `walk.SegmentWalk` and applies one policy to
what the scanner classifies ([F-13]–[F-16]):

- ``strict``  — damage that is not a torn tail raises `CorruptionError`;
- ``salvage`` — keep every intact frame, record lost seq ranges, and (for a
  writer) rewrite damaged segments with a gap frame ([F-25]) after copying the
  original to ``quarantine/``;
- ``collect`` — record every problem and go on (used by `verify`).

A torn tail of the last segment is truncated (after a copy to quarantine) only
when ``writer`` is true (the caller holds the commit lock); readers stop
there. Decoded commits are handed to an ``on_commit`` callback. Salvage and
collect read segments leniently (`segment.SegmentStream`); rewriting damaged
segments is `salvage`'s; which segment comes next, and how a view of a
changing directory stays consistent, is the walk's ([F-30]).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Iterator

from ..batch import EventBatch
from ..codec import decode_columns
from ..errors import CorruptionError, FormatVersionError
from ..fs import FileSystem
from ..report import RecoveryEntry, RecoveryReport
from .directory import quarantine_copy
from .endrecord import EndRecord, read_end
from .frame import Damage, Frame, SeqRange, claimed_seqs, is_gap
from .layout import FRAME_HEADER_SIZE, FRAME_MAGIC, SEGMENT_HEADER_SIZE, SEGMENTS_DIR
from .salvage import ChainEntry, LeadGap, RepairPlan
from .segment import SegmentRef
from .spares import Spare
from .walk import Cursor, Resync, SegmentWalk, Visit

__all__ = ["Walker", "LogEnd", "TornTail", "SnapshotMismatch", "cut_torn_tail", "read_evidence"]


@dataclass
class LogEnd:
    """Where a walk found the log to end."""

    cursor: Cursor  # where the next frame goes (its seq, the chain digest, the last commit's time)
    ref: SegmentRef | None  # the segment it is in (None: the log has no segment)


class SnapshotMismatch(Exception):
    """The log at a snapshot's position does not continue it ([F-21]).

    ``past_end``: the snapshot claims seqs past the end of the log (evidence of
    lost commits, which a strict open refuses), not merely another log's state.
    """

    def __init__(self, reason: str, *, past_end: bool = False) -> None:
        super().__init__(reason)
        self.past_end = past_end


OnCommit = Callable[[Frame, EventBatch], None]
"""Called with each valid commit a walk decodes (`EventBatch.events` builds its events)."""


@dataclass
class TornTail:
    """A torn tail a walk found at the end of the log ([F-13]), and the seqs its frame header claimed."""

    ref: SegmentRef
    offset: int
    claimed: SeqRange | None  # None: no readable frame header there


@dataclass
class _Pass:
    """What one walk carries from frame to frame and from segment to segment."""

    expected: int  # the seq the next frame must carry
    digest: bytes  # the chain digest before it
    last_ts: int
    confirming: bool  # a snapshot's position is not confirmed yet ([F-21])
    decode: bool
    on_commit: OnCommit | None
    stop_seq: int | None
    restart: bool = False  # the next frame restarts the chain (after a gap frame or lost seqs)
    first: bool = True  # the next segment is the first of the walk
    prev: ChainEntry | None = None  # how the walk entered the segment before


@dataclass
class _Segment:
    """One segment's part of a walk: where its scan starts and what it found."""

    visit: Visit
    offset: int  # where the scan starts
    entry: ChainEntry  # how the walk entered it, for a rewrite
    damaged: bool = False
    damage: Damage | None = None  # damage not yet followed by a valid frame
    stopped: bool = False  # the walk reached its stop seq
    resumed: bool = field(default=False)  # the scan starts after the first frame (a snapshot's position)
    spare: Spare | None = None  # it overlaps seqs held before it ([F-26])


class Walker:
    """One pass over the log with one policy (see the module docstring)."""

    def __init__(self, fs: FileSystem, root: str, *, policy: str, writer: bool,
                 report: RecoveryReport) -> None:
        assert policy in ("strict", "salvage", "collect")
        self.fs, self.root, self.policy, self.writer = fs, root, policy, writer
        self.strict = policy == "strict"
        self.report = report
        self.check_payloads = False  # decode payloads even without an on_commit
        self.plan = RepairPlan()  # what a salvage writer rewrites after the walk (`repair`)
        self.gaps: list[SeqRange] = []  # seqs of the gap frames walked over ([F-25])
        self.torn: TornTail | None = None  # the torn tail the walk ended at

    # -- policy helpers -------------------------------------------------------------
    def _problem(self, path: str, offset: int | None, reason: str, lost: SeqRange | None = None) -> None:
        if self.strict:
            raise CorruptionError(path, offset, reason)
        action = "problem" if self.policy == "collect" else ("lost" if lost else "damaged")
        self.report.add(RecoveryEntry(action, path, offset, reason, lost=lost.as_tuple() if lost else None))
        if lost is not None and self.policy == "salvage":
            self.plan.holes[(path, lost.first)] = len(self.report) - 1

    def _segments(self) -> SegmentWalk:
        # salvage and collect read leniently ([F-27]): frames before a damaged header or zstd
        # block are still seen, and the damage is reported with its own offset
        return SegmentWalk(self.fs, os.path.join(self.root, SEGMENTS_DIR), lenient=not self.strict,
                           resync=Resync.TAIL if self.strict else Resync.ALWAYS, locked=self.writer)

    def _visits(self, at: Cursor, walk: _Pass) -> Iterator[Visit]:
        visits = self._segments().visits(at)
        while True:
            try:
                visit = next(visits, None)
            except CorruptionError as exc:
                if walk.confirming and not isinstance(exc, FormatVersionError):  # [F-06]: never a mismatch
                    raise SnapshotMismatch(f"{exc.file}: {exc.reason}") from None
                raise
            if visit is None:
                return
            yield visit

    def walk(self, at: Cursor, on_commit: OnCommit | None, *, check_snapshot: bool = False,
             stop_seq: int | None = None) -> LogEnd:
        """Walk the log from position ``at`` (`Cursor.start()`: all of it); return where it ends.

        With ``check_snapshot`` the walk starts at a snapshot's position and
        raises `SnapshotMismatch` unless the log there continues the snapshot:
        the first frame (or the next segment's header) must carry seq
        ``at.next_seq`` and chain from ``at.digest``; when nothing follows, the
        frame that ends at ``at.offset`` must end at the seq before, with that digest.
        """
        walk = _Pass(at.next_seq, at.digest, at.last_ts, check_snapshot,
                     on_commit is not None or self.check_payloads, on_commit, stop_seq)
        end = LogEnd(at.copy(), None)
        for visit in self._visits(at, walk):
            if walk.confirming and walk.first and visit.ref.first_seq != at.segment:
                raise SnapshotMismatch(f"segment {at.segment}, where the snapshot points, is not in the log")
            seg = self._enter(visit, walk)
            self._scan(seg, walk)
            self._leave(seg, walk)
            scanner = visit.scanner
            assert scanner is not None
            if seg.spare is None or seg.spare.took:  # a spare that adds nothing is not where the log ends
                end = LogEnd(Cursor(visit.ref.first_seq, scanner.position, walk.expected, walk.digest,
                                    walk.last_ts), visit.ref)
            if seg.stopped or (stop_seq is not None and walk.expected > stop_seq):
                break
        return end

    def _enter(self, visit: Visit, walk: _Pass) -> _Segment:
        """Judge a segment's header against the walk: seqs missing or repeated, the chain ([F-14], [F-26]).

        An unreadable header is judged by the segment's name ([F-03]), and its
        frames are searched for from byte 0.
        """
        ref, stream = visit.ref, visit.stream
        first, walk.first = walk.first, False
        offset = visit.at.offset if first else SEGMENT_HEADER_SIZE
        header = stream.header_damage
        if header is not None and walk.confirming:
            raise SnapshotMismatch(f"{ref.path}: {header.reason}")
        if header is None and first and offset > SEGMENT_HEADER_SIZE:  # from a snapshot's position:
            if walk.confirming and offset > stream.end:  # the frames before it were not judged; take the
                raise SnapshotMismatch(f"snapshot position {offset} is past the end of {ref.path} "  # header's word
                                       f"({stream.end} bytes)", past_end=True)
            return _Segment(visit, offset, ChainEntry(ref, stream.prev_digest, True), resumed=True)
        if walk.confirming:
            if ref.first_seq != walk.expected or stream.prev_digest != walk.digest:
                raise SnapshotMismatch(self._mismatch(ref, walk.expected))
            walk.confirming = False  # the header continues the snapshot's chain
        if ref.first_seq < walk.expected:
            return self._enter_spare(visit, walk)
        damaged = header is not None
        if ref.first_seq > walk.expected:
            lost = SeqRange(walk.expected, ref.first_seq - 1)
            self._problem(ref.path, 0, f"seqs {lost.first}-{lost.last} are missing", lost=lost)
            walk.restart = True
            # the gap frame goes at the end of the segment before, or in a new one
            if walk.prev is not None:
                self.plan.rewrite(walk.prev)
            else:
                self.plan.lead_gap = LeadGap(os.path.dirname(ref.path), lost.first, ref.first_seq, walk.digest)
        if header is not None:
            pass  # its digest is unknown: the chain goes on into its first frame, or restarts there
        elif walk.restart:  # nothing to continue: the header's digest starts the chain again
            walk.digest = stream.prev_digest
        elif stream.prev_digest != walk.digest:
            # the first frame is judged against the chain, not the header ([F-26])
            self._problem(ref.path, 0, "segment header does not continue the digest chain")
            damaged = True
        walk.expected = ref.first_seq
        start = 0 if header is not None else SEGMENT_HEADER_SIZE
        return _Segment(visit, start, ChainEntry(ref, walk.digest, walk.restart), damaged=damaged)

    def _enter_spare(self, visit: Visit, walk: _Pass) -> _Segment:
        """[F-26]: a segment named below the seq expected overlaps seqs the log holds before it
        (a stale or duplicated file, or one renamed). It is a *spare*: searched for frames from
        the seq expected up to the next segment's name (that segment holds the seqs from there
        on), and what it adds is rewritten under the name of the first seq it adds."""
        ref, header = visit.ref, visit.stream.header_damage
        reason = f"segment starts at seq {ref.first_seq}, expected {walk.expected}"
        if header is not None:
            reason = f"{header.reason}; by its name, {reason}"
        self._problem(ref.path, 0, f"{reason}: it overlaps seqs the log holds before it")
        later = visit.walk.listed_after(ref)
        entry = ChainEntry(ref, walk.digest, walk.restart, spare_from=walk.expected)
        start = 0 if header is not None else SEGMENT_HEADER_SIZE
        return _Segment(visit, start, entry, spare=Spare(later.first_seq if later is not None else None))

    def _scan(self, seg: _Segment, walk: _Pass) -> None:
        """The frames of one segment: the hot loop of every replay."""
        visit, ref, strict = seg.visit, seg.visit.ref, self.strict
        # A strict open trusts stored digests ([F-18]) except for the first frame after
        # a snapshot, whose chain confirms that the snapshot belongs to this log ([F-21]).
        items = visit.frames(seg.offset, walk.expected, walk.digest, verify_chain=not strict or walk.confirming,
                             restart=walk.restart, overlap=seg.spare is not None)
        if seg.spare is not None:
            items = _spare_items(seg.spare, items)
        walk.restart = False
        decode, on_commit, stop_seq, gaps = walk.decode, walk.on_commit, walk.stop_seq, self.gaps
        for frame in items:
            if isinstance(frame, Damage):
                damage = frame
                if walk.confirming and damage.offset == seg.offset and damage.kind in ("seq", "chain"):
                    raise SnapshotMismatch(damage.reason)
                if strict and (ref.compressed or not visit.last):  # sealed: no torn tail there ([F-13])
                    raise CorruptionError(ref.path, damage.offset, damage.reason)
                if seg.damage is not None and damage.kind == "chain":  # a whole commit found past the damage
                    first = seg.damage  # that does not chain: it is lost, never a torn write ([F-14])
                    damage = Damage(first.offset, f"{first.reason}; then {damage.reason}", "chain", damage.seqs)
                seg.damage = damage
                continue
            if walk.confirming:  # the first frame after a snapshot was chain-checked ([F-18])
                walk.confirming = False
                assert visit.scanner is not None
                visit.scanner.verify_chain = not strict
            if seg.damage is not None:  # valid data after damage: corruption ([F-14])
                damage = seg.damage
                lost = SeqRange(walk.expected, frame.first_seq - 1) if frame.first_seq > walk.expected else None
                self._problem(ref.path, damage.offset, damage.reason, lost=lost)
                seg.damaged, seg.damage = True, None
            if stop_seq is not None and frame.first_seq > stop_seq:
                seg.stopped = True
                break
            walk.expected = frame.first_seq + frame.count
            walk.digest = frame.digest
            if frame.ts > walk.last_ts:
                walk.last_ts = frame.ts
            if is_gap(frame.payload):
                walk.restart = True
                gaps.append(SeqRange(frame.first_seq, frame.last_seq))
                continue
            if decode and not self._decoded(frame, ref, on_commit):
                seg.damaged = True
                continue
            walk.restart = False

    def _decoded(self, frame: Frame, ref: SegmentRef, on_commit: OnCommit | None) -> bool:
        try:
            commit = decode_columns(frame.payload, frame.first_seq, frame.count, frame.ts, ref.path, frame.offset)
        except CorruptionError as exc:  # strict raises; the others lose the commit
            self._problem(ref.path, frame.offset, exc.reason, lost=SeqRange(frame.first_seq, frame.last_seq))
            return False
        if on_commit is not None:
            on_commit(frame, commit)
        return True

    def _leave(self, seg: _Segment, walk: _Pass) -> None:
        """The end of a segment: a torn tail, damage that ends it, a snapshot at the very end."""
        visit, ref = seg.visit, seg.visit.ref
        if seg.spare is not None:
            self._leave_spare(seg, walk)
            return
        if walk.confirming and seg.resumed and visit.last:
            self._confirm_at_end(visit, seg.offset, walk.expected, walk.digest)  # nothing follows the position
            walk.confirming = False
        lenient_error = visit.stream.error
        damage = seg.damage
        if damage is not None:
            # a whole, signed commit that breaks only the chain was edited, not torn ([F-14])
            if (visit.last and not ref.compressed and lenient_error is None
                    and damage.kind not in ("header", "chain")):
                self._torn_tail(visit, damage)
            else:
                self._problem(ref.path, damage.offset, damage.reason, lost=damage.seqs if visit.last else None)
                seg.damaged = True
                walk.restart = True
        if lenient_error is not None:
            self._problem(lenient_error.file, lenient_error.offset, lenient_error.reason)
            seg.damaged = True
            walk.restart = True
        if seg.damaged:
            self.plan.rewrite(seg.entry)
        walk.prev = seg.entry

    def _leave_spare(self, seg: _Segment, walk: _Pass) -> None:
        """A spare's end: its damage proves no lost seq (the log's own segments say which are);
        what it added is rewritten, and it leaves the log after every rewrite ([F-26])."""
        visit, ref, spare = seg.visit, seg.visit.ref, seg.spare
        assert spare is not None
        ended = False
        if seg.damage is not None:
            self._problem(ref.path, seg.damage.offset, seg.damage.reason)
            ended = True
        error = visit.stream.error
        if error is not None:
            self._problem(error.file, error.offset, error.reason)
            ended = True
        self.plan.spares[ref.path] = ref
        if spare.took:
            self.plan.rewrite(seg.entry)
            walk.prev = seg.entry
            if ended:
                walk.restart = True

    @staticmethod
    def _mismatch(ref: SegmentRef, expected: int) -> str:
        if ref.first_seq < expected and ref.first_seq > 0:
            return (f"the snapshot claims seq {expected - 1}, but {ref.path} starts at seq "
                    f"{ref.first_seq} right after its position")
        return f"the log at the snapshot's position in {ref.path} does not continue it"

    def _confirm_at_end(self, visit: Visit, offset: int, expected: int, digest: bytes) -> None:
        """No frame follows a snapshot's position: the frame ending there must be its seq."""
        ref = visit.ref
        frame = visit.frame_ending_at(offset)
        if frame is None or frame.last_seq < expected - 1:
            where = "no frame ends there" if frame is None else f"the log ends at seq {frame.last_seq}"
            raise SnapshotMismatch(f"the snapshot claims seq {expected - 1} at offset {offset} of {ref.path}, "
                                   f"but {where}: it claims seqs past the end of the log", past_end=True)
        if frame.digest != digest or frame.last_seq != expected - 1:
            raise SnapshotMismatch(f"the frame ending at the snapshot's position in {ref.path} "
                                   f"does not match it (seq {frame.last_seq}, digest)")

    def _torn_tail(self, visit: Visit, damage: Damage) -> None:
        """[F-13]: nothing valid follows the damage in the last segment."""
        ref = visit.ref
        head = visit.stream.read_at(damage.offset, FRAME_HEADER_SIZE)
        claimed = None
        if len(head) == FRAME_HEADER_SIZE and head[:4] == FRAME_MAGIC:
            claimed = claimed_seqs(head)
        self.torn = TornTail(ref, damage.offset, claimed)
        if self.policy == "collect":
            self.report.add(RecoveryEntry("problem", ref.path, damage.offset, f"torn tail: {damage.reason}",
                                          nbytes=visit.stream.end - damage.offset))
            return
        if self.writer:
            cut_torn_tail(self.fs, self.root, ref.path, damage, self.report)

    def tail_explains(self, end: LogEnd, record: EndRecord) -> bool:
        """Whether the torn tail this walk ended at is where ``record``'s seqs went ([F-29]).

        The tail rule cut (or, for a reader, stops before) a commit whose
        write it judged incomplete. When the torn bytes start where the log
        ends, in the segment the record names, and their frame header (if one
        can be read) claims every seq up to the record's, the loss is the tail
        rule's, reported as such, not a silent one.
        """
        torn = self.torn
        if torn is None or end.ref is None or torn.ref.first_seq != end.ref.first_seq:
            return False
        if torn.offset != end.cursor.offset or record.segment > end.ref.first_seq:
            return False
        claimed = torn.claimed  # None: too short or too damaged to say what it held
        return claimed is None or (claimed.first == end.cursor.next_seq and claimed.last >= record.seq)

def _spare_items(spare: Spare, items: Iterator[Frame | Damage]) -> Iterator[Frame | Damage]:
    """A spare's frames as the walk takes them: past the first `Damage` (it says the spare
    overlaps, or its header is unreadable: reported already), up to the next segment's name."""
    first = True
    for item in items:
        if first and isinstance(item, Damage):
            first = False
            continue
        first = False
        if isinstance(item, Frame):
            if spare.cap is not None and item.last_seq >= spare.cap:
                return  # the next segment holds these seqs
            spare.took = True
        yield item


def cut_torn_tail(fs: FileSystem, root: str, path: str, damage: Damage, report: RecoveryReport) -> None:
    """[F-13]: copy the bytes from ``damage.offset`` to the end to quarantine/, then cut them.

    Only a writer holding the commit lock calls this, so no other writer is
    appending to ``path`` meanwhile.
    """
    fd = fs.open_rw(path)
    try:
        size = fs.seek_end(fd)
        cut = size - damage.offset
        with fs.open_read(path) as f:
            f.seek(damage.offset)
            data = f.read(cut)
        qpath = quarantine_copy(fs, root, f"{os.path.basename(path)}.{damage.offset}.torn", data)
        fs.truncate(fd, damage.offset)
        fs.fsync(fd)
    finally:
        fs.close(fd)
    fs.fsync_dir(os.path.dirname(path))
    report.add(RecoveryEntry("truncated", path, damage.offset,
                             f"torn tail ({damage.reason}); copied to {qpath}", nbytes=cut))


def read_evidence(fs: FileSystem, root: str, report: RecoveryReport) -> EndRecord | None:
    """The end-of-log record ([F-28]); one that does not read is reported and counts as none."""
    try:
        return read_end(fs, root)
    except FormatVersionError:
        raise
    except CorruptionError as exc:
        report.add(RecoveryEntry("skipped-end-record", exc.file, exc.offset, exc.reason))
        return None
