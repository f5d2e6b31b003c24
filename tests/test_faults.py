"""Fault injection: failed writes/syncs/renames and power loss lose nothing acknowledged.

A fixed workload (appends that roll segments over, a snapshot, a compaction,
more appends) runs on a `FaultyFS` that fails the Nth call of one operation
with EIO or ENOSPC, for every N the workload reaches; or loses power at the
Nth mutating call. Each time: every operation either succeeds or raises
`StoreFailedError` (never a raw OSError, never a hang), and a strict reopen
with a normal file system finds every acknowledged event intact, nothing
else but the commit that was in flight, contiguous seqs, and a clean
`verify()` (SPEC §2 StoreFailedError, §4.1, §4.9; [F-02], [F-05], [F-20]).
"""
from __future__ import annotations

import errno
import logging
import os
import subprocess
import sys
import threading

import pytest

import eventstore
from eventstore.fs import FileSystem
from eventstore.errors import StoreFailedError

from _verbs import KV, events_tuple, fast_tmp, seg_files, snap_files  # noqa: F401
from faultfs import FaultyFS


class Recorder:
    """Runs the workload against a store and remembers what was acknowledged."""

    def __init__(self, store) -> None:
        self.s = store
        self.acked: list = []
        self.failed: list[tuple] = []  # items of commits that raised
        self.errors: list[BaseException] = []

    def commit(self, items: list[tuple]) -> None:
        try:
            self.acked.extend(self.s.append_many(items))
        except StoreFailedError as exc:
            self.failed.extend(items)
            self.errors.append(exc)

    def op(self, name: str) -> None:
        try:
            getattr(self.s, name)()
        except StoreFailedError as exc:
            self.errors.append(exc)


def items(n: int, start: int, per: int = 1) -> list[list[tuple]]:
    return [[("set", f"k{(start + i) % 5}", {"i": start + i, "j": j, "pad": "p" * 120}) for j in range(per)]
            for i in range(n)]


def workload(rec: Recorder) -> None:
    for batch in items(24, 0):  # rolls over at 4096 bytes
        rec.commit(batch)
    rec.op("snapshot")
    for batch in items(6, 100, per=3):
        rec.commit(batch)
    rec.op("compact")
    for batch in items(8, 200):
        rec.commit(batch)
    rec.op("flush")


OPTS = dict(segment_bytes=4096, snapshot_every=0)


def run(root: str, arm, durability: str = "fsync") -> tuple[Recorder, FaultyFS]:
    """Create the store, reopen it on a FaultyFS armed by ``arm(fs)``, run the workload."""
    if not os.path.exists(root):
        eventstore.open(root, [KV()], **OPTS).close()
    fs = FaultyFS()
    fs.track(root)
    s = eventstore.open(root, [KV()], fs=fs, durability=durability, **OPTS)
    rec = Recorder(s)
    fs.calls_before_arm = dict(fs.calls)  # type: ignore[attr-defined]
    arm(fs)
    try:
        workload(rec)
    finally:
        try:
            s.close()
        except StoreFailedError as exc:
            rec.errors.append(exc)
        fs.close_held()
    return rec, fs


def check_reopen(root: str, rec: Recorder) -> list:
    """Strict reopen on the real file system: acknowledged events intact, nothing invented."""
    kv = KV()
    with eventstore.open(root, [kv], **OPTS) as s:
        got = list(s.read())
        assert [e.seq for e in got] == list(range(1, len(got) + 1))
        by_seq = {e.seq: e for e in got}
        for e in rec.acked:
            assert by_seq.get(e.seq) == e, f"acknowledged seq {e.seq} lost or changed"
        acked = {e.seq for e in rec.acked}
        extra = [(e.type, e.key, e.data) for e in got if e.seq not in acked]
        assert all(x in rec.failed for x in extra), "an event nobody tried to commit"
        assert kv.count == len(got)
        report = s.verify()
        assert report.ok, str(report)
        # the store works again
        e = s.append("set", "after", {"ok": True})
        assert e.seq == len(got) + 1
    return got


def count_calls(root: str) -> dict[str, int]:
    rec, fs = run(root, lambda fs: None)
    assert not rec.errors and len(rec.acked) == 24 + 18 + 8
    return {op: n - fs.calls_before_arm[op] for op, n in fs.calls.items()}  # type: ignore[attr-defined]


@pytest.fixture
def baseline(fast_tmp):
    calls = count_calls(str(fast_tmp / "count"))
    return calls


