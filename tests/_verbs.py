"""Test verbs on store files (flip, truncate, zero, resign, ...) and a tiny projection.

In the manner of LevelDB's log_test: tests damage files with small named verbs
and then assert what was lost. `resign` recomputes a frame's CRC after an edit,
so only the digest chain can notice ([F-18]); `redigest` and `rechain` also
recompute digests, as someone who knows the chain would. `frames_of` lists a
plain segment's frames by hopping headers (it trusts the file: use it before
damage).
"""
from __future__ import annotations

import hashlib
import os
import threading
import struct
import zlib
from typing import Any, NamedTuple

import msgpack
import zstandard

from eventstore.fs import FileSystem
from eventstore.local.layout import (
    FRAME_HEADER_SIZE, SEGMENT_HEADER_SIZE, SNAPSHOT_HEADER, SNAPSHOT_HEADER_SIZE,
    ZSEGMENT_HEADER, ZSEGMENT_HEADER_SIZE,
)

SEGMENTS = "segments"
SNAPSHOTS = "snapshots"


class FrameInfo(NamedTuple):
    offset: int
    size: int
    first_seq: int
    count: int

    @property
    def last_seq(self) -> int:
        return self.first_seq + self.count - 1


def seg_files(root: str, suffix: str = "") -> list[str]:
    d = os.path.join(root, SEGMENTS)
    return sorted(os.path.join(d, n) for n in os.listdir(d)
                  if n.endswith(suffix) and not n.endswith(".tmp"))


def snap_files(root: str) -> list[str]:
    d = os.path.join(root, SNAPSHOTS)
    return sorted(os.path.join(d, n) for n in os.listdir(d) if n.endswith(".snap"))


def frames_of(path: str) -> list[FrameInfo]:
    data = open(path, "rb").read()
    out, pos = [], SEGMENT_HEADER_SIZE
    while pos + FRAME_HEADER_SIZE <= len(data):
        length, count, first = struct.unpack_from("<IIQ", data, pos + 8)
        out.append(FrameInfo(pos, FRAME_HEADER_SIZE + length, first, count))
        pos += FRAME_HEADER_SIZE + length
    return out


# -- verbs ----------------------------------------------------------------------------
def flip(path: str, offset: int, bit: int = 0) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([b ^ (1 << bit)]))


def truncate(path: str, size: int) -> None:
    os.truncate(path, size)


