"""`PostgresStore`: the `eventstore.Store` protocol on PostgreSQL, wired together.

Wiring only: the schema (`schema`), connections (`connection`), the commit
transaction (`writer`, driven by the same group commit as the embedded
store: one transaction for every commit waiting), reads and catch-up
(`log`), opening (`opening`), snapshots (`snapshots`), wake-ups
(`listen`), `verify`. Checking and encoding appends (`commit.Intake`) and
publishing to projections and subscribers (`publish.Publisher`) are shared
with every backend. Any number of stores, in any processes on any hosts,
may write one schema at once.
"""
from __future__ import annotations

import contextlib
import gc
import logging
import threading
import uuid
from typing import Any, Iterable, Iterator, Sequence

from ..api import (Commit, CompactResult, Data, Item, ProgressCallback, SnapshotState, StoreOptions,
                   StoreStats, check_projections)
from ..chain import ZERO_DIGEST
from ..codec import decode_commit
from ..commit import Intake, PreparedCommit
from ..errors import CorruptionError, StoreClosedError, StoreFailedError, ValidationError
from ..event import Event
from ..imports import prepare_import
from ..local.groupcommit import GroupCommit
from ..projection import Projection
from ..publish import KeyVersions, Publisher, keys_of
from ..report import RecoveryReport, VerifyReport
from ..storebase import StoreBase, check_position
from .connection import Conn, Link
from .listen import Listener
from .log import PAGE_COMMITS, Cursor, LogReader, take
from .opening import load_snapshots, open_log
from .schema import Sql, prepare_schema
from .snapshots import Captured, Snapshotter
from .url import StoreURL
from .verify import verify_store
from .writer import Batch, LogWriter, Work

__all__ = ["PostgresStore"]

log = logging.getLogger("eventstore")
IDLE_IN_TRANSACTION = "60s"
"""A writer's session may sit in a transaction this long (a client gone silent mid-commit
must not hold the head lock for ever)."""


def _commit_id(value: str | uuid.UUID | None) -> tuple[uuid.UUID, bool]:
    if value is None:
        return uuid.uuid4(), False
    try:
        return (value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))), True
    except ValueError:
        raise ValidationError(f"commit_id must be a UUID, not {value!r}") from None


