"""Snapshot files: what each holds, fallbacks past damaged ones, retention ([F-21]–[F-23], SPEC §4.8).

That snapshot + tail replay equals a full replay, on every backend, is
tests/contract/test_upkeep.py."""
from __future__ import annotations

import os
import threading
import time

import pytest

import eventstore
from eventstore.local import snapshot as snap_mod
from eventstore.errors import CorruptionError, FormatVersionError
from eventstore.local.layout import SNAPSHOT_HEADER_SIZE

from _verbs import (  # noqa: F401 - fast_tmp is a fixture
    FAST, Applies, FastFS, KV, Counter, replay, events_tuple, fast_tmp, flip, frames_of, read_snapshot_header, run_threads,
    seg_files, set_u16, snap_files, truncate, write_at, resign_header, zero,
)


def test_every_snapshot_holds_the_state_at_its_seq(fast_tmp) -> None:
    """Each snapshot written (automatic ones from the background thread too) holds exactly
    the state of a replay up to its seq, even while other threads append."""
    root = str(fast_tmp / "s")
    kv = KV()
    with eventstore.open(root, [kv], snapshot_every=25, segment_bytes=8192) as s:
        def writer(t: int) -> None:
            for i in range(60):
                s.append("set", f"t{t}-{i % 4}", {"i": i})
        run_threads(writer, 4)
        s.snapshot()
        events = list(s.read())
        assert len(events) == 240
    snaps = snap_files(root)
    assert 1 <= len(snaps) <= 3
    for path in snaps:
        snap = snap_mod.read_snapshot(FAST, path)
        ok, state = snap.state("kv", 1)
        assert ok
        upto = replay(events[:snap.seq])
        restored = KV()
        restored.restore(state)
        assert restored.state() == upto.state(), path
        versions: dict[str, int] = {}
        for e in events[:snap.seq]:
            versions[e.key] = versions.get(e.key, 0) + 1
        assert snap.versions.to_dict() == versions


class GatedFS(FastFS):
    """Snapshot files wait for a gate to open: a snapshot write that takes forever."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.waiting = threading.Event()

    def create_atomic(self, path: str, data: bytes) -> None:
        if path.endswith(".snap"):
            self.waiting.set()
            assert self.gate.wait(10)
        super().create_atomic(path, data)


def test_automatic_snapshot_runs_off_the_hot_path(fast_tmp) -> None:
    """While the background snapshot write is stuck, appends still return."""
    root = str(fast_tmp / "s")
    fs = GatedFS()
    kv = KV()
    with eventstore.open(root, [kv], snapshot_every=10, fs=fs) as s:
        for i in range(10):
            s.append("set", "k", {"i": i})
        assert fs.waiting.wait(5), "the 10th event starts a snapshot"
        t0 = time.monotonic()
        for i in range(10, 40):
            s.append("set", "k", {"i": i})
        assert time.monotonic() - t0 < 2.0
        assert snap_files(root) == []  # still stuck
        fs.gate.set()
    snaps = snap_files(root)
    assert snaps and read_snapshot_header(snaps[0])[3] == 10
    fresh = Applies()
    with eventstore.open(root, [fresh], fs=FAST) as s:
        assert s.last_seq == 40
        assert fresh.applied == 40 - s.stats()["snapshot_seq"]
        assert fresh.state() == kv.state()


def test_keeps_the_newest_three(fast_tmp) -> None:
    """[F-23]"""
    root = str(fast_tmp / "s")
    with eventstore.open(root, [KV()], snapshot_every=0, fs=FAST) as s:
        for i in range(6):
            s.append("set", "k", {"i": i})
            s.snapshot()
    assert [read_snapshot_header(p)[3] for p in snap_files(root)] == [4, 5, 6]


def _store_with_two_snapshots(root: str) -> tuple[list, tuple]:
    kv = KV()
    with eventstore.open(root, [kv, Counter()], snapshot_every=0, fs=FAST) as s:
        for i in range(10):
            s.append("set", f"k{i % 3}", {"i": i})
        s.snapshot()
        for i in range(10, 20):
            s.append("set", f"k{i % 3}", {"i": i})
        s.snapshot()
        for i in range(20, 25):
            s.append("del", f"k{i % 3}", {"i": i})
        return list(s.read()), kv.state()


DAMAGE = {
    "flip-header": lambda p: flip(p, 20),
    "flip-crc": lambda p: flip(p, 70, 3),
    "flip-body": lambda p: flip(p, os.path.getsize(p) - 5),
    "truncate-body": lambda p: truncate(p, os.path.getsize(p) - 3),
    "truncate-header": lambda p: truncate(p, 30),
    "zero-all": lambda p: zero(p, 0, os.path.getsize(p)),
    "empty": lambda p: truncate(p, 0),
    "junk-after": lambda p: open(p, "ab").write(b"junk"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_newest_snapshot_falls_back_to_the_older_one(fast_tmp, damage) -> None:
    """[F-21]: skipped with a report naming the file; the next older one is used."""
    root = str(fast_tmp / "s")
    events, state = _store_with_two_snapshots(root)
    older, newest = snap_files(root)
    DAMAGE[damage](newest)
    fresh = Applies()
    with eventstore.open(root, [fresh, Counter()], fs=FAST) as s:
        entries = [e for e in s.recovery_report if e.action == "skipped-snapshot"]
        assert [e.file for e in entries] == [newest]
        assert entries[0].offset is not None and entries[0].reason
        assert fresh.applied == 15
        assert fresh.state() == state
        assert events_tuple(s.read()) == events_tuple(events)
        report = s.verify()
        assert not report.ok and [p.file for p in report.problems] == [newest]


def test_both_snapshots_damaged_means_full_replay(fast_tmp) -> None:
    root = str(fast_tmp / "s")
    events, state = _store_with_two_snapshots(root)
    for p in snap_files(root):
        flip(p, SNAPSHOT_HEADER_SIZE + 3)
    fresh = Applies()
    with eventstore.open(root, [fresh], fs=FAST) as s:
        assert len([e for e in s.recovery_report if e.action == "skipped-snapshot"]) == 2
        assert fresh.applied == 25 and fresh.state() == state


def test_snapshot_not_matching_the_log_is_skipped(fast_tmp) -> None:
    """A CRC-valid snapshot whose chain digest is not the log's at its seq ([F-21])."""
    root = str(fast_tmp / "s")
    events, state = _store_with_two_snapshots(root)
    newest = snap_files(root)[-1]
    flip(newest, 45)  # inside the chain digest field (offset 40..55)
    resign_header(newest, SNAPSHOT_HEADER_SIZE)
    fresh = Applies()
    with eventstore.open(root, [fresh], fs=FAST) as s:
        (entry,) = [e for e in s.recovery_report if e.action == "skipped-snapshot"]
        assert entry.file == newest and "does not match" in entry.reason
        assert fresh.applied == 15 and fresh.state() == state
        report = s.verify()
        assert [(p.file, p.offset) for p in report.problems] == [(newest, 40)]


