"""The item columns of a `MediaProjection` snapshot, and the packed columns a
projection restored from one answers queries from until it changes.

This module owns state format 4 of the item columns (projection version 5).
For ``n`` slots (a freed slot has no key and empty values):

| field | value |
|---|---|
| ``n`` | the number of slots |
| ``keys`` | list of str: the slots' keys, `CHUNK` slots a chunk, joined by NUL (a freed slot is ``""``; a store key is never empty and never holds NUL) |
| ``titles``, ``descs`` | list of str: the slots' values, `CHUNK` slots a chunk, concatenated |
| ``title_lens``, ``desc_lens`` | bin: the length of each slot's value in code points, u32 little-endian |
| ``created``, ``updated`` | bin: each slot's time in ns, u64 little-endian; or a list of int when one does not fit |
| ``versions`` | bin: each slot's event count, u64 little-endian |

Restoring checks every length and count in a few C calls and keeps the
columns as they came: a few long strings instead of one object per value,
so a reader that opens a store to look at a few items (``metalog get``)
creates no object per item, and an item's values are sliced out when
asked for (`TextColumn`, `KeyColumn`). The projection unpacks them into
lists (`TextColumn.to_list`, `KeyColumn.slot_list`) on its first change.
Long strings are cut into chunks so that one wide character (an emoji
makes a Python str take 4 bytes a character) widens one chunk, not a
column. Times and versions stay in arrays (8 bytes a slot, no int object)
for the projection's whole life. No I/O; no event semantics.
"""
from __future__ import annotations

import sys
from array import array
from itertools import accumulate
from typing import Any, Iterator, Union

__all__ = ["CHUNK", "TextColumn", "KeyColumn", "IntColumn", "pack_keys", "pack_text", "pack_ints",
           "unpack_ints", "int_column", "checked_chunks", "fits"]

CHUNK = 4096            # slots a chunk of keys or values holds
_SHIFT = CHUNK.bit_length() - 1
assert 1 << _SHIFT == CHUNK
_LEN = "I"              # array typecode of a value's length (u32)
_INT = "Q"              # array typecode of a time or a version (u64)
_SEP = "\0"
_SCANS = 8              # lookups by scanning the packed keys before building the index
_BIG = sys.byteorder == "big"

IntColumn = Union["array[int]", list[int]]


def _chunks(n: int) -> range:
    return range(0, n, CHUNK)


def _little(values: "array[int]") -> "array[int]":
    if _BIG:                                # pragma: no cover - no big-endian machine here
        values.byteswap()
    return values


def _array_of(code: str, raw: object, n: int, what: str) -> "array[int]":
    """``n`` little-endian integers from the bin ``raw``, else ValueError."""
    if type(raw) is not bytes:
        raise ValueError(f"{what} is not bin")
    out = array(code)
    if len(raw) != n * out.itemsize:
        raise ValueError(f"{what} holds {len(raw)} bytes for {n} slots")
    out.frombytes(raw)
    return _little(out)


def checked_chunks(raw: object, n: int, what: str) -> list[str]:
    """The list of str chunks of a column of ``n`` slots, else ValueError."""
    if type(raw) is not list or len(raw) != len(_chunks(n)) or not all(type(c) is str for c in raw):
        raise ValueError(f"{what} are not {len(_chunks(n))} str chunks")
    return raw


class TextColumn:
    """A packed column of values: ``column[i]`` is slot ``i``'s value."""

    __slots__ = ("chunks", "lens", "_starts")

    def __init__(self, chunks: list[str], lens: "array[int]") -> None:
        self.chunks, self.lens = chunks, lens
        self._starts: dict[int, list[int]] = {}   # per chunk: where each slot's value starts

    @classmethod
    def from_state(cls, chunks: object, lens: object, n: int, what: str) -> "TextColumn":
        """Checked: each chunk is exactly as long as its slots' lengths say."""
        checked = checked_chunks(chunks, n, what)
        sizes = _array_of(_LEN, lens, n, f"{what} lengths")
        for c, lo in enumerate(_chunks(n)):
            if sum(sizes[lo:lo + CHUNK]) != len(checked[c]):
                raise ValueError(f"{what}: chunk {c} does not hold its values' lengths")
        return cls(checked, sizes)

    def _starts_of(self, c: int) -> list[int]:
        starts = self._starts.get(c)
        if starts is None:
            starts = self._starts[c] = list(accumulate(self.lens[c << _SHIFT:(c + 1) << _SHIFT], initial=0))
        return starts

    def __getitem__(self, i: int) -> str:
        start = self._starts_of(i >> _SHIFT)[i & (CHUNK - 1)]
        return self.chunks[i >> _SHIFT][start:start + self.lens[i]]

    def __len__(self) -> int:
        return len(self.lens)

    def packed(self) -> tuple[list[str], bytes]:
        """(chunks, lengths) as `pack_text` gives them."""
        return self.chunks[:], _little(array(_LEN, self.lens)).tobytes()

    def to_list(self) -> list[str]:
        """Every slot's value, one str each."""
        out: list[str] = []
        for c, chunk in enumerate(self.chunks):
            starts = self._starts_of(c)
            out += map(chunk.__getitem__, map(slice, starts, starts[1:]))
        return out


