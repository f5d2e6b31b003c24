"""The one bounded zstd stream, strict and lenient ([F-19], [F-21], [F-27]).

Strict (segments, snapshots) raises at the first problem and never yields a
byte past its limit. Lenient (salvage and verify) passes each problem to its
callback and yields every byte decoded before the damage, in small reads, so
only the read that meets a damaged block is lost.
"""
from __future__ import annotations

import io
import random

import pytest
import zstandard

from eventstore.local.compression import ZstdFrameError, compress, stream_decompress

CONTENT = random.Random(1).randbytes(600_000)  # incompressible: raw blocks of 128 KiB
FRAME = compress(CONTENT)
BLOCK = 128 << 10
READ = 64 << 10  # the lenient segment reader's output reads


def strict(data: bytes, limit: int = len(CONTENT)) -> tuple[bytes, ZstdFrameError]:
    got = []
    with pytest.raises(ZstdFrameError) as info:
        for chunk in stream_decompress(io.BytesIO(data), 0, len(data), limit):
            got.append(chunk)
    return b"".join(got), info.value


def lenient(data: bytes, limit: int = len(CONTENT)) -> tuple[bytes, list[ZstdFrameError]]:
    damage: list[ZstdFrameError] = []
    got = b"".join(stream_decompress(io.BytesIO(data), 0, len(data), limit, READ, damage.append))
    return got, damage


def test_a_sound_frame_reads_the_same_both_ways() -> None:
    assert b"".join(stream_decompress(io.BytesIO(FRAME), 0, len(FRAME), len(CONTENT))) == CONTENT
    assert lenient(FRAME) == (CONTENT, [])


def test_trailing_junk_is_reported_at_its_offset() -> None:
    data = FRAME + b"junk"
    got, exc = strict(data)
    assert got == b"" and exc.offset == len(FRAME) and "trailing" in exc.reason
    got, damage = lenient(data)
    assert got == CONTENT  # the frame itself is sound
    assert (damage[0].offset, "trailing" in damage[0].reason) == (len(FRAME), True)


def test_a_truncated_frame_yields_the_blocks_before_the_cut() -> None:
    data = FRAME[:len(FRAME) // 2]
    got, exc = strict(data)
    assert got == b"" and "truncated" in exc.reason
    got, damage = lenient(data)
    assert [d.reason for d in damage] == ["zstd frame is truncated"]
    assert got == CONTENT[:len(got)] and len(got) >= 2 * BLOCK


def test_output_past_the_limit() -> None:
    """[F-19]: the caller's limit, not the frame, bounds the output; lenient keeps all of it."""
    limit = len(CONTENT) - 1000
    got, exc = strict(FRAME, limit)
    assert exc.limit == limit and "past its limit" in exc.reason
    assert len(got) <= limit and got == CONTENT[:len(got)]
    got, damage = lenient(FRAME, limit)
    assert got == CONTENT[:limit]
    assert [(d.offset, d.limit) for d in damage] == [(0, limit)]


def test_a_damaged_block_loses_only_the_read_that_meets_it() -> None:
    """[F-27]: the third block's header is made invalid; the two blocks before it are kept
    but for the last read, which zstd ended by meeting the bad header."""
    data = bytearray(FRAME)
    at = zstandard.frame_header_size(FRAME) + 2 * (3 + BLOCK)
    header = int.from_bytes(data[at:at + 3], "little")
    assert (header >> 1) & 3 == 0  # a raw block, as the premise says
    data[at:at + 3] = (header | 3 << 1).to_bytes(3, "little")  # block type 3 is reserved
    got, exc = strict(bytes(data))
    assert got == b"" and (exc.offset, exc.reason) == (at, "bad zstd block header")
    got, damage = lenient(bytes(data))
    assert got == CONTENT[:len(got)] and len(got) >= 2 * BLOCK - READ
    assert [d.offset for d in damage] == [at, 0] and "damaged" in damage[1].reason
