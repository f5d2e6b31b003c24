"""Salvage's own tools: rewriting damaged segments with gap frames.

`rewrite_segment` reads a damaged segment leniently (`SegmentStream` with
``lenient=True``, as the `recovery.Walker` did) and replaces it by a plain
one holding every intact frame and a gap frame ([F-25]) for each run of lost
seqs, after copying the original to ``quarantine/``; `gap_segment` writes
the segment that holds seqs lost before the first one. Deciding *what* is
damaged is the `recovery.Walker`'s job.
"""
from __future__ import annotations

import os

from ._fs import FileSystem
from .codec import decode_commit, pack
from .errors import CorruptionError
from .frame import Frame, FrameScanner, encode_frame, frame_bytes, is_gap
from .layout import FRAME_HEADER_SIZE, SEGMENT_HEADER_SIZE
from .report import RecoveryEntry, RecoveryReport, quarantine_copy
from .segment import SegmentRef, SegmentStream, encode_header, scan, segment_path

__all__ = ["rewrite_segment", "gap_segment", "gap_frame", "GAP_REASON"]


def rewrite_segment(fs: FileSystem, root: str, report: RecoveryReport, ref: SegmentRef,
                    prev: bytes, next_first: int | None) -> None:
    """Rewrite one damaged segment as a plain segment holding every intact frame.

    The original is copied to quarantine first ([F-05]). Each run of lost seqs
    becomes one gap frame ([F-25]); when the damaged bytes it replaces are long
    enough, the gap frame is padded to exactly their length so every intact
    frame keeps its offset and snapshot positions stay valid.
    """
    stream = SegmentStream(fs, ref, lenient=True, prev_digest=prev)
    prev = stream.prev_digest
    start = SEGMENT_HEADER_SIZE if stream.header_damage is None else 0  # no header: search from byte 0
    scanner = FrameScanner(start, ref.first_seq, prev, end=stream.end)
    scanner.restart_chain()
    scanner.damage = stream.header_damage
    frames: list[Frame] = []
    expected = ref.first_seq
    seen_end = expected  # one past the last seq of any signed frame seen, kept or not
    for item in scan(stream, scanner, start, resync=True):
        if not isinstance(item, Frame) or item.first_seq < expected:
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
    expected, digest = ref.first_seq, prev
    for frame in frames + [None]:  # type: ignore[list-item]
        upto = frame.first_seq if frame is not None else next_first
        if upto is not None and upto > expected:
            room = frame.offset - pos if frame is not None else 0
            gap, digest = gap_frame(expected, upto - expected, digest, room)
            out.append(gap)
            pos += len(gap)
            expected = upto
        if frame is None:
            break
        out.append(frame_bytes(frame))
        pos += frame.size
        expected, digest = frame.first_seq + frame.count, frame.digest
    original = fs.read_file(ref.path, fs.size(ref.path))
    qpath = quarantine_copy(fs, root, os.path.basename(ref.path), original)
    new_path = segment_path(os.path.dirname(ref.path), ref.first_seq)
    fs.create_atomic(new_path, b"".join(out))
    if ref.compressed:
        fs.remove(ref.path)  # a copy is in quarantine
        fs.fsync_dir(os.path.dirname(ref.path))
    report.add(RecoveryEntry("rewrote", ref.path, None,
                                  f"kept {len(frames)} intact commits; original copied to {qpath}"))


GAP_REASON = "lost in salvage"


def gap_frame(first_seq: int, count: int, prev: bytes, room: int) -> tuple[bytes, bytes]:
    """A gap frame for ``count`` lost seqs, padded to ``room`` bytes when that is possible."""
    base = {"gap": GAP_REASON}
    payload = pack(base)
    want = room - FRAME_HEADER_SIZE
    if want > len(payload):
        for extra in range(8):
            reason = GAP_REASON + "." * extra
            fixed = len(pack({"gap": reason, "pad": b""}))
            for pad in range(max(0, want - fixed - 4), want - fixed + 1):
                candidate = pack({"gap": reason, "pad": bytes(pad)})
                if len(candidate) == want:
                    payload = candidate
                    break
            else:
                continue
            break
    return encode_frame(first_seq, count, 0, payload, prev)


def gap_segment(fs: FileSystem, report: RecoveryReport, directory: str, first: int, upto: int,
                prev: bytes) -> None:
    """A new segment named ``first`` holding one gap frame for seqs ``first``..``upto - 1``."""
    gap, _ = gap_frame(first, upto - first, prev, 0)
    path = segment_path(directory, first)
    fs.create_atomic(path, encode_header(first, prev) + gap)
    report.add(RecoveryEntry("rewrote", path, None, f"new segment holding the gap {first}-{upto - 1}"))