def zero(path: str, offset: int, n: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(bytes(n))


def write_at(path: str, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def append_bytes(path: str, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


def resign(path: str, offset: int) -> None:
    """Recompute the CRC of the frame at ``offset`` after its bytes were edited."""
    with open(path, "r+b") as f:
        f.seek(offset)
        head = f.read(FRAME_HEADER_SIZE)
        length = struct.unpack_from("<I", head, 8)[0]
        payload = f.read(length)
        crc = zlib.crc32(head[8:] + payload)
        f.seek(offset + 4)
        f.write(crc.to_bytes(4, "little"))


def redigest(path: str, offset: int, prev: bytes) -> bytes:
    """Store in the frame at ``offset`` the digest it has when chained from ``prev`` ([F-17]),
    re-sign it, and return that digest: a frame edited by someone who knows the chain."""
    with open(path, "rb") as f:
        f.seek(offset)
        head = f.read(FRAME_HEADER_SIZE)
        payload = f.read(struct.unpack_from("<I", head, 8)[0])
    h = hashlib.blake2b(prev, digest_size=16)
    h.update(head[8:32])
    h.update(payload)
    write_at(path, offset + 32, h.digest())
    resign(path, offset)
    return h.digest()


def rechain(path: str, prev: bytes) -> bytes:
    """Re-sign a whole plain segment as if the chain entered it with ``prev``: its header's
    digest, then every frame's digest and CRC. Returns the digest after its last frame."""
    write_at(path, 16, prev)
    resign_header(path, SEGMENT_HEADER_SIZE)
    for f_ in frames_of(path):
        prev = redigest(path, f_.offset, prev)
    return prev


def resign_header(path: str, size: int) -> None:
    """Recompute the trailing CRC-32 of a ``size``-byte header at the start of ``path``."""
    with open(path, "r+b") as f:
        head = f.read(size)
        f.seek(size - 4)
        f.write(zlib.crc32(head[:-4]).to_bytes(4, "little"))


def set_u16(path: str, offset: int, value: int, header_size: int) -> None:
    write_at(path, offset, value.to_bytes(2, "little"))
    resign_header(path, header_size)


# -- hostile snapshot / zseg builders -------------------------------------------------------
def build_snapshot(seq: int, ts: int, seg_first: int, offset: int, digest: bytes,
                   compressed_body: bytes, body_len: int, version: int = 1) -> bytes:
    head = SNAPSHOT_HEADER.pack(b"MLSN", version, 0, seq, ts, seg_first, offset, digest, body_len,
                                zlib.crc32(compressed_body), 0)[:-4]
    return head + zlib.crc32(head).to_bytes(4, "little") + compressed_body


def read_snapshot_header(path: str) -> tuple:
    return SNAPSHOT_HEADER.unpack(open(path, "rb").read(SNAPSHOT_HEADER_SIZE))


def build_zseg(first: int, last: int, plain_size: int, digest: bytes, zbody: bytes,
               version: int = 1) -> bytes:
    head = ZSEGMENT_HEADER.pack(b"MLSZ", version, 0, first, last, plain_size, digest, 0, 0)[:-4]
    return head + zlib.crc32(head).to_bytes(4, "little") + zbody


def read_zseg_header(path: str) -> tuple:
    return ZSEGMENT_HEADER.unpack(open(path, "rb").read(ZSEGMENT_HEADER_SIZE))


def zstd_stream(chunks, size: int | None = None) -> bytes:
    """One zstd frame (content checksum on) from an iterable of chunks, optionally declaring ``size``."""
    cobj = zstandard.ZstdCompressor(level=1, write_checksum=True).compressobj(
        size=size if size is not None else -1)
    out = [cobj.compress(c) for c in chunks]
    out.append(cobj.flush())
    return b"".join(out)


def nested_msgpack(depth: int) -> bytes:
    """``depth`` nested one-element arrays around 0."""
    return b"\x91" * depth + b"\x00"


# -- a projection for tests ----------------------------------------------------------------
class KV:
    """Per key: the last data, and an order-sensitive fold of every event applied."""

    name = "kv"
    version = 1

    def __init__(self) -> None:
        self.last: dict[str, Any] = {}
        self.count = 0
        self.fold = 0

    def apply(self, event) -> None:
        self.last[event.key] = event.data
        self.count += 1
        self.fold = zlib.crc32(msgpack.packb([event.seq, event.type, event.key, event.data]),
                               self.fold)

    def snapshot(self) -> Any:
        return {"last": self.last, "count": self.count, "fold": self.fold}

    def restore(self, state: Any) -> None:
        self.last = dict(state["last"])
        self.count = state["count"]
        self.fold = state["fold"]

    def state(self) -> tuple:
        return self.last, self.count, self.fold


class Applies(KV):
    """KV that also counts the events applied to this instance (not part of its state)."""

    def __init__(self) -> None:
        super().__init__()
        self.applied = 0

    def apply(self, event) -> None:
        self.applied += 1
        super().apply(event)


def replay(events, cls=KV):
    """A fresh ``cls`` projection with ``events`` applied: a full replay, for comparison."""
    p = cls()
    for e in events:
        p.apply(e)
    return p


class Counter:
    """Counts events per type (a second projection, to test per-projection restore)."""

    name = "counter"

    def __init__(self, version: int = 1) -> None:
        self.version = version
        self.by_type: dict[str, int] = {}

    def apply(self, event) -> None:
        self.by_type[event.type] = self.by_type.get(event.type, 0) + 1

    def snapshot(self) -> Any:
        return self.by_type

    def restore(self, state: Any) -> None:
        self.by_type = dict(state)


def run_threads(target, n: int) -> None:
    """Run ``target(i)`` for i in range(n) on n threads at once; return when all are done."""
    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def events_tuple(events) -> list[tuple]:
    """Comparable content of events: everything but nothing less."""
    return [(e.seq, e.ts, e.type, e.key, e.data, e.meta) for e in events]


# -- a fast scratch directory ------------------------------------------------------------------
import pathlib
import shutil
import tempfile

import pytest


@pytest.fixture
def fast_tmp(tmp_path):
    """A scratch directory on tmpfs when there is one (these tests open stores hundreds of
    times; durability is not what they test), else pytest's tmp_path."""
    base = "/dev/shm"
    if not (os.path.isdir(base) and os.access(base, os.W_OK)):
        yield tmp_path
        return
    d = tempfile.mkdtemp(prefix="metalog-test-", dir=base)
    try:
        yield pathlib.Path(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


class FastFS(FileSystem):
    """No fsyncs: for tests about bytes, not durability (faster on a busy disk)."""

    def fsync(self, fd: int) -> None:
        pass

    def fdatasync(self, fd: int) -> None:
        pass

    def fsync_dir(self, path: str) -> None:
        pass


FAST = FastFS()
