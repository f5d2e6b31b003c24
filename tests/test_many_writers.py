"""Writers in several processes on one directory (SPEC §2, §4.1-4.3, §4.7).

- N processes x M threads append to shared keys, with and without
  ``expected_version``, in mixed durabilities, across segment rollovers, while
  another process compacts and snapshots in a loop and a readonly process
  follows: every acknowledged commit is there once with its data, seqs are
  contiguous, per-key versions are contiguous, every process's projection is a
  full replay, the follower saw every event once in order (tests/_many_writers.py
  has the checks).
- Two `MediaCatalog`s in two processes see each other's changes, undo included.
- A power cut with two writers on one directory (the fault fs): what the
  ``fsync`` writer acknowledged survives, and the store opens strictly, even when
  the other writer's unsynced frames are lost.

The same many-process run against every backend is tests/contract/test_many_processes.py.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import eventstore
from _many_writers import Plan, run


def test_processes_and_threads_appending_to_shared_keys(tmp_path):
    """3 processes x 3 threads, fsync/flush/none, 4 KiB segments, compaction and a follower."""
    out = run(str(tmp_path / "store"), str(tmp_path / "work"), Plan(commits=300, seed=1))
    assert out.acked_commits == 3 * 3 * 300 and out.events >= out.acked_commits
    assert out.conflicts > 0, "the expected_version writers never raced each other"
    assert out.maintenance_rounds > 0 and out.followed == out.events
    assert out.segments is not None and out.segments > 20  # rolled over many times


@pytest.mark.slow
@pytest.mark.parametrize("plan", [
    Plan(processes=4, threads=4, commits=1500, seed=2),
    Plan(processes=4, threads=4, commits=600, durability=("none",), snapshot_every=20, seed=3),
    Plan(processes=4, threads=2, commits=1500, durability=("fsync",), snapshot_every=7, seed=4),
    Plan(processes=6, threads=1, commits=1500, durability=("flush", "fsync"), keys=2, seed=5),
], ids=["mixed-4x4", "none-4x4", "fsync-4x2", "flush-fsync-6x1-two-keys"])
def test_processes_and_threads_appending_to_shared_keys_long(tmp_path, plan):
    out = run(str(tmp_path / "store"), str(tmp_path / "work"), plan)
    assert out.acked_commits == plan.processes * plan.threads * plan.commits
    assert out.followed == out.events


# -- MediaCatalog in two processes ---------------------------------------------------------------
OTHER = textwrap.dedent("""
    import sys
    from projections import MediaCatalog
    cat = MediaCatalog.open(sys.argv[1], actor="bob", durability="flush")
    print("open", flush=True)
    for line in sys.stdin:
        cmd, *args = line.split("\\t")
        args = [a.strip() for a in args]
        if cmd == "set_title":
            cat.set_title(args[0], args[1])
            out = "ok"
        elif cmd == "set_description":
            cat.set_description(args[0], args[1])
            out = "ok"
        elif cmd == "get":
            rec = cat.get(args[0])
            out = "none" if rec is None else f"{rec.title}|{rec.description}|{rec.version}"
        elif cmd == "history":
            out = ";".join(f"{c.field}:{c.old}>{c.new}@{c.actor}" for c in cat.history(args[0]))
        elif cmd == "undo":
            out = ",".join(e.key + "=" + str(e.data) for e in cat.undo(args[0] if args else None))
        else:
            break
        print(out, flush=True)
    cat.close()
