"""Salvage's own tools: rewriting damaged segments with gap frames.

`rewrite_segment` reads a damaged segment through the one walk, leniently
(as the `recovery.Walker` did), and replaces it by a plain
one holding every intact frame and a gap frame ([F-25]) for each run of lost
seqs, after copying the original to ``quarantine/``; `gap_segment` writes
the segment that holds seqs lost before the first one;
`set_aside_damaged_snapshots` moves unreadable snapshots out of the way.
Deciding *what* is damaged in the log is the `recovery.Walker`'s job.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import NamedTuple

from ..fs import FileSystem
from ..codec import decode_commit, pack
from ..errors import CorruptionError, FormatVersionError
from .frame import Frame, SeqRange, encode_frame, frame_bytes, is_gap
from .endrecord import EndRecord, end_path, write_end
from .layout import FRAME_HEADER_SIZE, SEGMENT_HEADER_SIZE, SEGMENTS_DIR, SNAPSHOTS_DIR
from ..report import RecoveryEntry, RecoveryReport
from .directory import quarantine_copy, quarantine_move
from .segment import SegmentRef, encode_header, segment_path
from .snapshot import Snapshot, list_snapshots, read_snapshot, reposition, snapshot_position
from .walk import Cursor, Resync, SegmentWalk

__all__ = ["ChainEntry", "LeadGap", "rewrite_segment", "set_aside_stale_snapshots", "set_aside_damaged_snapshots",
           "gap_segment", "gap_frame", "keep_lost_tail", "GAP_REASON"]


class ChainEntry(NamedTuple):
    """How the walk entered a segment: what its rewrite needs to keep what the walk kept."""

    ref: SegmentRef
    prev: bytes  # the chain digest before its first frame: what its rewritten header holds
    restart: bool  # the chain restarts at its first frame (after a gap frame or lost seqs, [F-25])


def rewrite_segment(fs: FileSystem, root: str, report: RecoveryReport, entry: ChainEntry,
                    next_first: int | None) -> dict[int, int]:
    """Rewrite one damaged segment as a plain segment holding every intact frame.

    The frames are judged as the walk judged them ([F-26]): chained from
    ``entry.prev`` unless the chain restarts there, so a first frame that was
    edited and re-signed is lost here too, and the new header holds
    ``entry.prev`` even where the old one held another digest.
    The original is copied to quarantine first ([F-05]). Each run of lost seqs
    becomes one gap frame ([F-25]); when the damaged bytes it replaces are long
    enough, the gap frame is padded to exactly their length so every intact
    frame keeps its offset and snapshot positions stay valid. Returns the new
    layout: the offset of every frame written (gap frames too) mapped to its
    first seq, and the segment's end mapped to the seq after its last frame.
    """
    ref, prev = entry.ref, entry.prev
    kept = _intact_frames(fs, entry, next_first)
    out = [encode_header(ref.first_seq, prev)]
    pos = SEGMENT_HEADER_SIZE
    layout: dict[int, int] = {}
    expected, digest = ref.first_seq, prev
    ending: list[Frame | None] = [*kept.frames, None]
    for frame in ending:
        upto = frame.first_seq if frame is not None else kept.upto
        if upto > expected:
            room = frame.offset - pos if frame is not None else 0
            gap, digest = gap_frame(expected, upto - expected, digest, room)
            layout[pos] = expected
            out.append(gap)
            pos += len(gap)
            expected = upto
        if frame is None:
            break
        layout[pos] = frame.first_seq
        out.append(frame_bytes(frame))
        pos += frame.size
        expected, digest = frame.first_seq + frame.count, frame.digest
    layout[pos] = expected
    original = fs.read_file(ref.path, fs.size(ref.path))
    qpath = quarantine_copy(fs, root, os.path.basename(ref.path), original)
    new_path = segment_path(os.path.dirname(ref.path), ref.first_seq)
    fs.create_atomic(new_path, b"".join(out))
    if ref.compressed:
        fs.remove(ref.path)  # a copy is in quarantine
        fs.fsync_dir(os.path.dirname(ref.path))
    report.add(RecoveryEntry("rewrote", ref.path, None,
                             f"kept {len(kept.frames)} intact commits; original copied to {qpath}"))
    return layout


@dataclass
class _Kept:
    """What a rewrite keeps of a damaged segment."""

    frames: list[Frame]  # the intact frames, in seq order
    upto: int  # the seq after the segment's last one (lost seqs before it get a gap frame)


def _intact_frames(fs: FileSystem, entry: ChainEntry, next_first: int | None) -> _Kept:
    """The frames of ``entry.ref`` a rewrite keeps, read through the walk as the `Walker` read them."""
    ref = entry.ref
    frames: list[Frame] = []
    expected = ref.first_seq
    seen_end = expected  # one past the last seq of any signed frame seen, kept or not
    for visit in SegmentWalk.over(fs, [ref], lenient=True, resync=Resync.ALWAYS, locked=True).visits():
        for item in visit.frames(None, ref.first_seq, entry.prev, verify_chain=True, restart=entry.restart):
            if not isinstance(item, Frame):
                if item.seqs is not None and item.seqs.first >= expected:  # a signed commit the chain refused
                    seen_end = max(seen_end, item.seqs.last + 1)
                continue
            if item.first_seq < expected:
                continue
            if next_first is not None and item.last_seq >= next_first:
                break
            seen_end = max(seen_end, item.first_seq + item.count)
            if not is_gap(item.payload):
                try:
                    decode_commit(item.payload, item.first_seq, item.count, item.ts, ref.path, item.offset)
                except CorruptionError:
                    continue  # an undecodable commit is lost like a damaged one
            frames.append(item)
            expected = item.first_seq + item.count
    # lost commits at the very end keep their seqs ([F-25])
    return _Kept(frames, next_first if next_first is not None else seen_end)


def set_aside_stale_snapshots(fs: FileSystem, root: str, layouts: dict[int, dict[int, int]],
                              report: RecoveryReport) -> None:
    """Quarantine the snapshots whose position a rewrite took away ([F-25]).

    ``layouts`` maps a rewritten segment's first seq to its new layout (see
    `rewrite_segment`). A snapshot at seq ``s`` positioned in such a segment
    stays only if a frame with seq ``s + 1`` starts at its offset (or the
    segment ends there with seq ``s``). Otherwise the frames moved (a lost
    commit shorter than the smallest gap frame) or the offset is inside a gap
    frame (the commits on both sides of it were lost): it is copied to
    quarantine/ and removed, so the open falls back to an older snapshot or a
    full replay instead of reading the bytes there as damage.
    """
    directory = os.path.join(root, SNAPSHOTS_DIR)
    try:
        candidates = list_snapshots(fs, directory)
    except FileNotFoundError:
        return
    for _, path in candidates:
        try:
            seq, seg_first, offset = snapshot_position(fs, path)
        except CorruptionError:
            continue  # the open skips it (or raises for a newer format version)
        layout = layouts.get(seg_first)
        if layout is None or layout.get(offset) == seq + 1:
            continue
        qpath = quarantine_copy(fs, root, os.path.basename(path), fs.read_file(path, fs.size(path)))
        fs.remove(path)
        fs.fsync_dir(directory)
        report.add(RecoveryEntry("skipped-snapshot", path, 24,
                                 f"salvage rewrote segment {seg_first} and no frame with seq {seq + 1} "
                                 f"starts at offset {offset}, where this snapshot points; copied to {qpath}"))


def set_aside_damaged_snapshots(fs: FileSystem, root: str, report: RecoveryReport) -> bool:
    """Move every snapshot that does not read ([F-21]) into quarantine/ so that a salvaged store verifies clean.

    A strict open skips such a snapshot each time and `verify` keeps reporting
    it; salvage is the repair, so it takes it out of use ([F-05]: moved, never
    unlinked) and reports it as ``skipped-snapshot``. A snapshot of a newer
    format version is not damage ([F-06]): it stays, and the open refuses it.
    Returns True when one was moved.
    """
    directory = os.path.join(root, SNAPSHOTS_DIR)
    try:
        candidates = list_snapshots(fs, directory)
    except FileNotFoundError:
        return False
    moved = False
    for _, path in candidates:
        try:
            read_snapshot(fs, path)
        except FormatVersionError:
            continue
        except CorruptionError as exc:
            qpath = quarantine_move(fs, root, path)
            report.add(RecoveryEntry("skipped-snapshot", path, exc.offset,
                                     f"{exc.reason}; moved to {qpath}"))
            moved = True
    return moved


GAP_REASON = "lost in salvage"


def gap_frame(first_seq: int, count: int, prev: bytes, room: int) -> tuple[bytes, bytes]:
    """A gap frame for ``count`` lost seqs, padded to ``room`` bytes when that is possible."""
    payload = pack({"gap": GAP_REASON})
    want = room - FRAME_HEADER_SIZE
    if want > len(payload):
        payload = _gap_payload(want) or payload
    return encode_frame(first_seq, count, 0, payload, prev)


def _gap_payload(size: int) -> bytes | None:
    """A gap payload of exactly ``size`` bytes: a longer reason (dots), then a ``pad`` bin."""
    for extra in range(32 - len(GAP_REASON)):  # a msgpack fixstr holds up to 31 bytes
        candidate = pack({"gap": GAP_REASON + "." * extra})
        if len(candidate) == size:
            return candidate
    for extra in range(8):  # bin8 / bin16 / bin32 headers differ in length: a dot or two evens them out
        reason = GAP_REASON + "." * extra
        fixed = len(pack({"gap": reason, "pad": b""}))
        for pad in range(max(0, size - fixed - 4), size - fixed + 1):
            candidate = pack({"gap": reason, "pad": bytes(pad)})
            if len(candidate) == size:
                return candidate
    return None


@dataclass
class LeadGap:
    """Seqs lost before the first segment: ``first`` up to (not including) ``upto``."""

    directory: str  # the segments directory
    first: int
    upto: int  # the first seq of the first segment there is
    prev: bytes  # the chain digest the gap frame continues


def gap_segment(fs: FileSystem, report: RecoveryReport, lead: LeadGap) -> None:
    """A new segment named ``lead.first`` holding one gap frame for the seqs before ``lead.upto``."""
    first, upto = lead.first, lead.upto
    gap, _ = gap_frame(first, upto - first, lead.prev, 0)
    path = segment_path(lead.directory, first)
    fs.create_atomic(path, encode_header(first, lead.prev) + gap)
    report.add(RecoveryEntry("rewrote", path, None, f"new segment holding the gap {first}-{upto - 1}"))


# -- commits lost at the end of the log, with evidence ([F-29]) ---------------------------------
@dataclass(frozen=True)
class _Anchor:
    """Where a snapshot's seq ends after salvage: the end of its gap frame."""

    segment: int
    offset: int
    digest: bytes


