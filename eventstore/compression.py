"""Bounded, strict zstd decompression for `.zseg` and `.snap` files ([F-19], [F-21]).

Both compressed formats hold exactly one zstd frame with its content checksum
on, and nothing after it. This module checks that from the frame's own block
headers (without decompressing), and decompresses by streaming with the
caller's output limit: a frame's declared content size is never a limit, and
output past the limit is corruption, not an allocation. No knowledge of what
the bytes mean; callers turn `ZstdFrameError` into a `CorruptionError` with
their file and offset.
"""
from __future__ import annotations

from typing import BinaryIO, Iterator

import zstandard

__all__ = ["ZstdFrameError", "frame_extent", "stream_decompress", "compress"]

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_BLOCK_HEADER_SIZE = 3
_CHECKSUM_SIZE = 4
_RAW, _RLE, _COMPRESSED = 0, 1, 2
_MAX_BLOCK = 128 << 10  # zstd's Block_Maximum_Size


class ZstdFrameError(Exception):
    """The compressed bytes are not exactly one checksummed zstd frame."""

    def __init__(self, offset: int, reason: str) -> None:
        self.offset = offset  # relative to the start of the frame
        self.reason = reason
        super().__init__(reason)


def compress(data: bytes, level: int = 3) -> bytes:
    return zstandard.ZstdCompressor(level=level, write_checksum=True).compress(data)


def frame_extent(f: BinaryIO, start: int, available: int) -> int:
    """Walk the block headers of the zstd frame at ``start`` in ``f``; return its length.

    Raises `ZstdFrameError` when the frame is malformed, lacks a content
    checksum, runs past ``available`` bytes, or is followed by anything.
    Reads only the frame header and 3 bytes per block (at most 128 KiB each).
    """
    f.seek(start)
    head = f.read(18)  # the longest zstd frame header
    if len(head) < 6 or head[:4] != ZSTD_MAGIC:
        raise ZstdFrameError(0, "not a zstd frame")
    try:
        hsize = zstandard.frame_header_size(head)
        params = zstandard.get_frame_parameters(head)
    except zstandard.ZstdError as exc:
        raise ZstdFrameError(0, f"bad zstd frame header: {exc}") from None
    if not params.has_checksum:
        raise ZstdFrameError(0, "zstd frame has no content checksum")
    pos = hsize
    while True:
        if pos + _BLOCK_HEADER_SIZE > available:
            raise ZstdFrameError(pos, "zstd frame is truncated")
        f.seek(start + pos)
        raw = f.read(_BLOCK_HEADER_SIZE)
        if len(raw) < _BLOCK_HEADER_SIZE:
            raise ZstdFrameError(pos, "zstd frame is truncated")
        bh = int.from_bytes(raw, "little")
        last, btype, bsize = bh & 1, (bh >> 1) & 3, bh >> 3
        if btype == 3 or bsize > _MAX_BLOCK:
            raise ZstdFrameError(pos, "bad zstd block header")
        pos += _BLOCK_HEADER_SIZE + (1 if btype == _RLE else bsize)
        if last:
            break
    pos += _CHECKSUM_SIZE
    if pos > available:
        raise ZstdFrameError(available, "zstd frame is truncated")
    if pos < available:
        raise ZstdFrameError(pos, f"{available - pos} bytes of trailing junk after the zstd frame")
    return pos


def stream_decompress(f: BinaryIO, start: int, available: int, limit: int,
                      chunk: int = 1 << 20) -> Iterator[bytes]:
    """Yield the content of the single zstd frame at ``start`` in bounded chunks.

    Checks the frame's extent first (no trailing bytes, checksum flag on), then
    streams; more than ``limit`` bytes of output, or a damaged stream, raises
    `ZstdFrameError`. The caller checks the total against what it expects.
    """
    frame_extent(f, start, available)
    f.seek(start)
    reader = zstandard.ZstdDecompressor().stream_reader(f, read_size=chunk, read_across_frames=False)
    total = 0
    try:
        while True:
            out = reader.read(min(chunk, limit - total + 1))
            if not out:
                return
            total += len(out)
            if total > limit:
                raise ZstdFrameError(0, f"decompresses past its limit of {limit} bytes")
            yield out
    except zstandard.ZstdError as exc:
        raise ZstdFrameError(0, f"zstd stream is damaged: {exc}") from None
