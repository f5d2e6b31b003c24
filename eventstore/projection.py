"""The projection protocol: read models that the store feeds with events.

A projection is any object with ``name``, ``version``, ``apply(event)``,
``snapshot()`` and ``restore(state)``. The store calls ``apply`` once per
committed event, in seq order, both while replaying on open and live.
``snapshot()`` returns a msgpack-able value; ``restore(state)`` loads one.
A snapshot whose name/version differ from the projection's is ignored and the
state is rebuilt by replay. This module defines the protocol only.

Optional: a projection may also offer ``apply_batch(events)`` (the
`BatchProjection` protocol). The store then hands it the events of each
commit at once, as an `EventBatch` in seq order, instead of calling
``apply`` for each; it must leave the state that applying them one by one
would. A replay then pays one call per commit, not one per event, and a
projection that reads the batch's columns (``keys``, ``datas``, ...) spares
the store building the `Event` objects at all
(docs/decisions/perf-batch-protocol.md). ``apply`` stays required: code
outside the store may call it.

Optional: a projection whose ``snapshot()`` returns a value that later
``apply`` calls never mutate (a copy, or immutable data) may set
``snapshot_detached = True``; the store then packs that value in its
background snapshot thread instead of on the commit path.

Optional: a projection that holds the event keys as str objects may offer
``key_strings()``, an iterable of them; the store then builds the key
versions of a snapshot on those very objects, so each key is in memory once
(docs/FORMAT.md [F-34]). It is called at most once per open, possibly long
after the open, and must not change the projection.
"""
from __future__ import annotations

from typing import Any, Callable, Protocol, runtime_checkable

from .batch import EventBatch
from .event import Event

__all__ = ["Projection", "BatchProjection", "Applier", "applier"]

Applier = Callable[[EventBatch], None]
"""Hands one commit's events, in seq order, to a projection."""


@runtime_checkable
class Projection(Protocol):
    name: str
    version: int

    def apply(self, event: Event) -> None: ...

    def snapshot(self) -> Any: ...

    def restore(self, state: Any) -> None: ...


@runtime_checkable
class BatchProjection(Projection, Protocol):
    """A projection that takes the events of one commit at once (opt-in)."""

    def apply_batch(self, events: EventBatch) -> None:
        """Apply one commit's events, in seq order: the same state as ``apply`` on each.

        ``events`` is a sequence of `Event`; its columns (``keys``, ``datas``,
        ...) give the same values without building the `Event` objects.
        """
        ...


def applier(projection: Projection) -> Applier:
    """How the store hands ``projection`` a commit: its ``apply_batch``, else ``apply`` per event."""
    batch = getattr(projection, "apply_batch", None)
    if callable(batch):
        return batch
    apply = projection.apply

    def each(events: EventBatch) -> None:
        for e in events:
            apply(e)
    return each
