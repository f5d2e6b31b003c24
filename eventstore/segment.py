"""Segment files: names, headers, and streaming their bytes (docs/FORMAT.md §4, §6).

This module knows how a segment is named and laid out, how to create an empty
one atomically, and how to hand its frame bytes (plain or zstd-compressed) to
a `FrameScanner` in bounded chunks. It does not decide what damage means and
does not append frames: that is `log`'s job.
"""
from __future__ import annotations

import itertools
import os
import zlib
from typing import Iterator, NamedTuple

from ._fs import FileSystem
from .compression import ZstdFrameError, stream_decompress
from .errors import CorruptionError, FormatVersionError
from .frame import Damage, Frame, FrameScanner
from .layout import (
    FORMAT_VERSION, MAX_SEGMENT_BYTES, NAME_DIGITS, READ_CHUNK, SEGMENT_HEADER,
    SEGMENT_HEADER_SIZE, SEGMENT_MAGIC, SEGMENT_SUFFIX, ZSEGMENT_HEADER,
    ZSEGMENT_HEADER_SIZE, ZSEGMENT_MAGIC, ZSEGMENT_SUFFIX,
)

__all__ = ["SegmentRef", "list_segments", "segment_path", "encode_header", "read_header",
           "SegmentStream", "scan", "create_segment"]


class SegmentRef(NamedTuple):
    first_seq: int
    path: str
    compressed: bool


def segment_path(directory: str, first_seq: int, compressed: bool = False) -> str:
    suffix = ZSEGMENT_SUFFIX if compressed else SEGMENT_SUFFIX
    return os.path.join(directory, f"{first_seq:0{NAME_DIGITS}d}{suffix}")


def parse_name(name: str) -> tuple[int, bool] | None:
    for suffix, compressed in ((SEGMENT_SUFFIX, False), (ZSEGMENT_SUFFIX, True)):
        if name.endswith(suffix):
            stem = name[: -len(suffix)]
            if len(stem) == NAME_DIGITS and stem.isdigit():
                return int(stem), compressed
    return None


def list_segments(fs: FileSystem, directory: str) -> list[SegmentRef]:
    """Segments in log order; where N.seg and N.zseg both exist, N.seg ([F-20])."""
    found: dict[int, SegmentRef] = {}
    for name in fs.listdir(directory):
        parsed = parse_name(name)
        if parsed is None:
            continue
        first, compressed = parsed
        if first in found and compressed:
            continue
        found[first] = SegmentRef(first, os.path.join(directory, name), compressed)
    return [found[k] for k in sorted(found)]


# -- headers -----------------------------------------------------------------------------
def _crc(data: bytes) -> int:
    return zlib.crc32(data)


def encode_header(first_seq: int, prev_digest: bytes) -> bytes:
    body = SEGMENT_HEADER.pack(SEGMENT_MAGIC, FORMAT_VERSION, 0, first_seq, prev_digest, 0, 0)[:-4]
    return body + _crc(body).to_bytes(4, "little")


def _check_version(path: str, version: int) -> None:
    if version != FORMAT_VERSION:
        raise FormatVersionError(path, version, FORMAT_VERSION)


def read_header(data: bytes, path: str, first_seq: int) -> bytes:
    """Validate a plain segment header ([F-07]); return the digest before its first frame."""
    if len(data) < SEGMENT_HEADER_SIZE:
        raise CorruptionError(path, 0, f"segment header is {len(data)} of {SEGMENT_HEADER_SIZE} bytes")
    magic, version, _, seq, digest, _, crc = SEGMENT_HEADER.unpack_from(data)
    if magic != SEGMENT_MAGIC:
        raise CorruptionError(path, 0, "bad segment magic")
    if _crc(data[: SEGMENT_HEADER_SIZE - 4]) != crc:
        raise CorruptionError(path, 0, "segment header checksum mismatch")
    _check_version(path, version)
    if seq != first_seq:
        raise CorruptionError(path, 0, f"segment header says first seq {seq}, its name says {first_seq}")
    return bytes(digest)


class ZHeader(NamedTuple):
    first_seq: int
    last_seq: int
    plain_size: int
    last_digest: bytes


def encode_zheader(first_seq: int, last_seq: int, plain_size: int, last_digest: bytes) -> bytes:
    body = ZSEGMENT_HEADER.pack(ZSEGMENT_MAGIC, FORMAT_VERSION, 0, first_seq, last_seq,
                                plain_size, last_digest, 0, 0)[:-4]
    return body + _crc(body).to_bytes(4, "little")


def read_zheader(data: bytes, path: str, first_seq: int) -> ZHeader:
    if len(data) < ZSEGMENT_HEADER_SIZE:
        raise CorruptionError(path, 0, "compressed segment header is short")
    magic, version, _, seq, last, plain, digest, _, crc = ZSEGMENT_HEADER.unpack_from(data)
    if magic != ZSEGMENT_MAGIC:
        raise CorruptionError(path, 0, "bad compressed segment magic")
    if _crc(data[: ZSEGMENT_HEADER_SIZE - 4]) != crc:
        raise CorruptionError(path, 0, "compressed segment header checksum mismatch")
    _check_version(path, version)
    if seq != first_seq or last < seq - 1 or not SEGMENT_HEADER_SIZE <= plain <= MAX_SEGMENT_BYTES:
        raise CorruptionError(path, 0, "compressed segment header fields are inconsistent")
    return ZHeader(seq, last, plain, bytes(digest))


