"""The writer's side of the segment log: append frames, roll over, sync.

`SegmentLog` owns this process's file descriptor on the active segment. It
writes a batch of already-encoded frames with one `write` per segment
touched, creates the next segment when the active one reaches
``segment_bytes`` ([F-04]) and records the roll-over in ``END`` ([F-28]),
and syncs. Other processes append to the same segment between our commits: `resume` moves it to where the log ends after
the writer caught up with them. It knows nothing of events, seqs' meaning,
or durability policy, and never takes the commit lock: its caller holds it
whenever it writes. Not thread-safe: the store serialises calls.
"""
from __future__ import annotations

import errno
import os
from typing import NamedTuple

from ..fs import FileSystem
from .endrecord import EndRecord, advance_end
from .layout import SEGMENT_HEADER_SIZE
from .segment import create_segment

__all__ = ["SegmentLog", "PendingFrame"]


class PendingFrame(NamedTuple):
    data: bytes
    first_seq: int
    last_seq: int
    digest: bytes


class SegmentLog:
    def __init__(self, fs: FileSystem, seg_dir: str, active_first: int, active_path: str,
                 size: int, last_digest: bytes, segment_bytes: int,
                 buffer_bytes: int = 1 << 20) -> None:
        self.fs = fs
        self.seg_dir = seg_dir
        self.segment_bytes = segment_bytes
        self.buffer_bytes = buffer_bytes
        self.active_first = active_first
        self.active_path = active_path
        self.fd = fs.open_rw(active_path)
        fs.seek_end(self.fd)
        self.size = size  # bytes in the active segment, including buffered ones
        self._buf: list[bytes] = []
        self._buf_len = 0
        self._dirty = False  # written since the last sync
        self.last_digest = last_digest  # chain digest after the last frame appended

    def resume(self, segment: int, path: str, offset: int, digest: bytes) -> None:
        """Continue at ``offset`` of ``segment`` (another writer appended or rolled over)."""
        assert not self._buf, "a writer holding buffered frames holds the commit lock"
        if segment != self.active_first:
            fd = self.fs.open_rw(path)
            old, self.fd = self.fd, fd
            self.fs.close(old)
            self.active_first, self.active_path = segment, path
            self._dirty = True  # what the others wrote is synced with our next commit
        end = self.fs.seek_end(self.fd)
        if end != offset:
            raise OSError(errno.EIO, f"{path} is {end} bytes, but the log ends at {offset}")
        if offset != self.size:
            # Others appended to our active segment, perhaps without a sync yet (durability
            # flush, or an fsync writer that has not reached its sync). Our next sync, and
            # above all the one that seals this segment when we roll over, must cover their
            # frames: our commits after them would otherwise be durable past a hole.
            self._dirty = True
        self.size = offset
        self.last_digest = digest

    @property
    def buffered(self) -> bool:
        """Frames are held in memory, not yet handed to the OS."""
        return bool(self._buf)

    @property
    def position(self) -> tuple[int, int]:
        """(segment first seq, offset) where the next frame will start."""
        return self.active_first, self.size

    def append(self, frames: list[PendingFrame], *, buffered: bool) -> None:
        """Add frames to the log; with ``buffered`` keep them in memory until the buffer fills."""
        for frame in frames:
            if self.size >= self.segment_bytes:
                self._roll(frame.first_seq, self.last_digest)
            self._buf.append(frame.data)
            self._buf_len += len(frame.data)
            self.size += len(frame.data)
            self.last_digest = frame.digest
        if not buffered or self._buf_len >= self.buffer_bytes:
            self.write_buffer()

    def write_buffer(self) -> None:
        """Hand buffered bytes to the OS (one write)."""
        if self._buf:
            data = self._buf[0] if len(self._buf) == 1 else b"".join(self._buf)
            self._buf.clear()
            self._buf_len = 0
            self._dirty = True
            self.fs.write(self.fd, data)

    def sync(self) -> None:
        """Write what is buffered and make it durable."""
        self.write_buffer()
        if self._dirty:
            self.fs.fdatasync(self.fd)
            self._dirty = False

    def fdatasync(self) -> None:
        """Make the active segment durable as the OS holds it (written bytes only)."""
        self.fs.fdatasync(self.fd)
        self._dirty = False

    def sync_everything(self) -> None:
        """Make the whole active segment durable, whoever wrote it."""
        self._dirty = True
        self.sync()

    def _roll(self, first_seq: int, prev_digest: bytes) -> None:
        """Seal the active segment (durably, whoever wrote it) and start a new one."""
        self.sync_everything()
        path = create_segment(self.fs, self.seg_dir, first_seq, prev_digest)
        # [F-28]: the log now reaches seq first_seq - 1 durably and goes on in the new segment
        advance_end(self.fs, os.path.dirname(self.seg_dir), EndRecord(first_seq - 1, first_seq, prev_digest))
        old = self.fd
        self.fd = self.fs.open_rw(path)
        self.fs.seek_end(self.fd)
        self.fs.close(old)
        self.active_first, self.active_path = first_seq, path
        self.size = self.fs.size(path)

    def roll_now(self, next_seq: int) -> bool:
        """Seal the active segment if it holds any frame (used by compaction)."""
        if self.size <= SEGMENT_HEADER_SIZE:
            return False
        self._roll(next_seq, self.last_digest)
        return True

    def close(self) -> None:
        try:
            self.sync()
        finally:
            self.fs.close(self.fd)