@dataclass
class _GapSegment:
    """Where gap frames go: appended to the plain segment the log ends in, or a new segment."""

    first_seq: int
    path: str
    prev: bytes  # the chain digest before its first gap frame
    frames: list[bytes]
    start: int  # offset of its first gap frame
    append: bool  # appended to an existing segment (else created)


def keep_lost_tail(fs: FileSystem, root: str, end: Cursor, ref: SegmentRef | None,
                   record: EndRecord | None, report: RecoveryReport) -> bool:
    """Keep the seqs the store proves its log held past its end behind gap frames ([F-29]).

    Evidence: snapshots whose seq is at or past ``end.next_seq`` and whose
    position is past the end of the log (a snapshot that contradicts frames the
    log has is a lie, skipped by the open), and the end-of-log record. Gap
    frames cover ``end.next_seq`` to the highest seq proved, one ending at each
    such snapshot's seq; each of those snapshots is copied to quarantine/ and
    rewritten to point after its gap frame (its state is unchanged), so the
    open that follows restores the state the lost commits made. A segment the
    record says the log continued into, and the plain active segment a log
    must end in, are created when missing. Returns True when it wrote.
    """
    next_seq = end.next_seq
    last_first = ref.first_seq if ref is not None else 0
    snaps = _snapshots_past(fs, root, next_seq, last_first, end.offset)
    top = max([s.seq for s in snaps] + [record.seq if record is not None else 0])
    split = record.segment if record is not None and record.segment > last_first else None
    if split is not None and not next_seq <= split <= max(top, next_seq - 1) + 1:
        split = None  # a record that overlaps the log's own segments proves no segment
    new_active = ref is None or ref.compressed
    if top < next_seq and split is None and not new_active:
        return False
    cuts = {s.seq for s in snaps} | {top} | ({split - 1} if split is not None else set())
    ranges, lo = [], next_seq
    for cut in sorted(cuts):
        if cut >= lo:
            ranges.append(SeqRange(lo, cut))
            lo = cut + 1
    layout = _lay_out(os.path.join(root, SEGMENTS_DIR), end, ref, ranges, split, new_active)
    anchors, parts = layout.anchors, layout.parts
    for snap in snaps:  # first: a crash before the gap frames leaves evidence a later salvage redoes
        _reposition(fs, root, snap, anchors[snap.seq], report)
    for part in parts:
        _write_part(fs, part, report)
    _report_lost_tail(root, next_seq, top, snaps, record, split, ref if new_active else None, report)
    if parts:
        write_end(fs, root, EndRecord(max(top, next_seq - 1), parts[-1].first_seq, layout.digest))
    return True


