"""`verify`: re-read the whole log and every snapshot, collecting problems.

Uses the same `recovery.Walker` (over the one segment walk) as recovery, with the ``collect`` policy, so a problem
`verify` reports is exactly what `open` would raise on or repair: bad
checksums, seq gaps, broken digest chain ([F-18]), damaged compressed
segments. Snapshots are checked by decoding them and comparing the chain
digest and key versions they claim with what the replay computed at their
seq (allowing for events a salvage lost before them). Never writes.
"""
from __future__ import annotations

import os
from typing import Callable, Iterable, Sequence

from ..fs import FileSystem
from ..errors import CorruptionError
from ..batch import EventBatch
from .frame import Frame, SeqRange
from .layout import SEGMENTS_DIR, SNAPSHOT_HEADER_SIZE, SNAPSHOTS_DIR, ZERO_DIGEST
from ..projection import Projection
from .endrecord import EndRecord, end_path, read_end
from .recovery import LogEnd, Walker
from .walk import Cursor
from ..report import RecoveryEntry, RecoveryReport, VerifyReport
from .segment import list_segments
from .snapshot import Snapshot, list_snapshots, read_snapshot

__all__ = ["verify_store"]


def verify_store(fs: FileSystem, root: str, projections: Sequence[Projection], bound: int | None,
                 progress: Callable[[int, int], None] | None = None) -> VerifyReport:
    seg_dir = os.path.join(root, SEGMENTS_DIR)
    snap_dir = os.path.join(root, SNAPSHOTS_DIR)
    collected = RecoveryReport()
    report = VerifyReport(problems=collected.entries)
    record = _read_record(fs, root, collected)  # evidence before segments ([F-30])
    snaps = _read_snapshots(fs, snap_dir, report, collected)
    report.segments = len(list_segments(fs, seg_dir))
    wanted = {s.seq: s for s in snaps if bound is None or s.seq <= bound}
    versions: dict[str, int] = {}
    last_known = bound if bound is not None else max((s.seq for s in snaps), default=0)

    not_log = len(collected.entries)  # problems that are not the log's: unreadable snapshots, then mismatches

    def log_damaged() -> bool:
        """A replay past damage cannot judge a snapshot's key versions (the lost commits' are gone)."""
        return len(collected.entries) > not_log

    def snapshot_problem(entry: RecoveryEntry) -> None:
        nonlocal not_log
        collected.add(entry)
        not_log += 1

    walker = Walker(fs, root, policy="collect", writer=False, report=collected)

    def on_commit(frame: Frame, batch: EventBatch) -> None:
        report.commits += 1
        report.events += len(batch)
        for key in batch.keys:
            versions[key] = versions.get(key, 0) + 1
        snap = wanted.pop(frame.last_seq, None)
        if snap is not None:
            if snap.digest != frame.digest:
                snapshot_problem(RecoveryEntry("problem", snap.path, 40,
                                               f"snapshot digest does not match the log at seq {snap.seq}"))
            elif not log_damaged():
                reason = _versions_problem(snap.versions.to_dict(), versions, sum(len(gap) for gap in walker.gaps))
                if reason is not None:
                    snapshot_problem(RecoveryEntry("problem", snap.path, SNAPSHOT_HEADER_SIZE,
                                                   f"snapshot key versions {reason} a replay to seq {snap.seq}"))
        if progress is not None and report.commits % 256 == 0:
            progress(frame.last_seq, max(last_known, frame.last_seq))

    end = walker.walk(Cursor.start(), on_commit, stop_seq=bound)
    report.last_seq = end.cursor.next_seq - 1
    report.lost = [gap.as_tuple() for gap in walker.gaps]
    lost = walker.gaps + [SeqRange(*e.lost) for e in collected if e.lost is not None]
    _unmatched_snapshots(wanted.values(), lost, report.last_seq, collected)
    _end_problems(root, record, end, bound, collected)
    if progress is not None:
        progress(report.last_seq, report.last_seq)
    return report


