"""Sharing syncs between writer processes: one `fdatasync` makes many commits durable.

Writers append under the commit lock and sync after releasing it, so while
one process syncs, others append. ``LOCK.sync`` holds, besides its `flock`,
where the log has been written up to and where it is durable up to
(docs/FORMAT.md §8). A writer that needs its frames durable first looks at
the durable position: if another writer's sync already covered them, it is
done. Otherwise it takes the sync lock, looks again, and syncs everything
written so far, for every writer waiting behind it. This is how a database's
write-ahead log shares flushes between sessions.

The positions are hints for live processes, never trusted across a crash:
every writer's open makes the whole log durable and resets them while it
holds the commit lock. Each is checksummed, so a read that races a write is
taken for "unknown" (sync), never for a position further on. A position is
``(segment, offset)``; a sealed segment was synced whole by the writer that
sealed it, so a position in an older segment than the one written now is
durable.
"""
from __future__ import annotations

import zlib
from typing import Callable

from ..fs import FileSystem
from .directory import FileLock
from .layout import SYNC_SLOT

__all__ = ["SharedSync", "Position"]

Position = tuple[int, int]  # (segment first seq, offset)
_NOWHERE: Position = (0, 0)
_WRITTEN, _DURABLE = 0, SYNC_SLOT.size  # slot offsets in the file


def _pack(position: Position) -> bytes:
    body = SYNC_SLOT.pack(position[0], position[1], 0)[:-4]
    return body + zlib.crc32(body).to_bytes(4, "little")


def _unpack(data: bytes) -> Position:
    if len(data) != SYNC_SLOT.size:
        return _NOWHERE
    segment, offset, crc = SYNC_SLOT.unpack(data)
    return (segment, offset) if zlib.crc32(data[:-4]) == crc else _NOWHERE


class SharedSync:
    """The sync lock and the written/durable positions every writer of one store shares."""

    def __init__(self, fs: FileSystem, lock: FileLock) -> None:
        self.fs = fs
        self.lock = lock

    def _read(self) -> tuple[Position, Position]:
        data = self.fs.pread(self.lock.fd(), 2 * SYNC_SLOT.size, 0)
        return _unpack(data[:_DURABLE]), _unpack(data[_DURABLE:])

    def _write(self, slot: int, position: Position) -> None:
        self.fs.pwrite(self.lock.fd(), _pack(position), slot)

    def reset(self, end: Position) -> None:
        """The whole log up to ``end`` is durable (a writer's open; holding the commit lock)."""
        self._write(_DURABLE, end)
        self._write(_WRITTEN, end)

    def wrote(self, end: Position) -> None:
        """Frames up to ``end`` are written (holding the commit lock)."""
        self._write(_WRITTEN, end)

    def sync(self, mine: Position, fdatasync: Callable[[], None]) -> None:
        """Make everything up to ``mine`` durable, sharing the work with other writers.

        ``fdatasync`` syncs the segment ``mine`` is in (this process's active one).
        """
        if self._read()[1] >= mine:
            return
        with self.lock:
            written, durable = self._read()
            if durable >= mine:
                return
            if written[0] > mine[0]:
                return  # our segment was sealed since, and a sealed segment was synced whole
            target = max(written, mine)
            fdatasync()
            if self._read()[1] < target:
                self._write(_DURABLE, target)