""")


class Other:
    """A MediaCatalog in another process, driven line by line."""

    def __init__(self, path: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", OTHER, path], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline() == "open\n", self.proc.stderr.read()[-3000:]

    def __call__(self, *cmd: str) -> str:
        self.proc.stdin.write("\t".join(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"the other catalog died: {self.proc.stderr.read()[-3000:]}")
        return line.rstrip("\n")

    def close(self) -> None:
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
            self.proc.wait(10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


def test_two_catalogs_in_two_processes_see_and_undo_each_others_changes(tmp_path):
    from projections import MediaCatalog

    path = str(tmp_path / "store")
    cat = MediaCatalog.open(path, actor="alice", durability="flush")
    other = Other(path)  # open before alice's first change: bob must catch up to see it
    try:
        a, b = str(tmp_path / "a.mp4"), str(tmp_path / "b.mp4")
        cat.set_title(a, "alice's title")
        assert other("get", a) == "alice's title||1"            # bob sees alice's change
        assert other("set_title", a, "bob's title") == "ok"
        assert cat.title(a) == "bob's title"                     # ... and alice sees bob's
        assert [(c.new, c.actor) for c in cat.history(a)] == [("alice's title", "alice"),
                                                               ("bob's title", "bob")]
        assert other("history", a) == ("title:>alice's title@alice;"
                                       "title:alice's title>bob's title@bob")
        # alice undoes bob's change of the item: bob sees it reverted
        cat.undo(a)
        assert cat.title(a) == "alice's title"
        assert other("get", a) == "alice's title||3"
        # bob undoes alice's last change (the item's first title): alice sees it gone
        assert other("undo", a) != ""
        assert cat.get(a) is None and a not in cat
        # a change alice never saw before her own undo: undo(None) reverts the last commit
        # overall, which is bob's, not alice's older one
        cat.set_description(b, "alice's words")
        assert other("set_description", b, "bob's words") == "ok"
        cat.undo()
        assert cat.description(b) == "alice's words"
        assert other("get", b) == "|alice's words|3"
    finally:
        other.close()
        cat.close()
    with MediaCatalog.open(path, readonly=True) as ro:  # what both wrote, replayed
        assert ro.get(a) is None and ro.description(b) == "alice's words"


# -- a power cut with two writers -------------------------------------------------------------------
def test_power_cut_keeps_what_the_fsync_writer_acknowledged_beside_another_writer(tmp_path):
    """Two writers on one directory (one ``fsync``, one ``flush``), 4 KiB segments: when
    the fsync writer rolls over to a new segment, the other writer's last frames are in the
    segment it seals, unsynced. A power cut must not leave the durable commits of the
    fsync writer after a hole: the store opens strictly with every one of them (a roll that
    did not sync the other writer's frames in the segment it seals would leave 'seqs are
    missing')."""
    from faultfs import FaultyFS

    root = str(tmp_path / "s")
    fs = FaultyFS()
    with eventstore.open(root, segment_bytes=4096, snapshot_every=0) as s:
        s.append("t", "setup", {})
    fs.track(root)
    a = eventstore.open(root, segment_bytes=4096, snapshot_every=0, durability="fsync", fs=fs)
    b = eventstore.open(root, segment_bytes=4096, snapshot_every=0, durability="flush", fs=fs)
    acked = []
    try:
        for i in range(40):
            # a's small commits are durable when append returns; b's big ones are written,
            # not synced, and each second one takes the segment past 4 KiB, so that a's
            # next commit is the one that rolls over
            acked.append(a.append("t", "a", {"i": i, "pad": "x" * 100}))
            b.append("t", "b", {"i": i, "pad": "y" * 1500})
        assert len(os.listdir(os.path.join(root, "segments"))) > 4
        fs.crash()  # power cut: every unsynced byte is lost
    finally:
        for s in (a, b):
            try:
                s.close()
            except eventstore.StoreFailedError:
                pass  # its final sync hit the dead disk
        fs.close_held()
    with eventstore.open(root) as s:  # strict: must not raise
        events = {e.seq: e for e in s.read()}
        assert [e.seq for e in sorted(events.values(), key=lambda e: e.seq)] == list(range(1, len(events) + 1))
        for ev in acked:
            assert events.get(ev.seq) == ev, f"acknowledged seq {ev.seq} lost"
        assert s.verify().ok


# -- creating a store from several processes at once ------------------------------------------------
OPENER = textwrap.dedent("""
    import os, sys, time, eventstore
    path, go = sys.argv[1], sys.argv[2]
    while not os.path.exists(go):
        time.sleep(0.0005)
    with eventstore.open(path, durability="flush") as store:
        store.append("hello", "k", {"pid": os.getpid()})
""")


def test_processes_creating_one_store_at_once_all_open_it(tmp_path):
    """SPEC §2: a directory is created if missing, and several processes may open a store
    for writing at once; so several may create it at once. Every opener gets the one store
    (none fails on another's METALOG.tmp), and every commit is in it."""
    for attempt in range(3):
        path, go = str(tmp_path / f"s{attempt}"), str(tmp_path / f"go{attempt}")
        procs = [subprocess.Popen([sys.executable, "-c", OPENER, path, go], stderr=subprocess.PIPE, text=True)
                 for _ in range(6)]
        try:
            open(go, "w").close()
            for p in procs:
                p.wait(60)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        errors = [p.stderr.read()[-2000:] for p in procs if p.returncode]
        assert not errors, errors[0]
        with eventstore.open(path, readonly=True) as ro:
            assert [e.seq for e in ro.read()] == list(range(1, 7))
            assert len({e.data["pid"] for e in ro.read()}) == 6
            assert not ro.recovery_report


def test_an_open_that_creates_the_store_while_another_is_creating_it_waits_for_it(tmp_path):
    """Deterministic: opener A stops just before it renames METALOG.tmp into place; opener B
    arrives meanwhile. B must wait for A's creation (and A must not find its temporary
    file taken from under it), and both then write to the one store."""
    import threading

    from eventstore.fs import FileSystem

    path = str(tmp_path / "s")
    a_paused, release_a, b_arrived = threading.Event(), threading.Event(), threading.Event()

    class PauseBeforeMarker(FileSystem):
        def rename(self, src: str, dst: str) -> None:
            if dst.endswith("METALOG"):
                a_paused.set()
                release_a.wait(10)
            super().rename(src, dst)

    class SayWhenArrived(FileSystem):
        def lock(self, fd: int) -> None:
            b_arrived.set()
            super().lock(fd)

        def create_atomic(self, p: str, data: bytes) -> None:
            b_arrived.set()
            super().create_atomic(p, data)

    results: dict[str, object] = {}

    def opener(name: str, fs: FileSystem) -> None:
        try:
            with eventstore.open(path, fs=fs) as s:
                results[name] = s.append("hello", name).key
        except BaseException as exc:  # noqa: BLE001 - reported below
            results[name] = exc

    a = threading.Thread(target=opener, args=("a", PauseBeforeMarker()))
    a.start()
    assert a_paused.wait(10)
    b = threading.Thread(target=opener, args=("b", SayWhenArrived()))
    b.start()
    assert b_arrived.wait(10)
    release_a.set()
    a.join(20)
    b.join(20)
    assert results == {"a": "a", "b": "b"}
    with eventstore.open(path, readonly=True) as ro:
        assert sorted(e.key for e in ro.read()) == ["a", "b"] and ro.last_seq == 2


# -- durability none beside other writers ----------------------------------------------------------
def test_a_buffering_writer_that_never_pauses_still_gives_the_lock_back():
    """Durability none keeps the commit lock while commits are buffered and gives it back
    through `Linger`: the lock goes back ``quiet`` after it was taken, however busy the
    writer, so one committing every millisecond does not keep it until its 1 MiB buffer
    fills while another process waits to open."""
    import time

    from eventstore.local.writer import Linger

    releases = []
    linger = Linger(lambda: releases.append(1), quiet=0.05)
    try:
        end = time.monotonic() + 1.0
        while time.monotonic() < end:  # a commit every millisecond keeps the lock held
            linger.held()
            time.sleep(0.001)
    finally:
        linger.stop()
    assert len(releases) >= 5, f"the lock was given back {len(releases)} times in 1 s of commits"
