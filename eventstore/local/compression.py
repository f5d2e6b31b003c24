"""Bounded zstd decompression for `.zseg` and `.snap` files ([F-19], [F-21], [F-27]).

Both compressed formats hold exactly one zstd frame with its content checksum
on, and nothing after it. This module checks that from the frame's own block
headers (without decompressing), and decompresses by streaming with the
caller's output limit: a frame's declared content size is never a limit, and
output past the limit is corruption, not an allocation. Strict by default;
a lenient caller (salvage, verify) gets the damage through a callback and
every byte decoded before it. No knowledge of what the bytes mean; callers
turn `ZstdFrameError` into a `CorruptionError` with their file and offset.
"""
from __future__ import annotations

from typing import BinaryIO, Callable, Iterator

import zstandard

from .layout import READ_CHUNK

__all__ = ["ZstdFrameError", "frame_extent", "stream_decompress", "compress"]

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_BLOCK_HEADER_SIZE = 3
_CHECKSUM_SIZE = 4
_RAW, _RLE, _COMPRESSED = 0, 1, 2
_MAX_BLOCK = 128 << 10  # zstd's Block_Maximum_Size


class ZstdFrameError(Exception):
    """The compressed bytes are not exactly one checksummed zstd frame."""

    def __init__(self, offset: int, reason: str, limit: int | None = None) -> None:
        self.offset = offset  # relative to the start of the frame
        self.reason = reason
        self.limit = limit  # set when the output ran past the caller's limit
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


def stream_decompress(f: BinaryIO, start: int, available: int, limit: int, chunk: int = READ_CHUNK,
                      on_damage: Callable[[ZstdFrameError], None] | None = None) -> Iterator[bytes]:
    """Yield the content of the single zstd frame at ``start``, ``chunk`` bytes per read.

    Checks the frame's extent first (no trailing bytes, checksum flag on), then
    streams. A bad extent, a damaged stream or more than ``limit`` bytes of
    output is a `ZstdFrameError`, raised before any byte past ``limit`` is
    yielded. With ``on_damage`` (salvage and verify, [F-27]) it is passed there
    instead and the stream goes on as far as it can: past a bad extent, up to a
    damaged block, and up to ``limit``, so every byte decoded before the damage
    is yielded (small ``chunk`` reads lose less: the read that meets the damage
    yields nothing). The caller checks the total against what it expects.
    """
    try:
        frame_extent(f, start, available)
    except ZstdFrameError as exc:
        if on_damage is None:
            raise
        on_damage(exc)
    f.seek(start)
    reader = zstandard.ZstdDecompressor().stream_reader(f, read_size=READ_CHUNK, read_across_frames=False)
    # Strict asks for one byte past the limit with the last read, to fail before yielding it;
    # lenient reads up to the limit exactly (every byte before it is kept), then asks for one more.
    slack = 1 if on_damage is None else 0
    total = 0
    try:
        while out := reader.read(min(chunk, limit - total + slack) or 1):
            total += len(out)
            if total > limit:
                damage = ZstdFrameError(0, f"decompresses past its limit of {limit} bytes", limit)
                break
            yield out
        else:
            return
    except zstandard.ZstdError as exc:
        damage = ZstdFrameError(0, f"zstd stream is damaged: {exc}")
    if on_damage is None:
        raise damage
    on_damage(damage)
