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
import logging
import threading
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import zstandard

from ..codec import pack, unpack
from ..errors import CorruptionError
from ..local.compression import ZstdFrameError, compress, frame_extent
from ..local.layout import MAX_SNAPSHOT_BYTES
from ..local.snapshot import MAX_RATIO, TRUSTED_BODY_BYTES, ZSTD_LEVEL
from ..projection import Projection
from .connection import Conn, Link
from .schema import Sql
from .url import StoreURL

__all__ = ["SnapshotRow", "Captured", "Snapshotter", "encode_body", "decode_body", "write_snapshot",
           "snapshot_rows", "KEEP_SNAPSHOTS"]

log = logging.getLogger("eventstore")

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


@dataclass
class Captured:
    """Everything a snapshot at ``seq`` holds, taken while the store was at that seq."""

    seq: int
    ts: int
    digest: bytes
    versions: dict[str, int]
    states: list[tuple[str, int, object, bool]]  # name, version, value, packed already


class Snapshotter:
    """Snapshots of one store's projections: captured quiet, written on a connection of their own."""

    def __init__(self, url: StoreURL, sql: Sql, projections: Sequence[Projection]) -> None:
        self.url, self.sql, self.projections = url, sql, tuple(projections)
        self.seq = 0  # the newest snapshot loaded or written
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def capture(self, seq: int, ts: int, digest: bytes, versions: dict[str, int]) -> Captured:
        """The state now (the store is quiet: its leader, or exclusive). Projections with
        ``snapshot_detached`` are packed later, in the writing thread."""
        states: list[tuple[str, int, object, bool]] = []
        for p in self.projections:
            value = p.snapshot()
            detached = bool(getattr(p, "snapshot_detached", False))
            states.append((p.name, p.version, value if detached else pack(value), not detached))
        return Captured(seq, ts, digest, dict(versions), states)

    def write(self, c: Captured) -> None:
        if c.seq == 0:
            return
        packed = [(n, v, s if done and isinstance(s, bytes) else pack(s)) for n, v, s, done in c.states]
        link = Link(self.url, "snapshot")
        try:
            with self._lock:
                link.run(lambda conn: write_snapshot(conn, self.sql, c.seq, c.ts, c.digest, c.versions, packed))
                self.seq = max(self.seq, c.seq)
        finally:
            link.close()

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start_background(self, captured: Captured) -> None:
        def write() -> None:
            try:
                self.write(captured)
            except Exception as exc:  # noqa: BLE001 - replay still works; the next trigger tries again
                log.warning("background snapshot of %s at seq %d failed: %s", self.url.redacted, captured.seq, exc)
        self._thread = thread = threading.Thread(target=write, name="metalog-snapshot", daemon=True)
        thread.start()

    def join(self) -> None:
        thread = self._thread
        if thread is not None:
            thread.join()
