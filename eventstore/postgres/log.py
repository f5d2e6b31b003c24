"""Reading the commits table: pages of commits, the tail after a cursor, events.

`Cursor` is where a reader of the log stands: the next seq, the chain
digest and the time after the last commit it took in. `take` checks rows
of the commits table against a cursor (the seq follows on, the digest
recomputes) and moves it; a writer's catch-up and a reader's refresh both
use it, so neither builds on a log that does not chain. `LogReader` pages
through the table for `read`, `follow` and replay: keyset pages in seq
order, bytea fetched in binary, payloads decoded with the codec's limits.
Visible commits always form a prefix of the log (docs/POSTGRES.md, "Seqs"),
so a reader needs no lock. No writes here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence

from ..api import Commit
from ..chain import ZERO_DIGEST, commit_digest
from ..codec import decode_commit, pack
from ..errors import CorruptionError
from ..event import Event
from .connection import Conn, Link
from .schema import Sql

__all__ = ["Cursor", "Row", "Commit", "take", "LogReader", "PAGE_COMMITS"]

PAGE_COMMITS = 500
"""Commits fetched per page (a page holds at most this many times ``MAX_COMMIT_BYTES``... in
theory; commits are small in practice)."""
Row = tuple[int, int, int, bytes, bytes]
"""A commits row as read: ``(first_seq, n, ts, digest, payload)``."""


@dataclass
class Cursor:
    next_seq: int = 1
    digest: bytes = ZERO_DIGEST
    last_ts: int = 0

    def copy(self) -> Cursor:
        return Cursor(self.next_seq, self.digest, self.last_ts)


def take(rows: Iterable[Sequence[Any]], cursor: Cursor, where: str) -> list[Commit]:
    """The commits of ``rows`` (in seq order, from ``cursor.next_seq``), checked; moves ``cursor``.

    A row whose seq does not follow on, or whose digest does not recompute from
    the one before, is `CorruptionError` (``where``, offset: the row's first seq).
    """
    out = []
    for first_seq, n, ts, digest, payload in rows:
        if first_seq != cursor.next_seq:
            raise CorruptionError(where, cursor.next_seq, f"commit at seq {cursor.next_seq} is missing "
                                                          f"(the next one starts at seq {first_seq})")
        if commit_digest(cursor.digest, first_seq, n, ts, payload) != digest:
            raise CorruptionError(where, first_seq, "digest chain broken: the commit or one before it "
                                                    "was changed")
        events = decode_commit(payload, first_seq, n, ts, where, first_seq)
        out.append(Commit(first_seq, ts, cursor.digest, bytes(digest), bytes(payload), events))
        cursor.next_seq, cursor.digest, cursor.last_ts = first_seq + n, bytes(digest), max(cursor.last_ts, ts)
    return out


class LogReader:
    """Reads of one store's commits table, on a shared reader `Link`."""

    def __init__(self, link: Link, sql: Sql) -> None:
        self.link = link
        self.sql = sql
        self.where = f"{link.url.redacted} table {sql.table('commits')}"

    def page(self, first: int, limit: int = PAGE_COMMITS) -> list[Row]:
        """Up to ``limit`` commits from seq ``first`` on (``first`` is a commit's first seq)."""
        def work(conn: Conn) -> list[Row]:
            with conn.cursor(binary=True) as cur:
                cur.execute(self.sql.commits_from, (first, limit))
                return cur.fetchall()
        return self.link.run(work)

    def tail(self, cursor: Cursor, limit: int = PAGE_COMMITS) -> list[Commit]:
        """The next commits after ``cursor`` (at most ``limit``), checked; moves it."""
        return take(self.page(cursor.next_seq, limit), cursor, self.where)

    def commit_start(self, seq: int) -> int:
        """The first seq of the commit holding ``seq`` (1 when there is none before it)."""
        def work(conn: Conn) -> int:
            row = conn.execute(self.sql.commit_start, (seq,)).fetchone()
            return int(row[0]) if row else 1
        return self.link.run(work)

    def key_commits(self, key: str, first: int, limit: int) -> list[Row]:
        """Commits holding an event of ``key``, from seq ``first`` on (the key index)."""
        s = self.sql.schema
        query = (f"SELECT first_seq, n, ts, digest, payload FROM {s}.commits WHERE first_seq IN "
                 f"(SELECT commit_seq FROM {s}.key_versions WHERE key = %s AND commit_seq >= %s) "
                 "ORDER BY first_seq LIMIT %s")

        def work(conn: Conn) -> list[Row]:
            with conn.cursor(binary=True) as cur:
                cur.execute(query, (key, first, limit))
                return cur.fetchall()
        return self.link.run(work)

    def events(self, start: int, stop: int | None, bound: int | None, key: str | None,
               types: set[str] | None) -> Iterator[Event]:
        """Events with ``start <= seq < stop`` (and ``<= bound``), optionally filtered, in seq order."""
        first = self.commit_start(start) if start > 1 else 1
        # A commit holding a type holds its msgpack encoding verbatim: skip the others undecoded.
        needles = [pack(t) for t in types] if types else []
        while True:
            rows = self.key_commits(key, first, PAGE_COMMITS) if key is not None else self.page(first)
            for first_seq, n, ts, _, payload in rows:
                if (bound is not None and first_seq > bound) or (stop is not None and first_seq >= stop):
                    return
                if needles and not any(x in payload for x in needles):
                    continue
                for e in decode_commit(payload, first_seq, n, ts, self.where, first_seq):
                    if e.seq < start or (bound is not None and e.seq > bound):
                        continue
                    if stop is not None and e.seq >= stop:
                        return
                    if (key is None or e.key == key) and (types is None or e.type in types):
                        yield e
            if len(rows) < PAGE_COMMITS:
                return
            first = rows[-1][0] + rows[-1][1]
