"""eventstore: a durable, append-only, checksummed event log with projections.

Generic and media-agnostic; see docs/FORMAT.md for the bytes and
docs/DESIGN.md for the why. `open()` is the entry point.
"""
from __future__ import annotations

from .errors import (
    ConcurrencyError, CorruptionError, EventStoreError, FormatVersionError, LockedError,
    NotAStoreError, ReadOnlyError, StoreClosedError, StoreFailedError, StoreIOError,
    ValidationError,
)
from .event import Event
from .projection import Projection
from .recovery import RecoveryEntry, RecoveryReport
from .store import Store, open
from .verify import VerifyReport

__all__ = [
    "open", "Store", "Event", "Projection", "RecoveryReport", "RecoveryEntry", "VerifyReport",
    "EventStoreError", "CorruptionError", "FormatVersionError", "LockedError", "ConcurrencyError",
    "ValidationError", "ReadOnlyError", "StoreClosedError", "StoreFailedError", "StoreIOError",
    "NotAStoreError",
]
