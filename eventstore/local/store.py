"""`LocalStore`: the embedded segment-log backend of `eventstore.Store`, wired together.

Wiring only: the directory and its locks (`directory`), opening and replay
(`opening`), the commit path (`commit.Intake` checks and encodes, then
`groupcommit` hands batches to `writer`, which appends them after every other
writer's commits), publication (`publish`), reads and the live tail
(`reader`), snapshots (`snapshotter`), compaction, verify. Several `LocalStore`
objects, in one process or many, may write one directory at once.
"""
from __future__ import annotations

import contextlib
import gc
import logging
import os
import threading
from types import TracebackType
from typing import Callable, Iterable, Iterator, Sequence

from ..api import (CompactResult, Data, Item, ProgressCallback, SnapshotState, StoreOptions, StoreStats,
                   check_projections)
from ..commit import BatchTransaction, Intake, PreparedCommit
from ..errors import (CorruptionError, LockedError, ReadOnlyError, StoreClosedError, StoreFailedError,
                      ValidationError)
from ..event import Event, validate_key
from ..fs import DEFAULT_FS, FileSystem
from ..projection import Projection
from ..publish import KeyVersions, Publisher, keys_of
from ..report import RecoveryReport, VerifyReport
from .compaction import compress_sealed, finish_interrupted
from .directory import FileLock, StoreDirectory
from .endrecord import proves_a_log
from .groupcommit import GroupCommit, Pending
from .layout import MAX_SEGMENT_BYTES, ZERO_DIGEST
from .log import SegmentLog
from .opening import OpenResult, open_log, snapshot_candidates
from .reader import Cursor, LogReader
from .segment import create_segment, list_segments
from .snapshotter import Captured, Snapshotter
from .syncstate import SharedSync
from .verify import verify_store
from .recovery import salvage_pass
from .writer import Caught, Linger, LogWriter

__all__ = ["LocalStore"]

log = logging.getLogger("eventstore")
Batch = list[Pending[PreparedCommit, list[Event]]]


