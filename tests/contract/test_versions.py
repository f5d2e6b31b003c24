"""Key versions, ``expected_version`` and `stats` (SPEC §2), on every backend."""
from __future__ import annotations

import threading

import pytest

from eventstore import ConcurrencyError


def test_version_and_expected_version(make_store):
    """ConcurrencyError writes nothing (SPEC §2) and reports the versions."""
    with make_store() as store:
        assert store.version("k") == 0 and store.last_seq == 0
        store.append("t", "k", {"n": 0}, expected_version=0)
        store.append("t", "k", {"n": 1}, expected_version=1)
        store.append("t", "other")
        assert store.version("k") == 2 and store.version("other") == 1 and store.version("none") == 0
        before = make_store.footprint()
        for exp in (0, 1, 3):
            with pytest.raises(ConcurrencyError) as info:
                store.append("t", "k", {"bad": True}, expected_version=exp)
            assert (info.value.key, info.value.expected, info.value.actual) == ("k", exp, 2)
        # in a transaction, the second item sees the first's pending version
        with pytest.raises(ConcurrencyError):
            with store.transaction() as tx:
                tx.append("t", "k", {"bad": 1}, expected_version=2)
                tx.append("t", "other", {"bad": 2}, expected_version=1)
                tx.append("t", "k", {"bad": 3}, expected_version=2)  # is 3 after the first
        assert make_store.footprint() == before
        assert store.last_seq == 3 and store.version("k") == 2 and store.version("other") == 1
        with store.transaction() as tx:
            tx.append("t", "k", {"ok": 1}, expected_version=2)
            tx.append("t", "k", {"ok": 2}, expected_version=3)
        assert store.version("k") == 4 and store.last_seq == 5
        assert [e.data for e in store.read(key="k")] == [{"n": 0}, {"n": 1}, {"ok": 1}, {"ok": 2}]
    with make_store() as store:  # versions are rebuilt on open
        assert store.version("k") == 4 and store.version("other") == 1


def test_stats_keys_and_values(make_store):
    with make_store(snapshot_every=0) as store:
        empty = store.stats()
        for name in ("events", "keys", "segments", "bytes_on_disk", "last_seq", "snapshot_seq"):
            assert name in empty
        assert (empty["events"], empty["keys"], empty["last_seq"], empty["snapshot_seq"]) == (0, 0, 0, 0)
        store.append_many([("t", "a", {}), ("t", "b", {}), ("t", "a", {})])
        s = store.stats()
        assert (s["events"], s["keys"], s["last_seq"]) == (3, 2, 3)
        if make_store.backend == "local":
            assert s["segments"] == 1
        assert s["bytes_on_disk"] > empty["bytes_on_disk"]
        store.snapshot()
        assert store.stats()["snapshot_seq"] == 3


def test_expected_version_under_thread_contention(make_store):
    """Optimistic concurrency: of racing appenders expecting the same version, exactly one wins;
    each stored event records the version it expected, which equals its index for the key."""
    n_threads, per = 6, 15
    with make_store(durability="none") as store:
        conflicts = [0] * n_threads

        def worker(w):
            done = 0
            while done < per:
                v = store.version("hot")
                try:
                    store.append("t", "hot", {"expected": v, "w": w}, expected_version=v)
                    done += 1
                except ConcurrencyError:
                    conflicts[w] += 1

        threads = [threading.Thread(target=worker, args=(w,)) for w in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert store.version("hot") == n_threads * per
        assert [e.data["expected"] for e in store.read(key="hot")] == list(range(n_threads * per))


def test_two_writers_expecting_versions_see_each_other(make_store):
    """A second writer on the same target checks expected_version against the first's commits
    (it catches up before it checks), in both directions."""
    with make_store() as a, make_store() as b:
        a.append("t", "k")
        with pytest.raises(ConcurrencyError):
            b.append("t", "k", expected_version=0)
        assert b.append("t", "k", expected_version=1).seq == 2
        with pytest.raises(ConcurrencyError):
            a.append("t", "k", expected_version=1)
        assert a.append("t", "k", expected_version=2).seq == 3
        assert a.version("k") == b.version("k") == 3


@pytest.mark.parametrize("count_at", [3, 1 << 20])
def test_versions_counted_lazily_are_exact_everywhere(make_store, monkeypatch, count_at):
    """Commits note their keys and versions are counted when needed (or every _COUNT_AT keys):
    version(), expected_version, stats()['keys'], snapshots and a reopen all see every commit."""
    monkeypatch.setattr("eventstore.publish._COUNT_AT", count_at)
    want: dict[str, int] = {}

    def note(keys):
        for k in keys:
            want[k] = want.get(k, 0) + 1

    with make_store(snapshot_every=7) as store:
        for i in range(40):
            keys = [f"k{(i * 3 + j) % 11}" for j in range(i % 4 + 1)]
            store.append_many([("t", k, {"i": i}) for k in keys])
            note(keys)
            if i % 5 == 0:
                k = keys[0]
                store.append("t", k, {}, expected_version=want[k])
                note([k])
                with pytest.raises(ConcurrencyError):
                    store.append("t", k, {}, expected_version=want[k] - 1)
            if i % 9 == 0:
                assert {k: store.version(k) for k in want} == want
        assert store.stats()["keys"] == len(want)
        store.snapshot()
        store.append_many([("t", "late", {}), ("t", "k1", {})])
        note(["late", "k1"])
    with make_store() as store:
        assert store.stats()["snapshot_seq"] > 0
        assert {k: store.version(k) for k in want} == want and store.version("never") == 0
