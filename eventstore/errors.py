"""The error hierarchy of eventstore.

Every error carries its facts as attributes (file, offset, reason, pid) so
callers and the CLI can act on them without parsing messages. OSError is
translated at the file-system boundary (`_fs`) with ``raise ... from``.
"""
from __future__ import annotations

import errno as _errno

__all__ = [
    "EventStoreError",
    "CorruptionError",
    "LockedError",
    "ConcurrencyError",
    "ValidationError",
    "ReadOnlyError",
    "StoreClosedError",
    "StoreFailedError",
    "StoreIOError",
    "FormatVersionError",
    "NotAStoreError",
]


class EventStoreError(Exception):
    """Base class of every error raised by eventstore."""


class CorruptionError(EventStoreError):
    """Bytes on disk are not what the format allows.

    ``file`` is the path, ``offset`` the byte offset where the damage starts
    (or None when the whole file is unusable), ``reason`` a short phrase.
    """

    def __init__(self, file: str, offset: int | None, reason: str) -> None:
        self.file = str(file)
        self.offset = offset
        self.reason = reason
        where = f"{self.file}" if offset is None else f"{self.file} at offset {offset}"
        super().__init__(f"corruption in {where}: {reason}")


class FormatVersionError(CorruptionError):
    """A file was written by a newer (or unknown) format version."""

    def __init__(self, file: str, found: int, supported: int) -> None:
        self.found = found
        self.supported = supported
        super().__init__(
            file, 0,
            f"format version {found} is not supported (this metalog reads version {supported})",
        )


class LockedError(EventStoreError):
    """Another writer holds the store's lock."""

    def __init__(self, path: str, pid: int | None) -> None:
        self.path = str(path)
        self.pid = pid
        holder = f"process {pid}" if pid else "another writer"
        super().__init__(f"store {self.path} is locked by {holder}")


class ConcurrencyError(EventStoreError):
    """``expected_version`` did not match the key's current version."""

    def __init__(self, key: str, expected: int, actual: int) -> None:
        self.key = key
        self.expected = expected
        self.actual = actual
        super().__init__(f"key {key!r} is at version {actual}, expected {expected}")


class ValidationError(EventStoreError, ValueError):
    """An argument was rejected before anything was written."""


class ReadOnlyError(EventStoreError):
    """A write was attempted on a store opened with ``readonly=True``."""


class StoreClosedError(EventStoreError):
    """The store has been closed."""


class StoreFailedError(EventStoreError):
    """A write or fsync failed; the store refuses writes until reopened."""


class StoreIOError(StoreFailedError, OSError):
    """A file-system call on the store failed (a full disk, an I/O error, a read-only mount).

    Raised where eventstore writes a file it cannot do without (a copy into
    ``quarantine/`` before recovery cuts anything, say): the operation stopped
    before changing what it could not finish, left no temporary file, and lost
    nothing; it can be retried once the cause is fixed. ``path`` is the store,
    ``file`` the file being written, ``errno``/``strerror`` the OS error,
    ``needed`` the bytes the write needed (None when unknown), ``what`` a short
    phrase for the operation. It is also an `OSError`, so code catching the OS error keeps working.
    """

    def __init__(self, path: str, file: str, err: int | None, strerror: str | None, what: str,
                 needed: int | None = None) -> None:
        OSError.__init__(self, err, strerror, str(file))
        self.path = str(path)
        self.file = str(file)
        self.needed = needed
        self.what = what
        if err == _errno.ENOSPC:
            need = f"at least {needed} bytes of free space" if needed else "free space"
            self.message = (f"store {self.path}: no space left on the device while {what} ({self.file}); "
                            f"it needs {need}: free some and open the store again")
        else:
            self.message = f"store {self.path}: {strerror or 'I/O error'} while {what} ({self.file})"

    def __str__(self) -> str:
        return self.message


class NotAStoreError(EventStoreError, ValueError):
    """The path exists and is not a metalog store; nothing in it was touched."""
