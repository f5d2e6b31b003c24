"""`GroupCommit` alone, with no log and no files (eventstore/local/groupcommit.py).

A fake ``write`` stands for the store: it records each batch, settles each
commit (its result, or an error for that commit alone), and can be slowed
down, so that the engine's contract is checked directly: every commit is
written exactly once and its committer gets its own outcome, commits queued
during a write are taken by one leader as one batch, a failed write fails
that batch and refuses every later commit, `exclusive()` waits for commits
in flight and holds new ones back, and `close()` refuses commits, those held back included.
"""
from __future__ import annotations

import threading
import time

import pytest

from eventstore.errors import StoreClosedError, StoreFailedError
from eventstore.local.groupcommit import GroupCommit, Pending


class FakeLog:
    """Settles each commit ``n`` with ``n * 10``; ``refuse`` commits get a ValueError."""

    def __init__(self, delay: float = 0.0, refuse: frozenset[int] = frozenset()) -> None:
        self.delay = delay
        self.refuse = refuse
        self.batches: list[list[int]] = []
        self.fail_next: BaseException | None = None
        self.writing = threading.Event()
        self.in_write = 0
        self.max_in_write = 0
        self.lock = threading.Lock()

    def write(self, batch: list[Pending[int, int]]) -> None:
        with self.lock:
            self.in_write += 1
            self.max_in_write = max(self.max_in_write, self.in_write)
        try:
            self.writing.set()
            if self.delay:
                time.sleep(self.delay)
            if self.fail_next is not None:
                exc, self.fail_next = self.fail_next, None
                raise exc
            self.batches.append([p.commit for p in batch])
            for p in batch:
                if p.commit in self.refuse:
                    p.error = ValueError(f"commit {p.commit} refused")
                else:
                    p.result = p.commit * 10
                p.done = True
        finally:
            with self.lock:
                self.in_write -= 1


def run_threads(engine: GroupCommit[int, int], threads: int, each: int) -> tuple[dict[int, object], list]:
    outcomes: dict[int, object] = {}
    errors: list[BaseException] = []

    def committer(t: int) -> None:
        for i in range(each):
            n = t * 1000 + i
            try:
                outcomes[n] = engine.submit(n)
            except ValueError as exc:
                outcomes[n] = exc
            except BaseException as exc:  # pragma: no cover - reported by the caller
                errors.append(exc)

    workers = [threading.Thread(target=committer, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    return outcomes, errors


@pytest.mark.parametrize("gather", [False, True])
def test_every_commit_is_written_once_and_its_committer_gets_its_own_outcome(gather):
    log = FakeLog(delay=0.001, refuse=frozenset({3007, 5011}))
    engine: GroupCommit[int, int] = GroupCommit(log.write, gather=gather)
    outcomes, errors = run_threads(engine, threads=8, each=25)
    assert not errors
    written = [n for batch in log.batches for n in batch]
    assert sorted(written) == sorted(outcomes) and len(written) == len(set(written)) == 200
    for n, outcome in outcomes.items():
        if n in log.refuse:
            assert isinstance(outcome, ValueError) and str(n) in str(outcome)
        else:
            assert outcome == n * 10
    assert log.max_in_write == 1, "two leaders wrote at once"
    assert max(len(b) for b in log.batches) > 1, "commits queued during a write were not batched"
    # Each thread's commits are written in the order it made them.
    for t in range(8):
        mine = [n for n in written if n // 1000 == t]
        assert mine == sorted(mine)


def test_a_failed_write_fails_its_batch_and_refuses_later_commits():
    log = FakeLog(delay=0.002)
    engine: GroupCommit[int, int] = GroupCommit(log.write, gather=False)
    assert engine.submit(1) == 10
    log.fail_next = OSError("disk gone")
    outcomes: dict[int, BaseException] = {}

    def committer(n: int) -> None:
        try:
            engine.submit(n)
        except BaseException as exc:
            outcomes[n] = exc

    workers = [threading.Thread(target=committer, args=(n,)) for n in range(2, 8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(30)
    assert set(outcomes) == set(range(2, 8)), "a commit of the failed batch was acknowledged"
    assert all(isinstance(e, (OSError, StoreFailedError)) for e in outcomes.values())
    assert engine.failed is not None
    with pytest.raises(StoreFailedError):
        engine.submit(99)
    assert 99 not in [n for b in log.batches for n in b]


def test_exclusive_waits_for_the_commit_in_flight_and_holds_new_ones_back():
    log = FakeLog(delay=0.05)
    engine: GroupCommit[int, int] = GroupCommit(log.write, gather=False)
    first = threading.Thread(target=engine.submit, args=(1,))
    first.start()
    assert log.writing.wait(5)
    order: list[str] = []
    entered = threading.Event()
    release = threading.Event()

    def exclusive_user() -> None:
        with engine.exclusive():
            order.append(f"exclusive after {len(log.batches)} batch(es)")
            entered.set()
            release.wait(5)
        order.append("exclusive left")

    user = threading.Thread(target=exclusive_user)
    user.start()
    assert entered.wait(5)
    late = threading.Thread(target=lambda: order.append(f"late commit -> {engine.submit(2)}"))
    late.start()
    time.sleep(0.05)  # the late commit has had time to be written, if the gate let it through
    assert [n for b in log.batches for n in b] == [1]
    release.set()
    for t in (first, user, late):
        t.join(10)
    assert order == ["exclusive after 1 batch(es)", "exclusive left", "late commit -> 20"]


def test_close_refuses_new_commits_and_releases_those_held_back():
    log = FakeLog()
    engine: GroupCommit[int, int] = GroupCommit(log.write, gather=True)
    assert engine.submit(4) == 40
    held_back: list[BaseException] = []

    def late() -> None:
        try:
            engine.submit(5)
        except BaseException as exc:
            held_back.append(exc)

    waiter = threading.Thread(target=late)
    with engine.exclusive():
        waiter.start()
        time.sleep(0.05)  # the late commit reaches the gate and waits there
        engine.close()
    waiter.join(10)
    assert not waiter.is_alive(), "a commit held back at close was never released"
    assert len(held_back) == 1 and isinstance(held_back[0], StoreClosedError)
    with pytest.raises(StoreClosedError):
        engine.submit(6)
    assert log.batches == [[4]]
