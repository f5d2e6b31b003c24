"""The writer's end of the log, shared with other writer processes.

`LogWriter` is what a group-commit leader does with a batch: take the commit
lock, catch up with the frames other writers appended since this process
last looked (cutting a torn tail a dead writer left, [F-13]), check each
commit's ``expected_version`` against the caught-up key versions, give it
its seqs, time and chain digest, append the frames, give the lock back and
sync. The lock is held per group commit, not per open ([F-31]), so writers
in several processes interleave whole commits; while no other writer waits
for it (`SharedSync.wanted`) the writer keeps it for its next commit, and
`Linger` gives it back soon after. The sync usually runs after
the lock is released: a writer that appends meanwhile only adds to what the
next sync makes durable (`SharedSync` shares it), and every unsynced frame
is still after every synced one. A writer that found no other writer's
commit since its own last one syncs holding the lock, as an exclusive writer
does (`_sync_alone`): one sync lock round trip less when it writes alone.

With durability ``none`` commits are buffered in this process, and their
seqs are only ours while we hold the lock: the lock is kept until the buffer
is written (when it fills, on `flush`, or at most `Linger.quiet` after the
lock was taken: `Linger`), even when another writer waits.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from ..commit import PreparedCommit
from ..errors import ConcurrencyError, CorruptionError
from ..event import Event
from ..fs import FileSystem
from ..publish import KeyVersions, keys_of
from ..report import RecoveryReport
from .directory import FileLock
from .endrecord import EndRecord, advance_end, read_end
from .frame import Damage, Frame, FrameScanner, encode_frame, is_gap
from .groupcommit import Pending
from .log import PendingFrame, SegmentLog
from .reader import Cursor, LogReader
from .segment import SegmentRef, segment_path
from .syncstate import Position, SharedSync
from .recovery import cut_torn_tail

__all__ = ["LogWriter", "Caught", "Linger"]

Caught = list[tuple[Frame, list[Event]]]
"""Commits other writers made, in seq order, with their events."""
Batch = list[Pending[PreparedCommit, list[Event]]]
_now = time.time_ns
_PREAD_MAX = 4 << 20  # catch up by one read up to this much; a walk streams more
log = logging.getLogger("eventstore")


class LogWriter:
    """Commits of this process, appended after those of every other writer."""

    def __init__(self, fs: FileSystem, root: str, reader: LogReader, lock: FileLock, log: SegmentLog,
                 cursor: Cursor, durability: str, report: RecoveryReport, *,
                 shared_sync: SharedSync | None = None) -> None:
        self.fs, self.root = fs, root
        self.reader = reader
        self.lock = lock
        self.log = log
        self.cursor = cursor  # the end of the log, as far as this process knows
        self.durability = durability
        self.report = report
        self.shared_sync = shared_sync  # None: an exclusive writer, which keeps the lock and syncs alone
        self.exclusive = shared_sync is None  # the lock is ours from open to close
        # Set by its store: whether the calling thread leads this writer's group commit, and
        # `give_back` as the store does it (a failed write fails the store).
        self.leads: Callable[[], bool] = lambda: False
        self.hand_back: Callable[[], None] = self.give_back
        _neighbours.add(self)

    def _release(self) -> None:
        if not self.exclusive:
            self.lock.release()

    def _acquire(self) -> None:
        """Take the commit lock; while we wait for it, say so (`SharedSync.waiting`)."""
        shared = self.shared_sync
        if self.lock.try_acquire() or shared is None:  # an exclusive writer always holds it
            return
        _neighbours.unblock(self)
        shared.waiting(True)
        try:
            self.lock.acquire()
        finally:
            shared.waiting(False)

    def _keep(self, *, alone: bool) -> bool:
        """After a commit: whether to keep the lock for the next one.

        Only a writer that found no other writer's commit since its own last one
        and nobody waiting (``alone``) keeps it, and only while still nobody
        waits (a waiter may have come during its sync): writers taking turns give
        it back at once, so that one appends while another syncs.
        """
        shared = self.shared_sync
        return alone and shared is not None and not shared.wanted

    # -- catching up -----------------------------------------------------------------------
    def catch_up(self) -> Caught:
        """Without the lock: read what other writers committed since we last looked.

        Cheap when nothing changed. Damage ending the last segment may be a
        write still in progress: the walk just stops there. While this process
        holds the lock (buffering), nobody else can have written.
        """
        return [] if self.lock.held else self._read_new(None)

    def _locked_catch_up(self) -> Caught:
        """Holding the lock: catch up, and cut a torn tail a writer that died left ([F-13])."""
        tails: list[tuple[SegmentRef, Damage]] = []
        caught = self._read_new(tails)
        for ref, damage in tails:
            cut_torn_tail(self.fs, self.root, ref.path, damage, self.report)
        cursor = self.cursor
        if self.log.position != (cursor.segment, cursor.offset) or tails:
            self.log.resume(cursor.segment, segment_path(self.reader.seg_dir, cursor.segment),
                            cursor.offset, cursor.digest)
        if tails and self.shared_sync is not None:  # we changed the log (a commit records its own end)
            self.shared_sync.ended(self.log.position)
        return caught

    def _read_new(self, tails: list[tuple[SegmentRef, Damage]] | None) -> Caught:
        cursor = self.cursor
        shared = self.shared_sync
        if shared is None:
            if not self.reader.moved(cursor):
                return []
        else:
            end = shared.end
            mine = (cursor.segment, cursor.offset)
            if end == mine:  # nobody changed the log since we last did: the common case, kept short
                if self._file_ends_at(mine) or (self.log.position[0] != mine[0] and not self.reader.moved(cursor)):
                    return []
            else:
                appended = self._read_appended(end)
                if appended is not None:
                    return appended
        on_tail = None if tails is None else lambda ref, damage: tails.append((ref, damage))
        return list(self.reader.decoded(cursor.next_seq, None, cursor, verify_chain=True, on_tail=on_tail,
                                        locked=tails is not None))

    def _file_ends_at(self, mine: Position) -> bool:
        """Whether our active segment is ``mine``'s and ends there: no process appended to it,
        even one that does not keep the end slot (an older metalog, or anything else)."""
        return self.log.position[0] == mine[0] and self.fs.fd_size(self.log.fd) == mine[1]

    def _read_appended(self, end: Position) -> Caught | None:
        """Other writers' frames between our cursor and ``end`` in our own active segment.

        The common case of catching up, read with one `pread` from the file
        we append to. None when it is not that simple (a roll, an unknown end,
        bytes not all there yet, or anything but whole chained frames): the
        segment walk then decides.
        """
        cursor = self.cursor
        size = end[1] - cursor.offset
        if end[0] != cursor.segment or self.log.position[0] != cursor.segment or not 0 < size <= _PREAD_MAX:
            return None
        data = self.fs.pread(self.log.fd, size, cursor.offset)
        if len(data) != size:
            return None
        scanner = FrameScanner(cursor.offset, cursor.next_seq, cursor.digest, end=end[1])
        scanner.feed(data)
        scanner.close()
        frames = []
        while (frame := scanner.next()) is not None:
            if isinstance(frame, Damage):
                return None
            frames.append(frame)
        if scanner.position != end[1]:
            return None
        caught: Caught = []
        for frame in frames:
            if not is_gap(frame.payload):
                caught.append((frame, self.reader.decode(frame)))
            cursor.past(cursor.segment, frame)
        return caught

    # -- committing ------------------------------------------------------------------------
    def commit(self, batch: Batch, versions: KeyVersions) -> Caught:
        """Append the batch's commits after everyone else's; returns the others' commits.

        Each `Pending` gets its events, or a `ConcurrencyError` when its
        ``expected_version`` no longer holds (that commit writes nothing). An
        `OSError` leaves the batch unacknowledged: the caller fails the store.
        """
        caught: Caught = []
        buffered = self.durability == "none"
        synced = alone = False
        try:
            if not self.lock.held:
                self._acquire()
                caught = self._locked_catch_up()
                for _, events in caught:
                    versions.note(keys_of(events))
            frames = self._assign(batch, versions)
            shared = self.shared_sync
            if shared is not None:
                shared.writing()
            self.log.append(frames, buffered=buffered)
            self.after_append()
            if shared is not None:
                # Alone: no other writer's commit since our last one, and nobody waiting for
                # the lock. Otherwise others append while we sync, and the lock goes back now.
                alone = not caught and not shared.wanted
                if self.durability != "fsync":
                    shared.ended(self.log.position)
                elif not alone:
                    shared.ended(self.log.position, written=True)
                else:
                    self._sync_alone(shared)
                    synced = True
        except BaseException:
            self._release()
            raise
        if not (buffered and self.log.buffered) and not self._keep(alone=alone):
            self._release()
        if self.durability == "fsync" and not synced:
            self.sync()
        return caught

    def _sync_alone(self, shared: SharedSync) -> None:
        """Holding the lock, with no other writer's commit since our last one and nobody
        waiting for the lock: sync now.

        A writer appending alone then pays what an exclusive writer pays (no
        sync lock, one system call less each way). Another writer waiting for
        the lock meanwhile waits one sync; its commit then shows up in our next
        catch-up, and we share syncs through ``LOCK.sync`` again (`sync`).
        """
        self.log.sync()
        shared.ended(self.log.position, durable=True)

    def sync(self) -> None:
        """Make what this writer wrote durable (sharing the sync with other writers)."""
        if self.shared_sync is None:
            self.log.sync()
        else:
            self.log.write_buffer()
            self.shared_sync.sync(self.log.position, self.log.fdatasync)

    def _assign(self, batch: Batch, versions: KeyVersions) -> list[PendingFrame]:
        cursor = self.cursor
        frames = []
        for p in batch:
            c = p.commit
            if c.expected is not None:
                try:
                    after = versions.check(c.keys, c.expected)
                except ConcurrencyError as exc:
                    p.error = exc
                    continue
                versions.apply(after)
            else:
                versions.note(c.keys)
            seq = cursor.next_seq
            ts = _now()
            if ts < cursor.last_ts:
                ts = cursor.last_ts
            data, digest = encode_frame(seq, c.n, ts, c.payload, cursor.digest)
            frames.append(PendingFrame(data, seq, seq + c.n - 1, digest))
            p.result = c.events(seq, ts)
            cursor.next_seq, cursor.digest, cursor.last_ts = seq + c.n, digest, ts
        return frames

    def after_append(self) -> None:
        """Where the log ends now that our frames are in it (the segment may have rolled)."""
        self.cursor.segment, self.cursor.offset = self.log.position

    # -- the lock and the buffer -------------------------------------------------------------
    def hold(self) -> Caught:
        """Take the lock (for `flush` or `seal` to give back) and catch up; returns the others' commits."""
        if self.lock.held:
            return []
        self._acquire()
        try:
            return self._locked_catch_up()
        except BaseException:
            self._release()
            raise

    def seal(self) -> None:
        """Seal the active segment if it holds a frame, and give the lock back (compaction)."""
        shared = self.shared_sync
        try:
            if shared is not None:
                shared.writing()
            self.log.roll_now(self.cursor.next_seq)
            self.after_append()
            if shared is not None:
                shared.ended(self.log.position)
        finally:
            self._release()

    def give_back(self) -> None:
        """Write what is buffered and give the lock back, unless it is ours from open to close."""
        if self.lock.held and not self.exclusive:
            self.flush(sync=False)

    def flush(self, *, sync: bool) -> None:
        """Write what is buffered (and sync it) and give the lock back."""
        try:
            if sync:
                self.log.sync()
            else:
                self.log.write_buffer()
        finally:
            self._release()

    def record_end(self) -> None:
        """A clean close: record in ``END`` how far the log reached ([F-28]).

        Skipped when the record already says as much. Otherwise, holding the
        lock, catch up (what others committed is not published: we are
        closing), make the active segment durable, and advance the record.
        """
        cursor = self.cursor
        try:
            current = read_end(self.fs, self.root)
        except CorruptionError:
            current = None  # set aside and replaced below
        if current is not None and current.covers(EndRecord(cursor.next_seq - 1, cursor.segment, cursor.digest)):
            return
        try:
            self.hold()
        except CorruptionError as exc:  # another writer's damage: END keeps what it says
            log.warning("%s: END not advanced at close: %s", self.root, exc)
            return
        try:
            self.log.sync_everything()
            cursor = self.cursor
            advance_end(self.fs, self.root, EndRecord(cursor.next_seq - 1, cursor.segment, cursor.digest))
        finally:
            self.lock.release()

    def close_quietly(self) -> None:
        """Give the lock back and close our files (after the final sync, or a failure)."""
        _neighbours.remove(self)
        self.lock.close()
        if self.shared_sync is not None:
            self.shared_sync.close()
        try:
            self.fs.close(self.log.fd)
        except OSError:
            pass


