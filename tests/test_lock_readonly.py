"""Many writers and readers on one directory ([F-24], [F-16], SPEC §4.7): a second
writer, in another process or in this one, writes beside the first and each sees
the other's commits; the lock is held per group commit, so a writer that holds a
store open (or is killed) blocks nobody; a readonly store in another process
follows a live writer (`follow`) and catches up (`refresh`), seeing every commit
in order. The many-process torture is in test_many_writers.py.
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


def test_a_second_writer_process_writes_beside_one_holding_the_store_open(store_dir):
    holder = spawn(HOLDER, store_dir)
    try:
        expect_line(holder, "LOCKED")
        with eventstore.open(store_dir) as store:  # not refused: the lock is per commit
            assert store.last_seq == 1
            mine = store.append("mine", "k")
            assert mine.seq == 2 and store.version("k") == 2
        with eventstore.open(store_dir, readonly=True) as ro:
            assert [(e.seq, e.type) for e in ro.read()] == [(1, "held"), (2, "mine")]
        holder.stdin.write("\n")
        holder.stdin.flush()
        expect_line(holder, "CLOSED")
    finally:
        holder.kill()
        holder.wait()


def test_a_writer_killed_while_holding_the_store_blocks_nobody(store_dir):
    holder = spawn(HOLDER, store_dir)
    try:
        expect_line(holder, "LOCKED")
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    finally:
        holder.kill()
    with eventstore.open(store_dir) as store:  # [F-24] a kill -9 never leaves a store locked
        assert [e.type for e in store.read()] == ["held"]
        assert store.append("after", "k").seq == 2


@pytest.mark.parametrize("durability", ["fsync", "flush", "none"])
def test_two_writers_in_one_process_interleave_and_see_each_other(store_dir, durability):
    with eventstore.open(store_dir, durability=durability, segment_bytes=4096) as a, \
            eventstore.open(store_dir, durability=durability, segment_bytes=4096) as b:
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


def test_writers_through_a_symlink_share_one_log(tmp_path):
    path = str(tmp_path / "real")
    os.symlink(path, str(tmp_path / "link"))
    with eventstore.open(path) as store, eventstore.open(str(tmp_path / "link")) as other:
        store.append("t", "k")
        other.append("t", "k", expected_version=1)
        assert store.version("k") == 2 and [e.seq for e in store.read()] == [1, 2]


def test_failed_open_releases_the_lock(tmp_path):
    """An open that raises (here: corruption) must not leave the directory locked."""
    path = str(tmp_path / "s")
    with eventstore.open(path) as store:
        store.append("t", "k")
    seg = os.path.join(path, "segments", sorted(os.listdir(os.path.join(path, "segments")))[0])
    data = open(seg, "rb").read()
    with open(seg, "r+b") as f:
        f.write(b"XXXX")  # destroy the segment header magic
    with pytest.raises(eventstore.CorruptionError):
        eventstore.open(path)
    with open(seg, "wb") as f:
        f.write(data)
    with eventstore.open(path) as store:
        assert store.last_seq == 1


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


def test_readonly_reader_follows_a_live_writer_in_another_process(store_dir):
    """follow() in a readonly store sees every commit of another process, in order,
    across segment rollovers, while the writer is writing."""
    n = 400
    with eventstore.open(store_dir):
        pass  # create the store so the reader can open it before the writer starts
    writer = spawn(WRITER, store_dir, n)
    try:
        expect_line(writer, "OPEN")
        got = []
        with eventstore.open(store_dir, readonly=True) as ro:
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
    segs = os.listdir(os.path.join(store_dir, "segments"))
    assert len(segs) > 3  # the reader crossed rollovers
    with eventstore.open(store_dir, readonly=True) as ro:
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


def test_readonly_refresh_applies_what_another_process_committed(store_dir):
    with eventstore.open(store_dir) as store:
        store.append("w", "k0", {"i": -1})
    counter = Counter()
    with eventstore.open(store_dir, [counter], readonly=True) as ro:
        assert ro.last_seq == 1 and counter.n == 1 and ro.version("k0") == 1
        assert ro.refresh() == 0
        writer = spawn(WRITER, store_dir, 120)
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


def test_reader_thread_follows_a_writer_in_this_process(store_dir):
    n = 200
    store = eventstore.open(store_dir, durability="flush", segment_bytes=4096)
    got, errors = [], []

    def reader():
        try:
            with eventstore.open(store_dir, readonly=True) as ro:
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


def test_writer_store_follow_sees_its_own_commits(store_dir):
    with eventstore.open(store_dir, durability="none") as store:
        first = store.append("t", "k", {"i": 0})
        it = store.follow(poll=0.001, timeout=0.2)  # from after the current last seq
        more = [store.append("t", "k", {"i": i}) for i in range(1, 4)]
        assert list(it) == more
        assert list(store.follow(start=1, timeout=0.05)) == [first] + more


def test_readonly_store_shows_what_the_writer_committed_without_refresh(store_dir):
    """SPEC §2: a readonly store sees the writer's committed events. `last_seq`, `version`,
    `stats` and the projections catch up on their own, across segment rolls and a
    compaction; `follow()` starts after what is committed when it is called. (They used
    to stay at open time while `read()` was live, so `follow()` replayed older events.)"""
    counter = Counter()
    with eventstore.open(store_dir, durability="flush", segment_bytes=4096, snapshot_every=0) as w:
        w.append("w", "k0", {"i": 0})
        with eventstore.open(store_dir, [counter], readonly=True) as ro:
            for i in range(1, 120):         # ~30 segment rolls
                w.append("w", f"k{i % 3}", {"i": i, "pad": "x" * 400})
                assert ro.last_seq == w.last_seq == i + 1
                assert counter.n == i + 1
            assert len(os.listdir(os.path.join(store_dir, "segments"))) > 10
            assert [ro.version(f"k{j}") for j in range(3)] == [w.version(f"k{j}") for j in range(3)]
            w.compact()                     # the reader's segment is compressed away
            w.append("w", "k0", {"i": 120})
            assert ro.stats()["last_seq"] == 121 and ro.projections[0] is counter and counter.n == 121
            w.append("w", "k1", {"i": 121})  # committed before follow() is called: not followed
            tail = ro.follow(timeout=0.3)
            w.append("w", "k2", {"i": 122})
            assert [e.data["i"] for e in tail] == [122]


def test_readonly_catalog_shows_the_writers_changes(store_dir):
    """SPEC §2 through the catalog: a readonly MediaCatalog's reads show what a writer
    committed since it was opened."""
    from projections import MediaCatalog

    with MediaCatalog.open(store_dir, actor="w", durability="flush") as w:
        w.set_title("a.mp4", "one")
        with MediaCatalog.open(store_dir, readonly=True) as r:
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


def test_a_projection_may_read_a_readonly_store_while_it_catches_up(store_dir):
    """Applying new commits happens outside the store's lock, so a projection that reads
    `last_seq` or `version` meanwhile gets the state before that commit instead of
    deadlocking (it used to hang: the catch-up held the lock the reads take)."""
    with eventstore.open(store_dir, durability="flush") as w:
        w.append("w", "k", {})
        reading = Reading()
        with eventstore.open(store_dir, [reading], readonly=True) as ro:
            reading.store = ro
            w.append("w", "k", {})
            w.append("w", "j", {})
            done = []
            t = threading.Thread(target=lambda: done.append(ro.last_seq), daemon=True)
            t.start()
            t.join(10)
            assert done == [3], "the catch-up deadlocked"
            assert reading.seen == [(2, 1, 1), (3, 2, 0)]


def test_an_idle_readonly_store_does_not_rescan_the_log(store_dir):
    """`last_seq` on a readonly store whose writer is idle costs a few stat calls, also on a
    new empty store and after the writer's compaction left an empty active segment (each
    call used to list and rescan the segments, decompressing the compacted one again)."""
    from eventstore.fs import FileSystem

    class Listing(FileSystem):
        listings = 0

        def listdir(self, path):
            self.listings += 1
            return super().listdir(path)

    fs = Listing()
    with eventstore.open(store_dir, durability="flush", segment_bytes=4096) as w:
        with eventstore.open(store_dir, readonly=True, fs=fs) as ro:
            ro.last_seq
            before = fs.listings
            assert [ro.last_seq for _ in range(20)] == [0] * 20 and fs.listings == before
            for i in range(40):
                w.append("w", f"k{i % 3}", {"pad": "x" * 300})
            w.compact()
            assert ro.last_seq == 40
            before = fs.listings
            assert [ro.last_seq for _ in range(20)] == [40] * 20 and fs.listings == before
            w.append("w", "k0", {})
            assert ro.last_seq == 41 and ro.version("k0") == w.version("k0")


EXCLUSIVE_HOLDER = HOLDER.replace("eventstore.open(sys.argv[1])", "eventstore.open(sys.argv[1], exclusive=True)")


def test_an_exclusive_writer_is_refused_beside_others_and_refuses_them(store_dir):
    """[F-24] ``exclusive=True`` is opt-in: it is refused while another writer has the store
    open, and while it is open every other writer's open raises `LockedError` with its pid,
    in another process or in this one. Readers are never refused."""
    with eventstore.open(store_dir) as shared:
        with pytest.raises(eventstore.LockedError) as info:
            eventstore.open(store_dir, exclusive=True)
        assert info.value.pid == os.getpid()
        shared.append("t", "k")
    holder = spawn(EXCLUSIVE_HOLDER, store_dir)
    try:
        expect_line(holder, "LOCKED")
        for exclusive in (False, True):
            with pytest.raises(eventstore.LockedError) as info:
                eventstore.open(store_dir, exclusive=exclusive)
            assert info.value.pid == holder.pid and str(holder.pid) in str(info.value)
        with eventstore.open(store_dir, readonly=True) as ro:
            assert [e.type for e in ro.read()] == ["t", "held"]
        holder.stdin.write("\n")
        holder.stdin.flush()
        expect_line(holder, "CLOSED")
        with eventstore.open(store_dir, exclusive=True) as alone:  # free again
            assert alone.append("t", "k", expected_version=2).seq == 3
    finally:
        holder.kill()
        holder.wait()
