"""Many writers and readers on one directory, the local backend's side ([F-24], [F-16]):
writers through a symlink share one log, a failed open leaves no lock behind, an idle
readonly store does not rescan the log. What every backend does with several writers and
readers (a second writer beside one holding the store open, a killed writer, follow and
refresh from another process) is tests/contract/test_readers_writers.py; the many-process
torture is tests/test_many_writers.py.
"""
from __future__ import annotations

import os

import pytest

import eventstore
from contract.test_readers_writers import HOLDER, expect_line, spawn


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


def test_an_idle_readonly_store_does_not_rescan_the_log(store_dir):
    """`last_seq` on a readonly store whose writer is idle costs a few stat calls, also on a
    new empty store and after the writer's compaction left an empty active segment: no call
    lists and rescans the segments, or decompresses the compacted one again."""
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
assert "exclusive=True" in EXCLUSIVE_HOLDER


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
