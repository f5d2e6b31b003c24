"""Snapshots of the projections, stored in the ``snapshots`` table.

A row holds the seq a snapshot covers, the time and chain digest after that
seq (so open can check it fits the log: the commit ending at ``seq`` must
carry the same digest), and the body: the same msgpack document as a
``.snap`` file's (key versions and every projection's packed state,
docs/FORMAT.md §7), zstd-compressed with its checksum on. Decoding trusts
nothing: the zstd stream is inflated with our own output limit and msgpack
is unpacked with limits, as for files. Capturing a consistent state is the
store's job (its leader, or under ``exclusive``); this module encodes,
writes, prunes and reads rows.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Iterator

import zstandard

from ..codec import pack, unpack
from ..errors import CorruptionError
from ..local.compression import ZstdFrameError, compress, frame_extent
from ..local.layout import MAX_SNAPSHOT_BYTES
from ..local.snapshot import MAX_RATIO, TRUSTED_BODY_BYTES, ZSTD_LEVEL
from .connection import Conn
from .schema import Sql

__all__ = ["SnapshotRow", "encode_body", "decode_body", "write_snapshot", "snapshot_rows", "KEEP_SNAPSHOTS"]

KEEP_SNAPSHOTS = 3
States = list[tuple[str, int, bytes]]  # (projection name, its version, packed state)


@dataclass
class SnapshotRow:
    seq: int
    ts: int
    digest: bytes
    versions: dict[str, int]
    states: dict[str, tuple[int, Any]]  # name -> (version, decoded state)

    def state(self, name: str, version: int) -> tuple[bool, Any]:
        entry = self.states.get(name)
        if entry is None or entry[0] != version:
            return False, None
        return True, entry[1]


def encode_body(versions: dict[str, int], states: States) -> tuple[int, bytes]:
    """``(uncompressed length, compressed body)`` of a snapshot."""
    body = pack({"versions": pack(versions), "projections": [list(s) for s in states]})
    return len(body), compress(body, ZSTD_LEVEL)


def decode_body(seq: int, body_len: int, compressed: bytes, where: str) -> tuple[dict[str, int], dict[str, tuple[int, Any]]]:
    """The key versions and projection states of a stored body; CorruptionError when unusable."""
    limit = min(MAX_SNAPSHOT_BYTES, max(TRUSTED_BODY_BYTES, len(compressed) * MAX_RATIO))
    if not 0 <= body_len <= limit:
        raise CorruptionError(where, seq, f"snapshot body of {body_len} bytes exceeds the limit")
    try:
        frame_extent(io.BytesIO(compressed), 0, len(compressed))  # one checksummed frame, nothing after
        out = zstandard.ZstdDecompressor().decompress(compressed, max_output_size=body_len)
    except ZstdFrameError as exc:
        raise CorruptionError(where, seq, f"snapshot body: {exc.reason}") from None
    except zstandard.ZstdError as exc:
        raise CorruptionError(where, seq, f"snapshot body does not decompress within {body_len} "
                                          f"bytes: {exc}") from None
    if len(out) != body_len:
        raise CorruptionError(where, seq, f"snapshot body is {len(out)} bytes, the row says {body_len}")
    doc = unpack(out, where, seq, "snapshot body")
    try:
        versions = unpack(doc["versions"], where, seq, "snapshot key versions")
        entries = [(name, ver, state) for name, ver, state in doc["projections"]]
        if not isinstance(versions, dict) or not all(
                type(k) is str and type(v) is int and v > 0 for k, v in versions.items()):
            raise TypeError
        if not all(type(n) is str and type(v) is int and type(s) is bytes for n, v, s in entries):
            raise TypeError
    except (TypeError, KeyError, ValueError):
        raise CorruptionError(where, seq, "snapshot body has the wrong shape") from None
    states = {n: (v, unpack(s, where, seq, f"state of projection {n!r}")) for n, v, s in entries}
    return versions, states


def write_snapshot(conn: Conn, sql: Sql, seq: int, ts: int, digest: bytes, versions: dict[str, int],
                   states: States, keep: int = KEEP_SNAPSHOTS) -> None:
    """Insert the snapshot at ``seq`` (once: a second one at the same seq is the same state),
    then delete all but the newest ``keep``, in one transaction."""
    body_len, body = encode_body(versions, states)
    table = sql.table("snapshots")
    with conn.transaction():
        conn.execute(f"INSERT INTO {table} (seq, ts, digest, body_len, body) VALUES (%s, %s, %s, %s, %s) "
                     "ON CONFLICT (seq) DO NOTHING", (seq, ts, digest, body_len, body))
        conn.execute(f"DELETE FROM {table} WHERE seq NOT IN "
                     f"(SELECT seq FROM {table} ORDER BY seq DESC LIMIT %s)", (keep,))


def snapshot_rows(conn: Conn, sql: Sql, max_seq: int) -> Iterator[tuple[int, int, bytes, int, bytes]]:
    """``(seq, ts, digest, body_len, body)`` of every snapshot at or before ``max_seq``, newest first."""
    with conn.cursor(binary=True) as cur:
        cur.execute(f"SELECT seq, ts, digest, body_len, body FROM {sql.table('snapshots')} "
                    "WHERE seq <= %s ORDER BY seq DESC", (max_seq,))
        rows = cur.fetchall()
    yield from rows
