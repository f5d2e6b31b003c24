"""Subscribers, concurrent committers, readers racing writers, closing and failing
projections (SPEC §2, §4.3), on every backend."""
from __future__ import annotations

import threading
import time

import pytest

import eventstore
from eventstore import StoreClosedError, ValidationError


def test_subscribe_order_and_unsubscribe(make_store):
    with make_store(durability="none") as store:
        calls = []
        un_a = store.subscribe(lambda e: calls.append(("a", e.seq)))
        store.subscribe(lambda e: calls.append(("b", e.seq)))
        store.append("t", "k")
        store.append_many([("t", "k", {}), ("t", "j", {})])
        assert calls == [("a", 1), ("b", 1), ("a", 2), ("b", 2), ("a", 3), ("b", 3)]
        un_a()
        un_a()  # idempotent
        calls.clear()
        store.append("t", "k")
        assert calls == [("b", 4)]
        with pytest.raises(ValidationError):
            store.subscribe("not callable")  # type: ignore[arg-type]


def _echoed_into_second(first, second, who: str) -> None:
    """Three commits to ``first``, each echoed into ``second`` by ``who`` on the committing thread."""
    done = threading.Event()

    def work():
        for i in range(3):
            first.append("orig", f"k{i}")
        done.set()

    t = threading.Thread(target=work, daemon=True)
    t.start()
    t.join(10)
    assert done.is_set(), f"a {who} appending to a second store deadlocked"
    assert [(e.type, e.data) for e in second.read()] == [
        ("orig", {}), ("echo", {"of": 1}), ("orig", {}), ("echo", {"of": 3}), ("orig", {}), ("echo", {"of": 5})]
    first.close()
    second.close()


@pytest.mark.parametrize("durability", ["fsync", "flush", "none"])
def test_a_subscriber_may_append_to_a_second_store_on_the_same_target(make_store, durability):
    """A subscriber runs on the committing thread; a writer there may not hold what a second
    `Store` on the same target needs (the embedded log's commit lock) while it calls it."""
    first = make_store(durability=durability)
    second = make_store(durability=durability)
    first.subscribe(lambda e: second.append("echo", e.key, {"of": e.seq}) if e.type == "orig" else None)
    _echoed_into_second(first, second, "subscriber")


@pytest.mark.parametrize("durability", ["fsync", "flush", "none"])
def test_a_projection_may_append_to_a_second_store_on_the_same_target(make_store, durability):
    """A projection runs on the committing thread too (after the commit, before it returns)."""
    second = make_store(durability=durability)

    class Echo:
        name, version = "echo", 1

        def apply(self, event):
            if event.type == "orig":
                second.append("echo", event.key, {"of": event.seq})

        def snapshot(self):
            return None

        def restore(self, state):
            pass

    _echoed_into_second(make_store(projections=(Echo(),), durability=durability), second, "projection")


@pytest.mark.parametrize("durability", ["fsync", "flush", "none"])
def test_a_subscriber_may_close_the_store(make_store, durability):
    """close() from a subscriber, later than any background work of the store would start."""
    store = make_store(durability=durability)
    closed = threading.Event()

    def close_later(event):
        if event.key == "last":
            time.sleep(0.05)
            store.close()
            closed.set()

    store.subscribe(close_later)

    def work():
        store.append("t", "first")
        store.append("t", "last")

    t = threading.Thread(target=work, daemon=True)
    t.start()
    t.join(10)
    assert closed.is_set() and not t.is_alive(), "close() from a subscriber hung"
    assert store.closed
    with make_store() as again:
        assert [e.key for e in again.read()] == ["first", "last"]


def test_a_failing_subscriber_does_not_break_commits(make_store):
    with make_store(durability="none") as store:
        seen = []
        store.subscribe(lambda e: 1 / 0)
        store.subscribe(lambda e: seen.append(e.seq))
        assert store.append("t", "k").seq == 1
        assert seen == [1] and [e.seq for e in store.read()] == [1]


