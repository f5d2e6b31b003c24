"""Walking the log on open, on `verify` and for salvage: one policy loop.

`Walker` drives `segment.scan` over a run of segments and applies a policy to
what the scanner classifies ([F-13]–[F-16]):

- ``strict``  — damage that is not a torn tail raises `CorruptionError`;
- ``salvage`` — keep every intact frame, record lost seq ranges, and (for a
  writer) rewrite damaged segments with a gap frame ([F-25]) after copying the
  original to ``quarantine/``;
- ``collect`` — record every problem and go on (used by `verify`).

A torn tail of the last segment is truncated (after a copy to quarantine) only
when ``writer`` is true; readers stop there. Decoded commits are handed to an
``on_commit`` callback. The report types live here too.
"""
from __future__ import annotations

import os
import time
import zlib
from dataclasses import dataclass, field
from typing import Callable, Iterator

from ._fs import FileSystem
from .codec import decode_commit, pack
from .errors import CorruptionError, FormatVersionError
from .event import Event
from .frame import Damage, Frame, FrameScanner, encode_frame, is_gap
from .layout import FRAME_MAGIC, FRAME_PREFIX, QUARANTINE_DIR, SEGMENT_HEADER_SIZE
from .segment import SegmentRef, SegmentStream, encode_header, scan, segment_path

__all__ = ["RecoveryReport", "RecoveryEntry", "Walker", "WalkEnd", "quarantine_copy"]


@dataclass(frozen=True)
class RecoveryEntry:
    action: str  # truncated, skipped-snapshot, lost, quarantined, rewrote, problem
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


def quarantine_copy(fs: FileSystem, root: str, name: str, data: bytes) -> str:
    """Copy bytes into quarantine/ durably before anything is cut ([F-05])."""
    qdir = os.path.join(root, QUARANTINE_DIR)
    fs.makedirs(qdir)
    path = os.path.join(qdir, f"{time.strftime('%Y%m%dT%H%M%S')}-{name}")
    n = 1
    while fs.exists(path):
        path = f"{path}.{n}"
        n += 1
    fs.create_atomic(path, data)
    return path


@dataclass
class WalkEnd:
    next_seq: int
    digest: bytes
    last_ts: int
    last_ref: SegmentRef | None
    end_offset: int  # where the next frame of last_ref starts


class SnapshotMismatch(Exception):
    """The first frame after a snapshot's position does not continue it."""


OnCommit = Callable[[Frame, list[Event]], None]


