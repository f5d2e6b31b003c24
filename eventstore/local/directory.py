"""The store directory: its marker, its layout, its locks, and its quarantine.

`StoreDirectory` creates a store or checks that a path is one ([F-01], [F-06]),
refusing a foreign directory without touching it. `FileLock` is an exclusive
`flock` taken and released many times: writers hold ``LOCK`` per group
commit (not per open, [F-31]) and ``LOCK.maintenance`` while they compact or
salvage. `quarantine_copy` is the one way recovery keeps bytes it is about to
cut or replace ([F-05]). Every OS call goes through the `FileSystem`.
"""
from __future__ import annotations

import os
import threading
import time
import zlib

from ..errors import CorruptionError, FormatVersionError, NotAStoreError, StoreIOError
from ..fs import FileSystem
from ..report import RecoveryEntry, RecoveryReport
from .layout import (
    FORMAT_VERSION, LOCK_NAME, MAINTENANCE_LOCK_NAME, SYNC_LOCK_NAME, WRITERS_LOCK_NAME, MARKER, MARKER_MAGIC, MARKER_NAME, MARKER_SIZE,
    QUARANTINE_DIR, SEGMENTS_DIR, SNAPSHOTS_DIR, TMP_SUFFIX,
)

__all__ = ["StoreDirectory", "FileLock", "ThreadFileLock", "quarantine_copy", "quarantine_move"]


class StoreDirectory:
    """The paths of one store, and the checks that it is one."""

    def __init__(self, fs: FileSystem, root: str) -> None:
        self.fs = fs
        self.root = root
        self.segments = os.path.join(root, SEGMENTS_DIR)
        self.snapshots = os.path.join(root, SNAPSHOTS_DIR)
        self.quarantine = os.path.join(root, QUARANTINE_DIR)
        self.marker = os.path.join(root, MARKER_NAME)

    def prepare(self, *, create: bool, readonly: bool) -> None:
        """Check the store at ``root``, or create it if allowed ([F-01])."""
        fs, root = self.fs, self.root
        if fs.exists(root) and not fs.is_dir(root):
            raise NotAStoreError(f"{root} exists and is not a directory")
        if fs.is_dir(root):
            # The marker is looked for again after the listing: another process may have
            # finished creating the store in between.
            if not fs.exists(self.marker) and not self._unfinished_creation(fs.listdir(root)) \
                    and not fs.exists(self.marker):
                raise NotAStoreError(f"{root} is not empty and holds no metalog store ({MARKER_NAME} missing)")
            if fs.exists(self.marker):
                self._check_marker()
                if not readonly:
                    fs.makedirs(self.snapshots)
                return
        if not create or readonly:
            raise NotAStoreError(f"no metalog store at {root}")
        fs.makedirs(root)
        # Other processes may be creating this store right now: creators take turns on the
        # commit lock, and whoever comes second finds the marker the first one wrote.
        lock = self.commit_lock()
        try:
            lock.acquire()
            if fs.exists(self.marker):
                self._check_marker()
                fs.makedirs(self.snapshots)
                return
            fs.makedirs(self.segments)
            fs.makedirs(self.snapshots)
            body = MARKER.pack(MARKER_MAGIC, FORMAT_VERSION, 0)
            fs.create_atomic(self.marker, body + zlib.crc32(body).to_bytes(4, "little"))
            fs.fsync_dir(os.path.dirname(root) or ".")
        finally:
            lock.close()

    def _unfinished_creation(self, entries: list[str]) -> bool:
        """True for an empty directory or what a crash while creating a store leaves behind
        (our empty subdirectories and lock file, an unfinished marker), which open may
        complete; or what another process creating the store now has made so far."""
        for name in entries:
            if name == MARKER_NAME + TMP_SUFFIX:
                continue
            if name == LOCK_NAME and self.fs.size(os.path.join(self.root, name)) == 0:
                continue
            sub = os.path.join(self.root, name)
            if name in (SEGMENTS_DIR, SNAPSHOTS_DIR) and self.fs.is_dir(sub) and not self.fs.listdir(sub):
                continue
            return False
        return True

    def _check_marker(self) -> None:
        marker = self.marker
        data = self.fs.read_file(marker, MARKER_SIZE)
        if len(data) != MARKER_SIZE or data[:8] != MARKER_MAGIC:
            raise CorruptionError(marker, 0, "not a metalog store marker")
        if zlib.crc32(data[:-4]) != int.from_bytes(data[-4:], "little"):
            raise CorruptionError(marker, 0, "store marker checksum mismatch")
        _, version, _ = MARKER.unpack(data[:-4])
        if version != FORMAT_VERSION:
            raise FormatVersionError(marker, version, FORMAT_VERSION)
        # A marker is written after the directories ([F-01]), so a store without its
        # segments/ lost its log: refuse rather than start a new one at seq 1.
        if not self.fs.is_dir(self.segments):
            raise CorruptionError(self.segments, None, "the store's segments directory is missing")

    def commit_lock(self) -> FileLock:
        """``LOCK``: held by a writer while it appends one group commit ([F-31])."""
        return FileLock(self.fs, os.path.join(self.root, LOCK_NAME))

    def sync_lock(self) -> FileLock:
        """``LOCK.sync``: held by the writer that syncs for the others; holds the positions."""
        return FileLock(self.fs, os.path.join(self.root, SYNC_LOCK_NAME))

    def writers_lock(self) -> FileLock:
        """``LOCK.writers``: shared by every open writer, or held by one exclusive writer ([F-24])."""
        return FileLock(self.fs, os.path.join(self.root, WRITERS_LOCK_NAME))

    def maintenance_lock(self) -> ThreadFileLock:
        return ThreadFileLock(self.fs, os.path.join(self.root, MAINTENANCE_LOCK_NAME))

    def quarantine_tmp_files(self, report: RecoveryReport) -> None:
        """[F-02]: a .tmp file is never read; a writer moves leftovers aside (holding LOCK)."""
        for d in (self.root, self.segments, self.snapshots):
            for name in self.fs.listdir(d):
                if name.endswith(TMP_SUFFIX):
                    self.fs.makedirs(self.quarantine)
                    dest = os.path.join(self.quarantine, f"{time.strftime('%Y%m%dT%H%M%S')}-{name}")
                    self.fs.rename(os.path.join(d, name), dest)
                    report.add(RecoveryEntry("quarantined", os.path.join(d, name), None,
                                             "unfinished temporary file"))


