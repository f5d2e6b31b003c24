"""Publication of committed events: key versions, projections, subscribers.

Every backend hands each commit it publishes (its own, and those it catches
up with from other writers) to one `Publisher`, in seq order. The publisher
counts key versions (lazily: a commit only notes its keys, and they are
counted in one C call when a version is needed), applies the events to the
projections, and calls the subscribers. It does no I/O and takes no lock:
the backend calls it from one thread at a time (its group-commit leader).
"""
from __future__ import annotations

import collections
import logging
from itertools import chain
from operator import attrgetter
from typing import Callable, Iterable, Sequence

from .batch import EventBatch
from .errors import ConcurrencyError
from .event import Event
from .projection import Projection, applier

__all__ = ["KeyVersions", "Publisher", "ProjectionFailed"]

log = logging.getLogger("eventstore")

_event_key = attrgetter("key")
_chain_keys = chain.from_iterable
_COUNT_AT = 1 << 20  # uncounted keys held at most (8 MiB of references)
try:
    from collections import _count_elements  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - other Pythons
    def _count_elements(mapping: dict[str, int], iterable: Iterable[str]) -> None:
        for k in iterable:
            mapping[k] = mapping.get(k, 0) + 1


class KeyVersions:
    """Per key, the number of events ever committed for it (``Store.version``).

    ``base``, when given, builds the versions counted so far (a snapshot's
    checked key table) the first time a version is needed: an open that is
    never asked for one never builds them.
    """

    def __init__(self, counted: dict[str, int] | None = None, *,
                 base: Callable[[], dict[str, int]] | None = None) -> None:
        self._versions: dict[str, int] = {} if counted is None else counted
        self._base = base
        self._uncounted: list[Sequence[str]] = []  # keys of commits not yet counted
        self._uncounted_n = 0

    def note(self, keys: Sequence[str]) -> None:
        """A commit of events with these keys; counted when first needed."""
        self._uncounted.append(keys)
        self._uncounted_n += len(keys)
        if self._uncounted_n >= _COUNT_AT:
            self.counted()

    def counted(self) -> dict[str, int]:
        """Every version, with every commit counted (the dict itself: do not change it)."""
        if self._base is not None:
            self._versions, self._base = self._base(), None
        if self._uncounted:
            _count_elements(self._versions, _chain_keys(self._uncounted))
            self._uncounted.clear()
            self._uncounted_n = 0
        return self._versions

    def get(self, key: str) -> int:
        return self.counted().get(key, 0)

    def __len__(self) -> int:
        return len(self.counted())

    def check(self, keys: Sequence[str], expected: Sequence[int | None]) -> dict[str, int]:
        """The versions a commit would leave, or `ConcurrencyError` if one expectation fails.

        Raises before anything changes; `apply` the returned dict to commit.
        """
        versions = self.counted()
        after: dict[str, int] = {}
        for key, want in zip(keys, expected):
            current = after.get(key, versions.get(key, 0))
            if want is not None and want != current:
                raise ConcurrencyError(key, want, current)
            after[key] = current + 1
        return after

    def apply(self, after: dict[str, int]) -> None:
        self.counted().update(after)


class ProjectionFailed(Exception):
    """A projection raised while applying a commit; the store refuses writes from then on."""

    def __init__(self, name: str, seq: int, error: Exception) -> None:
        self.name, self.seq, self.error = name, seq, error
        super().__init__(f"projection {name} failed to apply the commit at seq {seq}: {error!r}")


class Publisher:
    """Feeds committed events to projections and subscribers, in seq order."""

    def __init__(self, projections: Sequence[Projection]) -> None:
        self.projections = tuple(projections)
        self._appliers = [(p, applier(p)) for p in self.projections]
        self.subscribers: list[Callable[[Event], None]] = []
        self._to_deliver: collections.deque[Event] = collections.deque()
        self._delivering = False

    def apply(self, events: list[Event] | EventBatch) -> ProjectionFailed | None:
        """Apply one commit to every projection; the first failure is returned, not raised.

        Every projection still gets the commit (a failing one keeps what it had).
        """
        if not self._appliers:
            return None
        batch = events if isinstance(events, EventBatch) else EventBatch.of(events)
        failed = None
        for p, apply in self._appliers:
            try:
                apply(batch)
            except Exception as exc:  # noqa: BLE001 - reported to the store, which fails itself
                if failed is None:
                    failed = ProjectionFailed(getattr(p, "name", repr(p)), batch.first_seq, exc)
        return failed

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        self.subscribers.append(callback)

        def unsubscribe() -> None:
            try:
                self.subscribers.remove(callback)
            except ValueError:
                pass
        return unsubscribe

    def deliver(self, events: Iterable[Event]) -> None:
        """Call every subscriber with each event, in seq order.

        A subscriber that appends publishes a nested batch on this thread while
        we are still delivering; its events queue behind ours, so every
        subscriber sees seqs in order. A subscriber that raises is logged and
        skipped for that event.
        """
        if not self.subscribers:
            return
        self._to_deliver.extend(events)
        if self._delivering:
            return
        self._delivering = True
        try:
            while self._to_deliver:
                e = self._to_deliver.popleft()
                for cb in list(self.subscribers):
                    try:
                        cb(e)
                    except Exception:
                        log.exception("subscriber %r failed on seq %d", cb, e.seq)
        finally:
            self._delivering = False


def keys_of(events: Sequence[Event]) -> list[str]:
    return list(map(_event_key, events))