@dataclass
class _Layout:
    """Where `keep_lost_tail` puts its gap frames."""

    parts: list[_GapSegment]
    anchors: dict[int, _Anchor]  # a snapshot's seq -> where the gap frame ending at it ends
    digest: bytes  # the chain digest after the last gap frame


def _lay_out(seg_dir: str, end: Cursor, ref: SegmentRef | None, ranges: list[SeqRange], split: int | None,
             new_active: bool) -> _Layout:
    """One gap frame per range: appended to the plain segment the log ends in (else in a new
    segment named after the first lost seq), the ranges from ``split`` on in a new segment
    named ``split``, created even when empty."""
    digest = end.digest
    parts: list[_GapSegment] = []
    if any(split is None or r.last < split for r in ranges) or (new_active and split is None):
        if ref is not None and not ref.compressed:
            parts.append(_GapSegment(ref.first_seq, ref.path, digest, [], end.offset, True))
        else:
            parts.append(_GapSegment(end.next_seq, segment_path(seg_dir, end.next_seq), digest, [],
                                     SEGMENT_HEADER_SIZE, False))
    anchors: dict[int, _Anchor] = {}
    for r in ranges:
        if split is not None and r.first >= split and (not parts or parts[-1].first_seq != split):
            parts.append(_GapSegment(split, segment_path(seg_dir, split), digest, [], SEGMENT_HEADER_SIZE, False))
        part = parts[-1]
        frame, digest = gap_frame(r.first, len(r), digest, 0)
        part.frames.append(frame)
        anchors[r.last] = _Anchor(part.first_seq, part.start + sum(map(len, part.frames)), digest)
    if split is not None and (not parts or parts[-1].first_seq != split):
        parts.append(_GapSegment(split, segment_path(seg_dir, split), digest, [], SEGMENT_HEADER_SIZE, False))
    return _Layout(parts, anchors, digest)


