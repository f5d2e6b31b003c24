"""Spare segments: files that overlap seqs the log holds before them ([F-26]).

A segment whose name is below the seq the walk expects (a stale or duplicated
file, or one renamed) is a *spare*. The `recovery.Walker` decides what a
spare adds to the log (its frames from the expected seq up to the next
segment's name, rewritten under the name of the first of them). This module
owns what happens to spares after that:

- `SpareCopies` offers a spare's intact frames to fill a run of seqs a
  rewrite would otherwise put behind a gap frame: only frames that continue
  the digest chain from the digest before the run, so a copy from another
  history is never taken for the log's own commit;
- `set_aside_spares` moves every spare into ``quarantine/`` once every other
  rewrite is written ([F-05]: moved, never unlinked), and says whether every
  commit it holds is now in the log, byte for byte, or which are not.

It never decides what is damage and never rewrites a segment itself.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from ..codec import decode_commit
from ..errors import CorruptionError
from ..fs import FileSystem
from ..report import RecoveryEntry, RecoveryReport
from .directory import quarantine_move
from .frame import Frame, SeqRange, chain_digest, frame_bytes, is_gap
from .layout import FRAME_DIGEST_FIELDS, ZERO_DIGEST
from .segment import SegmentRef
from .walk import Resync, SegmentWalk

__all__ = ["Spare", "SpareCopies", "chains", "intact_frames_of", "set_aside_spares"]


@dataclass
class Spare:
    """A spare as one walk met it."""

    cap: int | None  # the next segment's name: the seqs from there on are that segment's
    took: bool = False  # it holds seqs the log lacked (from the one expected on)


def chains(prev: bytes, frame: Frame) -> bool:
    """Whether ``frame`` continues the digest chain from ``prev`` ([F-17])."""
    return chain_digest(prev, frame_bytes(frame)[FRAME_DIGEST_FIELDS], frame.payload) == frame.digest


def intact_frames_of(fs: FileSystem, ref: SegmentRef) -> list[Frame]:
    """The frames of ``ref`` whose magic, length, CRC and payload check, in file order.

    Read leniently and searched past damage ([F-15], [F-27]), from its first
    frame whatever seq that carries (its header and name are not trusted), so
    a stale or renamed copy shows every commit it holds. Gap frames are no
    copy of a commit and are left out.
    """
    found: list[Frame] = []
    for visit in SegmentWalk.over(fs, [ref], lenient=True, resync=Resync.ALWAYS, locked=True).visits():
        for item in visit.frames(None, 0, ZERO_DIGEST, verify_chain=False, overlap=True):
            if isinstance(item, Frame) and _decodes(item, ref):
                found.append(item)
    return found


def _decodes(frame: Frame, ref: SegmentRef) -> bool:
    if is_gap(frame.payload):
        return False  # a gap frame is no copy of a commit
    try:
        decode_commit(frame.payload, frame.first_seq, frame.count, frame.ts, ref.path, frame.offset)
    except CorruptionError:
        return False
    return True


@dataclass
class SpareCopies:
    """The intact frames of the spares, read when a rewrite first asks for them."""

    fs: FileSystem
    refs: list[SegmentRef]
    _frames: dict[str, dict[int, Frame]] = field(default_factory=dict)

    def _of(self, ref: SegmentRef) -> dict[int, Frame]:
        if ref.path not in self._frames:
            self._frames[ref.path] = {f.first_seq: f for f in intact_frames_of(self.fs, ref)}
        return self._frames[ref.path]

    def run(self, exclude: str, seqs: SeqRange, digest: bytes) -> tuple[list[Frame], str]:
        """The longest run of one spare's frames holding seqs from ``seqs.first`` on (none past
        ``seqs.last``), each continuing the chain from the one before, the first from
        ``digest``; and the spare's path. ``exclude``: the segment being rewritten."""
        best: list[Frame] = []
        source = ""
        for ref in self.refs:
            if ref.path == exclude:
                continue
            frames, seq, prev = self._of(ref), seqs.first, digest
            taken: list[Frame] = []
            while (frame := frames.get(seq)) is not None and frame.last_seq <= seqs.last and chains(prev, frame):
                taken.append(frame)
                seq, prev = frame.last_seq + 1, frame.digest
            if len(taken) > len(best):
                best, source = taken, ref.path
        return best, source


def set_aside_spares(fs: FileSystem, root: str, spares: Iterable[SegmentRef], log: list[SegmentRef],
                     report: RecoveryReport) -> None:
    """Move each spare into quarantine/, saying whether the log (``log``: its segments after
    every rewrite) holds every commit of it byte for byte ([F-05], [F-26])."""
    for ref in spares:
        frames = intact_frames_of(fs, ref)
        missing = _not_in_log(fs, frames, log)
        qpath = quarantine_move(fs, root, ref.path)
        if not missing:
            why = "every commit it holds is in the log" if frames else "it holds no intact commit"
        else:
            ranges = ", ".join(f"{r.first}-{r.last}" if len(r) > 1 else str(r.first) for r in missing)
            why = (f"its copies of seqs {ranges} differ from the log's or do not continue its digest chain "
                   f"(another history); kept there as they are")
        report.add(RecoveryEntry("quarantined", ref.path, 0,
                                 f"overlaps seqs the log holds; {why}; moved to {qpath}"))


def _not_in_log(fs: FileSystem, frames: list[Frame], log: list[SegmentRef]) -> list[SeqRange]:
    """The seqs of ``frames`` the log does not hold as the very same bytes."""
    if not frames:
        return []
    lo, hi = min(f.first_seq for f in frames), max(f.last_seq for f in frames)
    firsts = [r.first_seq for r in log]
    held: dict[int, bytes] = {}
    for i, ref in enumerate(log):
        upto = firsts[i + 1] if i + 1 < len(log) else None
        if ref.first_seq > hi or (upto is not None and upto <= lo):
            continue
        for frame in intact_frames_of(fs, ref):
            if lo <= frame.first_seq <= hi:
                held[frame.first_seq] = frame_bytes(frame)
    missing = [SeqRange(f.first_seq, f.last_seq) for f in frames if held.get(f.first_seq) != frame_bytes(f)]
    return _merged(missing)


def _merged(ranges: list[SeqRange]) -> list[SeqRange]:
    out: list[SeqRange] = []
    for r in sorted(ranges, key=lambda r: r.first):
        if out and r.first <= out[-1].last + 1:
            out[-1] = SeqRange(out[-1].first, max(out[-1].last, r.last))
        else:
            out.append(r)
    return out
