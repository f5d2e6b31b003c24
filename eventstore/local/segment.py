"""Segment files: names, headers, and streaming their bytes (docs/FORMAT.md §4, §6).

This module knows how a segment is named and laid out, how to create an empty
one atomically, and how to hand its frame bytes (plain or zstd-compressed) to
a `FrameScanner` in bounded chunks: strictly, or leniently for salvage and
`verify` (a damaged header or zstd stream is recorded, not raised, so the
frames before the damage are still scanned). It does not decide what damage
means and does not append frames: that is `log`'s job.
"""
from __future__ import annotations

import itertools
import os
import zlib
from typing import Callable, Iterator, NamedTuple

from ..fs import FileSystem
from .compression import ZstdFrameError, stream_decompress
from ..errors import CorruptionError, FormatVersionError
from .frame import Damage, Frame, FrameScanner
from .layout import (
    FORMAT_VERSION, MAX_SEGMENT_BYTES, NAME_DIGITS, READ_CHUNK, SEGMENT_HEADER,
    SEGMENT_HEADER_SIZE, SEGMENT_MAGIC, SEGMENT_SUFFIX, ZERO_DIGEST, ZSEGMENT_HEADER,
    ZSEGMENT_HEADER_SIZE, ZSEGMENT_MAGIC, ZSEGMENT_SUFFIX,
)

