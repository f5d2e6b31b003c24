"""A fault-injecting `FileSystem` for tests: fail the Nth call, or lose power.

``FaultyFS`` counts every call of each operation (``write``, ``pwrite``,
``fsync``, ``fdatasync``, ``rename``, ``fsync_dir``, ``truncate``, ``remove``,
``create``). Faults:

- ``fail(op, nth, err=errno.EIO, where=None, partial=False, sticky=False)``:
  the ``nth`` call of ``op`` from now (counting only calls whose path contains
  ``where``) raises ``OSError(err)``; a ``partial`` write first writes half of
  its bytes; ``sticky`` makes every later mutating call fail too (a dead disk).
- power loss: ``track(root)`` records what is durable under ``root`` now;
  afterwards a file's content becomes durable at ``fsync``/``fdatasync`` of an
  fd on it, and a directory's entries (creations, renames, removals) at
  ``fsync_dir``. ``crash()`` makes every later mutating call fail and rewrites
  the tree to its durable state: unsynced bytes are dropped (or, with
  ``torn=True``, a random prefix of an appended tail survives), and entries
  whose directory was not fsynced are undone. ``crash_at(n)`` crashes at the
  ``n``th mutating call (which fails with EIO).

Identity is the inode number; every inode seen is held open so the kernel
cannot reuse its number while the test runs (call ``close_held()`` at the
end). ``on_call(op, path)``, when set, runs before each mutating call (tests
use it to capture what recovery is about to remove or replace), ``calls``
counts them per operation and ``fired`` lists the faults injected.
"""
from __future__ import annotations

import errno
import os
import random
import threading
from typing import Callable

from eventstore.fs import FileSystem

OPS = ("write", "pwrite", "fsync", "fdatasync", "rename", "fsync_dir", "truncate", "remove", "create")


class _Rule:
    def __init__(self, op: str, nth: int, err: int, where: str | None, partial: bool, sticky: bool) -> None:
        self.op, self.nth, self.err, self.where = op, nth, err, where
        self.partial, self.sticky = partial, sticky
        self.seen = 0
        self.fired = False


