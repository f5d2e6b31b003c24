"""Many writers on PostgreSQL (SPEC §8; [P-05]-[P-07], [P-17], [P-18]): seqs contiguous and in
commit order across processes, per-key versions enforced by the database, followers and
subscribers that see every event once, in order."""
from __future__ import annotations

import multiprocessing
import threading
import time

import pytest

import eventstore
from eventstore import ConcurrencyError

KEYS = ("hot0", "hot1", "hot2")
PER_THREAD = 6


def _writer_process(url, w, out):
    """4 threads, each appending PER_THREAD events with expected_version to shared keys."""
    store = eventstore.open(url, snapshot_every=0)
    conflicts = [0]

    def work(t):
        done = 0
        while done < PER_THREAD:
            key = KEYS[(w + t + done) % len(KEYS)]
            v = store.version(key)
            try:
                store.append("t", key, {"expected": v, "w": w, "t": t, "i": done}, expected_version=v)
                done += 1
            except ConcurrencyError:
                conflicts[0] += 1

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.close()
    out.put(("writer", w, conflicts[0]))


def _follower_process(url, total, out):
    with eventstore.open(url, readonly=True) as store:
        seqs = []
        for e in store.follow(start=1, timeout=60):
            seqs.append((e.seq, e.key, e.data["expected"]))
            if len(seqs) >= total:
                break
    out.put(("follower", seqs))


def test_four_processes_of_four_threads_and_a_follower(pg_url):
    """[P-05] [P-06] [P-07] [P-18] 4 processes x 4 threads append with expected_version on 3 shared keys; a fifth process
    follows from seq 1. Every key's events carry the versions 0, 1, 2, ... in seq order (no
    two writers took one version), seqs are 1..N, and the follower saw each once, in order."""
    eventstore.open(pg_url).close()  # create the schema before the race
    total = 4 * 4 * PER_THREAD
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    follower = ctx.Process(target=_follower_process, args=(pg_url, total, out))
    follower.start()
    writers = [ctx.Process(target=_writer_process, args=(pg_url, w, out)) for w in range(4)]
    for p in writers:
        p.start()
    results = [out.get(timeout=120) for _ in range(5)]
    for p in writers + [follower]:
        p.join(30)
        assert p.exitcode == 0
    [(_, seqs)] = [r for r in results if r[0] == "follower"]
    assert [s for s, _, _ in seqs] == list(range(1, total + 1))
    with eventstore.open(pg_url, readonly=True) as store:
        events = list(store.read())
        assert [(e.seq, e.key, e.data["expected"]) for e in events] == seqs
        for key in KEYS:
            assert [e.data["expected"] for e in events if e.key == key] == \
                list(range(sum(e.key == key for e in events)))
        assert store.verify().ok
    assert sum(r[2] for r in results if r[0] == "writer") > 0, "no writer ever lost a race"


def test_the_database_refuses_a_version_a_stale_writer_computed(pg_url, monkeypatch):
    """[P-05] Per-key versions are a primary key: a writer whose view of versions is stale (here: it
    does not count the commits it catches up with) is refused by the database with a
    ConcurrencyError naming the key, and writes nothing."""
    import eventstore.postgres.writer as writer_mod
    with eventstore.open(pg_url) as a, eventstore.open(pg_url) as b:
        b.append("t", "other")  # b's view is now at seq 1
        a.append("t", "k", {"by": "a"}, expected_version=0)
        monkeypatch.setattr(writer_mod, "keys_of", lambda events: [])  # b will miss a's key
        with pytest.raises(ConcurrencyError) as info:
            b.append("t", "k", {"by": "b"}, expected_version=0)
        assert (info.value.key, info.value.actual) == ("k", 1)
        monkeypatch.undo()
        assert [e.data for e in a.read(key="k")] == [{"by": "a"}]


def test_subscribers_hear_other_processes_commits_without_asking(pg_url):
    """[P-17] [P-18] subscribe() is woken by NOTIFY: a store that only listens receives every commit another
    store makes, once, in seq order."""
    with eventstore.open(pg_url) as listener, eventstore.open(pg_url) as other:
        seen = []
        listener.subscribe(seen.append)
        mine = [other.append("t", f"k{i % 3}", {"i": i}) for i in range(20)]
        mine += other.append_many([("t", "x", {}), ("t", "y", {})])
        deadline = time.monotonic() + 20
        while len(seen) < len(mine) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert seen == mine
        own = listener.append("t", "mine")
        assert seen[-1] == own and [e.seq for e in seen] == list(range(1, len(mine) + 2))


def test_a_readonly_catalog_on_another_connection_catches_up(pg_url):
    from projections import MediaCatalog
    with MediaCatalog.open(pg_url, actor="alice") as writer, \
            MediaCatalog.open(pg_url, readonly=True) as reader:
        assert len(reader) == 0
        writer.set_title("/m/a.mp4", "A")
        with writer.batch():
            writer.set_title("/m/b.mp4", "B")
            writer.set_description("/m/b.mp4", "bee")
        assert reader.title("/m/a.mp4") == "A" and reader.description("/m/b.mp4") == "bee"
        assert len(reader) == 2 and [c.new for c in reader.history("/m/b.mp4")] == ["B", "bee"]
        writer.undo("/m/a.mp4")
        assert reader.title("/m/a.mp4") == ""
