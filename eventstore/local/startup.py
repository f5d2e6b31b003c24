"""Opening a `LocalStore`: a reader's replay, or a writer's recovery under the locks.

A reader replays without a lock (`opening.open_log` stops at a torn tail).
A writer shares ``LOCK.writers`` with the other writers (or holds it alone:
exclusive), then, holding the commit lock, tidies after a crash, repairs the
log (a salvage pass, when asked for), replays, and starts its `LogWriter` at
the end of the log. What it opened comes back as an `Opened`. Nothing here
publishes or serves reads: that is `publication`'s.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

from ..api import StoreOptions
from ..errors import CorruptionError, LockedError
from ..fs import FileSystem
from ..projection import Projection
from ..report import RecoveryReport
from .compaction import finish_interrupted
from .directory import FileLock, StoreDirectory
from .endrecord import proves_a_log
from .layout import ZERO_DIGEST
from .log import SegmentLog
from .opening import OpenResult, open_log
from .reader import Cursor, LogReader
from .repair import apply_plan, salvage_pass
from .segment import create_segment, list_segments
from .syncstate import SharedSync
from .writer import LogWriter

__all__ = ["Opened", "Startup"]


@dataclass
class Opened:
    """What a writer's open leaves: the replay's result, its writer, and ``LOCK.writers``."""

    result: OpenResult
    writer: LogWriter
    writers: FileLock  # shared with the other writers (held alone: exclusive) until close


class Startup:
    """The open of one `LocalStore` (its directory, options, projections and report)."""

    def __init__(self, fs: FileSystem, directory: StoreDirectory, options: StoreOptions,
                 projections: Sequence[Projection], reader: LogReader, maintenance: FileLock,
                 report: RecoveryReport) -> None:
        self.fs, self.dir, self.options = fs, directory, options
        self.projections = projections
        self.reader = reader
        self.maintenance = maintenance
        self.report = report

    def replay(self, *, writer: bool) -> OpenResult:
        """Restore the projections from a snapshot and replay the log after it (`opening`)."""
        return open_log(self.fs, self.dir.root, self.dir.snapshots, self.projections,
                        recovery=self.options.recovery, writer=writer, report=self.report)

    def writer(self) -> Opened:
        """Recover under the commit lock: no other writer appends while we repair the tail.

        Tidying after a crash (unfinished temporary files and compactions) also
        needs the maintenance lock; it is skipped while another process compacts
        (that process tidies after itself). Salvage waits for it.
        """
        salvage = self.options.recovery == "salvage"
        writers = self._join_writers()  # first: a refused open takes no other lock
        if salvage:
            self.maintenance.acquire()
            tidy = True
        else:
            tidy = self.maintenance.try_acquire()
        lock = self.dir.commit_lock()
        try:
            lock.acquire()  # an exclusive writer keeps it; nobody else can be waiting for it
            try:
                result = self._recover_and_replay(tidy, salvage)
                return Opened(result, self._start_writer(result, lock), writers)
            finally:
                if not self.options.exclusive:
                    lock.release()
        except BaseException:
            lock.close()
            writers.close()
            raise
        finally:
            if tidy:
                self.maintenance.release()

    def _recover_and_replay(self, tidy: bool, salvage: bool) -> OpenResult:
        fs, d = self.fs, self.dir
        if tidy:
            d.quarantine_tmp_files(self.report)
            finish_interrupted(fs, d.segments, self.report)
        if not list_segments(fs, d.segments) and not proves_a_log(fs, d.root):
            create_segment(fs, d.segments, 1, ZERO_DIGEST)  # a new store ([F-03])
        if salvage:
            salvage_pass(fs, d.root, self.report)
        return self.replay(writer=True)

    def _join_writers(self) -> FileLock:
        """Share ``LOCK.writers`` with the other writers, or hold it alone (exclusive);
        refused at once with `LockedError` when that cannot be ([F-24])."""
        writers = self.dir.writers_lock()
        if not writers.try_acquire(shared=not self.options.exclusive):
            holders = writers.holders()
            writers.close()
            raise LockedError(self.dir.root, holders[0] if holders else None)
        return writers

    def _start_writer(self, result: OpenResult, lock: FileLock) -> LogWriter:
        fs, d, options = self.fs, self.dir, self.options
        if result.walker.plan.pending:  # readonly salvage only plans; a salvage writer repairs
            apply_plan(fs, d.root, self.report, result.walker.plan)
        end = result.end
        last = result.last_ref
        if last is None or last.compressed:  # [F-29]: a strict open refused that; salvage repaired it
            raise CorruptionError(d.segments, None, "the log has no plain segment to append to")
        size = fs.size(last.path)
        segment_log = SegmentLog(fs, d.segments, last.first_seq, last.path, size, end.digest,
                                 options.segment_bytes)
        # A writer killed before its sync may have left accepted frames only in the page
        # cache. Make them durable before anyone reads or builds on them, so a power cut
        # after this open cannot take back what it showed ([F-13]).
        segment_log.sync_everything()
        cursor = Cursor(last.first_seq, size, end.next_seq, end.digest, end.last_ts)
        shared_sync = None
        if not options.exclusive:
            shared_sync = SharedSync(fs, d.sync_lock(), random.randrange(1 << 30))
            shared_sync.reset((last.first_seq, size))
        return LogWriter(fs, d.root, self.reader, lock, segment_log, cursor, options.durability,
                         self.report, shared_sync=shared_sync)
