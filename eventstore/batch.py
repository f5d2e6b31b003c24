"""`EventBatch`: the events of one commit, as `Event` objects and as columns.

A replay decodes each commit's payload into columns (one tuple each of
types, keys, datas and metas, `codec.decode_columns`). The `Event` objects
are built from them, in one C-level ``map``, only when the batch is first
iterated or indexed, so an open with no projection, or a projection whose
``apply_batch`` reads the columns, never pays for them. A live commit comes
with its events already built; its columns are then taken from the events
when first asked for. Either way the batch is a read-only `Sequence[Event]`
in seq order, and the columns agree with the events. No I/O here.
"""
from __future__ import annotations

from collections.abc import Sequence
from itertools import count, repeat
from operator import attrgetter, itemgetter
from typing import Any, Iterator, overload

from .event import Event

__all__ = ["EventBatch"]

_FIELDS = tuple(attrgetter(name) for name in ("type", "key", "data", "meta"))
_ITEMS = tuple(itemgetter(i) for i in range(4))


class EventBatch(Sequence[Event]):
    """The events of one commit, in seq order (what ``apply_batch`` receives).

    Besides being a sequence of `Event`, a batch offers ``first_seq`` and
    ``ts`` (shared by its events) and the columns ``types``, ``keys``,
    ``datas`` and ``metas`` (tuples, one entry per event, in seq order; the
    dicts are the events' own). A projection that reads only the columns
    never makes the store build the `Event` objects.
    """

    __slots__ = ("first_seq", "ts", "_rows", "_columns", "_events")

    def __init__(self, first_seq: int, ts: int, rows: Sequence[Sequence[Any]]) -> None:
        """A batch of decoded rows ``(type, key, data, meta)``, in seq order (at least one)."""
        self.first_seq, self.ts = first_seq, ts
        self._rows: Sequence[Sequence[Any]] | None = rows
        self._columns: list[Sequence[Any] | None] = [None, None, None, None]
        self._events: list[Event] | None = None

    @classmethod
    def of(cls, events: list[Event]) -> EventBatch:
        """A batch of events already built (one commit's, in seq order; at least one)."""
        batch = cls.__new__(cls)
        batch.first_seq, batch.ts = events[0].seq, events[0].ts
        batch._rows, batch._columns, batch._events = None, [None, None, None, None], events
        return batch

    @property
    def events(self) -> list[Event]:
        """The events as a list (built once; do not change it)."""
        events = self._events
        if events is None:
            rows = self._rows
            assert rows is not None
            events = self._events = list(map(Event, count(self.first_seq), repeat(self.ts, len(rows)),
                                              *zip(*rows)))
        return events

    def _column(self, i: int) -> Sequence[Any]:
        column = self._columns[i]
        if column is None:
            rows = self._rows
            if rows is not None:
                column = tuple(map(_ITEMS[i], rows))
            else:
                column = tuple(map(_FIELDS[i], self.events))
            self._columns[i] = column
        return column

    @property
    def types(self) -> Sequence[str]:
        return self._column(0)

    @property
    def keys(self) -> Sequence[str]:
        return self._column(1)

    @property
    def datas(self) -> Sequence[dict[str, Any]]:
        return self._column(2)

    @property
    def metas(self) -> Sequence[dict[str, Any]]:
        return self._column(3)

    @property
    def last_seq(self) -> int:
        return self.first_seq + len(self) - 1

    def __len__(self) -> int:
        rows = self._rows
        if rows is not None:
            return len(rows)
        events = self._events
        assert events is not None
        return len(events)

    @overload
    def __getitem__(self, index: int) -> Event: ...

    @overload
    def __getitem__(self, index: slice) -> list[Event]: ...

    def __getitem__(self, index: int | slice) -> Event | list[Event]:
        return self.events[index]

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events)

    def __repr__(self) -> str:
        return f"<EventBatch seqs {self.first_seq}-{self.last_seq}>"