class FaultyFS(FileSystem):
    def __init__(self, seed: int = 0) -> None:
        self.calls: dict[str, int] = {op: 0 for op in OPS}
        self.log: list[tuple[str, str]] = []  # (op, path) of every mutating call
        self.rules: list[_Rule] = []
        self.dead = False
        self.fired: list[tuple[str, str, int]] = []  # (op, path, errno) of each injected fault
        self._lock = threading.RLock()
        self._rng = random.Random(seed)
        # power-loss model
        self.root: str | None = None
        self._content: dict[int, bytes] = {}  # inode -> durable bytes
        self._names: dict[str, dict[str, int]] = {}  # directory -> durable {name: inode}
        self._held: dict[int, int] = {}  # inode -> fd kept open (no inode reuse)
        self._crash_at: int | None = None
        self._mutations = 0
        self.on_call: Callable[[str, str], None] | None = None

    # -- fault rules ---------------------------------------------------------------------
    def fail(self, op: str, nth: int = 1, err: int = errno.EIO, *, where: str | None = None,
             partial: bool = False, sticky: bool = False) -> None:
        assert op in OPS, op
        self.rules.append(_Rule(op, nth, err, where, partial, sticky))

    def crash_at(self, n: int, torn: bool = False) -> None:
        """Lose power at the ``n``th mutating call from now."""
        self._crash_at = self._mutations + n
        self._torn = torn

    @staticmethod
    def _fd_path(fd: int) -> str:
        try:
            return os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return f"<fd {fd}>"

    def _check(self, op: str, path: str) -> _Rule | None:
        """Count a call; raise or return the rule that fires (for partial writes)."""
        with self._lock:
            if self.dead:
                raise OSError(errno.EIO, f"injected: disk is gone ({op} {path})")
            self.calls[op] += 1
            self._mutations += 1
            self.log.append((op, path))
            if self.on_call is not None:
                self.on_call(op, path)
            if self._crash_at is not None and self._mutations >= self._crash_at:
                self._crash_at = None
                self.crash(torn=self._torn)
                self.fired.append((op, path, errno.EIO))
                raise OSError(errno.EIO, f"injected power loss at {op} {path}")
            for rule in self.rules:
                if rule.fired or rule.op != op or (rule.where and rule.where not in path):
                    continue
                rule.seen += 1
                if rule.seen == rule.nth:
                    rule.fired = True
                    self.fired.append((op, path, rule.err))
                    if rule.sticky:
                        self.dead = True
                    if rule.partial and op in ("write", "pwrite"):
                        return rule
                    raise OSError(rule.err, f"injected {os.strerror(rule.err)} on {op} {path}")
        return None

    # -- FileSystem overrides ----------------------------------------------------------------
    def open_rw(self, path: str, *, create: bool = False) -> int:
        if create and not os.path.exists(path):
            self._check("create", path)
        fd = super().open_rw(path, create=create)
        self._hold(fd)
        return fd

    def write(self, fd: int, data: bytes | memoryview) -> None:
        rule = self._check("write", self._fd_path(fd))
        if rule is not None:
            half = bytes(data)[: len(data) // 2]
            if half:
                super().write(fd, half)
            raise OSError(rule.err, f"injected {os.strerror(rule.err)} after a partial write")
        super().write(fd, data)

    def pwrite(self, fd: int, data: bytes, offset: int) -> None:
        rule = self._check("pwrite", self._fd_path(fd))
        if rule is not None:
            super().pwrite(fd, bytes(data)[: len(data) // 2], offset)
            raise OSError(rule.err, f"injected {os.strerror(rule.err)} after a partial write")
        super().pwrite(fd, data, offset)

    def fsync(self, fd: int) -> None:
        self._check("fsync", self._fd_path(fd))
        super().fsync(fd)
        self._synced(fd)

    def fdatasync(self, fd: int) -> None:
        self._check("fdatasync", self._fd_path(fd))
        super().fdatasync(fd)
        self._synced(fd)

    def truncate(self, fd: int, size: int) -> None:
        self._check("truncate", f"{self._fd_path(fd)} @{size}")  # on_call sees the new size
        super().truncate(fd, size)

    def fsync_dir(self, path: str) -> None:
        self._check("fsync_dir", path)
        super().fsync_dir(path)
        if self.root is not None:
            with self._lock:
                self._names[os.path.abspath(path)] = self._listing(os.path.abspath(path))

    def rename(self, src: str, dst: str) -> None:
        self._check("rename", f"{src} -> {dst}")
        super().rename(src, dst)

    def remove(self, path: str) -> None:
        self._check("remove", path)
        if self.root is not None and os.path.exists(path):
            self._hold_path(path)
        super().remove(path)

    def makedirs(self, path: str) -> None:
        if self.dead:
            raise OSError(errno.EIO, f"injected: disk is gone (makedirs {path})")
        super().makedirs(path)

    def create_atomic(self, path: str, data: bytes) -> None:
        if self.dead:
            raise OSError(errno.EIO, f"injected: disk is gone (create {path})")
        tmp = path + ".tmp"
        if not os.path.exists(tmp):
            self._check("create", tmp)
        super().create_atomic(path, data)

    # -- power-loss model ------------------------------------------------------------------------
    def _hold(self, fd: int) -> None:
        if self.root is None:
            return
        try:
            ino = os.fstat(fd).st_ino
        except OSError:
            return
        with self._lock:
            if ino not in self._held:
                self._held[ino] = os.dup(fd)

    def _hold_path(self, path: str) -> int | None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return None
        ino = os.fstat(fd).st_ino
        with self._lock:
            if ino in self._held:
                os.close(fd)
            else:
                self._held[ino] = fd
        return ino

    def _listing(self, directory: str) -> dict[str, int]:
        out = {}
        for name in os.listdir(directory):
            p = os.path.join(directory, name)
            if os.path.isfile(p) and not os.path.islink(p):
                ino = self._hold_path(p)
                if ino is not None:
                    out[name] = ino
        return out

    def _synced(self, fd: int) -> None:
        if self.root is None:
            return
        self._hold(fd)
        ino = os.fstat(fd).st_ino
        with open(f"/proc/self/fd/{fd}", "rb") as f:
            data = f.read()
        with self._lock:
            self._content[ino] = data

    def track(self, root: str) -> None:
        """Everything under ``root`` is durable as of now; track changes from here."""
        self.root = os.path.abspath(root)
        for dirpath, _, names in os.walk(self.root):
            self._names[dirpath] = self._listing(dirpath)
            for ino in self._names[dirpath].values():
                with open(f"/proc/self/fd/{self._held[ino]}", "rb") as f:
                    self._content[ino] = f.read()

    def crash(self, torn: bool = False) -> None:
        """Power cut: from now on every mutating call fails; the tree keeps only what was durable."""
        assert self.root is not None, "call track(root) first"
        with self._lock:
            self.dead = True
            for dirpath, _, names in os.walk(self.root):
                durable = self._names.get(dirpath, {})
                for name in names:
                    p = os.path.join(dirpath, name)
                    if not os.path.isfile(p):
                        continue
                    ino = os.stat(p).st_ino
                    if durable.get(name) != ino:
                        os.unlink(p)
                for name, ino in durable.items():
                    p = os.path.join(dirpath, name)
                    data = self._content.get(ino, b"")
                    if torn and os.path.exists(p) and os.stat(p).st_ino == ino:
                        with open(p, "rb") as f:
                            now = f.read()
                        if len(now) > len(data) and now.startswith(data):
                            data = now[: len(data) + self._rng.randrange(len(now) - len(data) + 1)]
                    tmp = p + ".crash-restore"
                    with open(tmp, "wb") as f:
                        f.write(data)
                    os.replace(tmp, p)

    def close_held(self) -> None:
        with self._lock:
            for fd in self._held.values():
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._held.clear()
