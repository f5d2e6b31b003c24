"""The projection protocol: read models that the store feeds with events.

A projection is any object with ``name``, ``version``, ``apply(event)``,
``snapshot()`` and ``restore(state)``. The store calls ``apply`` once per
committed event, in seq order, both while replaying on open and live.
``snapshot()`` returns a msgpack-able value; ``restore(state)`` loads one.
A snapshot whose name/version differ from the projection's is ignored and the
state is rebuilt by replay. This module defines the protocol only.

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

from typing import Any, Protocol, runtime_checkable

from .event import Event

__all__ = ["Projection"]


@runtime_checkable
class Projection(Protocol):
    name: str
    version: int

    def apply(self, event: Event) -> None: ...

    def snapshot(self) -> Any: ...

    def restore(self, state: Any) -> None: ...
