"""`LocalStore`: the embedded segment-log backend of `eventstore.Store`, wired together.

Wiring only: the directory and its locks (`directory`), opening (`startup`:
recovery and replay), the commit path (`commit.Intake` checks and encodes,
then `groupcommit` hands batches to `writer`, which appends them after every
other writer's commits), publication and catching up (`publication`), reads
and the live tail (`reader`), snapshots and compaction (`upkeep`), whole
commits in and out (`transfer`), verify. Several `LocalStore` objects, in one
process or many, may write one directory at once.
"""
from __future__ import annotations

import gc
import logging
import os
from typing import Iterable, Iterator

from ..api import (Commit, CompactResult, Data, Item, ProgressCallback, SnapshotState, StoreOptions, StoreStats,
                   check_projections)
from ..commit import Intake, PreparedCommit
from ..errors import StoreFailedError, ValidationError
from ..event import Event
from ..fs import DEFAULT_FS, FileSystem
from ..projection import Projection
from ..publish import KeyVersions, Publisher
from ..report import RecoveryReport, VerifyReport
from ..storebase import StoreBase, check_position
from .directory import FileLock, StoreDirectory
from .groupcommit import GroupCommit, Pending
from .layout import MAX_SEGMENT_BYTES
from .opening import snapshot_candidates
from .publication import Publication
from .reader import LogReader
from .segment import list_segments
from .snapshotter import Snapshotter
from .startup import Startup
from .transfer import import_commit, read_commits
from .upkeep import Upkeep
from .verify import verify_store
from .writer import Linger, LogWriter

__all__ = ["LocalStore"]

log = logging.getLogger("eventstore")
Batch = list[Pending[PreparedCommit, list[Event]]]


