"""The commit transaction: seqs, versions, digests and commit ids, under the head row lock.

A group-commit leader hands `LogWriter.commit` a batch of prepared commits;
they are written in one transaction of two round trips:

1. ``BEGIN``; lock the one ``head`` row (``SELECT ... FOR UPDATE``); read the
   commits other writers made since our cursor; look up the commit ids that
   may be stored already (a retry). Holding the lock, nobody else can commit.
2. Checked against the caught-up key versions, each commit gets the next seqs,
   a time no earlier than the last, and its chain digest; then ``INSERT`` the
   commits and one ``key_versions`` row per event, move ``head``, ``NOTIFY``,
   ``COMMIT``. The lock is released only once the commit is visible, so the
   commits visible to any reader are always a prefix of the log.

A lost connection in step 1 is retried (nothing was written). In step 2 the
outcome is unknown: the writer reconnects and settles it by looking the
commit ids up under the lock (a commit found is acknowledged, one not found
can no longer appear, and is written now); if the server cannot be reached,
the commit gets `CommitUnknownError` and stays in ``in_doubt`` for
`PostgresStore.resolve`. A ``key_versions`` primary-key violation (another
writer took the version) is a `ConcurrencyError`. Publication is the store's.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable
from uuid import UUID

import psycopg
from psycopg import errors as pgerrors

from ..chain import commit_digest
from ..commit import PreparedCommit
from ..codec import decode_commit
from ..errors import ConcurrencyError, CorruptionError, EventStoreError, StoreFailedError, ValidationError
from ..event import Event
from ..local.groupcommit import Pending
from ..publish import KeyVersions, keys_of
from .connection import Conn, Link, connection_lost
from .errors import CommitUnknownError, StoreUnavailableError
from ..api import Commit
from ..imports import check_chains_on
from .log import Cursor, take
from .schema import Sql

__all__ = ["Work", "LogWriter", "Batch"]

MAX_ROUNDS = 3


@dataclass
class Work:
    """One commit as the writer sees it."""

    commit: PreparedCommit
    commit_id: UUID
    given: bool = False  # the id may be stored already (a retry, or the caller's id): look it up
    imported: Commit | None = None  # an import: the seqs, time and digest it must get


Batch = list[Pending[Work, list[Event]]]


@dataclass
class _Planned:
    pending: Pending[Work, list[Event]]
    first_seq: int
    ts: int
    digest: bytes


class _Conflict(Exception):
    """A key_versions primary-key violation: some commit of the batch lost a race for a version."""


class LogWriter:
    """The write side of one store: its connection, its cursor, its commits in doubt."""

    def __init__(self, link: Link, sql: Sql, cursor: Cursor) -> None:
        self.link = link
        self.sql = sql
        self.cursor = cursor
        self.where = f"{link.url.redacted} table {sql.table('commits')}"
        self.in_doubt: dict[UUID, Work] = {}
        self.before_write: Callable[[], None] | None = None  # tests: a fault between the round trips

    def commit(self, batch: Batch, versions: KeyVersions) -> tuple[list[Commit], list[list[Event]]]:
        """Write ``batch``; returns (other writers' commits caught up with, our new commits' events).

        Every pending gets its result or its error. Raises only for a log that does not chain.
        """
        caught: list[Commit] = []
        ours: list[list[Event]] = []
        todo = [p for p in batch if not p.done]
        for _ in range(MAX_ROUNDS):
            if not todo:
                break
            try:
                todo = self._round(todo, versions, caught, ours)
            except _Conflict:
                if len(todo) == 1:
                    self._conflict(todo[0], versions)
                    todo = []
                else:  # one at a time: only the commit that lost the race fails
                    for p in todo:
                        self._settle_alone(p, versions, caught, ours)
                    todo = []
        for p in todo:  # still in doubt after every round
            self._fail(p, None)
        return caught, ours

    def _settle_alone(self, p: Pending[Work, list[Event]], versions: KeyVersions,
                      caught: list[Commit], ours: list[list[Event]]) -> None:
        for _ in range(MAX_ROUNDS):
            try:
                if not self._round([p], versions, caught, ours):
                    return
            except _Conflict:
                self._conflict(p, versions)
                return
        self._fail(p, None)

    # -- one transaction ------------------------------------------------------------------------
    def _round(self, todo: list[Pending[Work, list[Event]]], versions: KeyVersions,
               caught: list[Commit], ours: list[list[Event]]) -> list[Pending[Work, list[Event]]]:
        """One transaction; returns the pendings to try again (their outcome was not settled)."""
        try:
            conn = self.link.conn()
        except StoreUnavailableError as exc:
            for p in todo:
                self._fail(p, exc)
            return []
        try:
            found = self._lock(conn, todo, versions, caught)
        except psycopg.Error as exc:
            if connection_lost(exc, conn):
                self.link.drop()
                return todo  # nothing was written: try again
            self._rollback(conn)  # the server refused (a lock timeout, a permission): nothing written
            for p in todo:
                self._fail(p, StoreFailedError(f"{self.where}: commit refused: {exc}"))
            return []
        except BaseException:
            self._rollback(conn)
            raise
        planned = self._plan(todo, found, versions)
        if not planned:
            self._rollback(conn)
            return []
        if self.before_write is not None:
            self.before_write()
        try:
            self._write(conn, planned, versions.counted())
        except pgerrors.UniqueViolation as exc:
            self._rollback(conn)
            if exc.diag.constraint_name == "key_versions_pkey":
                raise _Conflict() from exc
            raise StoreFailedError(f"{self.where}: {exc}") from exc
        except psycopg.Error as exc:
            if not connection_lost(exc, conn):
                self._rollback(conn)
                for x in planned:
                    self._fail(x.pending, StoreFailedError(f"{self.where}: commit refused: {exc}"))
                return []
            self.link.drop()
            for x in planned:  # COMMIT may have been done: settle it by its id next round
                work = x.pending.commit
                work.given = True
                self.in_doubt[work.commit_id] = work
            return [x.pending for x in planned]
        self._done(planned, versions, ours)
        return []

    def _lock(self, conn: Conn, todo: list[Pending[Work, list[Event]]], versions: KeyVersions,
              caught: list[Commit]) -> dict[UUID, tuple[Any, ...]]:
        """Round trip 1: lock the head, catch up, look up the ids to settle."""
        ids = [p.commit.commit_id for p in todo if p.commit.given]
        head, tail, by_id = (conn.cursor(binary=True) for _ in range(3))
        try:
            with conn.pipeline():
                conn.execute("BEGIN")
                head.execute(self.sql.lock_head)
                tail.execute(self.sql.commits_from, (self.cursor.next_seq, None))
                if ids:
                    by_id.execute(self.sql.commits_by_id, (ids,))
            head_row, tail_rows = head.fetchone(), tail.fetchall()
            id_rows = by_id.fetchall() if ids else []
        finally:
            for cur in (head, tail, by_id):
                cur.close()
        new = take(tail_rows, self.cursor, self.where)
        for c in new:
            versions.note(keys_of(c.events))
        caught.extend(new)
        assert head_row is not None
        last_seq, _, digest = head_row
        if last_seq != self.cursor.next_seq - 1 or bytes(digest) != self.cursor.digest:
            raise CorruptionError(f"{self.link.url.redacted} table {self.sql.table('head')}", last_seq,
                                  f"head says seq {last_seq}, the commits end at seq {self.cursor.next_seq - 1}")
        return {row[0]: row for row in id_rows}

    def _plan(self, todo: list[Pending[Work, list[Event]]], found: dict[UUID, tuple[Any, ...]],
              versions: KeyVersions) -> list[_Planned]:
        """Settle the commits found stored; check and number the others."""
        planned = []
        after: dict[str, int] = {}
        known = versions.counted()
        next_seq, prev, last_ts = self.cursor.next_seq, self.cursor.digest, self.cursor.last_ts
        now = time.time_ns()
        for p in todo:
            work = p.commit
            row = found.get(work.commit_id)
            if row is not None:
                self._settle_found(p, row)
                continue
            try:
                if work.imported is not None:
                    check_chains_on(work.imported, next_seq, prev, last_ts)
                mine = self._check(work, after, known)
            except EventStoreError as exc:
                p.error, p.done = exc, True
                self.in_doubt.pop(work.commit_id, None)
                continue
            after.update(mine)
            ts = work.imported.ts if work.imported is not None else max(now, last_ts)
            digest = commit_digest(prev, next_seq, work.commit.n, ts, work.commit.payload)
            planned.append(_Planned(p, next_seq, ts, digest))
            next_seq, prev, last_ts = next_seq + work.commit.n, digest, ts
        return planned

    @staticmethod
    def _check(work: Work, after: dict[str, int], known: dict[str, int]) -> dict[str, int]:
        """The versions the commit leaves, or the error that refuses it."""
        c = work.commit
        mine: dict[str, int] = {}
        expected = c.expected or [None] * c.n
        for key, want in zip(c.keys, expected):
            current = mine.get(key, after.get(key, known.get(key, 0)))
            if want is not None and want != current:
                raise ConcurrencyError(key, want, current)
            mine[key] = current + 1
        return mine

    def _settle_found(self, p: Pending[Work, list[Event]], row: tuple[Any, ...]) -> None:
        _, first_seq, n, ts, _, payload = row
        work = p.commit
        self.in_doubt.pop(work.commit_id, None)
        if bytes(payload) != work.commit.payload:
            p.error = ValidationError(f"commit id {work.commit_id} is already used by another commit "
                                      f"(seq {first_seq})")
        else:
            p.result = decode_commit(bytes(payload), first_seq, n, ts, self.where, first_seq)
        p.done = True

    def _write(self, conn: Conn, planned: list[_Planned], known: dict[str, int]) -> None:
        """Round trip 2: the rows, the head, the notification, COMMIT."""
        firsts, ns, tss, ids, digests, payloads = [], [], [], [], [], []
        keys: list[str] = []
        vers: list[int] = []
        at: list[int] = []
        counted: dict[str, int] = {}
        for x in planned:
            c = x.pending.commit.commit
            firsts.append(x.first_seq)
            ns.append(c.n)
            tss.append(x.ts)
            ids.append(x.pending.commit.commit_id)
            digests.append(x.digest)
            payloads.append(c.payload)
            keys.extend(c.keys)
            at.extend([x.first_seq] * c.n)
        for key in keys:
            counted[key] = counted.get(key, known.get(key, 0)) + 1
            vers.append(counted[key])
        last = planned[-1]
        last_seq = last.first_seq + last.pending.commit.commit.n - 1
        with conn.pipeline():
            conn.execute(self.sql.insert_commits, (firsts, ns, tss, ids, digests, payloads))
            conn.execute(self.sql.insert_versions, (keys, vers, at))
            conn.execute(self.sql.set_head, (last_seq, last.ts, last.digest))
            conn.execute("SELECT pg_notify(%s, %s)", (self.link.url.channel, str(last_seq)))
            conn.execute("COMMIT")

    def _done(self, planned: list[_Planned], versions: KeyVersions, ours: list[list[Event]]) -> None:
        for x in planned:
            p = x.pending
            c = p.commit.commit
            versions.note(c.keys)
            p.result = c.events(x.first_seq, x.ts)
            self.in_doubt.pop(p.commit.commit_id, None)
            ours.append(p.result)
        last = planned[-1]
        self.cursor.next_seq = last.first_seq + last.pending.commit.commit.n
        self.cursor.digest, self.cursor.last_ts = last.digest, max(self.cursor.last_ts, last.ts)

    # -- failures -----------------------------------------------------------------------------
    def _conflict(self, p: Pending[Work, list[Event]], versions: KeyVersions) -> None:
        """The database refused a version: name the key and its version there."""
        c = p.commit.commit
        rows = self.link.run(lambda conn: conn.execute(self.sql.versions_of, (list(c.keys),)).fetchall())
        stored = {str(k): int(v) for k, v in rows}
        mine = versions.counted()
        key = next((k for k in c.keys if stored.get(k, 0) != mine.get(k, 0)), c.keys[0])
        expected = (c.expected or [None] * c.n)[list(c.keys).index(key)]
        p.error = ConcurrencyError(key, mine.get(key, 0) if expected is None else expected, stored.get(key, 0))
        p.done = True
        self.in_doubt.pop(p.commit.commit_id, None)

    def _fail(self, p: Pending[Work, list[Event]], cause: BaseException | None) -> None:
        work = p.commit
        reason = str(cause) if cause is not None else "the server did not answer"
        if work.commit_id in self.in_doubt:
            p.error = CommitUnknownError(self.link.url.redacted, work.commit_id, reason)
        else:
            p.error = cause if cause is not None else StoreUnavailableError(self.link.url.redacted, reason)
        p.done = True

    def _rollback(self, conn: Conn) -> None:
        try:
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                conn.execute("ROLLBACK")
        except psycopg.Error:
            self.link.drop()
