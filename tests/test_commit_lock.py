"""The commit lock between commits ([F-31]): a writer alone keeps it, anyone waiting gets it.

A writer keeps `LOCK` after a commit while no other writer waits for it, gives
it back at its next commit once one does (their byte in `LOCK.sync`), and
gives it back by itself soon after its last commit when nothing more comes.
"""
from __future__ import annotations

import fcntl
import mmap
import os
import threading
import time

import pytest

import eventstore

WANTS = slice(64, 64 + 1024)  # LOCK.sync: one byte per waiting writer (FORMAT.md §8)


def lock_is_free(root: str) -> bool:
    with open(os.path.join(root, "LOCK"), "rb") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(f, fcntl.LOCK_UN)
        return True


def someone_waits(root: str) -> bool:
    with open(os.path.join(root, "LOCK.sync"), "rb") as f, \
            mmap.mmap(f.fileno(), 4096, access=mmap.ACCESS_READ) as page:
        return any(page[WANTS])


def until(condition, seconds: float = 10.0) -> bool:
    end = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > end:
            return False
        time.sleep(0.001)
    return True


def test_a_writer_alone_keeps_the_lock_between_commits_and_gives_it_back_when_idle(tmp_path):
    root = str(tmp_path / "s")
    with eventstore.open(root) as store:
        store.append("t", "k", {"i": 1})
        assert not lock_is_free(root), "the lock was given back although nobody waited"
        assert until(lambda: lock_is_free(root)), "an idle writer kept the lock"
        store.append("t", "k", {"i": 2})  # takes it again
        assert store.version("k") == 2


def test_a_waiting_writer_gets_the_lock_at_the_holders_next_commit(tmp_path):
    """With the idle give-back out of the way, only the waiter's byte can free the lock."""
    root = str(tmp_path / "s")
    holder = eventstore.open(root)
    other = eventstore.open(root)
    holder._linger.quiet = 3600.0  # white box: the holder never gives the lock back by itself
    holder.append("t", "a")
    assert not lock_is_free(root) and not someone_waits(root)
    done = threading.Event()

    def wait_and_append() -> None:
        other.append("t", "b")
        done.set()

    waiter = threading.Thread(target=wait_and_append, daemon=True)
    waiter.start()
    assert until(lambda: someone_waits(root)), "the waiting writer did not say so"
    assert not done.is_set()
    holder.append("t", "a")  # sees the byte: gives the lock back after this commit
    waiter.join(10)
    assert done.is_set(), "the holder kept the lock although a writer waited"
    assert not someone_waits(root)
    assert [(e.seq, e.key) for e in other.read()] == [(1, "a"), (2, "a"), (3, "b")]
    assert (other.version("a"), other.version("b")) == (2, 1)
    holder.close()
    other.close()


def test_a_reader_sees_the_commits_of_a_writer_that_keeps_the_lock(tmp_path):
    root = str(tmp_path / "s")
    with eventstore.open(root) as store, eventstore.open(root, readonly=True) as reader:
        for i in range(5):
            store.append("t", f"k{i}")
            assert reader.last_seq == i + 1
            assert not lock_is_free(root)


def test_ctrl_c_in_a_projection_after_a_commit_that_kept_the_lock_gives_it_back(tmp_path):
    """The store fails (its projection missed a commit), but other writers go on."""
    class Interrupted:
        name, version = "interrupted", 1

        def apply(self, event):
            if event.key == "boom":
                raise KeyboardInterrupt

        def snapshot(self):
            return None

        def restore(self, state):
            pass

    root = str(tmp_path / "s")
    store = eventstore.open(root, [Interrupted()])
    store.append("t", "a")
    assert until(lambda: lock_is_free(root))  # so the next commit is the first to keep it again
    try:
        store.append("t", "boom")
    except KeyboardInterrupt:
        pass
    assert until(lambda: lock_is_free(root)), "a failed store kept the commit lock"
    with eventstore.open(root) as other:
        assert other.append("t", "b").seq == 3
    store.close()


def test_a_neighbours_buffer_that_cannot_be_written_fails_that_store_only(tmp_path):
    """A projection of a durability-none store appends to a second store on the directory:
    the first store's buffer is written to let the second in; when that write fails, the
    first store refuses writes from then on, the second goes on, and the log stays whole."""
    from eventstore.fs import FileSystem

    class FailingWrites(FileSystem):
        fail = False

        def write(self, fd, data):
            if self.fail:
                raise OSError(5, "Input/output error")
            super().write(fd, data)

    root = str(tmp_path / "s")
    second = eventstore.open(root)
    fs = FailingWrites()

    class Echo:
        name, version = "echo", 1

        def apply(self, event):
            if event.key == "b":
                fs.fail = True  # the first store's buffered commits cannot be written now
                second.append("echo", "b")

        def snapshot(self):
            return None

        def restore(self, state):
            pass

    first = eventstore.open(root, [Echo()], durability="none", fs=fs)
    first.append("t", "a")  # buffered, keeping the lock
    first.append("t", "b")  # its projection appends to the second store
    assert second.version("b") == 1
    with pytest.raises(eventstore.StoreFailedError):
        first.append("t", "c")
    second.append("t", "d")
    first.close()
    second.close()
    with eventstore.open(root) as again:  # strict: the log is whole
        assert [e.key for e in again.read()] == ["b", "d"]