class _Neighbours:
    """This process's writers, by directory.

    A projection or subscriber of one `Store` runs on the thread that leads its
    group commit. When it appends to a second `Store` on the same directory
    while the first keeps the commit lock, only that very thread could give
    the lock back, and waiting for it would never end: so before a writer
    waits for the lock, it gives back the lock of any writer of this process
    on the same directory whose leader is the calling thread. (Two paths to
    one directory through a symbolic link are not recognised as one.)
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._by_root: dict[str, list[LogWriter]] = {}

    def add(self, writer: LogWriter) -> None:
        with self._mutex:
            self._by_root.setdefault(writer.root, []).append(writer)

    def remove(self, writer: LogWriter) -> None:
        with self._mutex:
            writers = self._by_root.get(writer.root, [])
            if writer in writers:
                writers.remove(writer)
            if not writers:
                self._by_root.pop(writer.root, None)

    def unblock(self, writer: LogWriter) -> None:
        with self._mutex:
            others = [w for w in self._by_root.get(writer.root, ()) if w is not writer]
        for other in others:
            if other.lock.held and other.leads():  # this thread is its leader: nobody else can run it
                other.hand_back()  # a failed write fails that store, not the one waiting


_neighbours = _Neighbours()


class Linger:
    """Give back the commit lock a writer kept between commits, soon after it took it.

    A daemon thread, woken when a commit leaves the lock held; ``quiet``
    seconds after the first commit that kept the lock it calls ``release``
    (which writes the buffer under the store's exclusive role). Other writer
    processes wait at most about that long for a writer that buffers, even
    for one that never pauses (waiting for ``quiet`` seconds *without* a
    commit instead would let a steady writer keep the lock until its 1 MiB
    buffer filled: seconds, with small commits).
    """

    def __init__(self, release: Callable[[], None], quiet: float = 0.02) -> None:
        self._release = release
        self.quiet = quiet
        self._cond = threading.Condition()
        self._first = 0.0  # when a commit first left the lock held since the last release (0: none)
        self._stop = False
        self._thread: threading.Thread | None = None

    def held(self) -> None:
        """A commit left the lock held.

        Only the first such commit since the last release wakes the thread (it
        then sleeps until ``quiet`` after that one); waking it for every commit
        would cost a thread switch per commit.
        """
        if self._first:
            return  # the thread will release what this commit added, too
        with self._cond:
            self._first = time.monotonic()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="metalog-linger", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._first and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                wait = self._first + self.quiet - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                self._first = 0.0
            try:
                self._release()
            except Exception:  # noqa: BLE001 - the store is failed or closed; nothing to hand back
                pass

    def stop(self, *, join: bool = True) -> None:
        """Stop the thread; ``join``: and wait until it has ended."""
        with self._cond:
            self._stop = True
            self._cond.notify()
        thread = self._thread
        if join and thread is not None and thread is not threading.current_thread():
            thread.join()