class KeyColumn:
    """The packed keys of the slots: a few lookups scan them, more build the index."""

    __slots__ = ("chunks", "n", "_slots", "_index", "_scans")

    def __init__(self, chunks: list[str], n: int) -> None:
        self.chunks, self.n = chunks, n
        self._slots: list[str] | None = None     # every slot's key, "" for a freed one
        self._index: dict[str, int] | None = None
        self._scans = 0

    @classmethod
    def from_state(cls, chunks: object, n: int) -> "KeyColumn":
        """Checked: each chunk holds its slots' keys (NUL between two)."""
        checked = checked_chunks(chunks, n, "keys")
        for c, lo in enumerate(_chunks(n)):
            if checked[c].count(_SEP) != min(CHUNK, n - lo) - 1:
                raise ValueError(f"keys: chunk {c} does not hold {min(CHUNK, n - lo)} keys")
        return cls(checked, n)

    def slot_list(self) -> list[str]:
        """Every slot's key ("" for a freed slot); the same list (and str objects) each call."""
        if self._slots is None:
            slots: list[str] = []
            for chunk in self.chunks:
                slots += chunk.split(_SEP)
            self._slots = slots
        return self._slots

    def index(self) -> dict[str, int]:
        """``{key: slot}`` of the live keys, as the projection indexes them (built once)."""
        if self._index is None:
            slots = self.slot_list()
            index = dict(zip(slots, range(len(slots))))
            index.pop("", None)                # freed slots
            self._index = index
        return self._index

    def slot(self, key: str) -> int | None:
        """The slot of ``key`` (the last one holding it, as the index has it), or None."""
        if self._index is not None or self._scans >= _SCANS:
            return self.index().get(key)
        self._scans += 1
        if not key or _SEP in key:
            return None
        for c in range(len(self.chunks) - 1, -1, -1):
            at = _rfind(self.chunks[c], key)
            if at is not None:
                return (c << _SHIFT) + at
        return None

    def __getitem__(self, i: int) -> str | None:
        return self.slot_list()[i] or None

    def __iter__(self) -> Iterator[str]:
        return iter(self.index())


def _rfind(chunk: str, key: str) -> int | None:
    """The position (in slots) of the last ``key`` in a chunk of NUL-joined keys."""
    if chunk.endswith(key) and (len(chunk) == len(key) or chunk[-len(key) - 1] == _SEP):
        return chunk.count(_SEP)
    at = chunk.rfind(_SEP + key + _SEP)
    if at >= 0:
        return chunk.count(_SEP, 0, at) + 1
    if chunk.startswith(key + _SEP):
        return 0
    return None


def pack_keys(keys: list[str | None], freed: bool) -> list[str]:
    """The ``keys`` column of a state; ``freed``: some slots are None."""
    out = []
    for lo in _chunks(len(keys)):
        part = keys[lo:lo + CHUNK]
        if freed:
            part = ["" if k is None else k for k in part]
        joined = _SEP.join(part)  # type: ignore[arg-type]
        if joined.count(_SEP) != len(part) - 1:
            raise ValueError("a media key holds NUL: the store never accepts one")
        out.append(joined)
    return out


def pack_text(values: list[str]) -> tuple[list[str], bytes]:
    """A column of values as (chunks, lengths)."""
    chunks = ["".join(values[lo:lo + CHUNK]) for lo in _chunks(len(values))]
    return chunks, _little(array(_LEN, map(len, values))).tobytes()


def int_column(values: list[int] | None = None) -> IntColumn:
    """An empty (or filled) column of times or versions: an array of u64."""
    return array(_INT, values or ())


def pack_ints(values: IntColumn) -> bytes | list[int]:
    if isinstance(values, array):
        copy = array(_INT, values)
        return _little(copy).tobytes()
    return values[:]


def unpack_ints(raw: Any, n: int, what: str) -> IntColumn:
    """A column of ``n`` ints: u64s from a bin, or the list itself (times that do not fit)."""
    if type(raw) is list:
        if len(raw) != n or not all(type(v) is int for v in raw):
            raise ValueError(f"{what} is not {n} ints")
        return raw
    return _array_of(_INT, raw, n, what)


def fits(*values: int) -> bool:
    """Whether every value fits a u64 column."""
    return all(0 <= v < 1 << 64 for v in values)
