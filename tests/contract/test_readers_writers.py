"""Several writers and readers on one target (SPEC §2, §4.7), on every backend: a second
writer, in another process or in this one, writes beside the first and each sees the
other's commits; a writer that holds a store open (or is killed) blocks nobody; a readonly
store in another process follows a live writer (`follow`) and catches up (`refresh`),
seeing every commit in order. The many-process torture is tests/test_many_writers.py.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import eventstore

HOLDER = textwrap.dedent("""
    import sys, eventstore
    store = eventstore.open(sys.argv[1])
    store.append("held", "k", {"pid": __import__("os").getpid()})
    print("LOCKED", flush=True)
    sys.stdin.readline()          # wait for the parent
    store.close()
    print("CLOSED", flush=True)
    sys.stdin.readline()
""")

WRITER = textwrap.dedent("""
    import sys, time, eventstore
    path, n = sys.argv[1], int(sys.argv[2])
    with eventstore.open(path, durability="flush", segment_bytes=4096) as store:
        print("OPEN", flush=True)
        sys.stdin.readline()      # go
        i = 0
        while i < n:
            if i % 7 == 3 and i + 3 <= n:
                store.append_many([("w", f"k{(i + j) % 5}", {"i": i + j, "pad": "x" * (i % 300)}) for j in range(3)])
                i += 3
            else:
                store.append("w", f"k{i % 5}", {"i": i, "pad": "x" * (i % 300)})
                i += 1
            if i % 10 == 0:
                time.sleep(0.002)
    print("DONE", flush=True)