def _read_record(fs: FileSystem, root: str, collected: RecoveryReport) -> EndRecord | None:
    try:
        return read_end(fs, root)
    except CorruptionError as exc:  # a newer format version raises
        collected.add(RecoveryEntry("problem", exc.file, exc.offset, exc.reason))
        return None


def _read_snapshots(fs: FileSystem, snap_dir: str, report: VerifyReport,
                    collected: RecoveryReport) -> list[Snapshot]:
    """Every snapshot that reads; the others are problems."""
    try:
        candidates = list_snapshots(fs, snap_dir)
    except FileNotFoundError:
        candidates = []
    snaps = []
    report.snapshots = len(candidates)
    for _, path in candidates:
        try:
            snaps.append(read_snapshot(fs, path))
        except FileNotFoundError:
            report.snapshots -= 1  # a writer pruned it since the listing ([F-23], [F-30])
        except CorruptionError as exc:
            collected.add(RecoveryEntry("problem", path, exc.offset, exc.reason))
    return snaps


def _unmatched_snapshots(snaps: Iterable[Snapshot], lost: list[SeqRange], last_seq: int,
                         collected: RecoveryReport) -> None:
    """Snapshots whose seq no commit the replay passed ends at.

    A snapshot whose seq is lost (behind a gap frame of a salvage, or in
    damage this walk reported with its seqs, a damaged `.zseg` among them) is
    not one: the log cannot show where its commit ended, and the damage is
    reported already."""
    for snap in snaps:
        if snap.seq == 0 and snap.digest == ZERO_DIGEST:
            continue  # a snapshot of the empty store
        if any(snap.seq in seqs for seqs in lost):
            continue  # its commit is lost; the snapshot still holds its state
        collected.add(RecoveryEntry("problem", snap.path, 8,
                                    f"snapshot at seq {snap.seq} does not fall on a commit of the log "
                                    f"(last seq {last_seq})"))


def _end_problems(root: str, record: EndRecord | None, end: LogEnd, bound: int | None,
                  collected: RecoveryReport) -> None:
    """[F-29]: where the log ends against the end-of-log record, and in a plain segment."""
    last_seq = end.cursor.next_seq - 1
    if bound is not None and last_seq >= bound:
        return  # verified up to the bound only
    last_first = end.ref.first_seq if end.ref is not None else 0
    if record is not None and record.seq > last_seq:
        collected.add(RecoveryEntry("problem", end_path(root), 8, f"the log ends at seq {last_seq}, but the "
                                                                  f"end-of-log record says it held seqs up to "
                                                                  f"{record.seq}"))
    elif record is not None and record.segment > last_first:
        collected.add(RecoveryEntry("problem", end_path(root), 16, f"segment {record.segment}, which the log "
                                                                   f"continued into, is missing"))
    if end.ref is not None and end.ref.compressed:
        collected.add(RecoveryEntry("problem", end.ref.path, None, "the log ends in a compressed segment: "
                                                                   "the plain segment after it is missing"))


def _versions_problem(claimed: dict[str, int], replayed: dict[str, int], lost: int) -> str | None:
    """Why a snapshot's key versions cannot be the log's, or None when they can.

    With no events lost to a salvage before the snapshot ([F-25]), they must be
    equal. A salvage keeps a snapshot taken after the lost events ([F-26]); it
    still counts them, and which keys they changed is gone. Then every key may
    count more than the replay, by at most ``lost`` events in all.
    """
    if claimed == replayed:
        return None
    if not lost:
        return "differ from"
    extra = 0
    for key, n in replayed.items():
        if claimed.get(key, 0) < n:
            return "count fewer events than"
    for key, n in claimed.items():
        extra += n - replayed.get(key, 0)
    if extra > lost:
        return f"count {extra} more events ({lost} lost to salvage) than"
    return None
