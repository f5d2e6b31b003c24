"""The seam: what every backend's `Store` offers, and the options they all check.

`Store` is the protocol `projections`, the CLI and the contract tests program
against (SPEC §2); `eventstore.open(target)` returns one, whatever the target.
`StoreOptions` is the checked form of `open`'s keyword arguments, shared by
every backend so a bad option is refused the same way everywhere. The types
of stored values (`Value`, `Data`) live here too. No I/O, no backend code.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Callable, ContextManager, Iterable, Iterator, Mapping, Protocol, Sequence, Union

from .errors import ValidationError
from .event import Event, Value
from .projection import Projection
from .report import RecoveryReport, VerifyReport

__all__ = ["Store", "Transaction", "StoreOptions", "SnapshotState", "Commit", "Value", "Data", "Item",
           "StoreStats", "CompactResult", "ProgressCallback", "DURABILITY", "RECOVERY"]

Data = Mapping[str, Value]
"""A ``data`` or ``meta`` argument: str keys, msgpack-able values."""
Item = Union[tuple[str, str, Union[Data, None]], tuple[str, str, Union[Data, None], Union[Data, None]],
             Sequence[object]]
"""An `append_many` item: ``(type, key, data)`` or ``(type, key, data, meta)``."""
StoreStats = dict[str, Union[int, float, str, bool, None]]
"""`Store.stats()`: at least ``events``, ``keys``, ``segments``, ``bytes_on_disk``, ``last_seq``,
``snapshot_seq``; backends add their own counts."""
CompactResult = dict[str, Union[int, float]]
ProgressCallback = Callable[[int, int], None]
"""Called with ``(done, total)`` seqs while a long operation runs."""

DURABILITY = ("fsync", "flush", "none")
RECOVERY = ("strict", "salvage")


@dataclass(frozen=True)
class SnapshotState:
    """One projection's state from a stored snapshot (`Store.nearest_snapshot`)."""

    seq: int  # the state is the one after every event up to and including this seq
    state: object


@dataclass(frozen=True)
class Commit:
    """One commit as a store holds it: its seqs, time, place in the digest chain, and events.

    ``Store.read_commits`` yields these and ``Store.import_commit`` takes them,
    so a copy between backends keeps seqs, times and digests (`metalog copy`).
    ``digest`` is ``chain.commit_digest(prev, first_seq, len(events), ts,
    payload)``, where ``payload`` is the codec's encoding of the events.
    """

    first_seq: int
    ts: int  # ns since the epoch, shared by its events
    prev: bytes  # the chain digest before it (that of the commit before, or the zero digest)
    digest: bytes  # the chain digest after it
    payload: bytes
    events: list[Event]

    @property
    def last_seq(self) -> int:
        return self.first_seq + len(self.events) - 1


@dataclass(frozen=True)
class StoreOptions:
    """`eventstore.open`'s options, checked once for every backend (SPEC §2)."""

    durability: str = "fsync"
    recovery: str = "strict"
    readonly: bool = False
    segment_bytes: int = 64 << 20
    snapshot_every: int = 100_000
    max_event_bytes: int = 1 << 20
    create: bool = True
    exclusive: bool = False  # one writer for as long as the store is open (opt-in)

    def __post_init__(self) -> None:
        if self.durability not in DURABILITY:
            raise ValidationError(f"durability must be one of {DURABILITY}, not {self.durability!r}")
        if self.recovery not in RECOVERY:
            raise ValidationError(f"recovery must be one of {RECOVERY}, not {self.recovery!r}")
        for name, value, low in (("segment_bytes", self.segment_bytes, 4096),
                                 ("snapshot_every", self.snapshot_every, 0),
                                 ("max_event_bytes", self.max_event_bytes, 64)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValidationError(f"{name} must be an int >= {low}")
        for name in ("readonly", "create", "exclusive"):
            if not isinstance(getattr(self, name), bool):
                raise ValidationError(f"{name} must be True or False")
        if self.exclusive and self.readonly:
            raise ValidationError("exclusive is for writers; a readonly store takes no lock")


def check_projections(projections: Iterable[object]) -> tuple[Projection, ...]:
    out: list[Projection] = []
    for p in projections:
        if not isinstance(p, Projection):
            raise ValidationError(f"{p!r} does not implement the Projection protocol")
        out.append(p)
    return tuple(out)


class Transaction(Protocol):
    """What `Store.transaction()` yields: appends that commit together on a clean exit."""

    events: list[Event]
    """The committed events, set when the block exits cleanly."""

    def append(self, type: str, key: str, data: Data | None = None, *,
               meta: Data | None = None, expected_version: int | None = None) -> None: ...

    def __len__(self) -> int: ...


class Store(Protocol):
    """An open event store (SPEC §2). Also a context manager that closes it."""

    @property
    def location(self) -> str:
        """Where the store is: its directory, or its URL without a password."""
        ...

    @property
    def readonly(self) -> bool: ...

    @property
    def durability(self) -> str: ...

    @property
    def recovery(self) -> str: ...

    @property
    def max_event_bytes(self) -> int: ...

    @property
    def recovery_report(self) -> RecoveryReport:
        """What `open` (or a later catch-up) repaired, skipped or quarantined."""
        ...

    @property
    def closed(self) -> bool: ...

    # -- writing -----------------------------------------------------------------------
    def append(self, type: str, key: str, data: Data | None = None, *,
               meta: Data | None = None, expected_version: int | None = None) -> Event: ...

    def append_many(self, items: Iterable[Item]) -> list[Event]: ...

    def transaction(self) -> ContextManager[Transaction]: ...

    def flush(self) -> None: ...

    # -- reading -----------------------------------------------------------------------
    def read(self, start: int = 1, stop: int | None = None, *, key: str | None = None,
             types: str | Iterable[str] | None = None) -> Iterator[Event]: ...

    def follow(self, start: int | None = None, *, poll: float = 0.05,
               timeout: float | None = None) -> Iterator[Event]: ...

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]: ...

    def version(self, key: str) -> int: ...

    def read_commits(self, start: int = 1) -> Iterator[Commit]:
        """Whole commits from the one holding seq ``start``, in seq order. Seqs a salvage lost
        (gap frames) are skipped: the commit after them has its own ``prev``."""
        ...

    def import_commit(self, commit: Commit) -> list[Event]:
        """Store a commit read from another store, with its seqs, time and digest.

        It must chain on this store's head: start at ``last_seq + 1``, with
        ``prev`` the digest of this store's last commit, a time no earlier than
        that commit's, a payload that encodes its events, and a digest that
        recomputes. Anything else is a `ValidationError` and nothing is written.
        """
        ...

    @property
    def last_seq(self) -> int: ...

    @property
    def projections(self) -> tuple[Projection, ...]: ...

    def refresh(self, *, strict: bool = True) -> int:
        """Take in commits other processes made since; returns how many events."""
        ...

    # -- upkeep ------------------------------------------------------------------------
    def snapshot(self) -> int: ...

    def nearest_snapshot(self, name: str, version: int, max_seq: int) -> SnapshotState | None: ...

    def compact(self) -> CompactResult: ...

    def verify(self, progress: ProgressCallback | None = None) -> VerifyReport: ...

    def stats(self) -> StoreStats: ...

    def close(self) -> None: ...

    def __enter__(self) -> Store: ...

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None: ...
