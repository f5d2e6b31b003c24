"""A real `kill -9` of a writer process (tools/crash_harness.py).

SPEC §4.1-4.3, docs/FORMAT.md [F-11], [F-13], [F-31]: after a SIGKILL at a
random moment, a strict reopen succeeds (the lock died with the process),
every acknowledged commit is there with its exact content, no commit is
partially present, and seqs are contiguous; also with two writer processes on
the store, one or both killed each round. `flush` durability survives a
process kill too; `fsync` also survives losing every un-fsynced byte (a
simulated power cut). Long runs are marked slow:

    pytest -m slow tests/test_crash.py
"""
from __future__ import annotations

import importlib.util
import os
import sys
import time

import pytest

import eventstore

_PATH = os.path.join(os.path.dirname(__file__), os.pardir, "tools", "crash_harness.py")
_spec = importlib.util.spec_from_file_location("crash_harness", _PATH)
harness = importlib.util.module_from_spec(_spec)
sys.modules["crash_harness"] = harness
_spec.loader.exec_module(harness)


@pytest.mark.parametrize("durability,power_loss", [("fsync", False), ("flush", False), ("fsync", True)],
                         ids=["fsync", "flush", "fsync-power-loss"])
def test_kill_9_loses_no_acknowledged_commit(tmp_path, durability, power_loss):
    rounds = 10
    stats = harness.run(rounds, durability, str(tmp_path), max_delay=0.1, power_loss=power_loss)
    assert stats.rounds == rounds
    assert stats.acked_commits > rounds  # the writer really wrote between kills
    assert stats.events >= stats.acked_commits
    if power_loss:
        assert stats.power_cuts > 0


@pytest.mark.parametrize("power_loss", [False, True], ids=["fsync", "fsync-power-loss"])
def test_kill_9_with_8_writer_threads_sharing_group_commits(tmp_path, power_loss):
    """Guarantee 1 under group commit: a kill between a batch's fsync and the wake-up of its
    committers, or before the fsync with other threads' commits queued, loses no ack."""
    stats = harness.run(8, "fsync", str(tmp_path), max_delay=0.1, power_loss=power_loss, threads=8)
    assert stats.rounds == 8 and stats.acked_commits > 8 * 8


@pytest.mark.slow
@pytest.mark.parametrize("durability,power_loss,threads",
                         [("fsync", False, 1), ("flush", False, 1), ("fsync", True, 1), ("none", False, 1),
                          ("fsync", False, 8), ("fsync", True, 8)],
                         ids=["fsync", "flush", "fsync-power-loss", "none-whole-commits-only",
                              "fsync-8-threads", "fsync-power-loss-8-threads"])
def test_kill_9_many_rounds(tmp_path, durability, power_loss, threads):
    stats = harness.run(100, durability, str(tmp_path), power_loss=power_loss, threads=threads)
    assert stats.rounds == 100 and stats.acked_commits > 100


# -- two writer processes on one store (SPEC §2, §4.1-4.3) ---------------------------------
@pytest.mark.parametrize("durability,power_loss", [("fsync", False), ("fsync", True)],
                         ids=["fsync", "fsync-power-loss"])
def test_kill_9_of_one_or_both_of_two_writer_processes(tmp_path, durability, power_loss):
    """SPEC §2, §4.1-4.3 with writers in two processes: each round kills one of them (the
    other goes on writing while the store is reopened and checked beside it) or both.
    Every commit either writer acknowledged is present, none twice, none in part, seqs
    contiguous."""
    stats = harness.run(6, durability, str(tmp_path), max_delay=0.1, power_loss=power_loss, writers=2)
    assert stats.rounds == 6 and stats.kills >= 6
    assert stats.acked_commits > 6  # the writers really wrote between kills


@pytest.mark.slow
@pytest.mark.parametrize("durability,power_loss,writers,threads",
                         [("fsync", False, 2, 1), ("flush", False, 2, 1), ("fsync", True, 2, 1),
                          ("none", False, 2, 1), ("fsync", False, 3, 2)],
                         ids=["fsync", "flush", "fsync-power-loss", "none-whole-commits-only",
                              "fsync-3-writers-2-threads"])
