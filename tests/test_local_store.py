"""The local backend's own Store behaviour (SPEC §2, docs/FORMAT.md): what depends on
files, layout or the ``fs=`` hook. Refusing foreign paths ([F-01]), an empty directory
becoming a store, segment rollover ([F-03], [F-04]), a store whose segments/ vanished,
and group commit sharing syncs on a slow disk.

Behaviour every backend shares (appends, reads, versions, subscribers, closing, readonly,
the state machine) is the contract suite, tests/contract/.
"""
from __future__ import annotations

import os
import threading
import time

import pytest

import eventstore
from eventstore import NotAStoreError
from eventstore.fs import FileSystem


# -- group commit on a slow disk --------------------------------------------------------------
class _SlowSyncFS(FileSystem):
    """Counts data syncs and makes each take a millisecond longer, as on a slow disk."""

    syncs = 0

    def fdatasync(self, fd: int) -> None:
        self.syncs += 1
        time.sleep(0.001)
        super().fdatasync(fd)


def test_group_commit_follows_bursts_of_changing_width(store_dir):
    """Bursts of durable appenders, of changing width, with pauses between them. A batch is
    expected to be as wide as the last burst; a narrower burst, or a lone commit, must not be
    held waiting for it: every append returns, every event is there once and in its thread's
    order, and the wide bursts still share their syncs."""
    fs = _SlowSyncFS()
    widths, per = [8, 1, 3, 8, 8, 2, 1, 5, 1], 12
    with eventstore.open(store_dir, durability="fsync", snapshot_every=0, fs=fs) as store:
        for b, width in enumerate(widths):
            errors: list[BaseException] = []

            def writer(w: int) -> None:
                try:
                    for i in range(per):
                        store.append("t", f"b{b}w{w}", {"i": i})
                except BaseException as exc:  # pragma: no cover - reported below
                    errors.append(exc)

            before = fs.syncs
            threads = [threading.Thread(target=writer, args=(w,), daemon=True) for w in range(width)]
            for t in threads:
                t.start()
            deadline = time.monotonic() + 30
            for t in threads:
                t.join(max(0.0, deadline - time.monotonic()))
            assert not [t for t in threads if t.is_alive()], f"burst {b} (width {width}) never finished"
            assert not errors
            if width == 8:
                assert fs.syncs - before <= width * per // 2, "the wide burst did not share its syncs"
            time.sleep(0.03)  # a pause, long against a sync
    with eventstore.open(store_dir) as store:
        events = list(store.read())
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    got: dict[str, list[int]] = {}
    for e in events:
        got.setdefault(e.key, []).append(e.data["i"])
    assert got == {f"b{b}w{w}": list(range(per)) for b, width in enumerate(widths) for w in range(width)}


# -- foreign paths ----------------------------------------------------------------------------
def _tree(root):
    out = {}
    for dirpath, dirnames, names in os.walk(root):
        for n in dirnames + names:
            p = os.path.join(dirpath, n)
            st_ = os.stat(p)
            out[p] = (st_.st_mtime_ns, st_.st_size, None if os.path.isdir(p) else open(p, "rb").read())
    return out


def test_not_a_store_is_refused_and_untouched(tmp_path):
    """[F-01] a file, or a non-empty directory without METALOG, is refused; nothing changes."""
    f = tmp_path / "afile"
    f.write_bytes(b"precious")
    foreign = tmp_path / "foreign"
    (foreign / "sub").mkdir(parents=True)
    (foreign / "notes.txt").write_text("keep me")
    (foreign / "sub" / "x").write_bytes(b"\x00" * 10)
    before = _tree(tmp_path)
    for path in (f, foreign):
        for kwargs in ({}, {"readonly": True}, {"create": False}):
            with pytest.raises(NotAStoreError) as info:
                eventstore.open(path, **kwargs)
            assert isinstance(info.value, eventstore.EventStoreError)
    with pytest.raises(NotAStoreError):
        eventstore.open(tmp_path / "missing", readonly=True)
    with pytest.raises(NotAStoreError):
        eventstore.open(tmp_path / "missing", create=False)
    assert _tree(tmp_path) == before
    assert not (tmp_path / "missing").exists()


def test_empty_directory_becomes_a_store(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    with eventstore.open(d) as store:
        store.append("t", "k")
    assert (d / "METALOG").exists()


# -- segments ---------------------------------------------------------------------------------
def test_rollover_and_reads_across_segments(store_dir, segment_files):
    """[F-03] names are first seqs and follow on; [F-04] rollover at segment_bytes."""
    payload = "x" * 300
    with eventstore.open(store_dir, segment_bytes=4096, durability="none") as store:
        for i in range(60):
            if i % 3 == 0:
                store.append_many([("t", f"k{i % 4}", {"i": i, "p": payload, "n": n}) for n in range(2)])
            else:
                store.append("t", f"k{i % 4}", {"i": i, "p": payload})
        total = store.last_seq
    segs = segment_files(store_dir)
    assert len(segs) >= 5
    firsts = [int(os.path.basename(p)[:20]) for p in segs]
    assert firsts[0] == 1 and firsts == sorted(firsts)
    for p in segs[:-1]:
        size = os.path.getsize(p)
        assert 4096 <= size < 4096 + 48 + 1024  # sealed right after crossing the limit
    with eventstore.open(store_dir, segment_bytes=4096) as store:
        events = list(store.read())
        assert [e.seq for e in events] == list(range(1, total + 1))
        # every segment's first seq is where a commit starts, one past the previous one's last
        starts = {e.seq for e in events if e.data.get("n", 0) == 0}
        assert set(firsts) <= starts
        mid = firsts[2] + 1
        assert [e.seq for e in store.read(mid, mid + 7)] == list(range(mid, mid + 7))
        assert [e.seq for e in store.read(key="k1")] == [e.seq for e in events if e.key == "k1"]
        assert store.stats()["segments"] == len(segs)
        store.append("t", "after-reopen")  # appends go on in the last segment
    with eventstore.open(store_dir, readonly=True) as ro:
        assert ro.last_seq == total + 1 and list(ro.read(total + 1))[0].key == "after-reopen"


def test_a_store_whose_segments_directory_vanished_is_refused(tmp_path):
    """The log is gone: open must not quietly start a new one at seq 1."""
    import shutil
    root = tmp_path / "s"
    with eventstore.open(root) as s:
        s.append("t", "k", {})
    shutil.rmtree(root / "segments")
    for readonly in (False, True):
        with pytest.raises(eventstore.CorruptionError) as info:
            eventstore.open(root, readonly=readonly)
        assert "segments" in str(info.value)
    assert not (root / "segments").exists()



def test_a_python_without_the_dependencies_is_told_what_to_install():
    """`import eventstore` in an interpreter metalog was not installed into names the package."""
    import subprocess
    import sys
    code = "import sys; sys.modules['msgspec'] = None; import eventstore"  # None: 'no such module'
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("ModuleNotFoundError: metalog needs the 'msgspec' package") and "pip install" in last