def _snapshots_past(fs: FileSystem, root: str, next_seq: int, last_first: int, end_offset: int) -> list[Snapshot]:
    """Readable snapshots at or past ``next_seq`` positioned past the end of the log, oldest first."""
    try:
        candidates = list_snapshots(fs, os.path.join(root, SNAPSHOTS_DIR))
    except FileNotFoundError:
        return []
    past = []
    for seq, path in candidates:
        if seq < next_seq:
            break  # newest first
        try:
            snap = read_snapshot(fs, path)
        except (CorruptionError, FileNotFoundError):  # a newer version is the open's to refuse
            continue
        if snap.seq == seq and (snap.seg_first, snap.offset) > (last_first, end_offset):
            past.append(snap)
    return past[::-1]


def _reposition(fs: FileSystem, root: str, snap: Snapshot, anchor: _Anchor, report: RecoveryReport) -> None:
    data = fs.read_file(snap.path, fs.size(snap.path))
    qpath = quarantine_copy(fs, root, os.path.basename(snap.path), data)
    fs.create_atomic(snap.path, reposition(data, snap.path, anchor.segment, anchor.offset, anchor.digest))
    report.add(RecoveryEntry("rewrote", snap.path, 24, f"now points after the gap frame that ends at seq "
                                                       f"{snap.seq} (segment {anchor.segment}, offset "
                                                       f"{anchor.offset}); original copied to {qpath}"))


def _write_part(fs: FileSystem, part: _GapSegment, report: RecoveryReport) -> None:
    body = b"".join(part.frames)
    if part.append:
        fd = fs.open_rw(part.path)
        try:
            size = fs.seek_end(fd)
            if size != part.start:
                raise CorruptionError(part.path, size, f"is {size} bytes, but the log ends at {part.start}")
            fs.write(fd, body)
            fs.fsync(fd)
        finally:
            fs.close(fd)
        report.add(RecoveryEntry("rewrote", part.path, part.start, f"appended {len(part.frames)} gap frame(s)"))
        return
    if fs.exists(part.path):  # never replaced: the walk would have read it
        raise CorruptionError(part.path, 0, "salvage would create this segment, but it exists")
    fs.create_atomic(part.path, encode_header(part.first_seq, part.prev) + body)
    report.add(RecoveryEntry("rewrote", part.path, None,
                             f"new segment holding {len(part.frames)} gap frame(s)" if part.frames
                             else "new empty segment where the log goes on"))


def _report_lost_tail(root: str, next_seq: int, top: int, snaps: list[Snapshot], record: EndRecord | None,
                      split: int | None, trailing: SegmentRef | None, report: RecoveryReport) -> None:
    if top >= next_seq:
        newest = snaps[-1] if snaps else None
        if newest is not None and newest.seq == top:
            where, what = newest.path, f"snapshot at seq {top}"
        else:
            where, what = end_path(root), f"the end-of-log record (seq {top})"
        report.add(RecoveryEntry("lost", where, None, f"the log ends at seq {next_seq - 1}, but the {what} proves "
                                                      f"later seqs were committed; kept behind gap frames",
                                 lost=(next_seq, top)))
    if split is not None:
        report.add(RecoveryEntry("damaged", end_path(root), 16,
                                 f"segment {split}, which the log continued into, is missing; the commits "
                                 f"it held past seq {max(top, next_seq - 1)}, if any, are lost"))
    if trailing is not None:
        report.add(RecoveryEntry("damaged", trailing.path, None,
                                 "the log ended in a compressed segment: the plain segment after it is missing; "
                                 "the commits it held, if any, are lost"))
