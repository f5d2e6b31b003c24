"""The key-version table of a snapshot (docs/FORMAT.md §7, [F-34]).

A snapshot holds, for every key ever appended, the number of its events.
Version 2 snapshots store them as a table that is checked in a few C calls
and turned into a dict only when a version is first asked for: the keys
joined by NUL into one string (a key never holds NUL, SPEC §5) and their
counts as little-endian unsigned 64-bit integers, in the same order. So an
open that never asks for a key's version (a reader that only looks at a
projection) never builds 100,000 dict entries, and one that does can build
them on the key strings a projection already holds (`to_dict` with
``shared``), so each key is in memory once.

Sans-I/O: bytes in, values out; `CorruptionError` names the caller's file
and offset. Version 1 snapshots held a msgpack map instead (`from_dict`).
"""
from __future__ import annotations

import sys
from array import array
from typing import Callable, Iterable, Sequence

from .codec import pack, unpack
from .errors import CorruptionError

__all__ = ["KeyTable", "encode_table", "decode_table", "versions_builder"]

_COUNT = "Q"            # array typecode of a count: 8 bytes, unsigned
_COUNT_SIZE = 8
_SEP = "\0"
assert array(_COUNT).itemsize == _COUNT_SIZE


class KeyTable:
    """Checked key versions, as a dict when first needed (`to_dict`)."""

    __slots__ = ("_keys", "_counts", "_dict")

    def __init__(self, keys: str, counts: "array[int]", as_dict: dict[str, int] | None = None) -> None:
        self._keys = keys          # NUL-joined; "" with no counts: no key
        self._counts = counts
        self._dict = as_dict       # a version 1 snapshot's map, already decoded

    @classmethod
    def from_dict(cls, versions: dict[str, int]) -> "KeyTable":
        return cls("", array(_COUNT), versions)

    def __len__(self) -> int:
        return len(self._dict) if self._dict is not None else len(self._counts)

    def key_list(self) -> list[str]:
        if self._dict is not None:
            return list(self._dict)
        return self._keys.split(_SEP) if self._counts else []

    def to_dict(self, shared: Iterable[str] | None = None) -> dict[str, int]:
        """A new ``{key: version}``. Keys equal to one of ``shared`` are those
        very str objects (a dict keeps the key object it was first given)."""
        pairs = self._dict.items() if self._dict is not None else zip(self.key_list(), self._counts)
        if shared is None:
            return dict(pairs)
        out: dict[str, int] = dict.fromkeys(shared)  # type: ignore[assignment]
        out.update(pairs)
        if None in out.values():     # a shared key the table does not hold
            for key in [k for k, v in out.items() if v is None]:
                del out[key]
        return out


def encode_table(versions: dict[str, int]) -> bytes:
    """The ``versions`` entry of a version 2 snapshot body: msgpack ``[keys, counts]``."""
    keys = _SEP.join(versions)
    if versions and keys.count(_SEP) != len(versions) - 1:
        raise ValueError("a key holds NUL: it cannot be a key of the table")
    counts = array(_COUNT, versions.values())
    if sys.byteorder != "little":
        counts.byteswap()
    return pack([keys, counts.tobytes()])


def decode_table(raw: bytes | memoryview, file: str, offset: int) -> KeyTable:
    """A checked table ([F-34]): its keys a str, one positive count per key."""
    table = unpack(raw, file, offset, "snapshot key versions")
    if (type(table) is not list or len(table) != 2 or type(table[0]) is not str
            or type(table[1]) is not bytes or len(table[1]) % _COUNT_SIZE):
        raise CorruptionError(file, offset, "snapshot key versions have the wrong shape")
    keys, raw_counts = table
    counts = array(_COUNT)
    counts.frombytes(raw_counts)
    if sys.byteorder != "little":
        counts.byteswap()
    n = len(counts)
    if (keys.count(_SEP) != n - 1) if n else keys:
        raise CorruptionError(file, offset, f"snapshot key versions: {n} counts do not match the keys")
    if n and min(counts) == 0:
        raise CorruptionError(file, offset, "snapshot key versions hold a count of 0")
    return KeyTable(keys, counts)


def versions_builder(table: KeyTable, projections: Sequence[object]) -> Callable[[], dict[str, int]]:
    """What builds ``table``'s dict when a version is first needed: on the key strings
    of the first projection that offers them (``key_strings()``, `eventstore.projection`)."""
    def build() -> dict[str, int]:
        for p in projections:
            shared = getattr(p, "key_strings", None)
            if shared is not None:
                return table.to_dict(shared())
        return table.to_dict()
    return build
