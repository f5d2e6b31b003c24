"""What recovery did, and the one way it sets bytes aside ([F-05]).

`RecoveryEntry`/`RecoveryReport` are what `Store.recovery_report` and
`VerifyReport.problems` hold: each entry has an action, a file, an offset, a
reason, and the seq range it lost. `quarantine_copy` and `quarantine_move`
are the only ways recovery keeps bytes it is about to cut or replace: a
durable copy (or the whole file, renamed) under ``quarantine/`` first. When
that fails (a full disk), they raise `StoreIOError` and leave no temporary
file behind, so recovery stops before it cuts anything. No format knowledge here.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from ._fs import FileSystem
from .errors import StoreIOError
from .layout import QUARANTINE_DIR, TMP_SUFFIX

__all__ = ["RecoveryEntry", "RecoveryReport", "quarantine_copy", "quarantine_move", "seqs_in"]


@dataclass(frozen=True)
class RecoveryEntry:
    action: str  # truncated, skipped-snapshot, lost, damaged, quarantined, rewrote, problem, ...
    file: str
    offset: int | None = None
    reason: str = ""
    nbytes: int = 0
    lost: tuple[int, int] | None = None  # inclusive seq range

    def __str__(self) -> str:
        where = self.file if self.offset is None else f"{self.file} at offset {self.offset}"
        extra = f"; {self.nbytes} bytes" if self.nbytes else ""
        lost = f"; seqs {self.lost[0]}-{self.lost[1]} lost" if self.lost else ""
        return f"{self.action}: {where}: {self.reason}{extra}{lost}"

    def as_dict(self) -> dict:
        return {"action": self.action, "file": self.file, "offset": self.offset,
                "reason": self.reason, "bytes": self.nbytes,
                "lost": list(self.lost) if self.lost else None}


@dataclass
class RecoveryReport:
    """What `open` repaired, skipped or quarantined; falsy when nothing."""

    entries: list[RecoveryEntry] = field(default_factory=list)

    def add(self, entry: RecoveryEntry) -> None:
        self.entries.append(entry)

    @property
    def lost_ranges(self) -> list[tuple[int, int]]:
        return [e.lost for e in self.entries if e.lost]

    def __bool__(self) -> bool:
        return bool(self.entries)

    def __iter__(self) -> Iterator[RecoveryEntry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def as_dict(self) -> dict:
        return {"entries": [e.as_dict() for e in self.entries],
                "lost_ranges": [list(r) for r in self.lost_ranges]}

    def __str__(self) -> str:
        return "\n".join(map(str, self.entries)) or "nothing to recover"


def seqs_in(ranges: Iterable[tuple[int, int]]) -> int:
    """How many seqs inclusive ``(first, last)`` ranges hold."""
    return sum(last - first + 1 for first, last in ranges)


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

    On failure (issue 13 item 4: a full disk) the half-written temporary file is
    removed, as a writer's open never looks in quarantine/ for leftovers ([F-02]
    moves them *into* it), and the error becomes a `StoreIOError` naming the
    store and the bytes it needs; the caller has cut nothing yet.
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
