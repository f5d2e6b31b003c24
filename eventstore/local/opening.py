"""Opening the segment log: the newest usable snapshot, then a replay of what follows it.

`open_log` restores each projection (and the key versions) from the newest
snapshot whose position the log confirms ([F-21], [F-22]), replays the frames
after it through a `Walker`, and returns an `OpenResult`: where the log ends
and what the walk found. A writer calls it holding the commit lock (after the
salvage pass, when asked for), so the torn tail the walk finds is cut and
quarantined ([F-13]) with no other writer appending meanwhile; a reader calls
it without a lock and only stops at a tail. Snapshots that do not fit the log
are skipped and reported; one that claims seqs past the end of the log is
evidence of lost commits, which a strict open refuses.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Sequence

from ..codec import pack, unpack
from ..errors import CorruptionError, FormatVersionError
from ..event import Event
from ..fs import FileSystem
from ..projection import Projection
from ..publish import KeyVersions, keys_of
from ..report import RecoveryEntry, RecoveryReport, seqs_in
from . import snapshot as snap_mod
from .frame import Frame
from .layout import SEGMENT_HEADER_SIZE, ZERO_DIGEST
from .reader import Cursor
from .segment import SegmentRef
from .walk import SnapshotMismatch, WalkEnd, Walker

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


def snapshot_candidates(fs: FileSystem, snap_dir: str) -> list[tuple[int, str]]:
    try:
        return snap_mod.list_snapshots(fs, snap_dir)
    except FileNotFoundError:
        return []


class _Opening:
    def __init__(self, fs: FileSystem, root: str, snap_dir: str, projections: Sequence[Projection],
                 recovery: str, writer: bool, report: RecoveryReport) -> None:
        self.fs, self.root, self.snap_dir = fs, root, snap_dir
        self.projections = tuple(projections)
        self.recovery, self.report = recovery, report
        self.versions = KeyVersions()
        self.walker = Walker(fs, root, policy=recovery, writer=writer, report=report)

    def apply_to(self, targets: Sequence[Projection], count: bool) -> Callable[[Frame, list[Event]], None]:
        versions = self.versions

        def on_commit(frame: Frame, events: list[Event]) -> None:
            for p in targets:
                apply = p.apply
                for e in events:
                    apply(e)
            if count:
                versions.note(keys_of(events))
        return on_commit

    def from_snapshots(self, refs: list[SegmentRef]) -> tuple[WalkEnd | None, int, _Claim]:
        """Restore from the newest snapshot that fits and replay after it: (end, its seq, claim)."""
        fresh = [(p, pack(p.snapshot())) for p in self.projections]  # a copy, to undo a bad snapshot
        claim = _Claim()
        firsts = [r.first_seq for r in refs]
        for seq, path in snapshot_candidates(self.fs, self.snap_dir):
            snap = self._read(seq, path, firsts)
            if snap is None:
                continue
            try:
                end = self._restore(snap, refs, firsts)
            except SnapshotMismatch as exc:
                if self.recovery == "strict" and exc.past_end:
                    raise CorruptionError(path, 32, f"snapshot claims seqs past the log: {exc}") from None
                self.report.add(RecoveryEntry("skipped-snapshot", path, None, f"does not match the log: {exc}"))
                if snap.seq > claim.seq:
                    claim = _Claim(snap.seq, path)
                for p, state in fresh:
                    p.restore(unpack(state, path, 0, "initial projection state"))
                self.versions = KeyVersions()
                continue
            return end, snap.seq, claim
        return None, 0, claim

    def _read(self, seq: int, path: str, firsts: list[int]) -> snap_mod.Snapshot | None:
        """A snapshot file that is usable and points into the log, else None (reported)."""
        try:
            snap = snap_mod.read_snapshot(self.fs, path)
            if snap.seq != seq:
                raise CorruptionError(path, 8, "snapshot seq does not match its file name")
        except FormatVersionError:
            raise
        except CorruptionError as exc:
            self.report.add(RecoveryEntry("skipped-snapshot", path, exc.offset, exc.reason))
            return None
        if snap.seg_first not in firsts:
            reason = f"snapshot at seq {snap.seq} points into segment {snap.seg_first}, which is not in the log"
            if self.recovery == "strict" and (not firsts or snap.seg_first > firsts[-1]):
                raise CorruptionError(path, 24, f"{reason}: it claims seqs past the log")
            self.report.add(RecoveryEntry("skipped-snapshot", path, 24, reason))
            return None
        return snap

    def _restore(self, snap: snap_mod.Snapshot, refs: list[SegmentRef], firsts: list[int]) -> WalkEnd:
        missing = []
        for p in self.projections:
            ok, state = snap.state(p.name, p.version)
            if ok:
                p.restore(state)
            else:
                missing.append(p)
        self.versions = KeyVersions(dict(snap.versions))
        if missing:  # [F-22]: rebuild those by replay up to the snapshot
            Walker(self.fs, self.root, policy=self.recovery, writer=False, report=self.report).walk(
                refs, 0, SEGMENT_HEADER_SIZE, 1, ZERO_DIGEST, 0, self.apply_to(missing, False),
                stop_seq=snap.seq)
        return self.walker.walk(refs, firsts.index(snap.seg_first), snap.offset, snap.seq + 1,
                                snap.digest, snap.ts, self.apply_to(self.projections, True),
                                check_snapshot=True)


def open_log(fs: FileSystem, root: str, snap_dir: str, refs: list[SegmentRef],
             projections: Sequence[Projection], *, recovery: str, writer: bool,
             report: RecoveryReport) -> OpenResult:
    """Restore and replay the log made of ``refs`` into ``projections`` (see the module docstring)."""
    opening = _Opening(fs, root, snap_dir, projections, recovery, writer, report)
    end, snapshot_seq, claim = opening.from_snapshots(refs)
    if end is None:
        snapshot_seq = 0
        if refs:
            end = opening.walker.walk(refs, 0, SEGMENT_HEADER_SIZE, 1, ZERO_DIGEST, 0,
                                      opening.apply_to(opening.projections, True))
    next_seq = end.next_seq if end else 1
    if recovery == "strict" and claim.seq >= next_seq:
        raise CorruptionError(claim.path, 8, f"snapshot claims seq {claim.seq}, past the end "
                                             f"of the log (last seq {next_seq - 1})")
    lost = seqs_in(report.lost_ranges)
    if lost and recovery == "salvage":
        log.warning("salvage recovery of %s lost %d event%s", root, lost, "" if lost == 1 else "s")
    if end is None or end.last_ref is None:
        cursor, last_ref = Cursor.start(), None
    else:
        cursor = Cursor(end.last_ref.first_seq, end.end_offset, end.next_seq, end.digest, end.last_ts)
        last_ref = end.last_ref
    return OpenResult(cursor, last_ref, opening.versions, snapshot_seq, lost, opening.walker)