class PostgresStore(StoreBase):
    """An open store in a PostgreSQL schema (see `eventstore.open` and `eventstore.Store`)."""

    def __init__(self, url: StoreURL, projections: Iterable[Projection], options: StoreOptions) -> None:
        self._url = url
        self._options = options
        self._sql = Sql(url.schema)
        self._projections = check_projections(projections)
        self._publisher = Publisher(self._projections)
        self._intake = Intake(options.max_event_bytes)
        sync = "on" if options.durability == "fsync" else "off"
        readonly = ("SET default_transaction_read_only = on",) if options.readonly else ()
        self._read_link = Link(url, "reader", readonly)
        self._reader = LogReader(self._read_link, self._sql)
        self._engine: GroupCommit[Work, list[Event]] = GroupCommit(
            self._write_batch, gather=options.durability == "fsync", after=self._deliver,
            describe=f"store {url.redacted}")
        self.recovery_report = RecoveryReport()
        self._undelivered: list[Event] = []
        self._since_snapshot = 0
        self._snapshots = Snapshotter(url, self._sql, self._projections)
        self._refresh_lock = threading.RLock()
        self._refreshing = False
        self._listener: Listener | None = None
        self._listener_lock = threading.Lock()
        self._writer: LogWriter | None = None
        gc_enabled = gc.isenabled()
        gc.disable()  # replay allocates millions of long-lived objects: no cycles to find
        try:
            with self._read_link.lock:
                conn = self._read_link.conn()
                prepare_schema(conn, url, create=options.create and not options.readonly)
                head = conn.execute(self._sql.head).fetchone()
                head_seq = int(head[0]) if head is not None else 0
                opened = open_log(conn, self._reader, self._sql, self._projections, head_seq,
                                  self.recovery_report, salvage=options.recovery == "salvage")
        except BaseException:
            self._read_link.close()
            raise
        finally:
            if gc_enabled:
                gc.enable()
        self._cursor = opened.cursor  # readonly: where refresh reads from; writer: the writer's
        self._versions = opened.versions
        self._snapshots.seq = opened.snapshot_seq
        self._published = opened.cursor.next_seq - 1
        if not options.readonly:
            link = Link(url, "writer", (f"SET synchronous_commit = {sync}",
                                        f"SET idle_in_transaction_session_timeout = '{IDLE_IN_TRANSACTION}'"))
            self._writer = LogWriter(link, self._sql, self._cursor)

    # -- properties of the Store protocol ------------------------------------------------------
    location = property(lambda self: self._url.redacted, doc="The store's URL, without its password.")

    def _submit_prepared(self, commit: PreparedCommit) -> list[Event]:
        return self._submit(commit)

    def _current_versions(self) -> KeyVersions:
        return self._versions

    def _current_seq(self) -> int:
        return self._published

    def _current_publisher(self) -> Publisher:
        return self._publisher

    def _subscribed(self) -> None:
        self._listen()

    # -- writing -------------------------------------------------------------------------------
    def _submit(self, commit: PreparedCommit, commit_id: str | uuid.UUID | None = None,
                imported: Commit | None = None) -> list[Event]:
        cid, given = _commit_id(commit_id)
        return self._engine.submit(Work(commit, cid, given, imported))

    def append(self, type: str, key: str, data: Data | None = None, *, meta: Data | None = None,
               expected_version: int | None = None, commit_id: str | uuid.UUID | None = None) -> Event:
        """Append one event as one commit. ``commit_id`` (a UUID) makes a retry safe: a commit
        with that id already stored is returned instead of written again."""
        self._writable()
        return self._submit(self._intake.one(type, key, data, meta, expected_version), commit_id)[0]

    def append_many(self, items: Iterable[Item], *, commit_id: str | uuid.UUID | None = None) -> list[Event]:
        """Append items as one atomic commit (``commit_id``: as for `append`)."""
        self._writable()
        commit = self._intake.many(items)
        return [] if commit is None else self._submit(commit, commit_id)

    def resolve(self, commit_id: str | uuid.UUID) -> list[Event]:
        """Settle a commit that failed with `CommitUnknownError`: its events, found stored or
        committed now (once). A commit id this store never sent must be stored already."""
        cid, _ = _commit_id(commit_id)
        writer = self._writer
        work = writer.in_doubt.get(cid) if writer is not None else None
        if work is not None:
            self._writable()
            return self._engine.submit(Work(work.commit, cid, True, work.imported))
        self._open_check()

        def find(conn: Conn) -> list[tuple[Any, ...]]:
            with conn.cursor(binary=True) as cur:
                cur.execute(self._sql.commits_by_id, ([cid],))
                return cur.fetchall()
        rows = self._read_link.run(find)
        if not rows:
            raise ValidationError(f"commit {cid} is not stored in {self.location}, and this store "
                                  "did not send it: append its items again with this commit_id")
        _, first_seq, n, ts, _, payload = rows[0]
        return decode_commit(bytes(payload), first_seq, n, ts, self._reader.where, first_seq)

    def import_commit(self, commit: Commit) -> list[Event]:
        """Store a commit read from another store with its seqs, time and digest (see
        `eventstore.Store.import_commit`): checked on its own now, and against the head
        under the head lock; a `ValidationError` writes nothing."""
        self._writable()
        return self._submit(prepare_import(commit, self._intake), None, commit)

    def _write_batch(self, batch: Batch) -> None:
        """The group-commit leader's work: one transaction, then publication."""
        writer = self._writer
        assert writer is not None
        caught, ours = writer.commit(batch, self._versions)
        self._publish([c.events for c in caught] + ours)
        for p in batch:
            p.done = True

    def _publish(self, commits: Sequence[list[Event]], note: bool = False) -> None:
        """Apply commits in seq order and show them, one by one (the leader, or under
        exclusive or the refresh lock): while a projection applies a commit, the store shows
        the state before it. ``note``: count their keys now (the writer counted them already)."""
        published = 0
        for events in commits:
            failed = self._publisher.apply(events)
            if failed is not None and self._engine.failed is None:
                log.error("%s; %s refuses writes until reopened", failed, self.location)
                self._engine.failed = failed
            if self._publisher.subscribers:
                self._undelivered.extend(events)
            published += len(events)
            with self._engine.mutex:  # what version() and last_seq read
                if note:
                    self._versions.note(keys_of(events))
                self._published = events[-1].seq
        if not published:
            return
        self._since_snapshot += published
        every = self._options.snapshot_every
        if every and not self.readonly and self._since_snapshot >= every:
            self._snapshot_in_background()

    def _deliver(self) -> None:
        events, self._undelivered = self._undelivered, []
        if events:
            self._publisher.deliver(events)

    def flush(self) -> None:
        """With durability "flush" or "none" (asynchronous commit), wait until every commit
        acknowledged so far is on the server's disk; with "fsync" they already are."""
        self._open_check()
        if self.readonly or self.durability == "fsync":
            return
        self._writable()
        writer = self._writer
        assert writer is not None
        with self._engine.exclusive():
            def sync(conn: Conn) -> None:
                # A synchronous commit waits for the WAL up to its commit record, so for every
                # commit before it, but only if it wrote a WAL record of its own (PostgreSQL
                # commits a transaction that wrote none asynchronously): a no-op row update.
                with conn.transaction():
                    conn.execute("SET LOCAL synchronous_commit = on")
                    conn.execute(f"UPDATE {self._sql.table('meta')} SET created_ns = created_ns WHERE id = 1")
            writer.link.run(sync)

    # -- reading -------------------------------------------------------------------------------
    def read(self, start: int = 1, stop: int | None = None, *, key: str | None = None,
             types: str | Iterable[str] | None = None) -> Iterator[Event]:
        """Events with ``start <= seq < stop`` in seq order, optionally filtered."""
        type_set = self._read_args(start, stop, key, types)
        self.refresh(strict=False)
        return self._reader.events(max(start, 1), stop, self._published, key, type_set)

    def read_commits(self, start: int = 1) -> Iterator[Commit]:
        """Whole commits, checked, from the one holding seq ``start`` (up to the last one now):
        their seqs, time, chain digest, payload and events. `metalog copy` reads these."""
        self._open_check()
        check_position("start", start)
        return self._commits_from(start)

    def _commits_from(self, start: int) -> Iterator[Commit]:
        first = self._reader.commit_start(start) if start > 1 else 1
        cursor = Cursor(first, self._digest_before(first), 0)
        while True:
            rows = self._reader.page(cursor.next_seq)
            for commit in take(rows, cursor, self._reader.where):
                if commit.last_seq >= start:  # (past the last seq, the last commit is "the one before")
                    yield commit
            if len(rows) < PAGE_COMMITS:
                return

    def _digest_before(self, first: int) -> bytes:
        """The chain digest after the commit that ends at ``first - 1``."""
        if first <= 1:
            return ZERO_DIGEST
        rows = self._reader.page(self._reader.commit_start(first - 1), 1)
        return bytes(rows[0][3]) if rows else ZERO_DIGEST

    def follow(self, start: int | None = None, *, poll: float = 0.05,
               timeout: float | None = None) -> Iterator[Event]:
        """Live tail: events from ``start`` (default: after the current last seq) as they are
        committed, by any writer; woken by NOTIFY, reading at least every second (every
        ``poll`` seconds while the listener is disconnected). Ends after ``timeout`` idle
        seconds, or when the store is closed. The start is fixed when called."""
        self._open_check()
        next_seq = self.last_seq + 1 if start is None else max(int(start), 1)
        listener = self._listen()
        return self._follow(next_seq, poll, timeout, listener)

    def _follow(self, next_seq: int, poll: float, timeout: float | None,
                listener: Listener) -> Iterator[Event]:
        import time
        idle_since = time.monotonic()
        while not self.closed:
            seen = listener.generation
            got = False
            for e in self._reader.events(next_seq, None, None, None, None):
                got = True
                next_seq = e.seq + 1
                yield e
            if got:
                idle_since = time.monotonic()
                continue
            left = None if timeout is None else timeout - (time.monotonic() - idle_since)
            if left is not None and left <= 0:
                return
            listener.wait(seen, poll, left)

    def _listen(self) -> Listener:
        with self._listener_lock:
            if self._listener is None:
                self._listener = Listener(self._url, self._notified)
            return self._listener

    def _notified(self, last_seq: int) -> None:
        """The listener thread: another writer committed; subscribers must hear of it."""
        if self._publisher.subscribers and (last_seq == 0 or last_seq > self._published) and not self.closed:
            self.refresh(strict=False)

    def refresh(self, *, strict: bool = True) -> int:
        """Take in the commits other writers made since; returns how many events."""
        if not strict:
            try:
                return self.refresh()
            except StoreClosedError:
                return 0
            except (CorruptionError, StoreFailedError) as exc:
                log.warning("%s stays at seq %d: %s", self.location, self._published, exc)
                return 0
        self._open_check()
        with self._refresh_lock:
            if self._refreshing:
                return 0
            self._refreshing = True
            try:
                if self.readonly:
                    return self._catch_up()
                with self._engine.exclusive():
                    n = self._catch_up()
                self._deliver()
                return n
            finally:
                self._refreshing = False

    def _catch_up(self) -> int:
        """Publish the commits after our cursor (readonly: under the refresh lock; writer: exclusive)."""
        n = 0
        while True:
            commits = self._reader.tail(self._cursor)
            self._publish([c.events for c in commits], note=True)
            n += sum(len(c.events) for c in commits)
            if len(commits) < PAGE_COMMITS:
                return n

    def stats(self) -> StoreStats:
        self._open_check()
        self.refresh(strict=False)

        def size(conn: Conn) -> tuple[int, int]:
            row = conn.execute(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0), "
                f"(SELECT count(*) FROM {self._sql.table('snapshots')}) FROM pg_class c "
                "JOIN pg_namespace s ON s.oid = c.relnamespace WHERE s.nspname = %s AND c.relkind = 'r'",
                (self._url.schema,)).fetchone()
            return (int(row[0]), int(row[1])) if row is not None else (0, 0)
        nbytes, snapshots = self._read_link.run(size)
        with self._engine.mutex:
            keys = len(self._versions)
        return {"events": self._published, "keys": keys, "segments": 0, "bytes_on_disk": nbytes,
                "last_seq": self._published, "snapshot_seq": self._snapshots.seq, "snapshots": snapshots,
                "durability": self.durability, "readonly": self.readonly, "path": self.location}

    # -- snapshots, compaction, verify -------------------------------------------------------
    def _capture(self) -> Captured:
        c = self._cursor
        return self._snapshots.capture(self._published, c.last_ts, c.digest, self._versions.counted())

    def _snapshot_in_background(self) -> None:
        """The leader's automatic snapshot: captured now, written by a background thread."""
        if self._snapshots.busy or self._engine.failed is not None:
            return  # one at a time; the next trigger catches up
        self._since_snapshot = 0
        try:
            captured = self._capture()
        except Exception:  # noqa: BLE001 - a state that cannot be snapshotted: replay still works
            log.exception("automatic snapshot of %s at seq %d failed", self.location, self._published)
            return
        self._snapshots.start_background(captured)

    def snapshot(self) -> int:
        """Write a snapshot of every projection now; returns the seq it covers."""
        self._writable()
        self._snapshots.join()
        with self._engine.exclusive():
            self._catch_up()
            captured = self._capture()
            self._since_snapshot = 0
        self._deliver()
        self._snapshots.write(captured)
        return captured.seq

    def nearest_snapshot(self, name: str, version: int, max_seq: int) -> SnapshotState | None:
        """The state of projection ``name``/``version`` from the newest usable snapshot at or
        before ``max_seq``; None when there is none."""
        self._open_check()
        where = f"{self.location} table {self._sql.table('snapshots')}"
        snaps = self._read_link.run(lambda conn: load_snapshots(conn, self._sql, where, max_seq, None))
        for snap in snaps:
            ok, state = snap.state(name, version)
            if ok:
                return SnapshotState(snap.seq, state)
        return None

    def compact(self) -> CompactResult:
        """Snapshot (the database has no segments to seal or compress)."""
        self._writable()
        return {"snapshot_seq": self.snapshot()}

    def verify(self, progress: ProgressCallback | None = None) -> VerifyReport:
        """Re-read everything: the seqs, the digest chain, the head, the key index, snapshots."""
        self._open_check()
        bound = None if self.readonly else self.last_seq
        return self._read_link.run(lambda conn: verify_store(conn, self._sql, self.location, bound, progress))

    # -- closing -------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the listener, wait for a background snapshot, close the connections. Idempotent."""
        if self._engine.closed:
            return
        try:
            if self._writer is not None:
                if self.durability != "fsync" and self._engine.failed is None:
                    with contextlib.suppress(Exception):  # best effort: acknowledged commits are the server's
                        self.flush()
                with self._engine.exclusive():
                    self._engine.close()
            self._snapshots.join()
        finally:
            self._engine.close()
            listener, self._listener = self._listener, None
            if listener is not None:
                listener.close()
            if self._writer is not None:
                self._writer.link.close()
            self._read_link.close()