class FileLock:
    """An exclusive `flock` on one file, acquired and released as often as needed.

    Not thread-aware: its user serialises acquire and release (the commit lock
    is taken by whichever thread leads the group commit, and may be released by
    the next leader). Locks of separate `FileLock` objects exclude each other
    even within one process (``flock`` locks belong to the open file, not the
    process), so two `Store` objects on one directory coordinate like two
    processes.
    """

    def __init__(self, fs: FileSystem, path: str) -> None:
        self.fs = fs
        self.path = path
        self._fd: int | None = None
        self.held = False

    def fd(self) -> int:
        """The lock file, open (for a lock file that also holds a little state)."""
        if self._fd is None:
            self._fd = self.fs.open_rw(self.path, create=True)
        return self._fd

    def acquire(self) -> None:
        self.fs.lock(self.fd())
        self.held = True

    def try_acquire(self, *, shared: bool = False) -> bool:
        """Take the lock if nobody holds it (``shared``: if nobody holds it exclusively);
        False, at once, otherwise."""
        self.held = self.fs.try_lock(self.fd(), shared=shared)
        return self.held

    def release(self) -> None:
        """Release the lock (a no-op when it is not held)."""
        if self.held:
            self.held = False
            assert self._fd is not None
            self.fs.unlock(self._fd)

    def holders(self) -> list[int]:
        return self.fs.lock_holders(self.path)

    def close(self) -> None:
        """Close the lock file (which releases the lock)."""
        fd, self._fd = self._fd, None
        self.held = False
        if fd is not None:
            self.fs.close(fd)

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class ThreadFileLock(FileLock):
    """A `FileLock` that also excludes this process's other threads, re-entrant for its holder.

    For the maintenance lock, which a background snapshot, `compact` and
    `snapshot` may want from different threads, and `compact` takes again
    through `snapshot`.
    """

    def __init__(self, fs: FileSystem, path: str) -> None:
        super().__init__(fs, path)
        self._threads = threading.Lock()  # held with the flock
        self._owner = 0  # the thread holding it
        self._depth = 0  # its acquisitions

    def acquire(self) -> None:
        me = threading.get_ident()
        if self._owner == me:
            self._depth += 1
            return
        self._threads.acquire()
        try:
            super().acquire()
        except BaseException:
            self._threads.release()
            raise
        self._owner, self._depth = me, 1

    def try_acquire(self, *, shared: bool = False) -> bool:
        assert not shared, "the maintenance lock is exclusive"
        me = threading.get_ident()
        if self._owner == me:
            self._depth += 1
            return True
        if not self._threads.acquire(blocking=False):
            return False
        try:
            taken = super().try_acquire()
        except BaseException:
            self._threads.release()
            raise
        if not taken:
            self._threads.release()
            return False
        self._owner, self._depth = me, 1
        return True

    def release(self) -> None:
        """Release one acquisition by this thread (a no-op when it holds none)."""
        if self._owner != threading.get_ident():
            return
        self._depth -= 1
        if self._depth:
            return
        self._owner = 0
        try:
            super().release()
        finally:
            self._threads.release()

    def close(self) -> None:
        """Close the lock file; a holder in this thread gives it up first."""
        if self._owner == threading.get_ident():
            self._owner, self._depth = 0, 0
            self._threads.release()
        with self._threads:
            super().close()


