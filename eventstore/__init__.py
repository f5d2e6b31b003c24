"""eventstore: a durable, append-only, checksummed event log with projections.

Generic and media-agnostic. `open(target)` opens a `Store`: a directory holds
the embedded segment log (`eventstore.local`, the default); a
``postgresql://`` URL the PostgreSQL backend (`eventstore.postgres`, with the
``postgres`` extra). Every backend implements the `Store` protocol of
`eventstore.api`. docs/FORMAT.md has the bytes, docs/ARCHITECTURE.md the map.
"""
from __future__ import annotations

import os
import sys
from typing import Iterable

_DEPENDENCIES = ("msgpack", "msgspec", "zstandard")  # pyproject.toml [project] dependencies
try:
    from .api import SnapshotState, Store, StoreOptions, Transaction
except ModuleNotFoundError as exc:  # an interpreter metalog was not installed into
    if exc.name not in _DEPENDENCIES:
        raise
    raise ModuleNotFoundError(
        f"metalog needs the {exc.name!r} package, which this Python ({sys.executable}) does not "
        f"have: install metalog into it, e.g. `pip install -e .` in a checkout (which installs "
        f"{', '.join(_DEPENDENCIES)})", name=exc.name) from exc
from .errors import (
    ConcurrencyError, CorruptionError, EventStoreError, FormatVersionError, LockedError,
    NotAStoreError, ReadOnlyError, StoreClosedError, StoreFailedError, StoreIOError,
    ValidationError,
)
from .batch import EventBatch
from .event import Event, Value
from .fs import FileSystem
from .projection import BatchProjection, Projection
from .report import RecoveryEntry, RecoveryReport, VerifyReport

__all__ = [
    "open", "Store", "Transaction", "Event", "Value", "Projection", "BatchProjection", "EventBatch", "SnapshotState", "FileSystem",
    "RecoveryReport", "RecoveryEntry", "VerifyReport",
    "EventStoreError", "CorruptionError", "FormatVersionError", "LockedError", "ConcurrencyError",
    "ValidationError", "ReadOnlyError", "StoreClosedError", "StoreFailedError", "StoreIOError",
    "NotAStoreError",
]

_URL_SCHEMES = ("postgresql://", "postgres://")


def open(target: str | os.PathLike[str], projections: Iterable[Projection] = (), *,
         durability: str = "fsync", recovery: str = "strict", readonly: bool = False,
         segment_bytes: int = 64 << 20, snapshot_every: int = 100_000,
         max_event_bytes: int = 1 << 20, create: bool = True, exclusive: bool = False,
         fs: FileSystem | None = None) -> Store:
    """Open (creating if needed) the store at ``target``: a directory, or a ``postgresql://`` URL.

    See SPEC §2 for the options. Several writers may open one store at once;
    ``exclusive=True`` opts out: this store keeps the commit lock from open to
    close (a little faster for a lone writer), and another writer's open
    raises `LockedError` naming this process. ``fs`` replaces the embedded
    store's file-system layer (tests inject faults through it).
    """
    options = StoreOptions(durability=durability, recovery=recovery, readonly=readonly,
                           segment_bytes=segment_bytes, snapshot_every=snapshot_every,
                           max_event_bytes=max_event_bytes, create=create, exclusive=exclusive)
    if isinstance(target, str) and target.startswith(_URL_SCHEMES):
        from .postgres import open_postgres  # the driver is an optional extra
        return open_postgres(target, projections, options)
    from .local.store import LocalStore
    return LocalStore(target, projections, options, fs)
