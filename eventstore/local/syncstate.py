"""Sharing syncs between writer processes: one `fdatasync` makes many commits durable.

Writers append under the commit lock and sync after releasing it, so while
one process syncs, others append. ``LOCK.sync`` holds, besides its `flock`,
where the log has been written up to and where it is durable up to
(docs/FORMAT.md §8), in a page every writer maps. A writer that needs its
frames durable first looks at the durable position: if another writer's sync
already covered them, it is done. Otherwise it takes the sync lock, looks
again, and syncs everything written so far, for every writer waiting behind
it. This is how a database's write-ahead log shares flushes between sessions.

A third slot says where the log ends, as the last writer to hold the commit
lock left it: a writer taking the lock compares it with where its own view
of the log ends, and reads the log only when they differ.

After the slots, one byte per writer says that it waits for the commit lock
(`waiting`). A writer keeps the commit lock after its commit while no byte is
set (`wanted`), so a writer appending alone takes and gives back no lock per
commit; it gives the lock back at its next commit once one is set, or about
20 ms after it took it (`Linger`) when it has nothing more to commit.

The positions are hints for live processes, never trusted across a crash:
every writer's open makes the whole log durable and resets them while it
holds the commit lock. Each is checksummed, so a read that races a write is
taken for "unknown" (sync), never for a position further on. A position is
``(segment, offset)``; a sealed segment was synced whole by the writer that
sealed it, so a position in an older segment than the one written now is
durable.
"""
from __future__ import annotations

import struct
import zlib
from typing import Callable

from ..fs import FileSystem
from .directory import FileLock
from .layout import SYNC_SLOT

__all__ = ["SharedSync", "Position"]

Position = tuple[int, int]  # (segment first seq, offset)
_NOWHERE: Position = (0, 0)
_WRITTEN, _DURABLE, _END = 0, SYNC_SLOT.size, 2 * SYNC_SLOT.size  # slot offsets in the file
_WANTS, _WANT_SLOTS = 64, 1024  # one byte per waiting writer, at a slot it picked at random
_NOBODY = bytes(_WANT_SLOTS)
_PAGE = 4096
_crc32 = zlib.crc32
_unpack = SYNC_SLOT.unpack_from
_BODY = struct.Struct("<QQ")  # a slot without its CRC
_CRC = struct.Struct("<I")


def _pack(position: Position) -> bytes:
    body = _BODY.pack(*position)
    return body + _CRC.pack(_crc32(body))


_UNKNOWN = _pack(_NOWHERE)  # the end slot while a writer changes the log


class SharedSync:
    """The sync lock and the written/durable/end positions every writer of one store shares."""

    def __init__(self, fs: FileSystem, lock: FileLock, slot: int) -> None:
        self.fs = fs
        self.lock = lock
        self._map = fs.map_shared(lock.fd(), _PAGE)
        self._want = _WANTS + slot % _WANT_SLOTS  # this writer's byte

    def _slot(self, at: int) -> Position:
        data = self._map[at:at + SYNC_SLOT.size]
        segment, offset, crc = _unpack(data)
        return (segment, offset) if _crc32(data[:-4]) == crc else _NOWHERE

    def _put(self, at: int, position: Position) -> None:
        self._map[at:at + SYNC_SLOT.size] = _pack(position)

    def reset(self, end: Position) -> None:
        """The whole log up to ``end`` is durable (a writer's open; holding the commit lock)."""
        self._put(_DURABLE, end)
        self._put(_WRITTEN, end)
        self._put(_END, end)
        # A writer killed while it waited left its byte set (every holder would give the
        # lock back at once, forever); a live waiter whose byte this clears waits at most
        # until the holder's `Linger` gives the lock back.
        self._map[_WANTS:_WANTS + _WANT_SLOTS] = _NOBODY

    def waiting(self, on: bool) -> None:
        """This writer waits (``on``), or no longer waits, for the commit lock."""
        self._map[self._want] = 1 if on else 0

    @property
    def wanted(self) -> bool:
        """Whether another writer waits for the commit lock, which its holder then gives back.

        Two writers that picked the same byte may clear each other's; the one that
        loses its byte waits until the holder's next commit or its `Linger`.
        """
        return self._map.find(b"\x01", _WANTS, _WANTS + _WANT_SLOTS) >= 0

    @property
    def end(self) -> Position:
        """Where the log ends, as the last writer to change it said; (0, 0): unknown.

        Every writer keeps the slot under the commit lock ([F-32]): `writing`
        before it appends, rolls or cuts, `ended` after; one that died in
        between left (0, 0), which is nobody's end. A writer whose own view
        ends exactly there has nothing to catch up with.
        """
        return self._slot(_END)

    def writing(self) -> None:
        """The log is about to change (holding the commit lock)."""
        self._map[_END:_END + SYNC_SLOT.size] = _UNKNOWN

    def ended(self, end: Position, *, written: bool = False, durable: bool = False) -> None:
        """The log ends at ``end`` now (holding the commit lock; frames may still be buffered).

        ``written``: up to ``end`` is written (not buffered); ``durable``: and
        synced, by this writer, holding the commit lock.
        """
        slot = _pack(end)
        m = self._map
        m[_END:_END + SYNC_SLOT.size] = slot
        if written or durable:
            m[_WRITTEN:_WRITTEN + SYNC_SLOT.size] = slot
        if durable:
            m[_DURABLE:_DURABLE + SYNC_SLOT.size] = slot

    def sync(self, mine: Position, fdatasync: Callable[[], None]) -> None:
        """Make everything up to ``mine`` durable, sharing the work with other writers.

        ``fdatasync`` syncs the segment ``mine`` is in (this process's active one).
        """
        if self._slot(_DURABLE) >= mine:
            return
        with self.lock:
            if self._slot(_DURABLE) >= mine:
                return
            written = self._slot(_WRITTEN)
            if written[0] > mine[0]:
                return  # our segment was sealed since, and a sealed segment was synced whole
            target = max(written, mine)
            fdatasync()
            if self._slot(_DURABLE) < target:
                self._put(_DURABLE, target)

    def close(self) -> None:
        self._map.close()
        self.lock.close()
