"""The errors only the PostgreSQL backend raises (no driver import here).

Both carry their facts as fields. `StoreUnavailableError` is raised when the
driver is missing or the server cannot be reached; `CommitUnknownError`
when the connection was lost after a commit was sent, so whether it
committed is not known: its ``commit_id`` lets a retry settle that exactly
once (`PostgresStore.resolve`, or ``append_many(..., commit_id=...)``).
"""
from __future__ import annotations

from uuid import UUID

from ..errors import EventStoreError, StoreFailedError

__all__ = ["StoreUnavailableError", "CommitUnknownError"]


class StoreUnavailableError(EventStoreError):
    """The PostgreSQL store cannot be used: no driver, or no server answering.

    ``url`` is the store's URL without its password, ``reason`` what failed.
    """

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"store {url} is unavailable: {reason}")


class CommitUnknownError(StoreFailedError):
    """The connection was lost after COMMIT was sent: the commit may or may not be stored.

    ``commit_id`` identifies it; `PostgresStore.resolve(commit_id)` (or
    ``append_many(items, commit_id=commit_id)``) finds it committed or commits
    it once. The store itself reconnects on its next use: it is not failed.
    """

    def __init__(self, url: str, commit_id: UUID, reason: str) -> None:
        self.url = url
        self.commit_id = commit_id
        self.reason = reason
        super().__init__(f"store {url}: the outcome of commit {commit_id} is unknown ({reason}); "
                         f"resolve({str(commit_id)!r}) finds it committed or commits it once")
