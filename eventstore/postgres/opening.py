"""Opening a PostgreSQL store: the newest snapshot that fits the log, then a replay of the rest.

A snapshot fits when the commit ending exactly at its seq carries the chain
digest the snapshot recorded; one that does not fit, or does not decode, is
skipped and reported in the recovery report (the state is then rebuilt by
replay). Projections the snapshot lacks (another name or version) are
rebuilt by a replay up to its seq. Replay takes the commits through
`log.take`, so the seqs and the digest chain are checked on the way.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..batch import EventBatch
from ..errors import CorruptionError
from ..projection import Projection, applier
from ..publish import KeyVersions, keys_of
from ..report import RecoveryEntry, RecoveryReport
from .connection import Conn
from .log import Cursor, LogReader
from .schema import Sql
from .snapshots import SnapshotRow, decode_body, snapshot_rows

__all__ = ["Opened", "open_log", "replay", "load_snapshots"]


@dataclass
class Opened:
    cursor: Cursor
    versions: KeyVersions
    snapshot_seq: int


def replay(reader: LogReader, cursor: Cursor, targets: Sequence[Projection],
           versions: KeyVersions | None, stop: int | None = None) -> None:
    """Apply every commit after ``cursor`` (up to the commit ending at ``stop``) to ``targets``."""
    appliers = [applier(p) for p in targets]  # apply_batch where a projection has it
    while stop is None or cursor.next_seq <= stop:
        commits = reader.tail(cursor)
        for c in commits:
            if appliers:
                batch = EventBatch.of(c.events)
                for apply in appliers:
                    apply(batch)
            if versions is not None:
                versions.note(keys_of(c.events))
            if stop is not None and c.events[-1].seq >= stop:
                return
        if not commits:
            return


def _fits(conn: Conn, sql: Sql, seq: int, digest: bytes) -> str | None:
    """None when the commit ending at ``seq`` has ``digest``; else why the snapshot does not fit."""
    with conn.cursor(binary=True) as cur:
        cur.execute(f"SELECT first_seq, n, digest FROM {sql.table('commits')} WHERE first_seq <= %s "
                    "ORDER BY first_seq DESC LIMIT 1", (seq,))
        row = cur.fetchone()
    if row is None or row[0] + row[1] - 1 != seq:
        return f"no commit ends at seq {seq}"
    if bytes(row[2]) != digest:
        return f"the chain digest at seq {seq} differs from the snapshot's"
    return None


def load_snapshots(conn: Conn, sql: Sql, where: str, max_seq: int,
                   report: RecoveryReport | None) -> list[SnapshotRow]:
    """The snapshots at or before ``max_seq`` that decode and fit the log, newest first.

    The others are reported (``skipped-snapshot``) when ``report`` is given.
    """
    out = []
    for seq, ts, digest, body_len, body in snapshot_rows(conn, sql, max_seq):
        try:
            problem = _fits(conn, sql, seq, bytes(digest))
            if problem is not None:
                raise CorruptionError(where, seq, f"snapshot does not match the log: {problem}")
            versions, states = decode_body(seq, body_len, bytes(body), where)
        except CorruptionError as exc:
            if report is not None:
                report.add(RecoveryEntry("skipped-snapshot", where, seq, exc.reason))
            continue
        out.append(SnapshotRow(seq, ts, bytes(digest), versions, states))
    return out


def open_log(conn: Conn, reader: LogReader, sql: Sql, projections: Sequence[Projection],
             head_seq: int, report: RecoveryReport, salvage: bool = False) -> Opened:
    """Restore ``projections`` from the newest usable snapshot and replay the commits after it.

    A log that does not chain raises `CorruptionError`; with ``salvage`` the open stops
    before the damage instead and reports it (the store shows the intact prefix, and
    `verify` names every problem). Nothing is changed: tables edited behind the store's
    back are evidence, not something to repair.
    """
    where = f"{reader.link.url.redacted} table {sql.table('snapshots')}"
    cursor, versions, snapshot_seq = Cursor(), KeyVersions(), 0
    for snap in load_snapshots(conn, sql, where, head_seq, report)[:1]:
        missing = []
        for p in projections:
            ok, state = snap.state(p.name, p.version)
            if ok:
                p.restore(state)
            else:
                missing.append(p)
        if missing:  # rebuilt by replay up to the snapshot
            replay(reader, Cursor(), missing, None, stop=snap.seq)
        cursor = Cursor(snap.seq + 1, snap.digest, snap.ts)
        versions = KeyVersions(dict(snap.versions))
        snapshot_seq = snap.seq
    try:
        replay(reader, cursor, projections, versions)
    except CorruptionError as exc:
        if not salvage:
            raise
        report.add(RecoveryEntry("damaged", exc.file, exc.offset, exc.reason,
                                 lost=(cursor.next_seq, head_seq) if head_seq >= cursor.next_seq else None))
    return Opened(cursor, versions, snapshot_seq)
