"""Salvage's repairs: the salvage pass of a writer's open, and carrying out a walk's plan.

The `recovery.Walker` decides what is damaged and, as it walks, fills a
`salvage.RepairPlan`: the damaged segments (and how the walk entered each),
seqs lost before the first segment, the spares ([F-26]) and the report entry
of each run of seqs it calls lost. `apply_plan` carries it out: each damaged
segment is rewritten (`salvage.rewrite_segment`), lost runs restored from a
spare's intact copies where they chain (`spares.SpareCopies`), the spares
moved to quarantine/ last, and the snapshots the rewrites moved set aside.
`salvage_pass` is what a salvage writer runs before its ordinary open ([F-26],
[F-29]). Readonly opens and `verify` plan but never apply.

The rules the plan follows:

- Each segment is judged from the chain digest it is entered with, not its
  header's, so a segment re-signed from another chain loses its first commit
  and resynchronises after it; a whole frame that fails only the chain check
  is lost, not cut as a torn tail.
- Seqs lost between segments go in a gap frame at the end of the segment
  before (or a new segment named after them); a segment whose header is
  unreadable is judged by its name.
- A snapshot positioned in a rewritten segment stays only if a frame with
  seq ``s+1`` still starts at its offset; otherwise it goes to quarantine/.
- Seqs that ``END`` or a snapshot prove are kept behind gap frames, one
  ending at each such snapshot's seq, the snapshot rewritten to point after
  it (its original copied to quarantine/ first); they go at the end of the
  last plain segment or in a new segment named after the first lost seq, and
  ``END`` is rewritten. The ordinary open follows, so a snapshot taken after
  lost commits restores the state they made.
"""
from __future__ import annotations

import bisect
import dataclasses
import os
from dataclasses import dataclass

from ..errors import CorruptionError, FormatVersionError
from ..fs import FileSystem
from ..report import RecoveryEntry, RecoveryReport
from .directory import quarantine_move
from .endrecord import EndRecord, read_end, write_end
from .frame import Frame, SeqRange
from .layout import SEGMENTS_DIR
from .recovery import LogEnd, Walker
from .salvage import (RepairPlan, gap_segment, keep_lost_tail, rewrite_segment, set_aside_damaged_snapshots,
                      set_aside_stale_snapshots)
from .segment import list_segments
from .spares import SpareCopies, chains, set_aside_spares
from .walk import Cursor

__all__ = ["apply_plan", "salvage_log", "salvage_pass", "Salvaged"]


def apply_plan(fs: FileSystem, root: str, report: RecoveryReport, plan: RepairPlan) -> None:
    """Carry out ``plan`` (see the module docstring); the plan is empty afterwards."""
    seg_dir = os.path.join(root, SEGMENTS_DIR)
    if plan.lead_gap is not None:  # the first segments are gone: a new one holds the gap
        gap_segment(fs, report, plan.lead_gap)
        plan.lead_gap = None
    spares = plan.spares
    refs = list_segments(fs, seg_dir)
    # where each segment of the repaired log starts: a spare's rewrite starts at the seq it adds
    firsts = sorted({r.first_seq for r in refs if r.path not in spares} | {e.first for e in plan.segments.values()})
    filler = _Filler(report, plan, SpareCopies(fs, list(spares.values())))
    layouts: dict[int, dict[int, int]] = {}
    for entry in plan.segments.values():
        i = bisect.bisect_right(firsts, entry.first)
        next_first = firsts[i] if i < len(firsts) else None
        layouts[entry.first] = rewrite_segment(fs, root, report, entry, next_first, filler.fill)
    plan.segments.clear()
    if spares:  # last: a frame taken from a spare is written before the spare leaves ([F-05])
        log = [r for r in list_segments(fs, seg_dir) if r.path not in spares]
        set_aside_spares(fs, root, spares.values(), log, report)
        for ref in spares.values():
            layouts.setdefault(ref.first_seq, {})  # a snapshot positioned in a spare goes too
        spares.clear()
        fs.fsync_dir(seg_dir)
    if layouts:
        set_aside_stale_snapshots(fs, root, layouts, report)