@pytest.mark.parametrize("durability", ["fsync", "none"])
def test_subscriber_that_appends_neither_deadlocks_nor_reorders(make_store, durability):
    """A subscriber may append; every subscriber still sees seqs in order ([F-11], SPEC §4.3)."""
    store = make_store(durability=durability)
    seen_a, seen_b = [], []

    def echo(e):
        seen_a.append(e.seq)
        if e.type == "orig":
            store.append("echo", e.key, {"of": e.seq})

    store.subscribe(echo)
    store.subscribe(lambda e: seen_b.append(e.seq))
    done = threading.Event()

    def work():
        store.append("orig", "k")
        store.append_many([("orig", "k", {}), ("orig", "j", {})])
        done.set()

    t = threading.Thread(target=work, daemon=True)
    t.start()
    t.join(10)
    assert done.is_set(), "a subscriber that appends deadlocked the store"
    assert store.last_seq == 6
    assert seen_a == [1, 2, 3, 4, 5, 6], seen_a
    assert seen_b == [1, 2, 3, 4, 5, 6], seen_b
    origs = [e.seq for e in store.read(types="orig")]
    echoes = [e.data["of"] for e in store.read(types="echo")]
    assert origs == [1, 3, 4] and echoes == [1, 3, 4]
    store.close()


def _append_mixed(store, w, per, every, parts, errors):
    """A writer thread: ``per`` appends to key ``w{w}``; every ``every``-th is one
    ``append_many`` of ``parts`` events. Exceptions are collected in ``errors``."""
    try:
        for i in range(per):
            if i % every == every - 1:
                store.append_many([("t", f"w{w}", {"i": i, "part": p}) for p in range(parts)])
            else:
                store.append("t", f"w{w}", {"i": i})
    except Exception as exc:  # pragma: no cover - reported by the test
        errors.append(exc)