def _quarantine_path(fs: FileSystem, root: str, name: str) -> str:
    """A fresh path in quarantine/ (created durably if missing) for ``name``."""
    qdir = os.path.join(root, QUARANTINE_DIR)
    if not fs.exists(qdir):
        fs.makedirs(qdir)
        fs.fsync_dir(root)  # the directory entry itself must survive a power cut
    path = os.path.join(qdir, f"{time.strftime('%Y%m%dT%H%M%S')}-{name}")
    n = 1
    while fs.exists(path):
        path = f"{path}.{n}"
        n += 1
    return path


def quarantine_copy(fs: FileSystem, root: str, name: str, data: bytes) -> str:
    """Copy bytes into quarantine/ durably before anything is cut ([F-05]).

    On failure (a full disk) the half-written temporary file is removed, as a
    writer's open never looks in quarantine/ for leftovers ([F-02] moves them
    *into* it), and the error becomes a `StoreIOError` naming the store and the
    bytes it needs; the caller has cut nothing yet.
    """
    path = None
    try:
        path = _quarantine_path(fs, root, name)
        fs.create_atomic(path, data)
    except OSError as exc:
        if path is not None:
            _remove_quietly(fs, path + TMP_SUFFIX)
        raise StoreIOError(root, path or os.path.join(root, QUARANTINE_DIR, name), exc.errno, exc.strerror,
                           "copying damaged bytes into quarantine/ before recovery cuts them",
                           needed=len(data)) from exc
    return path


def quarantine_move(fs: FileSystem, root: str, path: str) -> str:
    """Move a whole file into quarantine/ ([F-05]: damaged files are moved, never unlinked).

    A rename: atomic, and it needs no free space. Both directories are fsynced,
    so after a power cut the file is in one place or the other (or, briefly, in
    both), never in neither. Returns the new path.
    """
    dest = None
    try:
        dest = _quarantine_path(fs, root, os.path.basename(path))
        fs.rename(path, dest)
        fs.fsync_dir(os.path.dirname(dest))
        fs.fsync_dir(os.path.dirname(path))
    except OSError as exc:
        raise StoreIOError(root, dest or path, exc.errno, exc.strerror,
                           f"moving {path} into quarantine/") from exc
    return dest


def _remove_quietly(fs: FileSystem, path: str) -> None:
    try:
        if fs.exists(path):
            fs.remove(path)
    except OSError:
        pass  # a dead disk: a later writer's open cannot mistake it for data (it is in quarantine/)
