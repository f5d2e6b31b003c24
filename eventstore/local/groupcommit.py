"""Group commit: many committing threads, one leader that writes for them all.

Each committing thread hands its prepared commit to `GroupCommit.submit` and
either leads or parks on a lock of its own. The leader takes the whole queue
and calls the store's ``write`` with it, outside the engine's mutex: one
write and one sync for every waiting commit (SPEC §7.1). Then it starts the
chain that wakes the committers of the batch (one by one: see `_wake_next`),
runs the store's ``after`` (calling subscribers), and hands leadership to the
oldest commit still queued. A woken committer
never contends for the mutex just to learn that it is done, and no committer
is woken for a batch it is not in.

In ``gather`` mode (durable commits) the leader waits a little for the
threads of the previous batch, which are about to commit again, instead of
paying a sync for each of them (`_lead`, `_batch_incomplete`).

This module knows nothing of logs, seqs or files: ``write`` decides what
each commit becomes (its events, or an error such as `ConcurrencyError`),
and sets it on the `Pending`. It is tested alone (tests/test_groupcommit.py).
``exclusive()`` gives a caller (snapshot, flush, close, catch-up) the leader's
role with no commit in flight.
"""
from __future__ import annotations

import collections
import threading
import time
from contextlib import contextmanager
from typing import Callable, Generic, Iterator, TypeVar

from ..errors import StoreClosedError, StoreFailedError

__all__ = ["GroupCommit", "Pending"]

C = TypeVar("C")  # what a commit is, to the store
R = TypeVar("R")  # what a committer gets back
_allocate_lock = threading.Lock


class Pending(Generic[C, R]):
    """One queued commit: set ``result`` or ``error``, then ``done``, from ``write``."""

    __slots__ = ("commit", "waiter", "owner", "result", "error", "done")

    def __init__(self, commit: C, waiter: threading.Lock | None, owner: int) -> None:
        self.commit = commit
        self.waiter = waiter  # the lock its committer parks on (None: the leader's own)
        self.owner = owner  # the committer's thread id, to hand leadership to
        self.result: R | None = None
        self.error: BaseException | None = None
        self.done = False