@pytest.mark.parametrize("op", ["write", "fdatasync", "fsync", "rename", "fsync_dir", "create"])
@pytest.mark.parametrize("err", [errno.EIO, errno.ENOSPC], ids=["EIO", "ENOSPC"])
def test_fail_every_nth_call(fast_tmp, baseline, op, err) -> None:
    total = baseline[op]
    assert total >= 3, (op, baseline)
    for n in range(1, total + 1):
        root = str(fast_tmp / f"{op}-{err}-{n}")
        rec, fs = run(root, lambda fs: fs.fail(op, n, err, partial=(op == "write")))
        assert fs.fired, f"the {n}th {op} was never reached"
        assert rec.errors, f"a failed {op} (#{n}, {fs.fired}) went unnoticed"
        check_reopen(root, rec)


@pytest.mark.parametrize("torn", [False, True], ids=["drop-unsynced", "torn-unsynced"])
def test_power_loss_at_every_mutating_call(fast_tmp, baseline, torn) -> None:
    """fsync durability: whatever call the power cut hits, every acknowledged event survives."""
    total = sum(baseline.values())
    for n in range(1, total + 1):
        root = str(fast_tmp / f"crash-{torn}-{n}")
        rec, fs = run(root, lambda fs: fs.crash_at(n, torn=torn))
        assert fs.dead
        check_reopen(root, rec)


def test_power_loss_after_acknowledged_appends_loses_nothing(fast_tmp) -> None:
    root = str(fast_tmp / "s")
    eventstore.open(root, [KV()], **OPTS).close()
    fs = FaultyFS(seed=3)
    fs.track(root)
    s = eventstore.open(root, [KV()], fs=fs, **OPTS)
    acked = [s.append("set", f"k{i % 3}", {"i": i, "pad": "x" * 100}) for i in range(60)]
    fs.crash(torn=True)
    with pytest.raises(StoreFailedError):
        s.append("set", "k", {"lost": True})
    with pytest.raises(StoreFailedError):
        s.append("set", "k", {"refused": True})  # sticky until reopened
    s.close()
    fs.close_held()
    with eventstore.open(root, [KV()], **OPTS) as s2:
        assert events_tuple(s2.read()) == events_tuple(acked)


def test_power_loss_with_flush_durability_keeps_a_prefix(fast_tmp) -> None:
    """durability="flush" promises nothing across power loss, but what survives is a
    contiguous prefix of whole commits and the store reopens cleanly."""
    root = str(fast_tmp / "s")
    eventstore.open(root, [KV()], **OPTS).close()
    fs = FaultyFS(seed=5)
    fs.track(root)
    s = eventstore.open(root, [KV()], fs=fs, durability="flush", **OPTS)
    acked = [s.append("set", f"k{i % 3}", {"i": i, "pad": "x" * 100}) for i in range(60)]
    s.flush()
    acked += [s.append("set", "k", {"i": i}) for i in range(60, 70)]
    fs.crash(torn=True)
    try:
        s.close()
    except StoreFailedError:
        pass
    fs.close_held()
    with eventstore.open(root, [KV()], **OPTS) as s2:
        got = list(s2.read())
        assert events_tuple(got) == events_tuple(acked[:len(got)])
        assert len(got) >= 60  # flush() made those durable


def test_partial_write_then_reopen_cuts_the_torn_commit(fast_tmp) -> None:
    """ENOSPC after half a frame: the store fails, and reopen quarantines the half frame."""
    root = str(fast_tmp / "s")
    eventstore.open(root, [KV()], **OPTS).close()
    fs = FaultyFS()
    s = eventstore.open(root, [KV()], fs=fs, **OPTS)
    acked = [s.append("set", "k", {"i": i}) for i in range(5)]
    fs.fail("write", 1, errno.ENOSPC, partial=True)
    with pytest.raises(StoreFailedError) as info:
        s.append("set", "k", {"i": 5, "pad": "z" * 200})
    assert isinstance(info.value.__cause__, OSError) and info.value.__cause__.errno == errno.ENOSPC
    with pytest.raises(StoreFailedError):
        s.append("set", "k", {"i": 6})
    assert events_tuple(s.read()) == events_tuple(acked)  # reads still work
    s.close()
    with eventstore.open(root, [KV()], **OPTS) as s2:
        (entry,) = list(s2.recovery_report)
        assert entry.action == "truncated" and entry.nbytes > 0
        assert events_tuple(s2.read()) == events_tuple(acked)