def test_snapshot_seq_past_the_log_is_corruption_in_strict_and_skipped_in_salvage(fast_tmp) -> None:
    """A snapshot (validly signed) claiming seqs the log does not hold: strict refuses to
    open (the log lost committed data or the snapshot lies); salvage skips it."""
    root = str(fast_tmp / "s")
    events, state = _store_with_two_snapshots(root)
    newest = snap_files(root)[-1]
    head = read_snapshot_header(newest)
    data = open(newest, "rb").read()
    fake = os.path.join(os.path.dirname(newest), f"{500:020d}.snap")
    with open(fake, "wb") as f:
        f.write(data)
    write_at(fake, 8, (500).to_bytes(8, "little"))
    resign_header(fake, SNAPSHOT_HEADER_SIZE)
    assert head[3] == 20
    with pytest.raises(CorruptionError) as info:
        eventstore.open(root, [KV()], fs=FAST)
    assert info.value.file == fake
    kv = KV()
    with eventstore.open(root, [kv], recovery="salvage", fs=FAST) as s:
        assert [e.file for e in s.recovery_report if e.action == "skipped-snapshot"] == [fake]
        assert kv.state() == state and s.last_seq == 25


def test_snapshot_at_the_very_end_of_the_log_is_confirmed(fast_tmp) -> None:
    """A snapshot at the last seq is checked against the frame that ends at its position."""
    root = str(fast_tmp / "s")
    kv = KV()
    with eventstore.open(root, [kv], fs=FAST, snapshot_every=0) as s:
        for i in range(5):
            s.append("set", "k", {"i": i})
        s.snapshot()
    fresh = Applies()
    with eventstore.open(root, [fresh], fs=FAST) as s:
        assert not s.recovery_report and fresh.applied == 0 and fresh.state() == kv.state()
    # a forged snapshot claiming seq 7 at the same position: no frame there says 7
    path = snap_files(root)[-1]
    fake = os.path.join(os.path.dirname(path), f"{7:020d}.snap")
    data = bytearray(open(path, "rb").read())
    data[8:16] = (7).to_bytes(8, "little")
    open(fake, "wb").write(bytes(data))
    resign_header(fake, SNAPSHOT_HEADER_SIZE)
    with pytest.raises(CorruptionError) as info:
        eventstore.open(root, [KV()], fs=FAST)
    assert info.value.file == fake and "past the end" in info.value.reason


def test_future_snapshot_version_is_a_clear_error(fast_tmp) -> None:
    """[F-06]: never treated as damage to repair."""
    root = str(fast_tmp / "s")
    _store_with_two_snapshots(root)
    newest = snap_files(root)[-1]
    set_u16(newest, 4, 9, SNAPSHOT_HEADER_SIZE)
    with pytest.raises(FormatVersionError) as info:
        eventstore.open(root, [KV()], fs=FAST)
    assert (info.value.found, info.value.supported, info.value.file) == (9, 2, newest)
    assert "9" in str(info.value) and "2" in str(info.value)
    assert os.path.exists(newest)


def test_snapshot_at_the_end_after_a_commit_larger_than_the_search_window(fast_tmp) -> None:
    """The frame before the position is 1.6 MB: found by hopping from the segment start."""
    root = str(fast_tmp / "s")
    kv = KV()
    with eventstore.open(root, [kv], fs=FAST, snapshot_every=0) as s:
        s.append("set", "small", {})
        s.append_many([("blob", f"b{i}", {"x": "y" * 800_000}) for i in range(2)])
        s.snapshot()
    fresh = Applies()
    with eventstore.open(root, [fresh], fs=FAST) as s:
        assert not s.recovery_report
        assert fresh.applied == 0 and fresh.state() == kv.state() and s.last_seq == 3