class GroupCommit(Generic[C, R]):
    """The queue, the leader and the parked committers of one store."""

    def __init__(self, write: Callable[[list[Pending[C, R]]], None], *, gather: bool,
                 after: Callable[[], None] | None = None, describe: str = "store") -> None:
        self._write = write
        self._after = after  # the leader's work once the batch's committers are woken
        self.gather = gather  # durable commits: worth waiting a little for a wider batch
        self.describe = describe  # how errors name the store
        lock = self.mutex = threading.Lock()  # `with self.mutex` is `with self._cond`, in C
        self._cond = threading.Condition(lock)
        self._gather = threading.Condition(lock)  # a leader waiting for stragglers
        self._gathering = 0  # commits the gathering leader waits for (0: nobody gathers)
        self._expect = 1  # commits the next group commit is expected to take (one per thread)
        self._write_seconds = 0.0  # duration of the last write (its sync, mostly)
        self._written_at = 0.0  # when it ended (perf_counter)
        self._widest = 1  # the widest batch expected since a burst began narrower
        self._burst = False  # the batch now gathering started after a pause
        self._queue: list[Pending[C, R]] = []  # commits not yet taken by a leader
        self._leader = 0  # thread id of the leader, 0 when none
        self._wake_chain: collections.deque[threading.Lock] = collections.deque()  # see _wake_next
        self._draining = 0  # threads in exclusive() waiting for in-flight commits to finish
        self.failed: BaseException | None = None
        self.closed = False

    # -- committing ------------------------------------------------------------------------
    def submit(self, commit: C) -> R:
        """Queue ``commit`` and return its result once a leader has written it."""
        me = threading.get_ident()
        with self.mutex:
            # While exclusive() waits for the log to go quiet, hold new commits back so a
            # steady stream of committers cannot starve it (a subscriber committing on the
            # leader's thread must go through, or it would wait for itself).
            while self._draining and self._leader != me:
                self._cond.wait()
            self.check_writable()
            leader = self._leader
            queued = len(self._queue)
            waiter: threading.Lock | None
            if leader == me:  # a subscriber of ours committing: lead it inline
                waiter = None
            elif leader or (self.gather and self._batch_incomplete(queued)):
                # Park on our own lock until a leader wakes us: one is at work, or the
                # batch we expect is not complete yet (whoever completes it leads, so
                # no thread is woken just to start the sync).
                waiter = _allocate_lock()
                waiter.acquire()
            else:
                waiter = None
            pending: Pending[C, R] = Pending(commit, waiter, me)
            self._queue.append(pending)
            if self._gathering and queued + 1 >= self._gathering:
                self._gather.notify()
            if waiter is None:
                self._lead(pending, nested=leader == me)
                return self._outcome(pending)
        # The first commit of a batch that no leader is gathering waits for it to
        # complete only so long, then leads what is queued.
        self._park(pending, gathers=not leader and not queued)
        return self._outcome(pending)

    def _outcome(self, pending: Pending[C, R]) -> R:
        if pending.error is not None:
            raise pending.error
        assert pending.result is not None
        return pending.result

    def check_writable(self) -> None:
        """Refuse a commit on a closed or failed store."""
        if self.closed:
            raise StoreClosedError(f"{self.describe} is closed")
        if self.failed is not None:
            raise StoreFailedError(f"{self.describe} failed earlier ({self.failed!r}); "
                                   "reopen it") from self.failed

    def _batch_incomplete(self, queued: int) -> bool:
        """With no leader, gathering: should a new commit wait for more of its batch?"""
        if not queued and time.perf_counter() - self._written_at > 4 * self._write_seconds:
            # The first commit after a pause: expect the burst to be as wide as the
            # widest one lately (the last ended with a short batch, or a lone straggler).
            self._expect = self._widest
            self._burst = True
        return queued + 1 < self._expect

    # -- parking ---------------------------------------------------------------------------
    def _park(self, pending: Pending[C, R], *, gathers: bool) -> None:
        """Wait, outside the mutex, until ``pending`` is done or we are made leader.

        ``gathers``: ours is the first commit of a batch with no leader. If the
        batch has not been completed (and led) within two write times, we lead it.

        A Ctrl-C while parked is held until our lock is released: the wake chain
        and the hand-over of leadership both count on each parked committer
        waking up and doing its part, and our commit may be on disk already.
        """
        waiter = pending.waiter
        assert waiter is not None
        interrupted: BaseException | None = None
        woken = False
        if gathers:
            try:
                woken = waiter.acquire(True, 2 * self._write_seconds)
            except BaseException as exc:  # Ctrl-C: stop gathering, lead or wait as below
                interrupted = exc
                woken = self._lock_due(pending)
            if not woken:
                interrupted = self._take_mutex(interrupted)
                try:
                    # No leader and our commit not done: it is still queued, and nobody
                    # else will start the write. Otherwise a leader took it (or will, or
                    # failed it) and releases our lock: wait for that below.
                    lead = not self._leader and not self._lock_due(pending)
                    if lead:
                        if interrupted is None:
                            self._waited_in_vain()
                        self._lead(pending, nested=False, gather=False)
                finally:
                    self.mutex.release()
                if lead:
                    if interrupted is not None:
                        raise interrupted
                    return
        try:
            while not woken:
                try:
                    woken = waiter.acquire()
                except BaseException as exc:
                    interrupted = exc
                    # A signal just after the acquire succeeded raises here too, and the
                    # lock is ours again: waiting on it would be forever. It was released
                    # only if its release was due; if it is due but not done yet, waking
                    # now is safe (every committer still pops the wake chain once).
                    woken = self._lock_due(pending)
        finally:
            self._wake_next()
        try:
            if pending.done:  # set before our lock was released
                return
            interrupted = self._take_mutex(interrupted)
            try:
                if self._leader == threading.get_ident():
                    self._lead(pending, nested=False)
                    return
                self._raise_unwritten()
            finally:
                self.mutex.release()
        finally:
            if interrupted is not None:
                raise interrupted

    def _waited_in_vain(self) -> None:
        """A batch did not fill in two write times: fewer threads commit now (holding the mutex)."""
        self._expect = len(self._queue)
        if self._burst:  # ... even right after a pause
            self._widest = self._expect

    def _lock_due(self, pending: Pending[C, R]) -> bool:
        """Whether a parked commit's lock is (or is about to be) released: done, made
        leader, or dropped by a failed or closed store."""
        return (pending.done or self._leader == threading.get_ident()
                or self.failed is not None or self.closed)

    def _take_mutex(self, interrupted: BaseException | None) -> BaseException | None:
        """Acquire the mutex where leaving early would strand other committers.

        A Ctrl-C that interrupts the wait is held and returned, to be raised once
        our part is done. (One that lands just after the acquire succeeded
        cannot be told apart; Python gives no way to close that window.)
        """
        while True:
            try:
                self.mutex.acquire()
                return interrupted
            except BaseException as exc:
                interrupted = exc

    def _wake_next(self) -> None:
        """Release the next committer the leader is done with, if any.

        Woken all at once, the committers of a batch would wake into a fight for
        the GIL: each would sleep again until the one holding it blocks, and a
        thread switch costs ~20 us on this kind of machine. Woken one by one,
        each wakes the next on its way out, and the next finds the GIL free.
        """
        try:
            waiter = self._wake_chain.popleft()
        except IndexError:  # empty, or another woken committer took the last one meanwhile
            return
        waiter.release()

    def _raise_unwritten(self) -> None:
        if self.failed is not None:
            raise StoreFailedError(f"a write to {self.describe} failed; this commit is not "
                                   "acknowledged") from self.failed
        if self.closed:  # queued while close() held the log: never written
            raise StoreClosedError(f"{self.describe} was closed before this commit was written")
        raise AssertionError("a parked commit was woken unwritten")  # pragma: no cover

    # -- leading ---------------------------------------------------------------------------
    def _lead(self, mine: Pending[C, R], *, nested: bool, gather: bool = True) -> None:
        """Lead group commits (holding the mutex) until ``mine`` is done.

        ``nested``: a subscriber of ours committed on our thread while we were
        publishing; it leads its commit inline and leaves the hand-over to us.
        ``gather``: false when we already waited for the batch to complete.
        """
        self._leader = threading.get_ident()
        interrupted: BaseException | None = None
        try:
            while not mine.done:
                if self.failed is not None or self.closed:
                    self._raise_unwritten()
                if gather and not nested and self.gather and not self._draining \
                        and len(self._queue) < self._expect:
                    # The threads of the previous batch are about to commit again;
                    # waiting for them saves whole syncs. They arrive one by one (the
                    # wake chain), which took longer than one sync here (median 224 vs
                    # 191 us with 8 threads), so wait up to two.
                    self._gathering = self._expect
                    try:
                        if not self._gather.wait(2 * self._write_seconds):
                            self._waited_in_vain()
                    except BaseException as exc:  # Ctrl-C: the queue still needs its leader
                        interrupted = exc
                    finally:
                        self._gathering = 0
                batch, self._queue = self._queue, []
                self._burst = False
                self._run(batch, mine)
        finally:
            if not nested:
                self._hand_off()
        if interrupted is not None:
            raise interrupted

    def _run(self, batch: list[Pending[C, R]], mine: Pending[C, R]) -> None:
        """Write one batch (releasing the mutex meanwhile) and start waking its committers."""
        self.mutex.release()
        started = time.perf_counter()
        try:
            self._write(batch)
        except BaseException as exc:
            # Whether the batch is durable is unknown: fail the store, and every commit of
            # the batch that was not settled (ours raises the error itself).
            if self.failed is None:
                self.failed = exc
            for p in batch:
                if not p.done:
                    p.error = exc if p is mine else StoreFailedError(
                        f"a write to {self.describe} failed ({exc!r}); this commit is not acknowledged")
                    p.done = True
            raise
        finally:
            self.mutex.acquire()
            if self.gather:
                self._written_at = time.perf_counter()
                self._write_seconds = min(self._written_at - started, 0.01)
            # The next batch: this one's committers, about to commit again, and those
            # that queued during the write (one commit in flight per thread). Only a
            # gatherer that waited in vain lowers it: a short batch at the end of a
            # burst says nothing about the next burst.
            self._expect = max(self._expect, len(batch) + len(self._queue))
            self._widest = max(self._widest, self._expect)
            # Settled: their committers are done waiting. Wake the first; each woken
            # committer wakes the next (see _park). (A leader handed the lead by
            # _hand_off parked too: skip its own lock; any other commit of its thread
            # is woken as usual.)
            waiters = [p.waiter for p in batch if p.waiter is not None and p is not mine]
            if waiters:
                self._wake_chain.extend(waiters)
                self._wake_next()
        if self._after is not None:  # e.g. calling subscribers: after the acknowledgements
            self.mutex.release()
            try:
                self._after()
            finally:
                self.mutex.acquire()

    def _hand_off(self) -> None:
        """Leave leadership (holding the mutex) to the oldest queued commit, if any."""
        if not self._queue:  # the common case, first
            self._leader = 0
            if self._draining:
                self._cond.notify_all()
            return
        first = self._queue[0]
        if first.waiter is None and self.failed is None:  # pragma: no cover - a leader left its own commit
            self.failed = RuntimeError("group commit lost its leader")
        if self.failed is None and not self.closed:
            assert first.waiter is not None
            self._leader = first.owner
            first.waiter.release()
            return
        self._leader = 0
        dropped, self._queue = self._queue, []
        for p in dropped:  # a failed or closed store writes none of these
            if p.waiter is not None:
                p.waiter.release()
        if self._draining:
            self._cond.notify_all()

    # -- exclusive access ------------------------------------------------------------------
    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Be the leader with no commit in flight: the published state is the log's state."""
        me = threading.get_ident()
        with self._cond:
            if self._leader == me:  # re-entered from a subscriber: already exclusive
                nested = True
            else:
                nested = False
                self._draining += 1  # new commits wait at the gate in submit meanwhile
                try:
                    while self._leader or self._queue:
                        if not self._leader:  # a batch still gathering: have it led now
                            self._hand_off()
                        self._cond.wait()
                finally:
                    self._draining -= 1
                    if not self._draining:
                        self._cond.notify_all()  # commits held at the gate in submit
                self._leader = me
        try:
            yield
        finally:
            if not nested:
                with self._cond:
                    self._hand_off()
                    self._cond.notify_all()  # commits held at the gate

    def leads(self) -> bool:
        """Whether the calling thread has the leader's role (it is writing, publishing or
        calling subscribers, or is inside `exclusive`)."""
        return self._leader == threading.get_ident()

    def close(self) -> None:
        """Refuse new commits; queued ones are released with `StoreClosedError` (call in exclusive())."""
        self.closed = True