__all__ = ["SegmentRef", "list_segments", "find_segment", "segment_path", "encode_header", "read_header",
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


def find_segment(fs: FileSystem, directory: str, first_seq: int) -> SegmentRef | None:
    """The segment named ``first_seq``: ``N.seg``, else ``N.zseg`` ([F-20], [F-30]).

    Compaction renames ``N.zseg.tmp`` to ``N.zseg`` before it removes ``N.seg``,
    so when the first is gone the second is there.
    """
    for compressed in (False, True):
        path = segment_path(directory, first_seq, compressed)
        if fs.exists(path):
            return SegmentRef(first_seq, path, compressed)
    return None


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
_LENIENT_READ = 64 << 10  # lenient output reads: only the read that meets a damaged zstd block is lost


def _zstd_chunks(fs: FileSystem, path: str, limit: int, plain_size: int | None, read: int,
                 on_damage: Callable[[CorruptionError], None] | None) -> Iterator[bytes]:
    """The plain bytes of the `.zseg` at ``path``, decompressed by streaming ([F-19]).

    At most ``limit`` bytes, exactly ``plain_size`` when it is known, and the
    file must end where the zstd frame ends: anything else raises
    `CorruptionError`, or (lenient, [F-27]) goes to ``on_damage`` while the
    bytes decoded before the damage are still yielded.
    """
    def corruption(exc: ZstdFrameError) -> CorruptionError:
        reason = exc.reason
        if exc.limit is not None and on_damage is not None:
            reason = f"decompresses past its declared {limit} bytes"  # as salvage and verify report it
        return CorruptionError(path, ZSEGMENT_HEADER_SIZE + exc.offset, reason)

    report = None if on_damage is None else lambda exc: on_damage(corruption(exc))
    total = 0
    with fs.open_read(path) as f:
        available = fs.size(path) - ZSEGMENT_HEADER_SIZE
        try:
            for chunk in stream_decompress(f, ZSEGMENT_HEADER_SIZE, available, limit, read, report):
                total += len(chunk)
                yield chunk
        except ZstdFrameError as exc:
            raise corruption(exc) from None
    if plain_size is not None and total != plain_size:
        error = CorruptionError(path, ZSEGMENT_HEADER_SIZE,
                                f"decompresses to {total} bytes, header says {plain_size}")
        if on_damage is None:
            raise error
        on_damage(error)


class SegmentStream:
    """A segment opened for scanning: its header facts and its bytes, in bounded chunks.

    Strict by default: a bad header or damaged zstd data raises `CorruptionError`.
    ``lenient`` (salvage and verify, [F-26], [F-27]) raises only a
    `FormatVersionError`: a refused header is kept in ``header_damage`` (the
    scan then starts at byte 0, chaining from ``prev_digest``), a compressed
    segment is decompressed in small reads up to its declared plain size
    (`MAX_SEGMENT_BYTES` when its header is unreadable), and the first zstd
    problem ends the bytes and is kept in ``error``, so every frame before it
    is still seen.
    """

    def __init__(self, fs: FileSystem, ref: SegmentRef, *, lenient: bool = False,
                 prev_digest: bytes = ZERO_DIGEST) -> None:
        self.lenient = lenient
        self.zheader: ZHeader | None = None
        self.prev_digest = prev_digest  # the header's, once it is read
        self.header_damage: Damage | None = None
        self._problem: CorruptionError | None = None  # lenient: the first zstd problem
        self._problem_is_header = False
        self._pending = b""  # decompressed bytes from offset 0 not handed out yet
        self._chunks: Iterator[bytes] | None = None  # None: read self._file at the requested offset
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
        if not ref.compressed:
            self.end: int = fs.file_size(self._file)
            self._read_header(self._file.read(SEGMENT_HEADER_SIZE), "segment header")
            return
        path = ref.path
        try:
            with fs.open_read(path) as f:
                self.zheader = read_zheader(f.read(ZSEGMENT_HEADER_SIZE), path, ref.first_seq)
        except CorruptionError as exc:
            self._refuse(exc, "compressed segment header")
            self.end = MAX_SEGMENT_BYTES
            self._chunks = _zstd_chunks(fs, path, self.end, None, _LENIENT_READ, self._damaged)
            return
        self.end = self.zheader.plain_size
        if lenient:
            self._chunks = _zstd_chunks(fs, path, self.end, self.end, _LENIENT_READ, self._damaged)
            self._pending = head = next(self._chunks, b"")  # one read: it holds the header unless damage cut it
            if len(head) < SEGMENT_HEADER_SIZE and self._problem is not None:
                self.header_damage = Damage(self._problem.offset or 0, self._problem.reason, "header")
                self._problem_is_header = True  # nothing decompresses: that is the header's damage
                return
        else:
            self._chunks = _zstd_chunks(fs, path, self.end, self.end, READ_CHUNK, None)
            head = self._take(SEGMENT_HEADER_SIZE)
        self._read_header(head[:SEGMENT_HEADER_SIZE], "segment header (inside the zstd frame)")

    def read_at(self, offset: int, n: int) -> bytes:
        """A plain segment: up to ``n`` bytes at ``offset`` of the file opened."""
        assert not self.ref.compressed
        self._file.seek(offset)
        return self._file.read(n)

    def refresh(self) -> bool:
        """A plain segment: take in bytes appended since it was opened; True when it grew."""
        if self.ref.compressed:
            return False
        end = self.fs.file_size(self._file)
        grew, self.end = end > self.end, end
        return grew

    def __del__(self) -> None:
        f = getattr(self, "_file", None)
        if f is not None:
            f.close()

    @property
    def error(self) -> CorruptionError | None:
        """Lenient: the zstd problem that ended the bytes, unless ``header_damage`` already says it."""
        return None if self._problem_is_header else self._problem

    def _damaged(self, error: CorruptionError) -> None:
        if self._problem is None:  # the first problem is the one to report
            self._problem = error

    def _refuse(self, exc: CorruptionError, what: str) -> None:
        """Raise ``exc``, or (lenient) keep it as the header's damage; a newer version always raises ([F-06])."""
        if not self.lenient or isinstance(exc, FormatVersionError):
            raise exc
        self.header_damage = Damage(0, f"{what}: {exc.reason}", "header")

    def _read_header(self, head: bytes, what: str) -> None:
        try:
            self.prev_digest = read_header(head, self.ref.path, self.ref.first_seq)
        except CorruptionError as exc:
            self._refuse(exc, what)

    def _take(self, n: int) -> bytes:
        """Decompress at least ``n`` bytes (unless the stream ends first); keep them pending."""
        assert self._chunks is not None
        for chunk in self._chunks:
            self._pending += chunk
            if len(self._pending) >= n:
                break
        return self._pending[:n]

    def chunks(self, start: int = SEGMENT_HEADER_SIZE) -> Iterator[bytes]:
        """Bytes of the segment from ``start`` to its end, in bounded chunks.

        A compressed segment is decompressed once: its chunks can be taken once.
        """
        if self._chunks is None:
            f = self._file
            f.seek(start)
            while chunk := f.read(READ_CHUNK):
                yield chunk
            return
        skip = start
        pending, self._pending = self._pending, b""
        for chunk in itertools.chain((pending,), self._chunks):
            if skip >= len(chunk):
                skip -= len(chunk)
                continue
            yield chunk[skip:] if skip else chunk
            skip = 0


def scan(stream: SegmentStream, scanner: FrameScanner, start: int, *,
         resync: bool | Callable[[Damage], bool] = False) -> Iterator[Frame | Damage]:
    """Feed ``stream`` from ``start`` into ``scanner``; yield what it classifies.

    The one loop that feeds a scanner; `walk.SegmentWalk` drives it for every
    reader of the log. After a `Damage` it asks ``resync`` (a flag, or a
    function of the damage asked once it was yielded): without it the scan
    ends there. With it the `Damage` is followed by the next frame that
    resynchronises ([F-15]), so a caller sees ``Damage, Frame`` for a damaged
    region with good data after it, and a final ``Damage`` when nothing valid
    follows.
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
            if not (resync(item) if callable(resync) else resync):
                return
            while True:
                found, done = scanner.resync()
                if found is not None:
                    yield found
                    if found.__class__ is Frame:
                        break
                    continue  # a whole frame that does not chain: the search goes on past it
                if done or not feed():
                    return