class LocalStore:
    """An open store in a directory (see `eventstore.open` and `eventstore.Store`)."""

    def __init__(self, path: str | os.PathLike[str], projections: Iterable[Projection],
                 options: StoreOptions, fs: FileSystem | None = None) -> None:
        if options.segment_bytes > MAX_SEGMENT_BYTES // 2:
            raise ValidationError(f"segment_bytes must be at most {MAX_SEGMENT_BYTES // 2}")
        self._options = options
        self._fs = fs = fs or DEFAULT_FS
        self.root = os.path.abspath(os.fspath(path))
        self._dir = StoreDirectory(fs, self.root)
        self._projections = check_projections(projections)
        self._publisher = Publisher(self._projections)
        self._intake = Intake(options.max_event_bytes)
        self._reader = LogReader(fs, self._dir.segments)
        self._maintenance = self._dir.maintenance_lock()
        self._snapshots = Snapshotter(fs, self._dir.snapshots, self._projections, self._maintenance)
        self._engine: GroupCommit[PreparedCommit, list[Event]] = GroupCommit(
            self._write_batch, gather=options.durability == "fsync", after=self._deliver,
            describe=f"store {self.root}")
        self.recovery_report = RecoveryReport()
        self._versions = KeyVersions()
        self._published = 0  # the last seq applied and visible to reads
        self._cursor = Cursor.start()  # readonly: where the next refresh reads from
        self._writer: LogWriter | None = None
        self._writers: FileLock | None = None  # LOCK.writers, for as long as this writer is open
        self._linger: Linger | None = None
        self._undelivered: list[Event] = []  # published, for the subscribers (leader only)
        self._since_snapshot = 0
        self._lost = 0
        self._refresh_lock = threading.RLock()
        self._refreshing = False  # applying other writers' commits (re-entrant reads see the old state)
        self._dir.prepare(create=options.create, readonly=options.readonly)
        gc_enabled = gc.isenabled()
        gc.disable()  # replay allocates millions of long-lived objects: no cycles to find
        try:
            if options.readonly:
                self._open_reader()
            else:
                self._open_writer()
        except BaseException:
            self._maintenance.close()  # a refused open keeps no file open
            raise
        finally:
            if gc_enabled:
                gc.enable()

    # -- properties of the Store protocol ------------------------------------------------------
    location = property(lambda self: self.root, doc="The store's directory.")
    readonly = property(lambda self: self._options.readonly)
    durability = property(lambda self: self._options.durability)
    recovery = property(lambda self: self._options.recovery)
    max_event_bytes = property(lambda self: self._options.max_event_bytes)
    segment_bytes = property(lambda self: self._options.segment_bytes)
    snapshot_every = property(lambda self: self._options.snapshot_every)
    closed = property(lambda self: self._engine.closed)

    # -- opening -------------------------------------------------------------------------
    def _open_reader(self) -> None:
        result = self._replay(writer=False)
        self._cursor = result.end

    def _open_writer(self) -> None:
        """Recover under the commit lock: no other writer appends while we repair the tail.

        Tidying after a crash (unfinished temporary files and compactions) also
        needs the maintenance lock; it is skipped while another process compacts
        (that process tidies after itself). Salvage waits for it.
        """
        fs, d, options = self._fs, self._dir, self._options
        salvage = options.recovery == "salvage"
        self._join_writers()  # first: a refused open takes no other lock
        maintenance = self._maintenance
        if salvage:
            maintenance.acquire()
            tidy = True
        else:
            tidy = maintenance.try_acquire()
        lock = d.commit_lock()
        try:
            lock.acquire()  # an exclusive writer keeps it; nobody else can be waiting for it
            try:
                if tidy:
                    d.quarantine_tmp_files(self.recovery_report)
                    finish_interrupted(fs, d.segments, self.recovery_report)
                if not list_segments(fs, d.segments) and not proves_a_log(fs, self.root):
                    create_segment(fs, d.segments, 1, ZERO_DIGEST)  # a new store ([F-03])
                if salvage:
                    salvage_pass(fs, self.root, self.recovery_report)
                result = self._replay(writer=True)
                self._writer = self._start_writer(result, lock)
            finally:
                if not options.exclusive:
                    lock.release()
        except BaseException:
            lock.close()
            if self._writers is not None:
                self._writers.close()
            raise
        finally:
            if tidy:
                maintenance.release()

    def _join_writers(self) -> None:
        """Share ``LOCK.writers`` with the other writers, or hold it alone (exclusive);
        refused at once with `LockedError` when that cannot be ([F-24])."""
        writers = self._writers = self._dir.writers_lock()
        if not writers.try_acquire(shared=not self._options.exclusive):
            holders = writers.holders()
            writers.close()
            raise LockedError(self.root, holders[0] if holders else None)

    def _replay(self, *, writer: bool) -> OpenResult:
        result = open_log(self._fs, self.root, self._dir.snapshots, self._projections,
                          recovery=self._options.recovery, writer=writer, report=self.recovery_report)
        self._versions = result.versions
        self._snapshots.seq = result.snapshot_seq
        self._lost = result.lost
        self._published = result.end.next_seq - 1
        return result

    def _start_writer(self, result: OpenResult, lock: FileLock) -> LogWriter:
        fs, d = self._fs, self._dir
        if result.walker.damaged:
            result.walker.rewrite_damaged(list_segments(fs, d.segments))
        end = result.end
        last = result.last_ref
        if last is None or last.compressed:  # [F-29]: a strict open refused that; salvage repaired it
            raise CorruptionError(d.segments, None, "the log has no plain segment to append to")
        size = fs.size(last.path)
        segment_log = SegmentLog(fs, d.segments, last.first_seq, last.path, size, end.digest,
                                 self._options.segment_bytes)
        # A writer killed before its sync may have left accepted frames only in the page
        # cache. Make them durable before anyone reads or builds on them, so a power cut
        # after this open cannot take back what it showed ([F-13]).
        segment_log.sync_everything()
        cursor = Cursor(last.first_seq, size, end.next_seq, end.digest, end.last_ts)
        shared_sync = None
        if not self._options.exclusive:
            shared_sync = SharedSync(fs, d.sync_lock())
            shared_sync.reset((last.first_seq, size))
            if self._options.durability == "none":
                self._linger = Linger(self._linger_release)
        return LogWriter(fs, self.root, self._reader, lock, segment_log, cursor,
                         self._options.durability, self.recovery_report, shared_sync=shared_sync)

    # -- writing -------------------------------------------------------------------------------
    def _writable(self) -> None:
        if self.readonly:
            if self._engine.closed:
                raise StoreClosedError(f"store {self.root} is closed")
            raise ReadOnlyError(f"store {self.root} was opened readonly")
        self._engine.check_writable()

    def append(self, type: str, key: str, data: Data | None = None, *,
               meta: Data | None = None, expected_version: int | None = None) -> Event:
        """Append one event as one commit; returns it once durable per ``durability``."""
        self._writable()
        return self._engine.submit(self._intake.one(type, key, data, meta, expected_version))[0]

    def append_many(self, items: Iterable[Item]) -> list[Event]:
        """Append ``(type, key, data)`` or ``(type, key, data, meta)`` items as one atomic commit."""
        self._writable()
        commit = self._intake.many(items)
        return [] if commit is None else self._engine.submit(commit)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[BatchTransaction]:
        """Appends inside commit atomically on clean exit; nothing is written on exception."""
        self._writable()
        tx = BatchTransaction(self._intake)
        try:
            yield tx
        finally:
            tx.done = True
        commit = tx.prepared()
        if commit is not None:
            self._writable()
            tx.events = self._engine.submit(commit)

    def _write_batch(self, batch: Batch) -> None:
        """The group-commit leader's work (see `GroupCommit`): write, then publish."""
        writer = self._writer
        assert writer is not None
        try:
            caught = writer.commit(batch, self._versions)
        except OSError as exc:
            log.error("write to %s failed: %s; the store refuses writes until reopened", self.root, exc)
            raise StoreFailedError(f"write to {self.root} failed ({exc}); nothing after seq "
                                   f"{self._published} is acknowledged") from exc
        self._publish(caught, [p.result for p in batch if p.result is not None])
        for p in batch:
            p.done = True
        if self._linger is not None and writer.lock.held:
            self._linger.held()

    def _publish(self, caught: Caught, ours: Sequence[list[Event]]) -> None:
        """Apply commits (other writers' first: they come first in the log), then show them."""
        published = 0
        for events in [events for _, events in caught] + list(ours):
            failed = self._publisher.apply(events)
            if failed is not None and self._engine.failed is None:
                # The commit is durable, so it is published; but the projection now
                # disagrees with the log. Refuse further writes and snapshots (which
                # would persist the wrong state) until the store is reopened.
                log.error("%s; %s refuses writes until reopened", failed, self.root)
                self._engine.failed = failed
            if self._publisher.subscribers:
                self._undelivered.extend(events)
            published += len(events)
        if not published:
            return
        writer = self._writer
        self._published = (writer.cursor if writer is not None else self._cursor).next_seq - 1
        self._since_snapshot += published
        if self._options.snapshot_every and self._since_snapshot >= self._options.snapshot_every:
            self._snapshot_in_background()

    def _deliver(self) -> None:
        events, self._undelivered = self._undelivered, []
        if events:
            self._publisher.deliver(events)

    def _linger_release(self) -> None:
        """Durability none: commits paused; write the buffer and let other writers in."""
        with self._engine.exclusive(), self._log_io("write of buffered commits") as writer:
            if writer.lock.held:
                writer.flush(sync=False)

    @contextlib.contextmanager
    def _log_io(self, what: str) -> Iterator[LogWriter]:
        """The writer, for I/O whose failure is sticky: an OSError fails the store."""
        writer = self._writer
        assert writer is not None
        try:
            yield writer
        except OSError as exc:
            if self._engine.failed is None:
                self._engine.failed = exc
            raise StoreFailedError(f"{what} of {self.root} failed ({exc}); the store refuses "
                                   f"writes until reopened") from exc

    def flush(self) -> None:
        """Push buffered commits to the OS and to stable storage."""
        self._open_check()
        if self.readonly:
            return
        self._writable()
        with self._engine.exclusive(), self._log_io("flush") as writer:
            writer.flush(sync=True)

    # -- reading -------------------------------------------------------------------------------
    def _open_check(self) -> None:
        """A closed store refuses every member but `close` (an answer would be stale)."""
        if self._engine.closed:
            raise StoreClosedError(f"store {self.root} is closed")

    def _readable_bound(self) -> int | None:
        """The last seq a reader may return (None: whatever is valid on disk)."""
        if self.readonly:
            return None
        self.refresh(strict=False)
        writer = self._writer
        if writer is not None and writer.log.buffered and self._engine.failed is None:
            try:
                with self._engine.exclusive(), self._log_io("write of buffered commits") as w:
                    w.log.write_buffer()
            except StoreFailedError:
                pass  # readers still get every published commit; writers get the error
        return self._published

    def read(self, start: int = 1, stop: int | None = None, *, key: str | None = None,
             types: str | Iterable[str] | None = None) -> Iterator[Event]:
        """Events with ``start <= seq < stop`` in seq order, optionally filtered."""
        self._open_check()
        for name, value in (("start", start), ("stop", stop)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise ValidationError(f"{name} must be a non-negative int")
        if key is not None:
            validate_key(key)
        type_set = None if types is None else ({types} if isinstance(types, str) else set(types))
        return self._reader.read_events(max(start, 1), stop, key, type_set, self._readable_bound())

    def follow(self, start: int | None = None, *, poll: float = 0.05,
               timeout: float | None = None) -> Iterator[Event]:
        """Live tail: events from ``start`` (default: after the current last seq) as they are
        committed, by this store or a writer in another process. Ends after ``timeout``
        seconds without a new event (never, by default) or when the store is closed.

        The start point is fixed when ``follow`` is called, not at the first ``next()``."""
        self._open_check()
        next_seq = self.last_seq + 1 if start is None else max(int(start), 1)
        return self._reader.follow(next_seq, poll, timeout, self._readable_bound, lambda: self.closed)

    def refresh(self, *, strict: bool = True) -> int:
        """Take in the commits other writers made since; returns how many events.

        `last_seq`, `version`, `stats`, `projections`, `read` and `follow` call
        it, so this store shows what every writer has committed up to now. When
        the log has not moved it costs a few `stat` calls. ``strict=False``
        keeps the state we have instead of raising when another thread closes
        the store meanwhile or the new bytes are damaged; `read` still raises.
        """
        if not strict:
            try:
                return self.refresh()
            except StoreClosedError:
                return 0
            except CorruptionError as exc:
                log.warning("%s stays at seq %d: %s", self.root, self._published, exc)
                return 0
        self._open_check()
        with self._refresh_lock:  # re-entrant: a projection of ours may read the store
            if self._refreshing:
                return 0
            self._refreshing = True
            try:
                return self._refresh_readonly() if self.readonly else self._refresh_writer()
            finally:
                self._refreshing = False

    def _refresh_writer(self) -> int:
        writer = self._writer
        assert writer is not None
        if writer.lock.held or not self._reader.moved(writer.cursor):
            return 0
        with self._engine.exclusive():
            caught = writer.catch_up()
            for _, events in caught:
                self._versions.note(keys_of(events))
            self._publish(caught, ())
        self._deliver()
        return sum(len(events) for _, events in caught)

    def _refresh_readonly(self) -> int:
        if not self._reader.moved(self._cursor):
            return 0
        n = 0
        cursor = self._cursor.copy()
        for _, events in self._reader.decoded(self._published + 1, None, cursor):
            self._publisher.apply(events)
            with self._engine.mutex:
                self._versions.note(keys_of(events))
                self._cursor = cursor.copy()
                self._published = cursor.next_seq - 1
            n += len(events)
        with self._engine.mutex:  # past trailing gap frames, or into a new empty segment
            self._cursor = cursor
            self._published = cursor.next_seq - 1
        return n

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``callback(event)`` for each event this store publishes from now on
        (its own commits, and other writers' as it catches up with them)."""
        self._open_check()
        if not callable(callback):
            raise ValidationError("callback must be callable")
        return self._publisher.subscribe(callback)

    def version(self, key: str) -> int:
        self._open_check()
        self.refresh(strict=False)
        validate_key(key)
        with self._engine.mutex:
            return self._versions.get(key)

    @property
    def last_seq(self) -> int:
        self._open_check()
        self.refresh(strict=False)
        return self._published

    @property
    def projections(self) -> tuple[Projection, ...]:
        self._open_check()
        self.refresh(strict=False)
        return self._projections

    def stats(self) -> StoreStats:
        self._open_check()
        self.refresh(strict=False)
        refs = list_segments(self._fs, self._dir.segments)
        with self._engine.mutex:
            keys = len(self._versions)
        return {
            "events": self._published - self._lost,
            "keys": keys,
            "segments": len(refs),
            "compressed_segments": sum(1 for r in refs if r.compressed),
            "bytes_on_disk": self._fs.tree_size(self.root),
            "last_seq": self._published,
            "snapshot_seq": self._snapshots.seq,  # the newest snapshot loaded or written (checked)
            "snapshots": len(snapshot_candidates(self._fs, self._dir.snapshots)),
            "durability": self.durability,
            "readonly": self.readonly,
            "path": self.root,
        }

    # -- snapshots, compaction, verify -------------------------------------------------------
    def _capture_now(self) -> Captured:
        writer = self._writer
        assert writer is not None
        cursor = writer.cursor
        with self._engine.mutex:
            versions = dict(self._versions.counted())
        return self._snapshots.capture(self._published, cursor.last_ts, (cursor.segment, cursor.offset),
                                       cursor.digest, versions)

    def _snapshot_in_background(self) -> None:
        """The leader's automatic snapshot: capture now, write in a background thread."""
        if self._snapshots.busy or self._engine.failed is not None:
            return  # one at a time; the next trigger catches up
        writer = self._writer
        assert writer is not None
        if self.durability != "fsync" or writer.log.buffered:
            try:
                with self._log_io("sync before a snapshot") as w:
                    w.log.sync()  # a snapshot never covers bytes that are not durable
            except StoreFailedError:
                return  # the store is failed now; the committing caller was acknowledged
        try:
            captured = self._capture_now()
        except Exception:  # noqa: BLE001 - a projection whose state cannot be snapshotted: replay works
            log.exception("automatic snapshot of %s at seq %d failed; trying again after %d events",
                          self.root, self._published, self.snapshot_every)
            self._since_snapshot = 0
            return
        self._since_snapshot = 0
        self._snapshots.start_background(captured)

    def snapshot(self) -> int:
        """Write a snapshot of every projection now; returns the seq it covers."""
        self._writable()
        self._snapshots.join()
        with self._engine.exclusive():
            self._catch_up_locked()
            with self._log_io("sync before a snapshot") as writer:
                writer.flush(sync=True)
            captured = self._capture_now()
            self._since_snapshot = 0
        self._deliver()
        try:
            self._snapshots.write(captured)
        except OSError as exc:
            raise StoreFailedError(f"snapshot of {self.root} failed: {exc}") from exc
        return captured.seq

    def _catch_up_locked(self) -> None:
        """Under `exclusive`: take the commit lock and publish what other writers appended."""
        with self._log_io("catching up") as writer:
            caught = writer.hold()
        for _, events in caught:
            self._versions.note(keys_of(events))
        self._publish(caught, ())

    def nearest_snapshot(self, name: str, version: int, max_seq: int) -> SnapshotState | None:
        """The state of projection ``name``/``version`` from the newest usable snapshot at or
        before ``max_seq``; None when there is none."""
        self._open_check()
        return self._snapshots.nearest(name, version, max_seq)

    def compact(self) -> CompactResult:
        """Seal the active segment, compress sealed ones, snapshot, apply retention."""
        self._writable()
        with self._maintenance:  # no other compaction or salvage meanwhile, in any process
            with self._engine.exclusive():
                self._catch_up_locked()
                with self._log_io("sealing the active segment") as writer:
                    writer.seal()
            self._deliver()
            try:
                result = compress_sealed(self._fs, self._dir.segments)
            except OSError as exc:
                raise StoreFailedError(f"compaction of {self.root} failed: {exc}") from exc
        result["snapshot_seq"] = self.snapshot()  # takes the maintenance lock itself
        return result

    def verify(self, progress: ProgressCallback | None = None) -> VerifyReport:
        """Re-read everything: checksums, seq continuity, digest chain, snapshots."""
        self._open_check()
        bound = None
        if not self.readonly:
            self.flush()
            self.refresh(strict=False)
            bound = self._published
        return verify_store(self._fs, self.root, self._projections, bound, progress=progress)

    # -- closing -------------------------------------------------------------------------------
    def close(self) -> None:
        """Flush, fsync, release the locks. Idempotent."""
        if self._engine.closed:
            return
        if self._linger is not None:
            self._linger.stop()
        writer = self._writer
        try:
            if writer is not None:
                with self._engine.exclusive():
                    try:
                        if self._engine.failed is None:
                            writer.log.sync()
                            if self.durability != "none":  # [F-28]: where a clean close left the log
                                writer.record_end()
                    except OSError as exc:
                        self._engine.failed = exc
                        raise StoreFailedError(f"closing {self.root}: the final sync failed; "
                                               f"commits not acknowledged as durable may be lost") from exc
                    finally:
                        self._engine.close()
                        self._snapshots.join()  # no snapshot may outlive the store
                        writer.close_quietly()
        finally:
            self._engine.close()
            self._maintenance.close()
            if self._writers is not None:
                self._writers.close()

    def __enter__(self) -> LocalStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "readonly" if self.readonly else self.durability
        return f"<eventstore.Store {self.root!r} {mode} last_seq={self._published}>"
