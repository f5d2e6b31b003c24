"""Opening the segment log: the newest usable snapshot, then a replay of what follows it.

`open_log` first takes in what proves how far the log reached — the
end-of-log record ``END`` ([F-28]) and the list of snapshots — and only then
looks at segments, so a writer that rolls over and compacts meanwhile only
adds to what the walk finds ([F-30]). It restores each projection (and the
key versions) from the newest snapshot whose position the log confirms
([F-21], [F-22]), replays the frames after it through a `recovery.Walker`,
checks where the log ends against that evidence ([F-29]), and returns an
`OpenResult`. A writer calls it holding the commit lock (after the salvage
pass, when asked for), so the torn tail the walk finds is cut and
quarantined ([F-13]) with no other writer appending meanwhile; a reader calls
it without a lock and only stops at a tail. Snapshots that do not fit the log
are skipped and reported; evidence of commits the log no longer holds makes
a strict open refuse, and a readonly salvage report them (a salvage writer
has already kept their seqs behind gap frames, `salvage.keep_lost_tail`).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Sequence

from ..batch import EventBatch
from ..codec import pack, unpack
from ..errors import CorruptionError, FormatVersionError
from ..fs import FileSystem
from ..keytable import versions_builder
from ..projection import Projection, applier
from ..publish import KeyVersions
from ..report import RecoveryEntry, RecoveryReport, seqs_in
from . import snapshot as snap_mod
from .endrecord import EndRecord, end_path, write_end
from .frame import Frame
from .layout import SEGMENTS_DIR
from .recovery import LogEnd, OnCommit, SnapshotMismatch, Walker, read_evidence
from .segment import SegmentRef, find_segment, list_segments
from .walk import Cursor

__all__ = ["OpenResult", "open_log", "snapshot_candidates"]

log = logging.getLogger("eventstore")


@dataclass
class OpenResult:
    """What `open_log` found: the end of the log, the key versions, the snapshot it used."""

    end: Cursor  # where the next frame goes
    last_ref: SegmentRef | None  # the segment the log ends in (None: no segment at all)
    versions: KeyVersions
    snapshot_seq: int  # the snapshot the state came from (0: a full replay)
    lost: int  # events lost in salvage gaps, as the report counts them
    walker: Walker  # for a salvage writer: the damaged segments to rewrite


@dataclass
class _Claim:
    """The highest seq a snapshot that did not fit claimed, and its file."""

    seq: int = 0
    path: str = ""
    past_end: bool = False  # its position is past the end of the log: evidence, not a lie ([F-29])


def snapshot_candidates(fs: FileSystem, snap_dir: str) -> list[tuple[int, str]]:
    try:
        return snap_mod.list_snapshots(fs, snap_dir)
    except FileNotFoundError:
        return []


class _Opening:
    def __init__(self, fs: FileSystem, root: str, snap_dir: str, projections: Sequence[Projection],
                 recovery: str, writer: bool, report: RecoveryReport) -> None:
        self.fs, self.root, self.snap_dir = fs, root, snap_dir
        self.seg_dir = os.path.join(root, SEGMENTS_DIR)
        self.projections = tuple(projections)
        self.recovery, self.writer, self.report = recovery, writer, report
        self.versions = KeyVersions()
        self.walker = Walker(fs, root, policy=recovery, writer=writer, report=report)

    def apply_to(self, targets: Sequence[Projection], count: bool) -> OnCommit:
        """Replay into ``targets`` (and, with ``count``, note every key for the versions)."""
        versions = self.versions
        appliers = [applier(p) for p in targets]  # Event objects are built only when one iterates

        def on_commit(frame: Frame, batch: EventBatch) -> None:
            for apply in appliers:
                apply(batch)
            if count:
                versions.note(batch.keys)
        return on_commit

    def from_snapshots(self, candidates: list[tuple[int, str]]) -> tuple[LogEnd | None, int, _Claim]:
        """Restore from the newest snapshot that fits and replay after it: (end, its seq, claim)."""
        fresh = [(p, pack(p.snapshot())) for p in self.projections]  # a copy, to undo a bad snapshot
        claim = _Claim()
        for seq, path in candidates:
            snap = self._read(seq, path)
            if snap is None:
                continue
            try:
                end = self._restore(snap)
            except SnapshotMismatch as exc:
                if self.recovery == "strict" and exc.past_end:
                    raise CorruptionError(path, 32, f"snapshot claims seqs past the log: {exc}") from None
                self.report.add(RecoveryEntry("skipped-snapshot", path, None, f"does not match the log: {exc}"))
                if snap.seq > claim.seq:
                    claim = _Claim(snap.seq, path, exc.past_end)
                for p, state in fresh:
                    p.restore(unpack(state, path, 0, "initial projection state"))
                self.versions = KeyVersions()
                continue
            return end, snap.seq, claim
        return None, 0, claim

    def _read(self, seq: int, path: str) -> snap_mod.Snapshot | None:
        """A snapshot file that is usable and points into the log, else None (reported)."""
        try:
            snap = snap_mod.read_snapshot(self.fs, path)
            if snap.seq != seq:
                raise CorruptionError(path, 8, "snapshot seq does not match its file name")
        except FormatVersionError:
            raise
        except FileNotFoundError:
            return None  # a writer pruned it since it was listed: not damage ([F-23], [F-30])
        except CorruptionError as exc:
            self.report.add(RecoveryEntry("skipped-snapshot", path, exc.offset, exc.reason))
            return None
        if find_segment(self.fs, self.seg_dir, snap.seg_first) is None:  # by name: [F-30]
            reason = f"snapshot at seq {snap.seq} points into segment {snap.seg_first}, which is not in the log"
            firsts = [r.first_seq for r in list_segments(self.fs, self.seg_dir)]
            if self.recovery == "strict" and (not firsts or snap.seg_first > firsts[-1]):
                raise CorruptionError(path, 24, f"{reason}: it claims seqs past the log")
            self.report.add(RecoveryEntry("skipped-snapshot", path, 24, reason))
            return None
        return snap

    def _restore(self, snap: snap_mod.Snapshot) -> LogEnd:
        missing = []
        for p in self.projections:
            ok, state = snap.state(p.name, p.version)
            if ok:
                p.restore(state)
            else:
                missing.append(p)
        self.versions = KeyVersions(base=versions_builder(snap.versions, self.projections))
        if missing:  # [F-22]: rebuild those by replay up to the snapshot
            Walker(self.fs, self.root, policy=self.recovery, writer=False, report=self.report).walk(
                Cursor.start(), self.apply_to(missing, False), stop_seq=snap.seq)
        at = Cursor(snap.seg_first, snap.offset, snap.seq + 1, snap.digest, snap.ts)
        return self.walker.walk(at, self.apply_to(self.projections, True), check_snapshot=True)

    def check_end(self, end: LogEnd, record: EndRecord | None) -> None:
        """[F-29]: the log must reach what ``END`` says it held, and end in a plain segment."""
        next_seq = end.cursor.next_seq
        last_first = end.ref.first_seq if end.ref is not None else 0
        if record is not None and (record.seq >= next_seq or record.segment > last_first):
            if self.walker.tail_explains(end, record):  # a commit the tail rule cut ([F-13])
                if self.writer:
                    write_end(self.fs, self.root, EndRecord(next_seq - 1, last_first, end.cursor.digest))
            else:
                self._lost_tail(end, record)
        if end.ref is not None and end.ref.compressed:
            reason = (f"the log ends in a compressed segment (after seq {next_seq - 1}); compaction always "
                      f"leaves a plain active segment after it, so that segment is missing")
            if self.recovery == "strict":
                raise CorruptionError(end.ref.path, None, reason)
            self.report.add(RecoveryEntry("damaged", end.ref.path, None, reason))

    def _lost_tail(self, end: LogEnd, record: EndRecord) -> None:
        next_seq = end.cursor.next_seq
        path = end_path(self.root)
        if record.seq >= next_seq:
            reason = (f"the log ends at seq {next_seq - 1}, but {path} records that it held seqs up to "
                      f"{record.seq}: seqs {next_seq}-{record.seq} are missing")
            offset, lost = 8, (next_seq, record.seq)
        else:
            reason = (f"segment {record.segment}, which {path} records the log continued into, is missing "
                      f"(the log ends at seq {next_seq - 1}); the commits it held, if any, are lost")
            offset, lost = 16, None
        if self.recovery == "strict":
            raise CorruptionError(path, offset, reason)
        self.report.add(RecoveryEntry("lost" if lost else "damaged", path, offset, reason, lost=lost))


def open_log(fs: FileSystem, root: str, snap_dir: str, projections: Sequence[Projection], *,
             recovery: str, writer: bool, report: RecoveryReport) -> OpenResult:
    """Restore and replay the log into ``projections`` (see the module docstring)."""
    record = read_evidence(fs, root, report)  # evidence first, segments last ([F-30])
    candidates = snapshot_candidates(fs, snap_dir)
    opening = _Opening(fs, root, snap_dir, projections, recovery, writer, report)
    end, snapshot_seq, claim = opening.from_snapshots(candidates)
    if end is None:
        snapshot_seq = 0
        end = opening.walker.walk(Cursor.start(), opening.apply_to(opening.projections, True))
    next_seq = end.cursor.next_seq
    if claim.seq >= next_seq:
        reason = f"snapshot claims seq {claim.seq}, past the end of the log (last seq {next_seq - 1})"
        if recovery == "strict":
            raise CorruptionError(claim.path, 8, reason)
        if claim.past_end and not writer:  # a salvage writer kept those seqs before the open
            report.add(RecoveryEntry("lost", claim.path, 8, reason, lost=(next_seq, claim.seq)))
    opening.check_end(end, record)
    lost = seqs_in(report.lost_ranges)
    if lost and recovery == "salvage":
        _tell_lost(root, report, lost, writer)
    return OpenResult(end.cursor, end.ref, opening.versions, snapshot_seq, lost, opening.walker)


def _tell_lost(root: str, report: RecoveryReport, lost: int, writer: bool) -> None:
    """One warning: what a salvage writer's repair lost, or (a reader, which repairs nothing)
    what damage keeps it from reading."""
    events = f"{lost} event{'' if lost == 1 else 's'}"
    seqs = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in report.lost_ranges)
    if writer:
        log.warning("salvage recovery of %s lost %s (seqs %s); the damaged bytes are in quarantine/",
                    root, events, seqs)
    else:
        log.warning("%s is damaged: %s cannot be read (seqs %s); opened readonly, nothing was repaired",
                    root, events, seqs)
