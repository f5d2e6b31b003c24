"""The frame codec and the one scanner that classifies frames (sans-I/O).

`encode_frame` builds one commit's bytes and its chain digest ([F-08],
[F-17]); `frame_bytes` rebuilds the bytes of a frame that was scanned.
`FrameScanner` is fed bytes (all at once or chunk by chunk, from a plain file
or a zstd stream) and hands back `Frame`s and `Damage`s; `check_frame` asks
it about one frame alone. It never opens a file and never decides what
damage means. Recovery (truncate or raise), salvage (resynchronise),
`verify` (collect) and the dump tool (print) apply their own policy to what
it reports. A `Damage` moves the scanner into a sticky error state until the
caller asks it to `resync`.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import NamedTuple, Union

from ..chain import COMMIT_PREFIX, DIGEST_SIZE, blake2b, chain_digest
from .layout import FRAME_CRC_START, FRAME_HEADER, FRAME_HEADER_SIZE, FRAME_MAGIC, FRAME_DIGEST_FIELDS, MAX_FRAME_PAYLOAD

__all__ = ["Frame", "Damage", "SeqRange", "FrameScanner", "encode_frame", "frame_bytes", "check_frame", "chain_digest",
           "is_gap", "payload_length", "claimed_seqs"]

_crc32 = zlib.crc32
_unpack_header = FRAME_HEADER.unpack_from
_pack_prefix = COMMIT_PREFIX.pack
_pack_crc = struct.Struct("<I").pack
_CHAINED = FRAME_DIGEST_FIELDS  # header bytes the chain hashes besides the payload


@dataclass(slots=True)
class Frame:
    """One valid frame, as the scanner found it."""

    offset: int  # of the frame header within the (uncompressed) segment
    first_seq: int
    count: int  # a field, shadowing nothing: Frame is a dataclass
    ts: int
    digest: bytes
    payload: bytes
    size: int  # header + payload bytes

    @property
    def last_seq(self) -> int:
        return self.first_seq + self.count - 1


@dataclass(frozen=True)
class SeqRange:
    """The seqs ``first`` to ``last``, both included."""

    first: int
    last: int

    def __len__(self) -> int:
        return self.last - self.first + 1

    def __contains__(self, seq: object) -> bool:
        return isinstance(seq, int) and self.first <= seq <= self.last

    def as_tuple(self) -> tuple[int, int]:
        """As reports hold it (`RecoveryEntry.lost`)."""
        return self.first, self.last


class Damage(NamedTuple):
    offset: int
    reason: str
    kind: str = "bad"  # short, magic, length, crc, empty, seq, chain, header
    seqs: SeqRange | None = None  # "chain": the whole, signed commit's seqs


def is_gap(payload: bytes) -> bool:
    """A gap frame ([F-25]) has a msgpack map as payload; a commit has an array."""
    return (payload[0] & 0xF0) == 0x80 or payload[0] in (0xDE, 0xDF)


Scanned = Union[Frame, Damage, None]


def payload_length(buf: bytes | bytearray, pos: int = 0) -> int:
    """The (unchecked) payload length field of the frame header at ``pos``."""
    return _unpack_header(buf, pos)[2]


def claimed_seqs(buf: bytes | bytearray, pos: int = 0) -> SeqRange | None:
    """The seqs the (unchecked) frame header at ``pos`` claims; None when it claims none."""
    _, _, _, count, first_seq, _, _ = _unpack_header(buf, pos)
    return SeqRange(first_seq, first_seq + count - 1) if count else None


def encode_frame(first_seq: int, count: int, ts: int, payload: bytes,
                 prev_digest: bytes) -> tuple[bytes, bytes]:
    """Return ``(frame bytes, digest after it)`` for one commit."""
    prefix = _pack_prefix(len(payload), count, first_seq, ts)
    h = blake2b(prev_digest, digest_size=DIGEST_SIZE)  # chain_digest, inlined: the commit path
    h.update(prefix)
    h.update(payload)
    digest = h.digest()
    return _frame(prefix, digest, payload), digest


def frame_bytes(frame: Frame) -> bytes:
    """The bytes of a scanned frame, as they were on disk (with its stored digest)."""
    return _frame(_pack_prefix(len(frame.payload), frame.count, frame.first_seq, frame.ts),
                  frame.digest, frame.payload)


def _frame(prefix: bytes, digest: bytes, payload: bytes) -> bytes:
    covered = prefix + digest  # CRC-32 covers bytes 8..48 and the payload
    return b"".join((FRAME_MAGIC, _pack_crc(_crc32(payload, _crc32(covered))), covered, payload))


class FrameScanner:
    """Classify the frames of one segment body, fed incrementally.

    ``base`` is the segment offset of the first byte fed; ``end`` (when known)
    is the total size of the segment, so a length field pointing past it is
    damage at once rather than a wait for bytes that will never come.
    """

    def __init__(self, base: int, expected_seq: int, prev_digest: bytes, *,
                 end: int | None = None, max_payload: int = MAX_FRAME_PAYLOAD,
                 verify_chain: bool = True) -> None:
        # Without verify_chain the stored digests are trusted ([F-18]): CRC and seq still
        # catch damage; `verify` and salvage recompute the chain.
        self.verify_chain = verify_chain
        self._buf = bytearray()
        self._start = base  # segment offset of self._buf[0]
        self._pos = base  # segment offset of the next frame
        self.expected_seq = expected_seq
        self.digest = prev_digest
        self.end = end
        self.max_payload = max_payload
        self.eof = False
        self.damage: Damage | None = None
        self._restart = False  # the next frame restarts the chain (after a gap frame)

    # -- input --------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        consumed = self._pos - self._start
        if consumed > (1 << 20):
            del self._buf[:consumed]
            self._start = self._pos
        self._buf += data

    def close(self) -> None:
        """No more bytes will be fed."""
        self.eof = True

    @property
    def position(self) -> int:
        """Segment offset just past the last good frame."""
        return self._pos

    # -- frames -------------------------------------------------------------------
    def next(self) -> Scanned:
        """The next frame, a `Damage`, or None (need more bytes / clean end)."""
        if self.damage is not None:
            return self.damage
        result = self._parse(self._pos, check_chain=True)
        if isinstance(result, Frame):
            self._accept(result, result.digest)
        elif isinstance(result, Damage):
            self.damage = result
        return result

    def resync(self) -> tuple[Frame | Damage | None, bool]:
        """After damage, find the next frame whose magic, CRC and seq verify ([F-15]).

        A frame carrying exactly the seq expected must also continue the chain
        (where it is checked and does not restart): the first frame found after
        an unreadable header or in an overlapping segment is judged like any
        first frame ([F-26]). One that does not is returned as a ``chain``
        `Damage` naming its seqs, and the next call searches on past it.
        Returns ``(frame, done)``: a frame (the chain restarts from its stored
        digest when it skips seqs), such a `Damage`, ``(None, False)`` when
        more bytes are needed, or ``(None, True)`` when no frame follows.
        """
        assert self.damage is not None
        buf, start = self._buf, self._start
        search = max(self.damage.offset + 1, start) - start
        while True:
            i = buf.find(FRAME_MAGIC, search)
            if i < 0:
                if self.eof:
                    return None, True
                # keep the last few bytes: a magic may straddle the next chunk
                self._drop_before(len(buf) - (len(FRAME_MAGIC) - 1))
                return None, False
            result = self._parse(start + i, check_chain=False)
            if result is None:
                if self.eof:
                    return None, True
                self._drop_before(i)  # bytes before the candidate are searched
                return None, False
            if isinstance(result, Frame) and result.first_seq >= self.expected_seq:
                if (result.first_seq == self.expected_seq and self.verify_chain and not self._restart
                        and chain_digest(self.digest, bytes(buf[i + _CHAINED.start:i + _CHAINED.stop]),
                                         result.payload) != result.digest):
                    self.damage = Damage(result.offset, "digest chain broken (commit removed, reordered or "
                                         "edited)", "chain", SeqRange(result.first_seq, result.last_seq))
                    return self.damage, False
                self.damage = None
                self._accept(result, result.digest)
                return result, False
            search = i + 1

    def rewind(self, end: int | None) -> None:
        """Forget every byte fed and any damage: the next bytes fed start at `position`.

        The seq, chain digest and restart state stay: this is how a walk reads a
        segment again from its last good frame ([F-30]). ``end`` is its size now.
        """
        self._buf = bytearray()
        self._start = self._pos
        self.damage = None
        self.eof = False
        self.end = end

    def _drop_before(self, index: int) -> None:
        """While resynchronising, forget searched bytes so memory stays bounded."""
        if index > 0:
            del self._buf[:index]
            self._start += index

    def _accept(self, frame: Frame, digest: bytes) -> None:
        self._pos = frame.offset + frame.size
        self.expected_seq = frame.first_seq + frame.count
        self.digest = digest
        self._restart = is_gap(frame.payload)

    def restart_chain(self) -> None:
        """Accept the next frame's stored digest as the chain (after a recorded gap)."""
        self._restart = True

    def _parse(self, pos: int, *, check_chain: bool) -> Scanned:
        buf = self._buf
        i = pos - self._start
        have = len(buf) - i
        if have < FRAME_HEADER_SIZE:
            if not self.eof or have == 0:
                return None
            if have >= 4 and buf[i:i + 4] != FRAME_MAGIC:
                return Damage(pos, "bad frame magic", "magic")
            return Damage(pos, f"incomplete frame header ({have} of {FRAME_HEADER_SIZE} bytes)", "short")
        magic, crc, length, count, first_seq, ts, digest = _unpack_header(buf, i)
        if magic != FRAME_MAGIC:
            return Damage(pos, "bad frame magic", "magic")
        if length == 0 or length > self.max_payload:
            return Damage(pos, f"frame length {length} out of bounds", "length")
        size = FRAME_HEADER_SIZE + length
        if self.end is not None and pos + size > self.end:
            return Damage(pos, f"frame of {size} bytes runs past the end of the segment", "short")
        if have < size:
            if self.eof:
                return Damage(pos, f"incomplete frame ({have} of {size} bytes)", "short")
            return None
        view = memoryview(buf)
        try:
            if _crc32(view[i + FRAME_CRC_START:i + size]) != crc:
                return Damage(pos, "frame checksum mismatch", "crc")
            payload = bytes(view[i + FRAME_HEADER_SIZE:i + size])
        finally:
            view.release()
        if count == 0:
            return Damage(pos, "frame holds no events", "empty")
        if check_chain:
            if first_seq != self.expected_seq:
                return Damage(pos, f"frame starts at seq {first_seq}, expected {self.expected_seq}", "seq")
            if (self.verify_chain and not self._restart
                    and chain_digest(self.digest, bytes(buf[i + _CHAINED.start:i + _CHAINED.stop]),
                                     payload) != digest):
                return Damage(pos, "digest chain broken (commit removed, reordered or edited)", "chain",
                              SeqRange(first_seq, first_seq + count - 1))
        return Frame(pos, first_seq, count, ts, bytes(digest), payload, size)


def check_frame(data: bytes, offset: int) -> Frame | Damage:
    """``data`` read as the one frame at segment ``offset``: magic, length, CRC and count checked.

    Its seq and chain are the caller's to judge; a frame shorter than ``data``
    is returned as it is (its ``size`` says so).
    """
    scanner = FrameScanner(offset, 0, bytes(DIGEST_SIZE), end=offset + len(data))
    scanner.feed(data)
    scanner.close()
    result = scanner._parse(offset, check_chain=False)
    assert result is not None  # a closed scanner never waits for bytes
    return result
