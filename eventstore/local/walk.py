"""Walking the log on open, on `verify` and for salvage: one policy loop.

`Walker` drives `segment.scan` over a run of segments and applies a policy to
what the scanner classifies ([F-13]–[F-16]):

- ``strict``  — damage that is not a torn tail raises `CorruptionError`;
- ``salvage`` — keep every intact frame, record lost seq ranges, and (for a
  writer) rewrite damaged segments with a gap frame ([F-25]) after copying the
  original to ``quarantine/``;
- ``collect`` — record every problem and go on (used by `verify`).

A torn tail of the last segment is truncated (after a copy to quarantine) only
when ``writer`` is true; readers stop there. Decoded commits are handed to an
``on_commit`` callback. Salvage and collect read segments leniently
(`segment.SegmentStream`); rewriting damaged segments is `salvage`'s; the
report types are `report`'s (re-exported here).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

from ..fs import FileSystem
from ..codec import decode_commit
from ..errors import CorruptionError, FormatVersionError
from ..event import Event
from .frame import Damage, Frame, FrameScanner, check_frame, is_gap, payload_length
from .layout import FRAME_HEADER_SIZE, FRAME_MAGIC, MAX_FRAME_PAYLOAD, SEGMENT_HEADER_SIZE, ZERO_DIGEST
from ..report import RecoveryEntry, RecoveryReport
from .directory import quarantine_copy
from .salvage import (
    ChainEntry, gap_segment, rewrite_segment, set_aside_damaged_snapshots, set_aside_stale_snapshots,
)
from .segment import SegmentRef, SegmentStream, scan

__all__ = ["Walker", "WalkEnd", "SnapshotMismatch", "salvage_log", "cut_torn_tail"]


@dataclass
class WalkEnd:
    next_seq: int
    digest: bytes
    last_ts: int
    last_ref: SegmentRef | None
    end_offset: int  # where the next frame of last_ref starts


class SnapshotMismatch(Exception):
    """The log at a snapshot's position does not continue it ([F-21]).

    ``past_end``: the snapshot claims seqs past the end of the log (evidence of
    lost commits, which a strict open refuses), not merely another log's state.
    """

    def __init__(self, reason: str, *, past_end: bool = False) -> None:
        super().__init__(reason)
        self.past_end = past_end


OnCommit = Callable[[Frame, list[Event]], None]


def _frame_ending_at(fs: FileSystem, ref: SegmentRef, offset: int) -> Frame | None:
    """The CRC-valid frame of ``ref`` that ends exactly at ``offset``, if any.

    Plain segments: searches the last MiB before ``offset`` backwards for a frame
    header whose length ends there (then, for a larger last frame, hops from
    header to header from the segment's start); compressed ones are scanned.
    Used only to confirm a snapshot taken at the very end of the log.
    """
    if ref.compressed:
        try:
            stream = SegmentStream(fs, ref)
        except CorruptionError:
            return None
        scanner = FrameScanner(SEGMENT_HEADER_SIZE, ref.first_seq, stream.prev_digest, end=stream.end)
        found = None
        try:
            for item in scan(stream, scanner, SEGMENT_HEADER_SIZE):
                if isinstance(item, Damage) or item.offset >= offset:
                    break
                found = item
        except CorruptionError:
            return None
        return found if found is not None and found.offset + found.size == offset else None
    with fs.open_read(ref.path) as f:
        # usually the last frame is small: look for its header just before ``offset``
        window = min(offset - SEGMENT_HEADER_SIZE, _BACKWARD_WINDOW)
        f.seek(offset - window)
        tail = f.read(window)
        i = len(tail)
        while (i := tail.rfind(FRAME_MAGIC, 0, i)) >= 0:
            if i + FRAME_HEADER_SIZE <= len(tail) and \
                    i + FRAME_HEADER_SIZE + payload_length(tail, i) == len(tail):
                frame = _probe(tail[i:], offset - window + i)
                if frame is not None:
                    return frame
        if window == offset - SEGMENT_HEADER_SIZE:
            return None  # the whole segment was searched
        pos = SEGMENT_HEADER_SIZE
        while pos < offset:
            f.seek(pos)
            head = f.read(FRAME_HEADER_SIZE)
            if len(head) < FRAME_HEADER_SIZE:
                return None
            length = payload_length(head)
            if head[:4] != FRAME_MAGIC or length == 0 or length > MAX_FRAME_PAYLOAD:
                return None
            if pos + FRAME_HEADER_SIZE + length == offset:
                return _probe(head + f.read(length), pos)
            pos += FRAME_HEADER_SIZE + length
    return None


_BACKWARD_WINDOW = 1 << 20


def _probe(data: bytes, pos: int) -> Frame | None:
    """``data`` as one frame at segment offset ``pos`` if its magic, length and CRC check."""
    frame = check_frame(data, pos)
    return frame if isinstance(frame, Frame) and frame.size == len(data) else None


class Walker:
    """One pass over the log with one policy (see the module docstring)."""

    def __init__(self, fs: FileSystem, root: str, *, policy: str, writer: bool,
                 report: RecoveryReport) -> None:
        assert policy in ("strict", "salvage", "collect")
        self.fs, self.root, self.policy, self.writer = fs, root, policy, writer
        self.report = report
        self.check_payloads = False  # decode payloads even without an on_commit
        self._rewrite: dict[str, ChainEntry] = {}  # path -> how the walk entered the segment
        self._lead_gap: tuple[str, int, int, bytes] | None = None  # seqs missing before the first segment
        self.gaps: list[tuple[int, int]] = []  # seq ranges of the gap frames walked over ([F-25])

    # -- policy helpers -------------------------------------------------------------
    def _problem(self, path: str, offset: int | None, reason: str,
                 lost: tuple[int, int] | None = None) -> None:
        if self.policy == "strict":
            raise CorruptionError(path, offset, reason)
        action = "problem" if self.policy == "collect" else ("lost" if lost else "damaged")
        self.report.add(RecoveryEntry(action, path, offset, reason, lost=lost))

    def walk(self, refs: list[SegmentRef], start: int, offset: int, expected: int,
             digest: bytes, last_ts: int, on_commit: OnCommit | None,
             check_snapshot: bool = False, stop_seq: int | None = None) -> WalkEnd:
        """Scan ``refs[start:]`` from ``offset`` in the first; return where the log ends.

        With ``check_snapshot`` the walk starts at a snapshot's position and
        raises `SnapshotMismatch` unless the log there continues the snapshot:
        the first frame (or the next segment's header) must carry seq
        ``expected`` and chain from ``digest``; when nothing follows, the frame
        that ends at ``offset`` must end at seq ``expected - 1`` with ``digest``.
        """
        restart = False
        confirming = check_snapshot
        end = WalkEnd(expected, digest, last_ts, refs[start] if start < len(refs) else None, offset)
        decode = on_commit is not None or self.check_payloads
        prev_entry: ChainEntry | None = None
        for i in range(start, len(refs)):
            ref = refs[i]
            last = i == len(refs) - 1
            first_in_walk = i == start
            try:
                # salvage and collect read leniently ([F-27]): frames before a damaged header or
                # zstd block are still seen, and the damage is reported with its own offset
                stream = SegmentStream(self.fs, ref, lenient=self.policy != "strict", prev_digest=digest)
            except CorruptionError as exc:
                if confirming and not isinstance(exc, FormatVersionError):  # [F-06]: never a mismatch
                    raise SnapshotMismatch(f"{ref.path}: {exc.reason}") from None
                raise
            damage = stream.header_damage
            damaged_segment = damage is not None
            if damage is not None:  # header unreadable: look for its frames anyway
                if confirming:
                    raise SnapshotMismatch(f"{ref.path}: {damage.reason}")
                offset = 0
            elif not (first_in_walk and offset > SEGMENT_HEADER_SIZE):
                if confirming and (ref.first_seq != expected or stream.prev_digest != digest):
                    raise SnapshotMismatch(self._mismatch(ref, expected))
                if confirming:
                    confirming = False  # the header continues the snapshot's chain
                if ref.first_seq > expected:
                    self._problem(ref.path, 0, f"seqs {expected}-{ref.first_seq - 1} are missing",
                                  lost=(expected, ref.first_seq - 1))
                    restart = True
                    # the gap frame goes at the end of the segment before, or in a new one
                    if prev_entry is not None:
                        self._rewrite.setdefault(prev_entry.ref.path, prev_entry)
                    else:
                        self._lead_gap = (os.path.dirname(ref.path), expected, ref.first_seq, digest)
                elif ref.first_seq < expected:
                    self._problem(ref.path, 0, f"segment starts at seq {ref.first_seq}, expected {expected}")
                    restart = True
                if restart:  # nothing to continue: the header's digest starts the chain again
                    digest = stream.prev_digest
                elif stream.prev_digest != digest:
                    # the first frame is judged against the chain, not the header ([F-26])
                    self._problem(ref.path, 0, "segment header does not continue the digest chain")
                    damaged_segment = True
                expected, offset = ref.first_seq, SEGMENT_HEADER_SIZE
            elif confirming and offset > stream.end:
                raise SnapshotMismatch(f"snapshot position {offset} is past the end of {ref.path} "
                                       f"({stream.end} bytes)", past_end=True)
            # A strict open trusts stored digests ([F-18]) except for the first frame after
            # a snapshot, whose chain confirms that the snapshot belongs to this log ([F-21]).
            scanner = FrameScanner(offset, expected, digest, end=stream.end,
                                   verify_chain=self.policy != "strict" or confirming)
            if restart:
                scanner.restart_chain()
            if damage is not None:
                scanner.damage = damage
            if offset > SEGMENT_HEADER_SIZE:  # from a snapshot's position: the frames before it
                entry = ChainEntry(ref, stream.prev_digest, True)  # were not judged; take the header's word
            else:
                entry = ChainEntry(ref, digest, restart)
            restart = False
            # strict: damage in a sealed or compressed segment is corruption at once;
            # only the last plain segment needs the search for a torn tail ([F-13])
            resync = self.policy != "strict" or (last and not ref.compressed)
            for item in scan(stream, scanner, offset, resync=resync):
                if isinstance(item, Damage):
                    if confirming and item.offset == offset and item.kind in ("seq", "chain"):
                        raise SnapshotMismatch(item.reason)
                    if self.policy == "strict" and not resync:
                        raise CorruptionError(ref.path, item.offset, item.reason)
                    damage = item
                    continue
                if confirming:  # the first frame after a snapshot was chain-checked ([F-18])
                    confirming = False
                    scanner.verify_chain = self.policy != "strict"
                if damage is not None:  # valid data after damage: corruption ([F-14])
                    lost = (expected, item.first_seq - 1) if item.first_seq > expected else None
                    self._problem(ref.path, damage.offset, damage.reason, lost=lost)
                    damaged_segment = True
                    damage = None
                if stop_seq is not None and item.first_seq > stop_seq:
                    break
                expected = item.first_seq + item.count
                digest = item.digest
                last_ts = max(last_ts, item.ts)
                gap = is_gap(item.payload)
                if not gap and decode:
                    try:
                        events = decode_commit(item.payload, item.first_seq, item.count, item.ts,
                                               ref.path, item.offset)
                    except CorruptionError as exc:
                        self._problem(ref.path, item.offset, exc.reason,
                                      lost=(item.first_seq, item.last_seq))  # strict raises
                        damaged_segment = True
                        continue
                    if on_commit is not None:
                        on_commit(item, events)
                restart = gap
                if restart:
                    self.gaps.append((item.first_seq, item.last_seq))
            if confirming and last and first_in_walk and offset > SEGMENT_HEADER_SIZE:
                self._confirm_at_end(ref, offset, expected, digest)  # nothing follows the position
                confirming = False
            end = WalkEnd(expected, digest, last_ts, ref, scanner.position)
            lenient_error = stream.error
            if damage is not None:
                # a whole, signed commit that breaks only the chain was edited, not torn ([F-14])
                if (last and not ref.compressed and lenient_error is None
                        and damage.kind not in ("header", "chain")):
                    self._torn_tail(ref, stream, damage)
                else:
                    self._problem(ref.path, damage.offset, damage.reason, lost=damage.seqs if last else None)
                    damaged_segment = True
                    restart = True
            if lenient_error is not None:
                self._problem(lenient_error.file, lenient_error.offset, lenient_error.reason)
                damaged_segment = True
                restart = True
            if damaged_segment:
                self._rewrite.setdefault(ref.path, entry)
            prev_entry = entry
            if stop_seq is not None and expected > stop_seq:
                break
        return end

    @staticmethod
    def _mismatch(ref: SegmentRef, expected: int) -> str:
        if ref.first_seq < expected and ref.first_seq > 0:
            return (f"the snapshot claims seq {expected - 1}, but {ref.path} starts at seq "
                    f"{ref.first_seq} right after its position")
        return f"the log at the snapshot's position in {ref.path} does not continue it"

    def _confirm_at_end(self, ref: SegmentRef, offset: int, expected: int, digest: bytes) -> None:
        """No frame follows a snapshot's position: the frame ending there must be its seq."""
        frame = _frame_ending_at(self.fs, ref, offset)
        if frame is None or frame.last_seq < expected - 1:
            where = "no frame ends there" if frame is None else f"the log ends at seq {frame.last_seq}"
            raise SnapshotMismatch(f"the snapshot claims seq {expected - 1} at offset {offset} of {ref.path}, "
                                   f"but {where}: it claims seqs past the end of the log", past_end=True)
        if frame.digest != digest or frame.last_seq != expected - 1:
            raise SnapshotMismatch(f"the frame ending at the snapshot's position in {ref.path} "
                                   f"does not match it (seq {frame.last_seq}, digest)")

    def _torn_tail(self, ref: SegmentRef, stream: SegmentStream, damage: Damage) -> None:
        """[F-13]: nothing valid follows the damage in the last segment."""
        if self.policy == "collect":
            self.report.add(RecoveryEntry("problem", ref.path, damage.offset,
                                          f"torn tail: {damage.reason}",
                                          nbytes=stream.end - damage.offset))
            return
        if self.writer:
            cut_torn_tail(self.fs, self.root, ref.path, damage, self.report)

    # -- salvage: rewrite damaged segments with gap frames ([F-25]) -----------------------
    @property
    def damaged(self) -> list[SegmentRef]:
        return [entry.ref for entry in self._rewrite.values()] + (
            [SegmentRef(self._lead_gap[1], "", False)] if self._lead_gap else [])

    def rewrite_damaged(self, refs: list[SegmentRef]) -> None:
        """Replace each damaged segment by its intact frames plus gap frames."""
        if self._lead_gap is not None:  # the first segments are gone: a new one holds the gap
            gap_segment(self.fs, self.report, *self._lead_gap)
            self._lead_gap = None
        layouts: dict[int, dict[int, int]] = {}
        for entry in self._rewrite.values():
            idx = refs.index(entry.ref)
            next_first = refs[idx + 1].first_seq if idx + 1 < len(refs) else None
            layouts[entry.ref.first_seq] = rewrite_segment(self.fs, self.root, self.report, entry, next_first)
        if layouts:
            set_aside_stale_snapshots(self.fs, self.root, layouts, self.report)

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


def salvage_log(fs: FileSystem, root: str, refs: list[SegmentRef], report: RecoveryReport) -> bool:
    """Salvage pass of a writer's open ([F-15], [F-25]): scan the whole log, decode every
    payload, report lost seq ranges, cut a torn tail, and rewrite damaged segments with
    gap frames (originals copied to quarantine/). Returns True when a file was changed.

    Afterwards the log is clean, so the ordinary open (newest usable snapshot and
    its tail) follows; a snapshot taken after the lost seqs still holds their state.
    Snapshots that do not read are moved to quarantine/ first, so a salvaged store
    verifies clean.
    """
    moved = set_aside_damaged_snapshots(fs, root, report)
    if not refs:
        return moved
    walker = Walker(fs, root, policy="salvage", writer=True, report=report)
    walker.check_payloads = True
    before = len(report)
    walker.walk(refs, 0, SEGMENT_HEADER_SIZE, 1, ZERO_DIGEST, 0, None)
    if walker.damaged:
        walker.rewrite_damaged(refs)
    return moved or len(report) != before
