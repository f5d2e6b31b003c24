"""What every backend's store does the same way.

`StoreBase` holds the members of the `Store` protocol whose behaviour does not
depend on where the log lives: the options as properties, the closed/readonly
checks every entry point runs first, the checks of a read's arguments,
`transaction`, `version`, `last_seq`, `projections`, `subscribe`, and the
context manager. A backend (`local.LocalStore`, `postgres.PostgresStore`)
supplies the state they read: ``_options``, ``_engine`` (its `GroupCommit`),
``_intake``, ``_projections``, and the hooks below (`_submit_prepared`,
`_current_versions`, `_current_seq`, `_current_publisher`, `refresh`, `close`,
`location`).
"""
from __future__ import annotations

import contextlib
from types import TracebackType
from typing import Any, Callable, Iterable, Iterator, TypeVar

from .api import StoreOptions
from .commit import BatchTransaction, Intake, PreparedCommit
from .errors import ReadOnlyError, StoreClosedError, ValidationError
from .event import Event, validate_key
from .local.groupcommit import GroupCommit
from .projection import Projection
from .publish import KeyVersions, Publisher

__all__ = ["StoreBase", "check_position"]

_S = TypeVar("_S", bound="StoreBase")


def check_position(name: str, value: int | None) -> None:
    """A seq argument (``start``, ``stop``) is None or a non-negative int, never a bool."""
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
        raise ValidationError(f"{name} must be a non-negative int")


class StoreBase:
    """The backend-independent part of a store (see the module docstring)."""

    _options: StoreOptions
    _engine: GroupCommit[Any, list[Event]]
    _intake: Intake
    _projections: tuple[Projection, ...]

    # -- what a backend supplies ------------------------------------------------------------
    @property
    def location(self) -> str:
        raise NotImplementedError

    def _submit_prepared(self, commit: PreparedCommit) -> list[Event]:
        """Write a validated commit through the group commit; its events."""
        raise NotImplementedError

    def _current_versions(self) -> KeyVersions:
        """The key versions of what this store has published."""
        raise NotImplementedError

    def _current_seq(self) -> int:
        """The last seq this store has published."""
        raise NotImplementedError

    def _current_publisher(self) -> Publisher:
        raise NotImplementedError

    def _subscribed(self) -> None:
        """A subscriber was added (PostgreSQL starts listening for other writers' commits)."""

    def refresh(self, *, strict: bool = True) -> int:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    # -- options -----------------------------------------------------------------------------
    readonly = property(lambda self: self._options.readonly)
    durability = property(lambda self: self._options.durability)
    recovery = property(lambda self: self._options.recovery)
    max_event_bytes = property(lambda self: self._options.max_event_bytes)
    snapshot_every = property(lambda self: self._options.snapshot_every)
    closed = property(lambda self: self._engine.closed)

    # -- checks every entry point runs first -------------------------------------------------
    def _open_check(self) -> None:
        """A closed store refuses every member but `close` (an answer would be stale)."""
        if self._engine.closed:
            raise StoreClosedError(f"store {self.location} is closed")

    def _writable(self) -> None:
        if self.readonly:
            self._open_check()
            raise ReadOnlyError(f"store {self.location} was opened readonly")
        self._engine.check_writable()

    def _read_args(self, start: int, stop: int | None, key: str | None,
                   types: str | Iterable[str] | None) -> set[str] | None:
        """Check `read`'s arguments (before anything is read); the set of types, if any."""
        self._open_check()
        check_position("start", start)
        check_position("stop", stop)
        if key is not None:
            validate_key(key)
        return None if types is None else ({types} if isinstance(types, str) else set(types))

    # -- members that are the same on every backend ------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[BatchTransaction]:
        """Appends inside commit atomically on clean exit; nothing is written on exception."""
        self._writable()
        tx = BatchTransaction(self._intake)
        try:
            yield tx
        finally:
            tx.done = True
        commit = tx.prepared()
        if commit is not None:
            self._writable()
            tx.events = self._submit_prepared(commit)

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``callback(event)`` for each event this store publishes from now on: its own
        commits, and other writers' as it takes them in."""
        self._open_check()
        if not callable(callback):
            raise ValidationError("callback must be callable")
        unsubscribe = self._current_publisher().subscribe(callback)
        self._subscribed()
        return unsubscribe

    def version(self, key: str) -> int:
        """How many events ``key`` has (0: none), counting every writer's commits."""
        self._open_check()
        validate_key(key)
        self.refresh(strict=False)
        with self._engine.mutex:
            return self._current_versions().get(key)

    @property
    def last_seq(self) -> int:
        self._open_check()
        self.refresh(strict=False)
        return self._current_seq()

    @property
    def projections(self) -> tuple[Projection, ...]:
        self._open_check()
        self.refresh(strict=False)
        return self._projections

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "readonly" if self.readonly else self.durability
        return f"<eventstore.Store {self.location!r} {mode} last_seq={self._current_seq()}>"
