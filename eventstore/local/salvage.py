"""Salvage's own tools: rewriting damaged segments with gap frames.

`rewrite_segment` reads a damaged segment leniently (`SegmentStream` with
``lenient=True``, as the `recovery.Walker` did) and replaces it by a plain
one holding every intact frame and a gap frame ([F-25]) for each run of lost
seqs, after copying the original to ``quarantine/``; `gap_segment` writes
the segment that holds seqs lost before the first one;
`set_aside_damaged_snapshots` moves unreadable snapshots out of the way.
Deciding *what* is damaged in the log is the `recovery.Walker`'s job.
"""
from __future__ import annotations

import os
from typing import NamedTuple

from ..fs import FileSystem
from ..codec import decode_commit, pack
from ..errors import CorruptionError, FormatVersionError
from .frame import Frame, FrameScanner, encode_frame, frame_bytes, is_gap
from .layout import FRAME_HEADER_SIZE, SEGMENT_HEADER_SIZE, SNAPSHOTS_DIR
from ..report import RecoveryEntry, RecoveryReport
from .directory import quarantine_copy, quarantine_move
from .segment import SegmentRef, SegmentStream, encode_header, scan, segment_path
from .snapshot import list_snapshots, read_snapshot, snapshot_position

__all__ = ["ChainEntry", "rewrite_segment", "set_aside_stale_snapshots", "set_aside_damaged_snapshots",
           "gap_segment", "gap_frame", "GAP_REASON"]


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
    stream = SegmentStream(fs, ref, lenient=True)
    start = SEGMENT_HEADER_SIZE if stream.header_damage is None else 0  # no header: search from byte 0
    scanner = FrameScanner(start, ref.first_seq, prev, end=stream.end)
    if entry.restart:
        scanner.restart_chain()
    scanner.damage = stream.header_damage
    frames: list[Frame] = []
    expected = ref.first_seq
    seen_end = expected  # one past the last seq of any signed frame seen, kept or not
    for item in scan(stream, scanner, start, resync=True):
        if not isinstance(item, Frame):
            if item.seqs is not None and item.seqs[0] >= expected:  # a signed commit the chain refused
                seen_end = max(seen_end, item.seqs[1] + 1)
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
    if next_first is None:
        next_first = seen_end  # lost commits at the very end keep their seqs ([F-25])
    out = [encode_header(ref.first_seq, prev)]
    pos = SEGMENT_HEADER_SIZE
    layout: dict[int, int] = {}
    expected, digest = ref.first_seq, prev
    pieces: list[Frame | None] = [*frames, None]
    for frame in pieces:
        upto = frame.first_seq if frame is not None else next_first
        if upto is not None and upto > expected:
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
                                  f"kept {len(frames)} intact commits; original copied to {qpath}"))
    return layout


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
    """Move every snapshot that does not read ([F-21]) into quarantine/ (issue 13 item 5).

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


def gap_segment(fs: FileSystem, report: RecoveryReport, directory: str, first: int, upto: int,
                prev: bytes) -> None:
    """A new segment named ``first`` holding one gap frame for seqs ``first``..``upto - 1``."""
    gap, _ = gap_frame(first, upto - first, prev, 0)
    path = segment_path(directory, first)
    fs.create_atomic(path, encode_header(first, prev) + gap)
    report.add(RecoveryEntry("rewrote", path, None, f"new segment holding the gap {first}-{upto - 1}"))
