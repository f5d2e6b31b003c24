"""Salvage's own tools: reading damaged segments, and rewriting them with gap frames.

`LenientStream` hands a damaged segment's bytes to a `FrameScanner` without
trusting its header, and keeps decompressing a damaged `.zseg` up to the
damage instead of raising ([F-27]). `rewrite_segment` replaces a damaged
segment by a plain one holding every intact frame and a gap frame ([F-25])
for each run of lost seqs, after copying the original to ``quarantine/``;
`gap_segment` writes the segment that holds seqs lost before the first one.
Deciding *what* is damaged is the `recovery.Walker`'s job.
"""
from __future__ import annotations

import os
from typing import Iterator

import zstandard

from ._fs import FileSystem
from .codec import decode_commit, pack
from .compression import ZstdFrameError, frame_extent
from .errors import CorruptionError, FormatVersionError
from .frame import Damage, Frame, FrameScanner, encode_frame, frame_bytes, is_gap
from .layout import (
    FRAME_HEADER_SIZE, MAX_SEGMENT_BYTES, READ_CHUNK, SEGMENT_HEADER_SIZE,
    ZSEGMENT_HEADER_SIZE,
)
from .report import RecoveryEntry, RecoveryReport, quarantine_copy
from .segment import SegmentRef, SegmentStream, encode_header, read_zheader, scan, segment_path

__all__ = ["LenientStream", "rewrite_segment", "gap_segment", "gap_frame", "GAP_REASON"]


_LENIENT_READ = 64 << 10  # small reads: output decoded before a damaged zstd block is kept


class LenientStream:
    """The bytes of a segment that salvage or verify must read despite damage.

    No header check (``header_error`` says why the header was refused, if it
    was); a compressed segment is decompressed by streaming up to its declared
    plain size (or `MAX_SEGMENT_BYTES` when its header is unreadable), and a
    damaged zstd stream or trailing junk ends the bytes and is kept in
    ``error`` instead of raising, so every frame before it is still seen.
    """

    def __init__(self, fs: FileSystem, ref: SegmentRef, header_error: CorruptionError | None,
                 prev_digest: bytes) -> None:
        self.fs, self.ref = fs, ref
        self.header_error = header_error
        self.error: CorruptionError | None = None
        self.known: str | None = None  # an error already reported as the segment's first damage
        self.prev_digest = prev_digest
        self.plain_size: int | None = None
        if ref.compressed:
            self.end = MAX_SEGMENT_BYTES
            if header_error is None:
                with fs.open_read(ref.path) as f:
                    zh = read_zheader(f.read(ZSEGMENT_HEADER_SIZE), ref.path, ref.first_seq)
                self.end = self.plain_size = zh.plain_size
        else:
            self.end = fs.size(ref.path)

    def chunks(self, start: int) -> Iterator[bytes]:
        if not self.ref.compressed:
            with self.fs.open_read(self.ref.path) as f:
                f.seek(start)
                while chunk := f.read(READ_CHUNK):
                    yield chunk
            return
        path = self.ref.path
        available = self.fs.size(path) - ZSEGMENT_HEADER_SIZE
        try:
            with self.fs.open_read(path) as f:
                frame_extent(f, ZSEGMENT_HEADER_SIZE, available)
        except ZstdFrameError as exc:
            self.error = CorruptionError(path, ZSEGMENT_HEADER_SIZE + exc.offset, exc.reason)
        skip, total = start, 0
        with self.fs.open_read(path) as f:
            f.seek(ZSEGMENT_HEADER_SIZE)
            reader = zstandard.ZstdDecompressor().stream_reader(f, read_size=READ_CHUNK,
                                                                 read_across_frames=False)
            try:
                while total < self.end:
                    chunk = reader.read(min(_LENIENT_READ, self.end - total))
                    if not chunk:
                        break
                    total += len(chunk)
                    if skip >= len(chunk):
                        skip -= len(chunk)
                        continue
                    yield chunk[skip:] if skip else chunk
                    skip = 0
                else:
                    if reader.read(1):
                        self.error = self.error or CorruptionError(
                            path, ZSEGMENT_HEADER_SIZE, f"decompresses past its declared {self.end} bytes")
            except zstandard.ZstdError as exc:
                self.error = self.error or CorruptionError(path, ZSEGMENT_HEADER_SIZE,
                                                           f"zstd stream is damaged: {exc}")
        if self.error is None and self.plain_size is not None and total != self.plain_size:
            self.error = CorruptionError(path, ZSEGMENT_HEADER_SIZE,
                                         f"decompresses to {total} bytes, header says {self.plain_size}")


def rewrite_segment(fs: FileSystem, root: str, report: RecoveryReport, ref: SegmentRef,
                    prev: bytes, next_first: int | None) -> None:
    """Rewrite one damaged segment as a plain segment holding every intact frame.

    The original is copied to quarantine first ([F-05]). Each run of lost seqs
    becomes one gap frame ([F-25]); when the damaged bytes it replaces are long
    enough, the gap frame is padded to exactly their length so every intact
    frame keeps its offset and snapshot positions stay valid.
    """
    try:
        stream: SegmentStream | LenientStream = SegmentStream(fs, ref)
        prev = stream.prev_digest
        header_ok = True
    except FormatVersionError:
        raise
    except CorruptionError as exc:
        stream = LenientStream(fs, ref, exc, prev)
        header_ok = False
    if ref.compressed:
        stream = LenientStream(fs, ref, None if header_ok else CorruptionError(ref.path, 0, "header"), prev)
    start = SEGMENT_HEADER_SIZE if header_ok else 0
    scanner = FrameScanner(start, ref.first_seq, prev, end=stream.end)
    scanner.restart_chain()
    if not header_ok:
        scanner.damage = Damage(0, "header", "header")
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