def test_concurrent_appenders_get_contiguous_seqs(make_store):
    """Group commit: 8 threads, every event once, each thread's events in its order."""
    n_threads, per = 8, 40
    with make_store(durability="fsync") as store:
        errors = []
        threads = [threading.Thread(target=_append_mixed, args=(store, w, per, 5, 3, errors))
                   for w in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors
        total = n_threads * (per + (per // 5) * 2)
        assert store.last_seq == total
    with make_store() as store:
        events = list(store.read())
    assert [e.seq for e in events] == list(range(1, total + 1))
    for w in range(n_threads):
        mine = [(e.data["i"], e.data.get("part")) for e in events if e.key == f"w{w}"]
        want = []
        for i in range(per):
            want += [(i, p) for p in range(3)] if i % 5 == 4 else [(i, None)]
        assert mine == want
    # the three events of one append_many are adjacent (one frame)
    for i, e in enumerate(events):
        if e.data.get("part") == 0:
            assert [x.data.get("part") for x in events[i:i + 3]] == [0, 1, 2]
            assert len({x.ts for x in events[i:i + 3]}) == 1


@pytest.mark.parametrize("durability", ["fsync", "none"])
def test_group_commit_hand_offs_never_strand_a_committer(make_store, durability):
    """Group commit under churn: leaders hand over to parked committers, a subscriber appends
    from the leader's thread, flush/snapshot take the log exclusively. Every append returns
    (none is left parked with its commit published), and every event is there once."""
    n_threads, per = 8, 150
    seen = []
    with make_store(durability=durability, snapshot_every=0) as store:
        def echo(event):
            seen.append(event.seq)
            if event.type == "t" and event.data["i"] % 50 == 0:
                store.append("echo", event.key, {"of": event.seq})

        store.subscribe(echo)
        errors = []

        def exclusive():
            for _ in range(20):
                store.flush()
                store.snapshot()

        threads = [threading.Thread(target=_append_mixed, args=(store, w, per, 7, 2, errors), daemon=True)
                   for w in range(n_threads)]
        threads.append(threading.Thread(target=exclusive, daemon=True))
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not [t for t in threads if t.is_alive()], "an append never returned"
        assert not errors
        last = store.last_seq
    assert seen == list(range(1, last + 1))
    with make_store() as store:
        events = list(store.read())
    assert [e.seq for e in events] == list(range(1, last + 1))
    per_thread = per + sum(1 for i in range(per) if i % 7 == 6)
    assert sum(e.type == "t" for e in events) == n_threads * per_thread
    assert sum(e.type == "echo" for e in events) == n_threads * len(range(0, per, 50))


@pytest.mark.parametrize("durability", ["none", "flush"])
def test_reads_during_appends_see_whole_commits_in_order(make_store, durability):
    """[F-11] a reader racing a writer (same store, other thread) never sees part of a commit."""
    with make_store(durability=durability, segment_bytes=4096) as store:
        stop = threading.Event()
        problems, sizes = [], []

        def reader():
            while not stop.is_set():
                evs = list(store.read())
                sizes.append(len(evs))
                if [e.seq for e in evs] != list(range(1, len(evs) + 1)):
                    problems.append("gap")
                if len(evs) % 3:
                    problems.append(f"partial commit: {len(evs)} events")
                for i in range(0, len(evs), 3):
                    if [e.data["j"] for e in evs[i:i + 3]] != [0, 1, 2] or len({e.data["c"] for e in evs[i:i + 3]}) != 1:
                        problems.append(f"commit split at {i}")
                        break

        t = threading.Thread(target=reader)
        t.start()
        for c in range(1000):
            store.append_many([("t", f"k{c % 7}", {"c": c, "j": j}) for j in range(3)])
            if c % 100 == 0:
                time.sleep(0.005)  # let the reader in
        stop.set()
        t.join(30)
        assert problems == []
        assert len(set(sizes)) > 3  # the reader really raced the writer
        assert store.last_seq == 3000


@pytest.mark.parametrize("durability", ["fsync", "none"])
def test_close_while_threads_append(make_store, durability):
    """Every append racing close() either returns (and its event is on disk) or raises
    StoreClosedError; none hangs."""
    store = make_store(durability=durability)
    acked, errors = [], []
    go = threading.Event()

    def worker(w):
        go.wait()
        i = 0
        while True:  # until close() stops us: close must not wait for appenders to give up
            try:
                acked.append(store.append("t", f"w{w}", {"i": i}))
            except StoreClosedError:
                return
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)
                return
            i += 1

    threads = [threading.Thread(target=worker, args=(w,), daemon=True) for w in range(4)]
    for t in threads:
        t.start()
    go.set()
    time.sleep(0.05)
    closer = threading.Thread(target=store.close, daemon=True)
    closer.start()
    closer.join(10)
    assert not closer.is_alive(), "close() starved behind appenders"
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads), "an append hung across close()"
    assert errors == []
    assert acked, "no append got in before close"
    with make_store() as again:
        on_disk = {e.seq: e for e in again.read()}
    for ev in acked:
        assert on_disk.get(ev.seq) == ev


def test_a_failing_projection_publishes_the_durable_commit_then_refuses_writes(make_store):
    """A projection that raises must not leave a store taking snapshots of wrong state."""
    class Fragile:
        name, version = "fragile", 1

        def __init__(self) -> None:
            self.seen: list[int] = []

        def apply(self, event):
            if event.key == "boom":
                raise RuntimeError("bug in projection")
            self.seen.append(event.seq)

        def snapshot(self):
            return self.seen

        def restore(self, state):
            self.seen = list(state)

    p = Fragile()
    store = make_store(projections=(p,))
    store.append("t", "ok", {})
    boom = store.append("t", "boom", {})  # durable: returned, on disk
    assert boom.seq == 2 and store.last_seq == 2
    with pytest.raises(eventstore.StoreFailedError):
        store.append("t", "after", {})
    with pytest.raises(eventstore.StoreFailedError):
        store.snapshot()
    store.close()
    with make_store() as again:
        assert [(e.seq, e.key) for e in again.read()] == [(1, "ok"), (2, "boom")]