class Walker:
    def __init__(self, fs: FileSystem, root: str, *, policy: str, writer: bool,
                 report: RecoveryReport, decode: bool = True) -> None:
        assert policy in ("strict", "salvage", "collect")
        self.fs, self.root, self.policy, self.writer = fs, root, policy, writer
        self.report = report
        self.decode = decode
        self._rewrite: dict[str, SegmentRef] = {}

    # -- policy helpers -------------------------------------------------------------
    def _problem(self, path: str, offset: int | None, reason: str,
                 lost: tuple[int, int] | None = None) -> None:
        if self.policy == "strict":
            raise CorruptionError(path, offset, reason)
        action = "problem" if self.policy == "collect" else "lost"
        self.report.add(RecoveryEntry(action, path, offset, reason, lost=lost))

    def walk(self, refs: list[SegmentRef], start: int, offset: int, expected: int,
             digest: bytes, last_ts: int, on_commit: OnCommit | None,
             check_snapshot: bool = False, stop_seq: int | None = None) -> WalkEnd:
        """Scan ``refs[start:]`` from ``offset`` in the first; return where the log ends."""
        restart = False
        end = WalkEnd(expected, digest, last_ts, refs[start] if start < len(refs) else None, offset)
        for i in range(start, len(refs)):
            ref = refs[i]
            last = i == len(refs) - 1
            first_in_walk = i == start
            try:
                stream = SegmentStream(self.fs, ref)
            except FormatVersionError:
                raise
            except CorruptionError as exc:
                if check_snapshot and first_in_walk:
                    raise SnapshotMismatch(str(exc)) from None
                self._problem(ref.path, exc.offset, exc.reason)
                self._rewrite[ref.path] = ref
                continue  # its frames are unreadable; the next segment resynchronises
            if not (first_in_walk and offset > SEGMENT_HEADER_SIZE):
                if ref.first_seq > expected:
                    self._problem(ref.path, 0, f"seqs {expected}-{ref.first_seq - 1} are missing",
                                  lost=(expected, ref.first_seq - 1))
                    restart = True
                elif ref.first_seq < expected:
                    self._problem(ref.path, 0, f"segment starts at seq {ref.first_seq}, expected {expected}")
                    restart = True
                if not restart and stream.prev_digest != digest:
                    self._problem(ref.path, 0, "segment header does not continue the digest chain")
                expected, digest, offset = ref.first_seq, stream.prev_digest, SEGMENT_HEADER_SIZE
            if check_snapshot and first_in_walk and offset > stream.end:
                raise SnapshotMismatch("snapshot position is past the end of its segment")
            scanner = FrameScanner(offset, expected, digest, end=stream.end)
            if restart:
                scanner.restart_chain()
            restart = False
            damage: Damage | None = None
            damaged_segment = False
            for item in scan(stream, scanner, offset, resync=True):
                if isinstance(item, Damage):
                    if check_snapshot and first_in_walk and item.offset == offset and item.kind in ("seq", "chain"):
                        raise SnapshotMismatch(item.reason)
                    damage = item
                    continue
                check_snapshot = False
                if damage is not None:  # valid data after damage: corruption ([F-14])
                    lost = (expected, item.first_seq - 1) if item.first_seq > expected else None
                    self._problem(ref.path, damage.offset, damage.reason, lost=lost)
                    damaged_segment = True
                    damage = None
                if stop_seq is not None and item.first_seq > stop_seq:
                    break
                expected = item.first_seq + item.count
                digest = item.digest
                last_ts = max(last_ts, item.ts)
                if on_commit is not None and not is_gap(item.payload):
                    events = decode_commit(item.payload, item.first_seq, item.count, item.ts,
                                           ref.path, item.offset) if self.decode else []
                    on_commit(item, events)
                restart = is_gap(item.payload)
            check_snapshot = False
            end = WalkEnd(expected, digest, last_ts, ref, scanner.position)
            if damage is not None:
                if last:
                    self._torn_tail(ref, stream, damage)
                else:
                    self._problem(ref.path, damage.offset, damage.reason)
                    damaged_segment = True
                    restart = True
            if damaged_segment:
                self._rewrite[ref.path] = ref
            if stop_seq is not None and expected > stop_seq:
                break
        return end

    def _torn_tail(self, ref: SegmentRef, stream: SegmentStream, damage: Damage) -> None:
        """[F-13]: nothing valid follows the damage in the last segment."""
        if self.policy == "collect":
            self.report.add(RecoveryEntry("problem", ref.path, damage.offset,
                                          f"torn tail: {damage.reason}",
                                          nbytes=stream.end - damage.offset))
            return
        if not self.writer or ref.compressed:
            if ref.compressed:
                self._problem(ref.path, damage.offset, damage.reason)
            return
        fd = self.fs.open_rw(ref.path)
        try:
            size = self.fs.seek_end(fd)
            cut = size - damage.offset
            with self.fs.open_read(ref.path) as f:
                f.seek(damage.offset)
                data = f.read(cut)
            qpath = quarantine_copy(self.fs, self.root, f"{os.path.basename(ref.path)}.{damage.offset}.torn", data)
            self.fs.truncate(fd, damage.offset)
            self.fs.fsync(fd)
        finally:
            self.fs.close(fd)
        self.fs.fsync_dir(os.path.dirname(ref.path))
        self.report.add(RecoveryEntry("truncated", ref.path, damage.offset,
                                      f"torn tail ({damage.reason}); copied to {qpath}", nbytes=cut))

    # -- salvage: rewrite damaged segments with gap frames ([F-25]) -----------------------
    @property
    def damaged(self) -> list[SegmentRef]:
        return list(self._rewrite.values())

    def rewrite_damaged(self, refs: list[SegmentRef]) -> None:
        """Replace each damaged segment by its intact frames plus gap frames."""
        for ref in self._rewrite.values():
            idx = refs.index(ref)
            next_first = refs[idx + 1].first_seq if idx + 1 < len(refs) else None
            self._rewrite_one(ref, next_first)

    def _rewrite_one(self, ref: SegmentRef, next_first: int | None) -> None:
        fs = self.fs
        frames: list[Frame] = []
        prev = bytes(16)
        try:
            stream = SegmentStream(fs, ref)
            prev = stream.prev_digest
            scanner = FrameScanner(SEGMENT_HEADER_SIZE, ref.first_seq, prev, end=stream.end)
            scanner.restart_chain()
            frames = [f for f in scan(stream, scanner, SEGMENT_HEADER_SIZE, resync=True)
                      if isinstance(f, Frame)]
        except CorruptionError:
            # header unreadable: find frames anywhere in the plain bytes
            if not ref.compressed:
                data = fs.read_file(ref.path, fs.size(ref.path))
                scanner = FrameScanner(0, ref.first_seq, prev)
                scanner.feed(data)
                scanner.close()
                scanner.damage = Damage(-1, "header")
                while True:
                    frame, done = scanner.resync()
                    if frame is None:
                        break
                    frames.append(frame)
        out = [encode_header(ref.first_seq, prev)]
        expected, digest = ref.first_seq, prev
        for frame in frames + [None]:  # type: ignore[list-item]
            upto = frame.first_seq if frame is not None else next_first
            if upto is not None and upto > expected:
                gap, digest = encode_frame(expected, upto - expected, 0,
                                           pack({"gap": "lost in salvage"}), digest)
                out.append(gap)
                expected = upto
            if frame is None:
                break
            out.append(self._frame_bytes(frame))
            expected, digest = frame.first_seq + frame.count, frame.digest
        original = fs.read_file(ref.path, fs.size(ref.path))
        qpath = quarantine_copy(fs, self.root, os.path.basename(ref.path), original)
        new_path = segment_path(os.path.dirname(ref.path), ref.first_seq)
        fs.create_atomic(new_path, b"".join(out))
        if ref.compressed:
            fs.remove(ref.path)  # a copy is in quarantine
            fs.fsync_dir(os.path.dirname(ref.path))
        self.report.add(RecoveryEntry("rewrote", ref.path, None,
                                      f"kept {len(frames)} intact commits; original copied to {qpath}"))

    @staticmethod
    def _frame_bytes(frame: Frame) -> bytes:
        prefix = FRAME_PREFIX.pack(len(frame.payload), frame.count, frame.first_seq, frame.ts)
        crc = zlib.crc32(frame.payload, zlib.crc32(frame.digest, zlib.crc32(prefix)))
        return FRAME_MAGIC + crc.to_bytes(4, "little") + prefix + frame.digest + frame.payload