@dataclass
class _Filler:
    report: RecoveryReport
    plan: RepairPlan
    copies: SpareCopies

    def fill(self, path: str, seqs: SeqRange, digest: bytes, after: Frame) -> list[Frame]:
        """Intact copies, from a spare, of seqs a rewrite of ``path`` would put behind a gap frame
        ([F-26]): they must continue the chain from ``digest``, and when they hold every seq the
        frame ``after`` them must continue it from theirs. The report no longer calls them lost."""
        entries = self.report.entries
        index = self.plan.holes.get((path, seqs.first))
        if index is None or entries[index].lost != seqs.as_tuple():
            return []  # only seqs the report lost, as it lost them
        frames, source = self.copies.run(path, seqs, digest)
        if frames and frames[-1].last_seq == seqs.last and not chains(frames[-1].digest, after):
            frames.pop()  # then a gap frame must restart the chain before ``after``
        if not frames:
            return []
        entry, last = entries[index], frames[-1].last_seq
        lost = (last + 1, seqs.last) if last < seqs.last else None
        entries[index] = dataclasses.replace(
            entry, action="lost" if lost else "damaged", lost=lost,
            reason=f"{entry.reason}; seqs {seqs.first}-{last} restored from an intact copy in {source}")
        return frames


@dataclass
class Salvaged:
    """What `salvage_log` did."""

    changed: bool  # a file was changed
    end: LogEnd  # where the repaired log ends
    walker: Walker  # the walk that judged it (its torn tail, if any)


def salvage_log(fs: FileSystem, root: str, report: RecoveryReport) -> Salvaged:
    """Salvage pass of a writer's open ([F-15], [F-25]): scan the whole log, decode every
    payload, report lost seq ranges, cut a torn tail, and rewrite damaged segments with
    gap frames (originals copied to quarantine/).

    Afterwards the log is clean, so the ordinary open (newest usable snapshot and
    its tail) follows; a snapshot taken after the lost seqs still holds their state.
    Snapshots that do not read are moved to quarantine/ first, so a salvaged store
    verifies clean.
    """
    moved = set_aside_damaged_snapshots(fs, root, report)
    walker = Walker(fs, root, policy="salvage", writer=True, report=report)
    walker.check_payloads = True
    before = len(report)
    end = walker.walk(Cursor.start(), None)
    if walker.plan.pending:
        apply_plan(fs, root, report, walker.plan)
        # where the repaired log ends (gap frames may now hold seqs past the old end)
        end = Walker(fs, root, policy="collect", writer=False, report=RecoveryReport()).walk(Cursor.start(), None)
    return Salvaged(moved or len(report) != before, end, walker)


def salvage_pass(fs: FileSystem, root: str, report: RecoveryReport) -> bool:
    """A salvage writer's repairs before its open, holding both locks ([F-26], [F-29]).

    `salvage_log` repairs damage in the log; then the seqs the store proves its
    log held past its end (snapshots, the end-of-log record) are kept behind gap
    frames (`salvage.keep_lost_tail`). A torn tail the pass cut explains the
    record's last seqs (the tail rule judged that commit incomplete, [F-13]):
    the record then follows the log. Returns True when a file was changed.
    """
    try:
        record = read_end(fs, root)
    except FormatVersionError:
        raise
    except CorruptionError as exc:  # evidence that does not read: out of use, never deleted ([F-05])
        qpath = quarantine_move(fs, root, exc.file)
        report.add(RecoveryEntry("skipped-end-record", exc.file, exc.offset, f"{exc.reason}; moved to {qpath}"))
        record = None
    done = salvage_log(fs, root, report)
    end = done.end
    if record is not None and done.walker.tail_explains(end, record):
        record = EndRecord(end.cursor.next_seq - 1, end.ref.first_seq if end.ref else 1, end.cursor.digest)
        write_end(fs, root, record)
    return keep_lost_tail(fs, root, end.cursor, end.ref, record, report) or done.changed
