"""An open batch of a `MediaCatalog`: its pending changes, reads through it, its commit.

`Batch` holds the sets made while a batch is open (the last value of each
field wins) and whether one was refused as bad input (SPEC §5: then the batch
writes nothing). `Overlay` answers the catalog's reads from the committed
projection with those pending values laid over it. `batch_items` turns the
pending changes into the events of one commit, leaving out values that are
no longer changes. No store access and no locking here: the catalog holds
its lock around all of it.
"""
from __future__ import annotations

import time as _time
from typing import Any, Callable, NamedTuple

from eventstore.event import Event

from .events import CONT, TYPE_OF_FIELD, VALUE, MediaRecord
from .media import MediaProjection

__all__ = ["Batch", "Pending", "Overlay", "Item", "batch_items", "committed_value"]

Item = tuple[str, str, dict[str, Any], dict[str, Any]]
"""An event to append: ``(type, key, data, meta)``."""


class Pending(NamedTuple):
    """A field's pending value in a batch, and the reason given with it."""

    value: str
    reason: str | None


class Batch:
    """The pending changes of an open batch; ``events`` is set on commit.

    ``refused`` is set when a set was refused as bad input while the batch
    was open (SPEC §5: a bad item aborts the whole batch): it says which
    and why, and the batch then writes nothing and shows nothing.
    """

    def __init__(self) -> None:
        self.changes: dict[tuple[str, str], Pending] = {}  # (key, field) -> its pending value
        self.events: list[Event] = []
        self.refused: str | None = None
        self._keys: set[str] = set()

    def put(self, key: str, field: str, value: str, reason: str | None) -> None:
        self.changes[(key, field)] = Pending(value, reason)
        self._keys.add(key)

    def value(self, key: str, field: str) -> str | None:
        entry = self.changes.get((key, field))
        return None if entry is None else entry.value

    def keys(self) -> set[str]:
        return self._keys

    def __len__(self) -> int:
        return len(self.changes)


def committed_value(proj: MediaProjection, key: str, field: str) -> str:
    """The committed value of ``field`` (``"title"`` or ``"description"``) of ``key``."""
    return proj.title(key) if field == "title" else proj.description(key)


def batch_items(batch: Batch, proj: MediaProjection, meta_of: Callable[[str | None], dict[str, Any]]) -> list[Item]:
    """The events that commit ``batch`` on ``proj``: one per field still changed, every event
    after the first marked ``cont`` (one user action); ``meta_of(reason)`` makes their meta."""
    items: list[Item] = []
    cont_meta: dict[str | None, dict[str, Any]] = {}  # shared by the cont events
    for (key, field), (value, reason) in batch.changes.items():
        if value == committed_value(proj, key, field):
            continue
        if items:
            meta = cont_meta.get(reason)
            if meta is None:
                meta = cont_meta[reason] = meta_of(reason)
                meta[CONT] = True
        else:
            meta = meta_of(reason)
        items.append((TYPE_OF_FIELD[field], key, {VALUE: value}, meta))
    return items


class Overlay:
    """Reads of the committed projection with an open batch's pending values laid over it
    (``batch`` None: the projection alone)."""

    def __init__(self, proj: MediaProjection, batch: Batch | None) -> None:
        self.proj = proj
        self.batch = batch

    def get(self, key: str) -> MediaRecord | None:
        record = self.proj.get(key)
        batch = self.batch
        if batch is None or key not in batch.keys():
            return record
        title = batch.value(key, "title")
        desc = batch.value(key, "description")
        if record is None:
            if not title and not desc:
                return None
            now = _time.time()
            return MediaRecord(title or "", desc or "", self.proj.key_version(key), now, now)
        title = record.title if title is None else title
        desc = record.description if desc is None else desc
        if not title and not desc:
            return None
        return record._replace(title=title, description=desc)

    def keys(self) -> list[str]:
        """Keys of the live items, sorted."""
        keys = set(self.proj.keys())
        if self.batch is not None:
            for key in self.batch.keys():
                if self.get(key) is None:
                    keys.discard(key)
                else:
                    keys.add(key)
        return sorted(keys)

    def __len__(self) -> int:
        return len(self.proj) if self.batch is None else len(self.keys())

    def items(self) -> list[tuple[str, MediaRecord]]:
        """(key, record) of every live item, sorted by key."""
        if self.batch is None:
            return self.proj.items()
        out = []
        for key in self.keys():
            record = self.get(key)
            assert record is not None
            out.append((key, record))
        return out