def create_segment(fs: FileSystem, directory: str, first_seq: int, prev_digest: bytes) -> str:
    """Create an empty segment atomically ([F-02], [F-04]) and return its path."""
    path = segment_path(directory, first_seq)
    fs.create_atomic(path, encode_header(first_seq, prev_digest))
    return path


# -- streaming ----------------------------------------------------------------------------
def _zstd_chunks(fs: FileSystem, path: str, zh: ZHeader) -> Iterator[bytes]:
    """Decompress by streaming with our own output limit ([F-19]): the header's plain
    length bounds the output, and the file must end where the zstd frame ends."""
    total = 0
    with fs.open_read(path) as f:
        available = fs.size(path) - ZSEGMENT_HEADER_SIZE
        try:
            for chunk in stream_decompress(f, ZSEGMENT_HEADER_SIZE, available, zh.plain_size, READ_CHUNK):
                total += len(chunk)
                yield chunk
        except ZstdFrameError as exc:
            raise CorruptionError(path, ZSEGMENT_HEADER_SIZE + exc.offset, exc.reason) from None
    if total != zh.plain_size:
        raise CorruptionError(path, ZSEGMENT_HEADER_SIZE,
                              f"decompresses to {total} bytes, header says {zh.plain_size}")


class SegmentStream:
    """A segment opened for scanning: its header facts and a scanner to feed."""

    def __init__(self, fs: FileSystem, ref: SegmentRef) -> None:
        self.zheader: ZHeader | None = None
        self._pending = b""
        if not ref.compressed:
            try:
                # held open: compaction may remove the path while a reader is in the middle of it
                self._file = fs.open_read(ref.path)
            except FileNotFoundError:
                # [F-20]: compaction replaced N.seg by N.zseg (the same frames) since the
                # segment was listed; read the compressed copy.
                zpath = segment_path(os.path.dirname(ref.path), ref.first_seq, compressed=True)
                if not fs.exists(zpath):
                    raise
                ref = SegmentRef(ref.first_seq, zpath, True)
        self.fs, self.ref = fs, ref
        path = ref.path
        if ref.compressed:
            with fs.open_read(path) as f:
                self.zheader = read_zheader(f.read(ZSEGMENT_HEADER_SIZE), path, ref.first_seq)
            self.end: int = self.zheader.plain_size
            self._chunks = _zstd_chunks(fs, path, self.zheader)
            head = self._take(SEGMENT_HEADER_SIZE)
        else:
            self.end = os.fstat(self._file.fileno()).st_size
            head = self._file.read(SEGMENT_HEADER_SIZE)
            self._chunks = None  # read from self._file at the requested offset
        self.prev_digest = read_header(head, path, ref.first_seq)

    def __del__(self) -> None:
        f = getattr(self, "_file", None)
        if f is not None:
            f.close()

    def _take(self, n: int) -> bytes:
        buf = b""
        assert self._chunks is not None
        for chunk in self._chunks:
            buf += chunk
            if len(buf) >= n:
                break
        self._pending = buf[n:]
        return buf[:n]

    def chunks(self, start: int = SEGMENT_HEADER_SIZE) -> Iterator[bytes]:
        """Bytes of the segment from ``start`` to its end, in bounded chunks."""
        if self._chunks is None:
            f = self._file
            f.seek(start)
            while chunk := f.read(READ_CHUNK):
                yield chunk
            return
        skip = start - SEGMENT_HEADER_SIZE
        for chunk in itertools.chain((self._pending,), self._chunks):
            if skip >= len(chunk):
                skip -= len(chunk)
                continue
            yield chunk[skip:] if skip else chunk
            skip = 0


def scan(stream: SegmentStream, scanner: FrameScanner, start: int, *,
         resync: bool = False) -> Iterator[Frame | Damage]:
    """Feed ``stream`` from ``start`` into ``scanner``; yield what it classifies.

    Without ``resync`` the scan ends at the first `Damage`. With it, each
    `Damage` is followed by the next frame that resynchronises ([F-15]), so a
    caller sees ``Damage, Frame`` for a damaged region with good data after
    it, and a final ``Damage`` when nothing valid follows.
    """
    chunks = stream.chunks(start)

    def feed() -> bool:
        if scanner.eof:
            return False
        chunk = next(chunks, None)
        if chunk is None:
            scanner.close()
        else:
            scanner.feed(chunk)
        return True

    while True:
        item = scanner.next()
        if item is None:
            if not feed():
                return
            continue
        yield item
        if isinstance(item, Damage):
            if not resync:
                return
            while True:
                frame, done = scanner.resync()
                if frame is not None:
                    yield frame
                    break
                if done or not feed():
                    return