""")


def spawn(script, *args):
    return subprocess.Popen([sys.executable, "-c", script, *map(str, args)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)


def expect_line(proc, want):
    line = proc.stdout.readline().strip()
    assert line == want, f"child said {line!r}, expected {want!r}"


def test_a_second_writer_process_writes_beside_one_holding_the_store_open(make_store):
    holder = spawn(HOLDER, make_store.target)
    try:
        expect_line(holder, "LOCKED")
        with make_store() as store:  # not refused: the lock is per commit
            assert store.last_seq == 1
            mine = store.append("mine", "k")
            assert mine.seq == 2 and store.version("k") == 2
        with make_store(readonly=True) as ro:
            assert [(e.seq, e.type) for e in ro.read()] == [(1, "held"), (2, "mine")]
        holder.stdin.write("\n")
        holder.stdin.flush()
        expect_line(holder, "CLOSED")
    finally:
        holder.kill()
        holder.wait()


def test_a_writer_killed_while_holding_the_store_blocks_nobody(make_store):
    holder = spawn(HOLDER, make_store.target)
    try:
        expect_line(holder, "LOCKED")
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    finally:
        holder.kill()
    with make_store() as store:  # [F-24] a kill -9 never leaves a store locked
        assert [e.type for e in store.read()] == ["held"]
        assert store.append("after", "k").seq == 2


@pytest.mark.parametrize("durability", ["fsync", "flush", "none"])
def test_two_writers_in_one_process_interleave_and_see_each_other(make_store, durability):
    with make_store(durability=durability, segment_bytes=4096) as a, \
            make_store(durability=durability, segment_bytes=4096) as b:
        got = []
        for i in range(60):
            writer = (a, b)[i % 2]
            got.append(writer.append("w", f"k{i % 3}", {"i": i, "pad": "x" * 100}))
            assert got[-1].seq == i + 1
        b.flush()  # durability none: b's last commit is in b's buffer until then
        for store in (a, b):
            assert store.last_seq == 60
            assert [e.data["i"] for e in store.read()] == list(range(60))
            assert store.version("k0") == 20
        assert a.append("w", "k0", expected_version=20).seq == 61
        with pytest.raises(eventstore.ConcurrencyError):  # b catches up before it checks
            b.append("w", "k0", expected_version=20)
        assert b.append("w", "k0", expected_version=21).seq == 62
        assert a.verify().ok


def writer_events(n):
    out, i = [], 0
    while i < n:
        if i % 7 == 3 and i + 3 <= n:
            out += [("w", f"k{(i + j) % 5}", {"i": i + j, "pad": "x" * (i % 300)}) for j in range(3)]
            i += 3
        else:
            out.append(("w", f"k{i % 5}", {"i": i, "pad": "x" * (i % 300)}))
            i += 1
    return out


def test_readonly_reader_follows_a_live_writer_in_another_process(make_store):
    """follow() in a readonly store sees every commit of another process, in order,
    across segment rollovers, while the writer is writing."""
    n = 400
    with make_store():
        pass  # create the store so the reader can open it before the writer starts
    writer = spawn(WRITER, make_store.target, n)
    try:
        expect_line(writer, "OPEN")
        got = []
        with make_store(readonly=True) as ro:
            assert ro.last_seq == 0
            writer.stdin.write("go\n")
            writer.stdin.flush()
            for e in ro.follow(start=1, poll=0.005, timeout=10):
                got.append(e)
                if len(got) == n:
                    break
        expect_line(writer, "DONE")
        writer.wait(10)
    finally:
        writer.kill()
    assert [e.seq for e in got] == list(range(1, n + 1))
    assert [(e.type, e.key, e.data) for e in got] == writer_events(n)
    if make_store.backend == "local":
        assert len(os.listdir(os.path.join(make_store.target, "segments"))) > 3  # crossed rollovers
    with make_store(readonly=True) as ro:
        assert list(ro.read()) == got


class Counter:
    name, version = "counter", 1

    def __init__(self):
        self.n, self.last = 0, 0

    def apply(self, e):
        assert e.seq == self.last + 1, "events applied out of order"
        self.n += 1
        self.last = e.seq

    def snapshot(self):
        return [self.n, self.last]

    def restore(self, state):
        self.n, self.last = state


def test_readonly_refresh_applies_what_another_process_committed(make_store):
    with make_store() as store:
        store.append("w", "k0", {"i": -1})
    counter = Counter()
    with make_store([counter], readonly=True) as ro:
        assert ro.last_seq == 1 and counter.n == 1 and ro.version("k0") == 1
        assert ro.refresh() == 0
        writer = spawn(WRITER, make_store.target, 120)
        try:
            expect_line(writer, "OPEN")
            writer.stdin.write("go\n")
            writer.stdin.flush()
            expect_line(writer, "DONE")
            writer.wait(10)
        finally:
            writer.kill()
        assert ro.refresh() == 120
        assert ro.last_seq == 121 and counter.n == 121 and counter.last == 121
        assert ro.version("k0") == 1 + sum(1 for _, k, _ in writer_events(120) if k == "k0")
        assert ro.refresh() == 0
        assert [(e.type, e.key, e.data) for e in ro.read(2)] == writer_events(120)


def test_reader_thread_follows_a_writer_in_this_process(make_store):
    n = 200
    store = make_store(durability="flush", segment_bytes=4096)
    got, errors = [], []

    def reader():
        try:
            with make_store(readonly=True) as ro:
                for e in ro.follow(start=1, poll=0.005, timeout=10):
                    got.append(e)
                    if len(got) == n:
                        return
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    t = threading.Thread(target=reader)
    t.start()
    written = []
    for i in range(n // 4):
        written += store.append_many([("t", f"k{i}", {"i": i, "j": j}) for j in range(4)])
        if i % 10 == 0:
            time.sleep(0.001)
    t.join(20)
    store.close()
    assert not errors
    assert got == written


def test_writer_store_follow_sees_its_own_commits(make_store):
    with make_store(durability="none") as store:
        first = store.append("t", "k", {"i": 0})
        it = store.follow(poll=0.001, timeout=0.2)  # from after the current last seq
        more = [store.append("t", "k", {"i": i}) for i in range(1, 4)]
        assert list(it) == more
        assert list(store.follow(start=1, timeout=0.05)) == [first] + more


def test_readonly_store_shows_what_the_writer_committed_without_refresh(make_store):
    """SPEC §2: a readonly store sees the writer's committed events. `last_seq`, `version`,
    `stats` and the projections catch up on their own, across segment rolls and a
    compaction; `follow()` starts after what is committed when it is called. (They used
    to stay at open time while `read()` was live, so `follow()` replayed older events.)"""
    counter = Counter()
    with make_store(durability="flush", segment_bytes=4096, snapshot_every=0) as w:
        w.append("w", "k0", {"i": 0})
        with make_store([counter], readonly=True) as ro:
            for i in range(1, 120):         # ~30 segment rolls
                w.append("w", f"k{i % 3}", {"i": i, "pad": "x" * 400})
                assert ro.last_seq == w.last_seq == i + 1
                assert counter.n == i + 1
            if make_store.backend == "local":
                assert len(os.listdir(os.path.join(make_store.target, "segments"))) > 10
            assert [ro.version(f"k{j}") for j in range(3)] == [w.version(f"k{j}") for j in range(3)]
            w.compact()                     # the reader's segment is compressed away
            w.append("w", "k0", {"i": 120})
            assert ro.stats()["last_seq"] == 121 and ro.projections[0] is counter and counter.n == 121
            w.append("w", "k1", {"i": 121})  # committed before follow() is called: not followed
            tail = ro.follow(timeout=0.3)
            w.append("w", "k2", {"i": 122})
            assert [e.data["i"] for e in tail] == [122]


def test_readonly_catalog_shows_the_writers_changes(make_store):
    """SPEC §2 through the catalog: a readonly MediaCatalog's reads show what a writer
    committed since it was opened."""
    from projections import MediaCatalog

    with MediaCatalog.open(make_store.target, actor="w", durability="flush") as w:
        w.set_title("a.mp4", "one")
        with MediaCatalog.open(make_store.target, readonly=True) as r:
            w.set_title("a.mp4", "two")
            w.set_description("b.mp4", "bee")
            assert r.title("a.mp4") == "two" and "b.mp4" in r and len(r) == 2
            assert [k for k, _ in r.items()] == r.keys() == [w.key("a.mp4"), w.key("b.mp4")]
            assert r.get("b.mp4").description == "bee"
            assert [c.new for c in r.history("a.mp4")] == ["one", "two"]
            assert r.stats()["items"] == 2 and r.projection.get(w.key("a.mp4")).title == "two"


class Reading(Counter):
    """A projection that reads the store it is applied by (as catalog code may)."""

    name = "reading"

    def __init__(self):
        super().__init__()
        self.store = None
        self.seen: list[tuple[int, int, int]] = []

    def apply(self, e):
        super().apply(e)
        if self.store is not None:  # not during the open's own replay
            self.seen.append((e.seq, self.store.last_seq, self.store.version(e.key)))


def test_a_projection_may_read_a_readonly_store_while_it_catches_up(make_store):
    """Applying new commits happens outside the store's lock, so a projection that reads
    `last_seq` or `version` meanwhile gets the state before that commit instead of
    deadlocking on the lock the reads take."""
    with make_store(durability="flush") as w:
        w.append("w", "k", {})
        reading = Reading()
        with make_store([reading], readonly=True) as ro:
            reading.store = ro
            w.append("w", "k", {})
            w.append("w", "j", {})
            done = []
            t = threading.Thread(target=lambda: done.append(ro.last_seq), daemon=True)
            t.start()
            t.join(10)
            assert done == [3], "the catch-up deadlocked"
            assert reading.seen == [(2, 1, 1), (3, 2, 0)]
