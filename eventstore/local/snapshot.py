"""Snapshot files: every projection's state after one seq (docs/FORMAT.md §7).

Encodes and decodes `.snap` files, lists them, writes them atomically and
prunes old ones. Decoding trusts nothing: both CRCs, a streamed zstd
decompression capped at the declared length (itself capped), msgpack with
limits. Deciding whether a snapshot fits the log is the store's job.
"""
from __future__ import annotations

import os
import zlib
from typing import Any, NamedTuple, cast

from ..fs import FileSystem
from ..codec import pack, unpack
from ..keytable import KeyTable, decode_table
from ..snapshotbody import split_body
from .compression import ZstdFrameError, compress, stream_decompress
from ..errors import CorruptionError, FormatVersionError
from .layout import (
    KEEP_SNAPSHOTS, MAX_SNAPSHOT_BYTES, NAME_DIGITS, READ_CHUNK, SNAPSHOT_HEADER,
    SNAPSHOT_HEADER_SIZE, SNAPSHOT_MAGIC, SNAPSHOT_SUFFIX, SNAPSHOT_VERSION, SNAPSHOT_VERSIONS_READ,
)

__all__ = ["Snapshot", "encode_snapshot", "read_snapshot", "reposition", "snapshot_position", "list_snapshots", "write_snapshot"]

ZSTD_LEVEL = 3
TRUSTED_BODY_BYTES = 16 << 20
"""A body up to this size is inflated whatever its compression ratio."""
MAX_RATIO = 1024
"""Beyond `TRUSTED_BODY_BYTES`, a body may be at most this many times its compressed size."""


_BIN = (bytes, memoryview)  # a bin of the body: a copy (plain path) or a view (`split_body`)


class Snapshot(NamedTuple):
    path: str
    seq: int
    ts: int
    seg_first: int
    offset: int
    digest: bytes
    versions: KeyTable  # checked; a dict when first needed ([F-34])
    states: dict[str, tuple[int, Any]]  # name -> (version, decoded state)

    def state(self, name: str, version: int) -> tuple[bool, Any]:
        """``(True, state)`` when this snapshot holds ``name`` at ``version`` ([F-22])."""
        entry = self.states.get(name)
        if entry is None or entry[0] != version:
            return False, None
        return True, entry[1]


def encode_snapshot(seq: int, ts: int, position: tuple[int, int], digest: bytes,
                    versions: bytes, states: list[tuple[str, int, bytes]]) -> bytes:
    """A version 2 snapshot file; ``versions`` is `keytable.encode_table`'s ([F-34])."""
    body = pack({"versions": versions, "projections": [list(s) for s in states]})
    compressed = compress(body, ZSTD_LEVEL)
    head = SNAPSHOT_HEADER.pack(SNAPSHOT_MAGIC, SNAPSHOT_VERSION, 0, seq, ts, position[0], position[1],
                                digest, len(body), zlib.crc32(compressed), 0)[:-4]
    return head + zlib.crc32(head).to_bytes(4, "little") + compressed


def snapshot_name(seq: int) -> str:
    return f"{seq:0{NAME_DIGITS}d}{SNAPSHOT_SUFFIX}"


def list_snapshots(fs: FileSystem, directory: str) -> list[tuple[int, str]]:
    """``(seq, path)`` of every snapshot file, newest first."""
    out = []
    for name in fs.listdir(directory):
        stem = name[: -len(SNAPSHOT_SUFFIX)]
        if name.endswith(SNAPSHOT_SUFFIX) and len(stem) == NAME_DIGITS and stem.isdigit():
            out.append((int(stem), os.path.join(directory, name)))
    out.sort(reverse=True)
    return out


def _max_body(compressed_len: int) -> int:
    """The largest body we will inflate from ``compressed_len`` bytes ([F-21])."""
    return min(MAX_SNAPSHOT_BYTES, max(TRUSTED_BODY_BYTES, compressed_len * MAX_RATIO))


def _read_head(head: bytes, path: str) -> tuple[int, int, int, int, bytes, int, int, int]:
    """A checked snapshot header: (seq, ts, seg_first, offset, digest, body length, body CRC,
    format version)."""
    if len(head) < SNAPSHOT_HEADER_SIZE:
        raise CorruptionError(path, 0, "snapshot header is short")
    (magic, version, _, seq, ts, seg_first, offset, digest, body_len, body_crc,
     crc) = SNAPSHOT_HEADER.unpack(head)
    if magic != SNAPSHOT_MAGIC:
        raise CorruptionError(path, 0, "bad snapshot magic")
    if zlib.crc32(head[:-4]) != crc:
        raise CorruptionError(path, 0, "snapshot header checksum mismatch")
    if version not in SNAPSHOT_VERSIONS_READ:
        raise FormatVersionError(path, version, SNAPSHOT_VERSION)
    return seq, ts, seg_first, offset, digest, body_len, body_crc, version


def snapshot_position(fs: FileSystem, path: str) -> tuple[int, int, int]:
    """(seq, segment first seq, offset) from a snapshot's checked header, without reading its body."""
    with fs.open_read(path) as f:
        seq, _, seg_first, offset, _, _, _, _ = _read_head(f.read(SNAPSHOT_HEADER_SIZE), path)
    return seq, seg_first, offset


