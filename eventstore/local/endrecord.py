"""The end-of-log record ``END``: how far the log reached when it was last sealed or closed.

A segment cut to its header, or an active segment deleted, leaves a log
that reads cleanly and ends early; nothing in the segments says commits were
lost. ``END`` is that evidence ([F-28], [F-29]): a writer rewrites it
atomically, holding the commit lock, when it rolls over to a new segment
(compaction seals that way too) and when it closes cleanly, never per commit,
and only ever for seqs already durable. It only moves forward, except where
the tail rule cuts a commit that was never complete ([F-13]). A store without
it (made before it existed) is fine: there is then no such evidence.

This module reads and writes the file; judging the log against it is
`opening`'s (strict) and `salvage`'s (gap frames) job.
"""
from __future__ import annotations

import errno
import os
import zlib
from dataclasses import dataclass

from ..errors import CorruptionError, FormatVersionError
from ..fs import FileSystem
from .directory import quarantine_move
from .layout import DIGEST_SIZE, END_MAGIC, END_NAME, END_RECORD, END_RECORD_SIZE, FORMAT_VERSION

__all__ = ["EndRecord", "end_path", "read_end", "write_end", "advance_end", "proves_a_log"]


@dataclass(frozen=True)
class EndRecord:
    """The log held every seq up to ``seq`` (durably), and its next frame goes to ``segment``."""

    seq: int
    segment: int  # first seq (name) of the segment the frame after ``seq`` goes to
    digest: bytes  # the chain digest after ``seq``

    def covers(self, other: EndRecord) -> bool:
        """Whether this record says at least what ``other`` says."""
        return (self.seq, self.segment) >= (other.seq, other.segment)


def end_path(root: str) -> str:
    return os.path.join(root, END_NAME)


def encode_end(record: EndRecord) -> bytes:
    body = END_RECORD.pack(END_MAGIC, FORMAT_VERSION, 0, record.seq, record.segment, record.digest, 0, 0)[:-4]
    return body + zlib.crc32(body).to_bytes(4, "little")


def read_end(fs: FileSystem, root: str) -> EndRecord | None:
    """The record, or None when the store has none; `CorruptionError` when it does not read."""
    path = end_path(root)
    try:
        data = fs.read_file(path, END_RECORD_SIZE)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno != errno.EFBIG:
            raise
        raise CorruptionError(path, END_RECORD_SIZE, "end-of-log record is longer than "
                                                     f"{END_RECORD_SIZE} bytes") from None
    if len(data) != END_RECORD_SIZE:
        raise CorruptionError(path, 0, f"end-of-log record is {len(data)} bytes, not {END_RECORD_SIZE}")
    magic, version, _, seq, segment, digest, _, crc = END_RECORD.unpack(data)
    if magic != END_MAGIC:
        raise CorruptionError(path, 0, "bad end-of-log record magic")
    if zlib.crc32(data[:-4]) != crc:
        raise CorruptionError(path, 0, "end-of-log record checksum mismatch")
    if version != FORMAT_VERSION:
        raise FormatVersionError(path, version, FORMAT_VERSION)
    if segment < 1 or segment > seq + 1 or len(digest) != DIGEST_SIZE:
        raise CorruptionError(path, 8, f"end-of-log record fields are inconsistent (seq {seq}, segment {segment})")
    return EndRecord(seq, segment, bytes(digest))


def proves_a_log(fs: FileSystem, root: str) -> bool:
    """Whether a readable record says the log held a commit (a store with no segment left is
    then not a new store, [F-29])."""
    try:
        record = read_end(fs, root)
    except CorruptionError:  # a newer version raises
        return False
    return record is not None and record.seq > 0


def write_end(fs: FileSystem, root: str, record: EndRecord) -> None:
    """Write the record atomically ([F-02]). The caller holds the commit lock."""
    fs.create_atomic(end_path(root), encode_end(record))


def advance_end(fs: FileSystem, root: str, record: EndRecord) -> bool:
    """Write ``record`` unless the one on disk already says as much; True when written.

    The caller holds the commit lock. A record that does not read is moved to
    ``quarantine/`` first ([F-05]), then replaced.
    """
    try:
        current = read_end(fs, root)
    except FormatVersionError:
        raise
    except CorruptionError as exc:
        quarantine_move(fs, root, exc.file)
        current = None
    if current is not None and current.covers(record):
        return False
    write_end(fs, root, record)
    return True