def test_kill_9_of_writer_processes_many_rounds(tmp_path, durability, power_loss, writers, threads):
    stats = harness.run(60, durability, str(tmp_path), power_loss=power_loss, writers=writers,
                        threads=threads)
    assert stats.rounds == 60 and stats.acked_commits > 60
    assert 0 < stats.rounds_all_killed < 60  # both kinds of round happened


# -- the checker itself must catch what it is there to catch ----------------------------------
def _write(path, commits):
    acked = {}
    with eventstore.open(path, durability="none") as store:
        for cid, items in commits:
            evs = store.append_many(items)
            acked[cid] = (evs[0].seq, len(evs))
    return acked


def test_checker_catches_a_lost_acknowledged_commit(tmp_path):
    path = str(tmp_path / "s")
    acked = _write(path, [("a", [harness.event_item("a", i, 2, 5) for i in range(2)])])
    harness.check_store(path, acked, [], harness.Stats())  # consistent: passes
    acked["ghost"] = (3, 1)
    with pytest.raises(harness.Violation, match="ghost"):
        harness.check_store(path, acked, [], harness.Stats())


def test_checker_catches_a_partial_commit(tmp_path):
    path = str(tmp_path / "s")
    # a commit claiming 3 events that holds only 2 is what half a commit looks like
    acked = _write(path, [("b", [harness.event_item("b", i, 3, 5) for i in range(2)])])
    del acked["b"]
    with pytest.raises(harness.Violation, match="partially present"):
        harness.check_store(path, acked, [], harness.Stats())


def test_checker_catches_changed_content(tmp_path):
    path = str(tmp_path / "s")
    item = harness.event_item("c", 0, 1, 50)
    item[2]["pad"] = item[2]["pad"][:-1] + "!"
    _write(path, [("c", [item])])
    with pytest.raises(harness.Violation, match="wrong content"):
        harness.check_store(path, {}, [], harness.Stats())


def test_checker_catches_a_moved_acknowledged_commit(tmp_path):
    path = str(tmp_path / "s")
    acked = _write(path, [(c, [harness.event_item(c, 0, 1, 5)]) for c in ("x", "y")])
    acked["y"] = (1, 1)
    with pytest.raises(harness.Violation, match="moved"):
        harness.check_store(path, acked, [], harness.Stats())


def test_readonly_follower_never_sees_an_event_a_kill_takes_back(tmp_path):
    """[F-16] a readonly reader following a writer that is killed and restarted only ever
    returns valid whole commits, so what it saw is a prefix of the log after every recovery."""
    import argparse
    import random
    import threading

    path = str(tmp_path / "store")
    eventstore.open(path).close()
    seen, errors = [], []
    stop = threading.Event()

    def follow():
        try:
            with eventstore.open(path, readonly=True) as ro:
                while not stop.is_set():
                    for e in ro.follow(start=len(seen) + 1, poll=0.002, timeout=0.05):
                        seen.append(e)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    reader = threading.Thread(target=follow)
    reader.start()
    rng = random.Random()
    args = argparse.Namespace(durability="flush", max_delay=0.1, segment_bytes=1 << 14, snapshot_every=0,
                              threads=1)
    acked = {}
    try:
        for r in range(6):
            lines, _ = harness._run_writer(path, args, r, rng)
            for ln in lines:
                if ln.startswith("ACK "):
                    _, cid, first, n = ln.split()
                    acked[cid] = (int(first), int(n))
        with eventstore.open(path, readonly=True) as ro:
            on_disk = ro.last_seq
        deadline = time.monotonic() + 10
        while len(seen) < on_disk and time.monotonic() < deadline:
            time.sleep(0.01)  # let the follower catch up with the last round
    finally:
        stop.set()
        reader.join(20)
    assert errors == []
    final = harness.check_store(path, acked, [], harness.Stats())
    assert len(seen) == on_disk > 0
    assert seen == final