def test_failed_snapshot_raises_cleanly_and_leaves_no_valid_looking_file(fast_tmp) -> None:
    root = str(fast_tmp / "s")
    fs = FaultyFS()
    kv = KV()
    with eventstore.open(root, [kv], fs=fs, **OPTS) as s:
        for i in range(10):
            s.append("set", "k", {"i": i})
        fs.fail("fsync", 1, errno.EIO, where=".snap")
        with pytest.raises(StoreFailedError):
            s.snapshot()
        assert snap_files(root) == []
        s.append("set", "k", {"i": 10})  # the log itself is fine
        state = kv.state()
    fresh = KV()
    with eventstore.open(root, [fresh], **OPTS) as s:
        assert [e.action for e in s.recovery_report] == ["quarantined"]  # the .snap.tmp
        assert fresh.state() == state and s.last_seq == 11


def test_failed_background_snapshot_does_not_stop_appends(fast_tmp, caplog) -> None:
    root = str(fast_tmp / "s")
    fs = FaultyFS()
    fs.fail("rename", 1, errno.ENOSPC, where=".snap")
    with caplog.at_level(logging.WARNING, logger="eventstore"):
        with eventstore.open(root, [KV()], fs=fs, segment_bytes=4096, snapshot_every=5) as s:
            for i in range(12):
                s.append("set", "k", {"i": i})
    assert any("snapshot" in r.getMessage() for r in caplog.records)
    with eventstore.open(root, [KV()], **OPTS) as s:
        assert s.last_seq == 12


def test_concurrent_appenders_when_fsync_fails(fast_tmp) -> None:
    """Group commit: when the shared fdatasync fails, every waiter of that group gets
    StoreFailedError; nothing they were told is durable is lost."""
    root = str(fast_tmp / "s")
    eventstore.open(root, [KV()], **OPTS).close()
    fs = FaultyFS()
    fs.track(root)
    s = eventstore.open(root, [KV()], fs=fs, **OPTS)
    fs.fail("fdatasync", 40, errno.EIO)
    acked: list = []
    outcomes: list[str] = []
    lock = threading.Lock()

    def worker(t: int) -> None:
        for i in range(10_000):  # until the failure reaches this thread
            try:
                e = s.append("set", f"t{t}", {"i": i})
            except StoreFailedError:
                with lock:
                    outcomes.append("failed")
                return
            with lock:
                acked.append(e)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert outcomes == ["failed"] * 4
    fs.crash()  # and then the power goes too: unsynced bytes are dropped
    s.close()
    fs.close_held()
    with eventstore.open(root, [KV()], **OPTS) as s2:
        by_seq = {e.seq: e for e in s2.read()}
        assert all(by_seq.get(e.seq) == e for e in acked)


class _InterruptedSync(FileSystem):
    """fdatasync raises a BaseException that is not an OSError (as Ctrl-C would) once."""

    def __init__(self, at: int) -> None:
        self.calls, self.at = 0, at

    def fdatasync(self, fd: int) -> None:
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        super().fdatasync(fd)


def test_group_commit_interrupted_mid_sync_fails_the_store_and_strands_nobody(fast_tmp) -> None:
    """An exception other than OSError in the leader's write path (a Ctrl-C during the sync)
    fails the store: the leader gets the exception, every other committer of the batch an
    answer (none stays parked), and nothing acknowledged is lost."""
    root = str(fast_tmp / "s")
    s = eventstore.open(root, fs=_InterruptedSync(at=30), durability="fsync", snapshot_every=0)
    acked: list = []
    outcomes: list[str] = []
    lock = threading.Lock()

    def worker(t: int) -> None:
        for i in range(10_000):
            try:
                e = s.append("set", f"t{t}", {"i": i})
            except (StoreFailedError, KeyboardInterrupt) as exc:
                with lock:
                    outcomes.append(type(exc).__name__)
                return
            with lock:
                acked.append(e)

    threads = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not [t for t in threads if t.is_alive()], "a committer was left parked"
    assert sorted(outcomes) == ["KeyboardInterrupt"] + ["StoreFailedError"] * 5
    with pytest.raises(StoreFailedError):
        s.append("set", "after", {})
    s.close()
    with eventstore.open(root) as s2:
        by_seq = {e.seq: e for e in s2.read()}
    assert acked and all(by_seq.get(e.seq) == e for e in acked)


class _Unsnapshottable(KV):
    """Snapshots fine while empty (open takes one), not once it holds events."""

    name = "unsnapshottable"

    def snapshot(self):
        if self.count:
            raise RuntimeError("this state cannot be saved")
        return super().snapshot()


