"""Every operating-system call the embedded store makes, behind one small class.

The store, the log, recovery, snapshots and compaction receive a `FileSystem`
(``eventstore.open(path, fs=...)``) and never call `os` for file I/O
themselves, so tests can swap in a fault-injecting subclass (fail the Nth
write/fsync/rename, drop unsynced bytes). This module knows nothing of the
format; it raises plain `OSError` and its callers translate it with the
context they have.
"""
from __future__ import annotations

import errno
import fcntl
import mmap
import os
from typing import BinaryIO, Iterator

__all__ = ["FileSystem", "DEFAULT_FS"]


class FileSystem:
    """Thin wrappers over os calls; subclass to inject faults."""

    # -- files -------------------------------------------------------------
    def open_rw(self, path: str, *, create: bool = False) -> int:
        flags = os.O_RDWR | (os.O_CREAT if create else 0)
        return os.open(path, flags | getattr(os, "O_CLOEXEC", 0), 0o644)

    def open_read(self, path: str) -> BinaryIO:
        return open(path, "rb", buffering=0)

    def write(self, fd: int, data: bytes | memoryview) -> None:
        """Write all of ``data`` at the fd's position (loops on short writes)."""
        n = os.write(fd, data)
        if n == len(data):
            return
        view = memoryview(data)[n:]
        while view:
            n = os.write(fd, view)
            if n <= 0:  # pragma: no cover - os.write raises instead
                raise OSError(errno.EIO, "short write")
            view = view[n:]

    def pread(self, fd: int, n: int, offset: int) -> bytes:
        """Up to ``n`` bytes at ``offset`` (fewer at the end of the file)."""
        return os.pread(fd, n, offset)

    def pwrite(self, fd: int, data: bytes, offset: int) -> None:
        view = memoryview(data)
        while view:
            n = os.pwrite(fd, view, offset)
            view, offset = view[n:], offset + n

    def map_shared(self, fd: int, size: int) -> mmap.mmap:
        """The first ``size`` bytes of ``fd``'s file, mapped shared (the file is grown to
        ``size`` first if it is shorter). For a little state several processes read and
        write without a system call each time; it is never synced."""
        if os.fstat(fd).st_size < size:
            os.ftruncate(fd, size)
        return mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)

    def fd_size(self, fd: int) -> int:
        """The size of the file open as ``fd``."""
        return os.fstat(fd).st_size

    def seek_end(self, fd: int) -> int:
        return os.lseek(fd, 0, os.SEEK_END)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def fdatasync(self, fd: int) -> None:
        os.fdatasync(fd)

    def truncate(self, fd: int, size: int) -> None:
        os.ftruncate(fd, size)

    def close(self, fd: int) -> None:
        os.close(fd)

    def size(self, path: str) -> int:
        return os.stat(path).st_size

    def file_size(self, f: BinaryIO) -> int:
        """The size of an open file (it may have been renamed or removed since)."""
        return os.fstat(f.fileno()).st_size

    # -- directories and names ----------------------------------------------
    def fsync_dir(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def rename(self, src: str, dst: str) -> None:
        os.replace(src, dst)

    def remove(self, path: str) -> None:
        os.unlink(path)

    def makedirs(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)

    def listdir(self, path: str) -> list[str]:
        return os.listdir(path)

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def is_dir(self, path: str) -> bool:
        return os.path.isdir(path)

    def tree_size(self, root: str) -> int:
        """Bytes in every file under ``root`` (files that vanish meanwhile count 0)."""
        total = 0
        for path in _walk_files(root):
            try:
                total += os.stat(path).st_size
            except OSError:
                pass
        return total

    # -- whole files -----------------------------------------------------------
    def read_file(self, path: str, limit: int) -> bytes:
        """Read a whole small file, refusing one larger than ``limit`` bytes."""
        with open(path, "rb") as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise OSError(errno.EFBIG, f"{path} is larger than {limit} bytes")
        return data

    def create_atomic(self, path: str, data: bytes) -> None:
        """Temp file, write, fsync, rename, fsync the directory ([F-02])."""
        tmp = path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            self.write(fd, data)
            self.fsync(fd)
        finally:
            self.close(fd)
        self.rename(tmp, path)
        self.fsync_dir(os.path.dirname(path) or ".")

    # -- locking -----------------------------------------------------------------
    def lock(self, fd: int) -> None:
        """Take an exclusive `flock` on ``fd``, waiting for its holder (interruptible)."""
        fcntl.flock(fd, fcntl.LOCK_EX)

    def try_lock(self, fd: int, *, shared: bool = False) -> bool:
        """Take an exclusive (or ``shared``) `flock` on ``fd`` if it is free; False at once if not."""
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def unlock(self, fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)

    def lock_holders(self, path: str) -> list[int]:
        """Pids holding a `flock` on ``path`` (Linux ``/proc/locks``; empty where unknown)."""
        try:
            inode = os.stat(path).st_ino
            with open("/proc/locks", encoding="ascii", errors="replace") as f:
                lines = f.read().splitlines()
        except OSError:
            return []
        pids = []
        for line in lines:
            fields = line.split()
            # "1: FLOCK  ADVISORY  WRITE 1234 08:02:131 0 EOF" (a "->" marks a waiter)
            if len(fields) >= 6 and fields[1] == "FLOCK" \
                    and fields[5].rsplit(":", 1)[-1] == str(inode) and fields[4].isdigit():
                pids.append(int(fields[4]))
        return pids


def _walk_files(root: str) -> Iterator[str]:
    for dirpath, _, names in os.walk(root):
        for name in names:
            yield os.path.join(dirpath, name)


DEFAULT_FS = FileSystem()
