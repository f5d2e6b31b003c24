"""`verify` for a PostgreSQL store: the whole log re-read and checked against its digest chain.

Walks the commits table in seq order and checks, per commit, that its seq
follows on, that its payload decodes into its count of events, and that its
digest recomputes from the one before (`chain.commit_digest`, the segment
log's chain). A row edited in place, even with its ``n`` or ``digest``
made to agree, breaks the chain at that commit or the next; a row deleted
leaves a gap. Then the ``head`` row must name the last commit and its
digest, the ``key_versions`` index must hold exactly one row per event with
versions 1..n per key, and every snapshot must decode and carry the chain
digest and key versions the replay has at its seq. Problems are collected,
never raised. Read-only.
"""
from __future__ import annotations

from typing import Any, Callable

from ..chain import ZERO_DIGEST, commit_digest
from ..codec import decode_commit
from ..errors import CorruptionError
from ..report import RecoveryEntry, VerifyReport
from .connection import Conn
from .log import PAGE_COMMITS
from .schema import Sql
from .snapshots import decode_body

__all__ = ["verify_store"]


def verify_store(conn: Conn, sql: Sql, location: str, bound: int | None,
                 progress: Callable[[int, int], None] | None = None) -> VerifyReport:
    report = VerifyReport()
    commits_where = f"{location} table {sql.table('commits')}"
    head = conn.execute(sql.head).fetchone()
    assert head is not None
    last_seq = int(head[0])
    total = last_seq if bound is None else min(bound, last_seq)
    snaps = {int(r[0]): r for r in conn.execute(
        f"SELECT seq, ts, digest, body_len, body FROM {sql.table('snapshots')} ORDER BY seq").fetchall()}
    report.snapshots = len(snaps)
    counts: dict[str, int] = {}
    expected, digest, first = 1, ZERO_DIGEST, 1

    def problem(where: str, offset: int | None, reason: str, lost: tuple[int, int] | None = None) -> None:
        report.problems.append(RecoveryEntry("problem", where, offset, reason, lost=lost))

    while True:
        with conn.cursor(binary=True) as cur:
            cur.execute(sql.commits_from, (first, PAGE_COMMITS))
            rows = cur.fetchall()
        for first_seq, n, ts, row_digest, payload in rows:
            if bound is not None and first_seq > bound:
                break
            if first_seq != expected:
                problem(commits_where, expected, f"seqs {expected}-{first_seq - 1} are missing",
                        (expected, first_seq - 1) if first_seq > expected else None)
            try:
                events = decode_commit(bytes(payload), first_seq, n, ts, commits_where, first_seq)
            except CorruptionError as exc:
                problem(commits_where, first_seq, exc.reason)
                events = []
            want = commit_digest(digest, first_seq, n, ts, bytes(payload))
            if want != bytes(row_digest):
                problem(commits_where, first_seq, "digest chain broken: this commit (or the one "
                                                  "before it) was changed or removed")
            for e in events:
                counts[e.key] = counts.get(e.key, 0) + 1
            digest, expected = bytes(row_digest), first_seq + n
            report.commits += 1
            report.events += len(events)
            snap = snaps.get(first_seq + n - 1)
            if snap is not None:
                _check_snapshot(snap, digest, counts, location, sql, problem)
            if progress is not None:
                progress(expected - 1, total)
        if len(rows) < PAGE_COMMITS or (bound is not None and rows and rows[-1][0] > bound):
            break
        first = expected
    report.last_seq = expected - 1
    if bound is None and (last_seq != expected - 1 or bytes(head[2]) != digest):
        problem(f"{location} table {sql.table('head')}", last_seq,
                f"head names seq {last_seq}; the commits chain to seq {expected - 1}")
    for seq in snaps:
        if seq >= expected:
            problem(f"{location} table {sql.table('snapshots')}", seq, "snapshot is past the end of the log")
    _check_key_index(conn, sql, location, counts, expected - 1, problem)
    return report


def _check_snapshot(snap: tuple[Any, ...], digest: bytes, counts: dict[str, int], location: str,
                    sql: Sql, problem: Callable[..., None]) -> None:
    seq, _, snap_digest, body_len, body = snap
    where = f"{location} table {sql.table('snapshots')}"
    if bytes(snap_digest) != digest:
        problem(where, seq, "snapshot digest differs from the log's at its seq")
        return
    try:
        versions, _ = decode_body(seq, body_len, bytes(body), where)
    except CorruptionError as exc:
        problem(where, seq, exc.reason)
        return
    if versions != counts:
        problem(where, seq, "snapshot key versions differ from the log's at its seq")


def _check_key_index(conn: Conn, sql: Sql, location: str, counts: dict[str, int], last: int,
                     problem: Callable[..., None]) -> None:
    """Per key, the index holds versions 1..n exactly, n being the log's count, all in the log."""
    where = f"{location} table {sql.table('key_versions')}"
    rows = conn.execute(
        f"SELECT key, count(*), min(version), max(version), max(commit_seq) FROM {sql.table('key_versions')} "
        "WHERE commit_seq <= %s GROUP BY key", (last,)).fetchall()
    seen = 0
    for key, n, low, high, _ in rows:
        want = counts.get(str(key), 0)
        seen += 1 if want else 0
        if (n, low, high) != (want, 1, want):
            problem(where, None, f"key {key!r}: the index holds versions {low}..{high} ({n} rows), "
                                 f"the log {want} events")
    if seen != len(counts):
        problem(where, None, f"{len(counts) - seen} keys of the log are missing from the index")
    orphans = conn.execute(
        f"SELECT count(*) FROM {sql.table('key_versions')} k LEFT JOIN {sql.table('commits')} c "
        "ON c.first_seq = k.commit_seq WHERE c.first_seq IS NULL").fetchone()
    if orphans and int(orphans[0]):
        problem(where, None, f"{orphans[0]} index rows point to no commit")