class LocalStore(StoreBase):
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
        self._intake = Intake(options.max_event_bytes)
        self._reader = LogReader(fs, self._dir.segments)
        self._maintenance = self._dir.maintenance_lock()
        self._snapshots = Snapshotter(fs, self._dir.snapshots, self._projections, self._maintenance)
        self._engine: GroupCommit[PreparedCommit, list[Event]] = GroupCommit(
            self._write_batch, gather=options.durability == "fsync", after=self._deliver,
            describe=f"store {self.root}")
        self.recovery_report = RecoveryReport()
        self._publication = Publication(self.root, self._projections, self._engine, self._reader,
                                      options.snapshot_every, self._snapshot_due)
        self._upkeep = Upkeep(fs, self.root, self._dir.segments, options, self._engine, self._publication,
                              self._snapshots, self._maintenance)
        self._writer: LogWriter | None = None
        self._writers: FileLock | None = None  # LOCK.writers, for as long as this writer is open
        self._linger: Linger | None = None
        self._dir.prepare(create=options.create, readonly=options.readonly)
        gc_enabled = gc.isenabled()
        gc.disable()  # replay allocates millions of long-lived objects: no cycles to find
        try:
            self._open()
        except BaseException:
            self._maintenance.close()  # a refused open keeps no file open
            raise
        finally:
            if gc_enabled:
                gc.enable()

    def _open(self) -> None:
        startup = Startup(self._fs, self._dir, self._options, self._projections, self._reader,
                          self._maintenance, self.recovery_report)
        if self._options.readonly:
            result = startup.replay(writer=False)
            self._publication.cursor = result.end
        else:
            opened = startup.writer()
            result, self._writer, self._writers = opened.result, opened.writer, opened.writers
            self._upkeep.writer = opened.writer
            opened.writer.leads = self._engine.leads
            opened.writer.hand_back = self._give_back
            if not self._options.exclusive:
                self._linger = Linger(self._linger_release)
        self._publication.opened(result)
        self._snapshots.seq = result.snapshot_seq

    # -- properties of the Store protocol ------------------------------------------------------
    location = property(lambda self: self.root, doc="The store's directory.")
    segment_bytes = property(lambda self: self._options.segment_bytes)

    def _submit_prepared(self, commit: PreparedCommit) -> list[Event]:
        return self._engine.submit(commit)

    def _current_versions(self) -> KeyVersions:
        return self._publication.versions

    def _current_seq(self) -> int:
        return self._publication.seq

    def _current_publisher(self) -> Publisher:
        return self._publication.publisher

    # -- writing -------------------------------------------------------------------------------
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

    def import_commit(self, commit: Commit) -> list[Event]:
        """Append a commit read from another store with its seqs, time and digest (see
        `eventstore.Store.import_commit`); a `ValidationError` writes nothing."""
        self._writable()
        return import_commit(commit, self._intake, self._engine, self._upkeep, self._publication,
                             self.durability)

    def _write_batch(self, batch: Batch) -> None:
        """The group-commit leader's work (see `GroupCommit`): write, then publish."""
        writer = self._writer
        assert writer is not None
        try:
            caught = writer.commit(batch, self._publication.versions)
        except OSError as exc:
            log.error("write to %s failed: %s; the store refuses writes until reopened", self.root, exc)
            raise StoreFailedError(f"write to {self.root} failed ({exc}); nothing after seq "
                                   f"{self._publication.seq} is acknowledged") from exc
        if self._linger is not None and writer.lock.held:
            self._linger.held()  # before publishing: a projection that raises must not keep the lock
        self._publication.publish(caught, [p.result for p in batch if p.result is not None],
                                writer.cursor.next_seq)
        for p in batch:
            p.done = True

    def _give_back(self) -> None:
        """Give the commit lock back (the leader's role held); a failed write of the buffer
        fails the store, and later writes get the error."""
        try:
            self._upkeep.give_back()
        except StoreFailedError:
            pass

    def _deliver(self) -> None:
        """The leader's work after a batch: call the subscribers.

        They are user code, which may append to another `Store` on this
        directory: the commit lock is given back first, or that append would
        wait for a lock only this thread can release.
        """
        publication = self._publication
        if publication.undelivered and self._writer is not None and self._writer.lock.held:
            self._give_back()
        publication.deliver()

    def _snapshot_due(self) -> None:
        self._upkeep.snapshot_in_background()

    def _linger_release(self) -> None:
        """Commits paused: write what is buffered and let other writers in."""
        with self._engine.exclusive():
            if not self._engine.closed:  # close() gave the lock back
                self._upkeep.give_back()

    def flush(self) -> None:
        """Push buffered commits to the OS and to stable storage."""
        self._open_check()
        if self.readonly:
            return
        self._writable()
        with self._engine.exclusive(), self._upkeep.log_io("flush") as writer:
            writer.flush(sync=True)

    # -- reading -------------------------------------------------------------------------------
    def _readable_bound(self) -> int | None:
        """The last seq a reader may return (None: whatever is valid on disk)."""
        if self.readonly:
            return None
        self.refresh(strict=False)
        writer = self._writer
        if writer is not None and writer.log.buffered and self._engine.failed is None:
            try:
                with self._engine.exclusive(), self._upkeep.log_io("write of buffered commits") as w:
                    w.log.write_buffer()
            except StoreFailedError:
                pass  # readers still get every published commit; writers get the error
        return self._publication.seq

    def read(self, start: int = 1, stop: int | None = None, *, key: str | None = None,
             types: str | Iterable[str] | None = None) -> Iterator[Event]:
        """Events with ``start <= seq < stop`` in seq order, optionally filtered."""
        type_set = self._read_args(start, stop, key, types)
        return self._reader.read_events(max(start, 1), stop, key, type_set, self._readable_bound())

    def read_commits(self, start: int = 1) -> Iterator[Commit]:
        """Whole commits from the one holding seq ``start``, with their chain digests (see
        `eventstore.Store.read_commits`)."""
        self._open_check()
        check_position("start", start)
        return read_commits(self._reader, start, self._readable_bound())

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
        return self._publication.refresh(self._writer, strict=strict)

    def stats(self) -> StoreStats:
        self._open_check()
        self.refresh(strict=False)
        refs = list_segments(self._fs, self._dir.segments)
        publication = self._publication
        with self._engine.mutex:
            keys = len(publication.versions)
        return {
            "events": publication.seq - publication.lost,
            "keys": keys,
            "segments": len(refs),
            "compressed_segments": sum(1 for r in refs if r.compressed),
            "bytes_on_disk": self._fs.tree_size(self.root),
            "last_seq": publication.seq,
            "snapshot_seq": self._snapshots.seq,  # the newest snapshot loaded or written (checked)
            "snapshots": len(snapshot_candidates(self._fs, self._dir.snapshots)),
            "durability": self.durability,
            "readonly": self.readonly,
            "path": self.root,
        }

    # -- snapshots, compaction, verify -------------------------------------------------------
    def snapshot(self) -> int:
        """Write a snapshot of every projection now; returns the seq it covers."""
        self._writable()
        return self._upkeep.snapshot()

    def nearest_snapshot(self, name: str, version: int, max_seq: int) -> SnapshotState | None:
        """The state of projection ``name``/``version`` from the newest usable snapshot at or
        before ``max_seq``; None when there is none."""
        self._open_check()
        return self._snapshots.nearest(name, version, max_seq)

    def compact(self) -> CompactResult:
        """Seal the active segment, compress sealed ones, snapshot, apply retention."""
        self._writable()
        return self._upkeep.compact()

    def verify(self, progress: ProgressCallback | None = None) -> VerifyReport:
        """Re-read everything: checksums, seq continuity, digest chain, snapshots."""
        self._open_check()
        bound = None
        if not self.readonly:
            self.flush()
            self.refresh(strict=False)
            bound = self._publication.seq
        return verify_store(self._fs, self.root, self._projections, bound, progress=progress)

    # -- closing -------------------------------------------------------------------------------
    def close(self) -> None:
        """Flush, fsync, release the locks. Idempotent."""
        if self._engine.closed:
            return
        if self._linger is not None:
            # Closed by a subscriber (this thread leads): the linger thread may be waiting
            # for this thread's role; it finds the store closed once it gets it.
            self._linger.stop(join=not self._engine.leads())
        try:
            if self._writer is not None:
                self._close_writer(self._writer)
        finally:
            self._engine.close()
            self._maintenance.close()
            if self._writers is not None:
                self._writers.close()

    def _close_writer(self, writer: LogWriter) -> None:
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