def reposition(data: bytes, path: str, seg_first: int, offset: int, digest: bytes) -> bytes:
    """The snapshot file ``data`` with a new position and chain digest, its body unchanged.

    Salvage uses it when it keeps lost seqs behind a gap frame that ends where the
    snapshot's seq now ends ([F-29]): the state is the same, the log around it is not.
    """
    head = data[:SNAPSHOT_HEADER_SIZE]
    seq, ts, _, _, _, body_len, body_crc, version = _read_head(head, path)
    new = SNAPSHOT_HEADER.pack(SNAPSHOT_MAGIC, version, 0, seq, ts, seg_first, offset, digest,
                               body_len, body_crc, 0)[:-4]
    return new + zlib.crc32(new).to_bytes(4, "little") + data[SNAPSHOT_HEADER_SIZE:]


def read_snapshot(fs: FileSystem, path: str) -> Snapshot:
    """Decode and check a snapshot file ([F-21]); CorruptionError when unusable.

    Memory is bounded by the body length we accept, which is capped by
    `MAX_SNAPSHOT_BYTES` and by `MAX_RATIO` times the compressed size, so a
    zstd bomb cannot claim (or produce) more. Every projection state is
    unpacked here, so a snapshot that decodes is usable as a whole.
    """
    file_size = fs.size(path)
    with fs.open_read(path) as f:
        seq, ts, seg_first, offset, digest, body_len, body_crc, version = _read_head(
            f.read(SNAPSHOT_HEADER_SIZE), path)
        compressed_len = file_size - SNAPSHOT_HEADER_SIZE
        if body_len > _max_body(compressed_len):
            raise CorruptionError(path, 56, f"snapshot body of {body_len} bytes exceeds the limit "
                                            f"for {compressed_len} compressed bytes")
        if compressed_len > body_len + (body_len >> 7) + (64 << 10):
            raise CorruptionError(path, SNAPSHOT_HEADER_SIZE,
                                  f"snapshot body is {compressed_len} bytes compressed for {body_len} bytes")
        crc_body = 0
        while chunk := f.read(READ_CHUNK):
            crc_body = zlib.crc32(chunk, crc_body)
        if crc_body != body_crc:
            raise CorruptionError(path, SNAPSHOT_HEADER_SIZE, "snapshot body checksum mismatch")
        body = bytearray()
        try:
            for chunk in stream_decompress(f, SNAPSHOT_HEADER_SIZE, compressed_len, body_len, READ_CHUNK):
                body += chunk
        except ZstdFrameError as exc:
            raise CorruptionError(path, SNAPSHOT_HEADER_SIZE + exc.offset,
                                  f"snapshot body: {exc.reason}") from None
    if len(body) != body_len:
        raise CorruptionError(path, SNAPSHOT_HEADER_SIZE,
                              f"snapshot body is {len(body)} bytes, header says {body_len}")
    try:    # the bins as views of the body, not copies (`snapshotbody`)
        versions_raw, entries = split_body(body, path, SNAPSHOT_HEADER_SIZE)
        if not isinstance(versions_raw, _BIN) or not all(
                type(n) is str and type(v) is int and isinstance(s, _BIN) for n, v, s in entries):
            raise TypeError
    except (TypeError, KeyError, ValueError):
        raise CorruptionError(path, SNAPSHOT_HEADER_SIZE, "snapshot body has the wrong shape") from None
    checked = cast(list[tuple[str, int, "bytes | memoryview"]], entries)
    states = {name: (ver, unpack(state, path, SNAPSHOT_HEADER_SIZE, f"state of projection {name!r}"))
              for name, ver, state in checked}
    if version == 1:
        versions = _map_v1(versions_raw, path)
    else:
        versions = decode_table(versions_raw, path, SNAPSHOT_HEADER_SIZE)
    return Snapshot(path, seq, ts, seg_first, offset, bytes(digest), versions, states)


def _map_v1(raw: bytes | memoryview, path: str) -> KeyTable:
    """A version 1 snapshot's key versions: the msgpack of ``{key: version}``."""
    versions = unpack(raw, path, SNAPSHOT_HEADER_SIZE, "snapshot key versions") if raw else {}
    if not isinstance(versions, dict) or not all(
            type(k) is str and type(v) is int and v > 0 for k, v in versions.items()):
        raise CorruptionError(path, SNAPSHOT_HEADER_SIZE, "snapshot key versions have the wrong shape")
    return KeyTable.from_dict(versions)


def write_snapshot(fs: FileSystem, directory: str, seq: int, data: bytes,
                   keep: int = KEEP_SNAPSHOTS) -> str:
    """Write atomically ([F-02]) then remove all but the newest ``keep`` ([F-23])."""
    path = os.path.join(directory, snapshot_name(seq))
    fs.create_atomic(path, data)
    for _, old in list_snapshots(fs, directory)[keep:]:
        try:
            fs.remove(old)
        except FileNotFoundError:
            pass  # removed by a reader's cleanup or a concurrent prune
    return path
