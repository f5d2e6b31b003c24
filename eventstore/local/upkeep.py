"""A writing `LocalStore`'s upkeep: snapshots and compaction, and I/O whose failure is sticky.

`Upkeep.log_io` wraps every write of the log outside a commit (a flush, the
seal, a sync before a snapshot): an `OSError` there fails the store, which
then refuses writes until reopened (SPEC §2, `StoreFailedError`). Snapshots
are captured while the store is quiet (the group-commit leader, or
`GroupCommit.exclusive`) and written by the `Snapshotter`; compaction seals
the active segment under the commit lock, then compresses sealed segments
holding the maintenance lock ([F-19], [F-20]). It publishes only what other
writers committed meanwhile, through `Publication`.
"""
from __future__ import annotations

import contextlib
import logging
from typing import Iterator

from ..api import CompactResult, StoreOptions
from ..commit import PreparedCommit
from ..errors import StoreFailedError
from ..event import Event
from ..fs import FileSystem
from .compaction import compress_sealed
from .directory import FileLock
from .groupcommit import GroupCommit
from .publication import Publication
from .snapshotter import Captured, Snapshotter
from .writer import LogWriter

__all__ = ["Upkeep"]

log = logging.getLogger("eventstore")


class Upkeep:
    """Snapshots and compaction of one writing store (``writer`` is set once it opened)."""

    def __init__(self, fs: FileSystem, root: str, seg_dir: str, options: StoreOptions,
                 engine: GroupCommit[PreparedCommit, list[Event]], publication: Publication,
                 snapshots: Snapshotter, maintenance: FileLock) -> None:
        self.fs, self.root, self.seg_dir = fs, root, seg_dir
        self.durability = options.durability
        self.snapshot_every = options.snapshot_every
        self.engine = engine
        self.publication = publication
        self.snapshots = snapshots
        self.maintenance = maintenance
        self.writer: LogWriter | None = None

    @contextlib.contextmanager
    def log_io(self, what: str) -> Iterator[LogWriter]:
        """The writer, for I/O whose failure is sticky: an OSError fails the store."""
        writer = self.writer
        assert writer is not None
        try:
            yield writer
        except OSError as exc:
            if self.engine.failed is None:
                self.engine.failed = exc
            raise StoreFailedError(f"{what} of {self.root} failed ({exc}); the store refuses "
                                   f"writes until reopened") from exc

    def give_back(self) -> None:
        """Write what is buffered and give the commit lock back (`LogWriter.give_back`).

        A failed write fails the store (`StoreFailedError`); the lock goes back all the same.
        """
        with self.log_io("write of buffered commits") as writer:
            writer.give_back()

    def catch_up_locked(self) -> None:
        """Under `exclusive`: take the commit lock and publish what other writers appended."""
        with self.log_io("catching up") as writer:
            caught = writer.hold()
        try:
            self.publication.take_in(caught, writer.cursor.next_seq)
        except BaseException:  # e.g. Ctrl-C in a projection: the caller will not give the lock back
            self.give_back()
            raise

    # -- snapshots -------------------------------------------------------------------------------
    def capture_now(self) -> Captured:
        writer = self.writer
        assert writer is not None
        cursor = writer.cursor
        with self.engine.mutex:
            versions = dict(self.publication.versions.counted())
        return self.snapshots.capture(self.publication.seq, cursor.last_ts, (cursor.segment, cursor.offset),
                                      cursor.digest, versions)

    def snapshot_in_background(self) -> None:
        """The leader's automatic snapshot: capture now, write in a background thread."""
        if self.snapshots.busy or self.engine.failed is not None:
            return  # one at a time; the next trigger catches up
        writer = self.writer
        assert writer is not None
        if self.durability != "fsync" or writer.log.buffered:
            try:
                with self.log_io("sync before a snapshot") as w:
                    w.log.sync()  # a snapshot never covers bytes that are not durable
            except StoreFailedError:
                return  # the store is failed now; the committing caller was acknowledged
        publication = self.publication
        try:
            captured = self.capture_now()
        except Exception:  # noqa: BLE001 - a projection whose state cannot be snapshotted: replay works
            log.exception("automatic snapshot of %s at seq %d failed; trying again after %d events",
                          self.root, publication.seq, self.snapshot_every)
            publication.since_snapshot = 0
            return
        publication.since_snapshot = 0
        self.snapshots.start_background(captured)

    def snapshot(self) -> int:
        """Write a snapshot of every projection now; returns the seq it covers."""
        self.snapshots.join()
        with self.engine.exclusive():
            self.catch_up_locked()
            with self.log_io("sync before a snapshot") as writer:
                writer.flush(sync=True)
            captured = self.capture_now()
            self.publication.since_snapshot = 0
        self.publication.deliver()
        try:
            self.snapshots.write(captured)
        except OSError as exc:
            raise StoreFailedError(f"snapshot of {self.root} failed: {exc}") from exc
        return captured.seq

    # -- compaction ------------------------------------------------------------------------------
    def compact(self) -> CompactResult:
        """Seal the active segment, compress sealed ones, snapshot, apply retention."""
        with self.maintenance:  # no other compaction or salvage meanwhile, in any process
            with self.engine.exclusive():
                self.catch_up_locked()
                with self.log_io("sealing the active segment") as writer:
                    writer.seal()
            self.publication.deliver()
            try:
                result = compress_sealed(self.fs, self.seg_dir)
            except OSError as exc:
                raise StoreFailedError(f"compaction of {self.root} failed: {exc}") from exc
        result["snapshot_seq"] = self.snapshot()  # takes the maintenance lock itself
        return result
