"""`verify`: re-read the whole log and every snapshot, collecting problems.

Uses the same `Walker` as recovery with the ``collect`` policy, so a problem
`verify` reports is exactly what `open` would raise on or repair: bad
checksums, seq gaps, broken digest chain ([F-18]), damaged compressed
segments. Snapshots are checked by decoding them and comparing the chain
digest and key versions they claim with what the replay computed at their
seq (allowing for events a salvage lost before them). Never writes.
"""
from __future__ import annotations

import os
from typing import Callable, Sequence

from ..fs import FileSystem
from ..errors import CorruptionError
from ..event import Event
from .frame import Frame
from .layout import SEGMENT_HEADER_SIZE, SEGMENTS_DIR, SNAPSHOT_HEADER_SIZE, SNAPSHOTS_DIR, ZERO_DIGEST
from ..projection import Projection
from .walk import Walker
from ..report import RecoveryEntry, RecoveryReport, VerifyReport, seqs_in
from .segment import list_segments
from .snapshot import list_snapshots, read_snapshot

__all__ = ["verify_store"]


def verify_store(fs: FileSystem, root: str, projections: Sequence[Projection], bound: int | None,
                 progress: Callable[[int, int], None] | None = None) -> VerifyReport:
    seg_dir = os.path.join(root, SEGMENTS_DIR)
    snap_dir = os.path.join(root, SNAPSHOTS_DIR)
    collected = RecoveryReport()
    report = VerifyReport(problems=collected.entries)
    refs = list_segments(fs, seg_dir)
    report.segments = len(refs)
    snaps = []
    try:
        candidates = list_snapshots(fs, snap_dir)
    except FileNotFoundError:
        candidates = []
    for seq, path in candidates:
        try:
            snaps.append(read_snapshot(fs, path))
        except CorruptionError as exc:
            collected.add(RecoveryEntry("problem", path, exc.offset, exc.reason))
    report.snapshots = len(candidates)
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

    def on_commit(frame: Frame, events: list[Event]) -> None:
        report.commits += 1
        report.events += len(events)
        for e in events:
            versions[e.key] = versions.get(e.key, 0) + 1
        snap = wanted.pop(frame.last_seq, None)
        if snap is not None:
            if snap.digest != frame.digest:
                snapshot_problem(RecoveryEntry("problem", snap.path, 40,
                                               f"snapshot digest does not match the log at seq {snap.seq}"))
            elif not log_damaged():
                reason = _versions_problem(snap.versions, versions, seqs_in(walker.gaps))
                if reason is not None:
                    snapshot_problem(RecoveryEntry("problem", snap.path, SNAPSHOT_HEADER_SIZE,
                                                   f"snapshot key versions {reason} a replay to seq {snap.seq}"))
        if progress is not None and report.commits % 256 == 0:
            progress(frame.last_seq, max(last_known, frame.last_seq))

    end = walker.walk(refs, 0, SEGMENT_HEADER_SIZE, 1, ZERO_DIGEST, 0, on_commit, stop_seq=bound)
    report.last_seq = end.next_seq - 1
    report.lost = list(walker.gaps)
    for snap in wanted.values():
        if snap.seq == 0 and snap.digest == ZERO_DIGEST:
            continue  # a snapshot of the empty store
        if any(a <= snap.seq <= b for a, b in walker.gaps):
            continue  # its commit was lost to a salvage; the snapshot still holds its state
        collected.add(RecoveryEntry("problem", snap.path, 8,
                                    f"snapshot at seq {snap.seq} does not fall on a commit of the log "
                                    f"(last seq {report.last_seq})"))
    if progress is not None:
        progress(report.last_seq, report.last_seq)
    return report


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
