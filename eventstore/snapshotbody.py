"""The outer map of a snapshot body (docs/FORMAT.md §7), read without copying its bins.

A body is ``{"versions": bin, "projections": [[name, version, state: bin], ...]}``
and nearly all of its bytes are in the bins. Unpacking it with msgpack copies
every bin into a new bytes object: 27 MB of fresh memory for a catalog of
100,000 items, which the kernel hands out a page fault at a time. `split_body`
reads the map as the writers lay it out (exactly these two keys, in any
order, with the usual msgpack headers) and returns memoryviews of the bins
instead. Anything else - another key, another type, bytes after the map, a
name that is not UTF-8 - goes to the plain path, `codec.unpack` of the whole
body, so what is accepted and refused, and with which error, stays the plain
path's. Sans-I/O; the caller checks the values' types and decodes the bins.
"""
from __future__ import annotations

from typing import Any

from .codec import unpack

__all__ = ["split_body", "Entries"]

Entries = list[tuple[object, object, object]]   # (name, version, state) as the body holds them

_BIN = {0xC4: 1, 0xC5: 2, 0xC6: 4}
_STR = {0xD9: 1, 0xDA: 2, 0xDB: 4}
_ARRAY = {0xDC: 2, 0xDD: 4}
_MAP = {0xDE: 2, 0xDF: 4}
_UINT = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}
_INT = {0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8}


class _Plain(Exception):
    """Not the writers' layout: the plain path decides."""


class _Reader:
    """Reads msgpack headers of the writers' layout from a memoryview."""

    def __init__(self, view: memoryview) -> None:
        self.view, self.pos = view, 0

    def _take(self, n: int) -> memoryview:
        end = self.pos + n
        if end > len(self.view):
            raise _Plain
        out = self.view[self.pos:end]
        self.pos = end
        return out

    def _size(self, width: int) -> int:
        return int.from_bytes(self._take(width), "big")

    def _head(self, fix_base: int, fix_mask: int, wide: dict[int, int]) -> int:
        byte = self._take(1)[0]
        if byte & ~fix_mask == fix_base:
            return byte & fix_mask
        width = wide.get(byte)
        if width is None:
            raise _Plain
        return self._size(width)

    def map(self) -> int:
        return self._head(0x80, 0x0F, _MAP)

    def array(self) -> int:
        return self._head(0x90, 0x0F, _ARRAY)

    def str(self) -> str:
        data = self._take(self._head(0xA0, 0x1F, _STR))
        try:
            return str(data, "utf-8")
        except UnicodeDecodeError:
            raise _Plain from None

    def bin(self) -> memoryview:
        width = _BIN.get(self._take(1)[0])
        if width is None:
            raise _Plain
        return self._take(self._size(width))

    def int(self) -> int:
        byte = self._take(1)[0]
        if byte < 0x80:
            return byte
        if byte >= 0xE0:
            return byte - 0x100
        width = _UINT.get(byte)
        if width is not None:
            return self._size(width)
        width = _INT.get(byte)
        if width is None:
            raise _Plain
        return int.from_bytes(self._take(width), "big", signed=True)


def _split(view: memoryview) -> tuple[memoryview, Entries]:
    r = _Reader(view)
    found: dict[str, Any] = {}
    for _ in range(r.map()):
        key = r.str()
        if key in found:
            raise _Plain
        if key == "versions":
            found[key] = r.bin()
        elif key == "projections":
            entries: Entries = []
            for _ in range(r.array()):
                if r.array() != 3:
                    raise _Plain
                entries.append((r.str(), r.int(), r.bin()))
            found[key] = entries
        else:
            raise _Plain
    if r.pos != len(view) or len(found) != 2:
        raise _Plain
    return found["versions"], found["projections"]


def split_body(body: bytes | bytearray, file: str, offset: int) -> tuple[object, Entries]:
    """``(versions, entries)`` of a body: memoryviews of its bins when it has the
    writers' layout, else what `codec.unpack` of the whole body gives (its
    `CorruptionError` when that does not decode; ``KeyError``, ``TypeError`` or
    ``ValueError`` when the document lacks the two keys or an entry is not a triple)."""
    try:
        return _split(memoryview(body))
    except _Plain:
        pass
    doc = unpack(body, file, offset, "snapshot body")
    return doc["versions"], [(name, ver, state) for name, ver, state in doc["projections"]]
