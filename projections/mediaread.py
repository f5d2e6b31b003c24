"""The read side of `MediaProjection`'s items: every query of the item columns.

`ItemReads` is the part of `MediaProjection` (a mixin) that answers from the
columns whether they are still packed as a snapshot restored them
(`projections.mediastate`: values sliced out, keys found by a scan or the
index the packed keys build) or unpacked into the lists `apply` works on.
It never changes the projection, and never unpacks it: a reader that only
looks (``metalog get``, ``ls``) keeps the columns packed.
"""
from __future__ import annotations

from itertools import repeat
from operator import truediv
from typing import Callable, Iterable, Iterator, cast

from .events import MediaRecord, ns_to_seconds
from .mediastate import IntColumn, KeyColumn, TextColumn

__all__ = ["ItemReads"]


class ItemReads:
    """Queries of the items of a `MediaProjection`, packed or not."""

    _packed: tuple[KeyColumn, TextColumn, TextColumn] | None
    _index: dict[str, int]
    _titles: list[str]
    _descs: list[str]
    _created: IntColumn
    _updated: IntColumn
    _vers: IntColumn
    _gone: dict[str, int]

    def _slot(self, key: str) -> int | None:
        packed = self._packed
        return self._index.get(key) if packed is None else packed[0].slot(key)

    def _values(self, i: int) -> tuple[str, str]:
        packed = self._packed
        if packed is None:
            return self._titles[i], self._descs[i]
        return packed[1][i], packed[2][i]

    def _live(self) -> dict[str, int]:
        """``{key: slot}`` of the live items (the index, packed or not: do not change it)."""
        packed = self._packed
        return self._index if packed is None else packed[0].index()

    def get(self, key: str) -> MediaRecord | None:
        i = self._slot(key)
        return None if i is None else self._record(i)

    def records(self, keys: Iterable[str]) -> Iterator[MediaRecord | None]:
        """`get` of each key in turn, for many keys at once (a listing): each
        column is read by one C-level ``map`` and no Python code runs per key
        when every key is live; a packed projection's values are cut out whole
        (a few C calls a column) when most keys are asked for. Do not change
        the projection while iterating."""
        found = list(map(self._live().get, keys))
        if None in found:                   # some key is not live: key by key
            return iter([None if i is None else self._record(i) for i in found])
        slots = cast(list[int], found)
        packed = self._packed
        titles: Callable[[int], str]
        descs: Callable[[int], str]
        if packed is None:
            titles, descs = self._titles.__getitem__, self._descs.__getitem__
        elif len(slots) * 8 < len(packed[1]):
            titles, descs = packed[1].__getitem__, packed[2].__getitem__
        else:
            titles, descs = packed[1].to_list().__getitem__, packed[2].to_list().__getitem__
        column: Callable[[IntColumn], Iterator[int]] = lambda c: map(c.__getitem__, slots)
        # seconds as ns_to_seconds gives them (ns / 1e9), divided in C
        created = map(truediv, column(self._created), repeat(1e9))
        updated = map(truediv, column(self._updated), repeat(1e9))
        values = zip(map(titles, slots), map(descs, slots), column(self._vers), created, updated)
        return map(tuple.__new__, repeat(MediaRecord), values)

    def _record(self, i: int) -> MediaRecord:
        title, desc = self._values(i)
        return MediaRecord(title, desc, self._vers[i], ns_to_seconds(self._created[i]),
                           ns_to_seconds(self._updated[i]))

    def title(self, key: str) -> str:
        i = self._slot(key)
        return "" if i is None else self._values(i)[0]

    def description(self, key: str) -> str:
        i = self._slot(key)
        return "" if i is None else self._values(i)[1]

    def values(self, key: str) -> tuple[str, str] | None:
        """(title, description) of a live item, else None."""
        i = self._slot(key)
        return None if i is None else self._values(i)

    def key_version(self, key: str) -> int:
        """Events ever applied for ``key`` (the store's ``version(key)``)."""
        i = self._slot(key)
        return self._gone.get(key, 0) if i is None else self._vers[i]

    def key_strings(self) -> list[str]:
        """The live keys, the very str objects the projection holds (the store
        builds its key versions on them: `eventstore.projection`)."""
        return list(self._live())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._slot(key) is not None

    def __len__(self) -> int:
        return len(self._live())

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._live()))

    def keys(self) -> list[str]:
        """Keys of the live items, in no particular order."""
        return list(self._live())

    def items(self) -> list[tuple[str, MediaRecord]]:
        """(key, record) for every live item, sorted by key."""
        return [(k, self.get(k)) for k in sorted(self._live())]  # type: ignore[misc]

    def as_dict(self) -> dict[str, tuple[str, str]]:
        """{key: (title, description)}: handy for comparisons and diffs."""
        values = self._values
        return {k: values(i) for k, i in self._live().items()}