def test_a_projection_that_cannot_snapshot_does_not_fail_commits(fast_tmp, caplog) -> None:
    """An automatic snapshot that fails to capture is logged and retried later; the commit
    that triggered it and every later one succeed: the error never leaves the leader to
    strand the batch."""
    root = str(fast_tmp / "s")
    with caplog.at_level(logging.ERROR, logger="eventstore"):
        with eventstore.open(root, [_Unsnapshottable()], durability="none", snapshot_every=50) as s:
            for i in range(300):
                s.append("set", f"k{i % 7}", {"v": i})
            assert s.last_seq == 300
    assert "automatic snapshot" in caplog.text
    with eventstore.open(root, [_Unsnapshottable()]) as s2:
        assert s2.last_seq == 300


def test_a_writer_open_makes_what_it_shows_durable(fast_tmp) -> None:
    """[F-13]: a killed writer's unsynced commits that the next open accepts are fsynced by
    that open, so a power cut afterwards cannot take back events a reader was shown."""
    root = str(fast_tmp / "s")
    eventstore.open(root).close()
    fs = FaultyFS()
    fs.track(root)  # durable now: the empty store
    writer = ("import os, sys, eventstore\n"
              "s = eventstore.open(sys.argv[1], durability='flush')\n"
              "s.append_many([('t', f'k{i}', {'i': i}) for i in range(30)])\n"
              "os._exit(0)  # dies without a sync: the commit is in the page cache only\n")
    subprocess.run([sys.executable, "-c", writer, root], check=True,
                   env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    s = eventstore.open(root, fs=fs)
    shown = [e.data["i"] for e in s.read()]
    assert shown == list(range(30))
    fs.crash()  # power cut right after the open
    try:
        s.close()
    except StoreFailedError:
        pass
    fs.close_held()
    with eventstore.open(root) as s2:
        assert [e.data["i"] for e in s2.read()] == shown


def _damaged_store(root: str) -> list:
    """A store with a damaged .zseg, a damaged sealed commit and a torn tail; the events."""
    from _verbs import flip, frames_of
    with eventstore.open(root, [KV()], **OPTS) as s:
        for batch in items(40, 0):
            s.append_many(batch)
        s.compact()
        for batch in items(30, 100):
            s.append_many(batch)
        events = list(s.read())
    zseg = seg_files(root, ".zseg")[1]
    flip(zseg, os.path.getsize(zseg) - 40)
    plain = seg_files(root, ".seg")[0]
    flip(plain, frames_of(plain)[2].offset + 60)
    with open(seg_files(root, ".seg")[-1], "ab") as f:
        f.write(b"MLFR half a frame")
    return events


def test_power_loss_during_salvage_then_salvage_again(fast_tmp) -> None:
    """A power cut at any call of a salvage open (quarantine copies, rewrites, the tail
    cut): the next salvage open converges to the same events, and every damaged byte
    is still either in the log or in quarantine/."""
    import shutil
    template = str(fast_tmp / "template")
    events = _damaged_store(template)
    clean = str(fast_tmp / "clean")
    shutil.copytree(template, clean)
    pristine = str(fast_tmp / "pristine")
    shutil.copytree(template, pristine)
    with eventstore.open(clean, [KV()], recovery="salvage", **OPTS) as s:
        expected = events_tuple(s.read())
        expected_lost = s.recovery_report.lost_ranges
    assert len(expected_lost) == 2 and len(expected) < len(events)
    fs = FaultyFS()
    fs.track(template)
    before = sum(fs.calls.values())
    eventstore.open(template, [KV()], recovery="salvage", fs=fs, **OPTS).close()
    total = sum(fs.calls.values()) - before
    fs.close_held()
    assert total > 10
    for n in range(1, total + 1):
        root = str(fast_tmp / f"c{n}")
        shutil.copytree(pristine, root)
        fs = FaultyFS()
        fs.track(root)
        fs.crash_at(n)
        with pytest.raises(OSError):
            eventstore.open(root, [KV()], recovery="salvage", fs=fs, **OPTS)
        fs.close_held()
        with eventstore.open(root, [KV()], recovery="salvage", **OPTS) as s:
            assert events_tuple(s.read()) == expected, n
            assert s.verify().ok
        qdir = os.path.join(root, "quarantine")
        kept = [open(os.path.join(qdir, q), "rb").read() for q in os.listdir(qdir)]
        for name in os.listdir(os.path.join(pristine, "segments")):
            orig = open(os.path.join(pristine, "segments", name), "rb").read()
            now = os.path.join(root, "segments", name)
            cur = open(now, "rb").read() if os.path.exists(now) else None
            assert orig in kept or cur == orig or (
                cur is not None and orig.startswith(cur) and orig[len(cur):] in kept), (n, name)
        with eventstore.open(root, [KV()], **OPTS) as s:  # and strict is happy afterwards
            assert events_tuple(s.read()) == expected
