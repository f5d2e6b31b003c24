"""eventstore.postgres: the `Store` protocol on PostgreSQL (SPEC §8; docs/POSTGRES.md).

`open_postgres(url, projections, options)` is what `eventstore.open` calls
for a ``postgresql://`` URL. The driver, psycopg 3, is the optional
``postgres`` extra: it is imported here, when a store is opened, and a
missing driver is one `StoreUnavailableError` naming the URL without its
password. Nothing of this package is imported by the embedded store.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from ..api import StoreOptions
from ..projection import Projection
from .errors import CommitUnknownError, StoreUnavailableError
from .url import StoreURL, parse_url

if TYPE_CHECKING:
    from .store import PostgresStore

__all__ = ["open_postgres", "StoreUnavailableError", "CommitUnknownError", "parse_url", "StoreURL"]


def open_postgres(url: str, projections: Iterable[Projection], options: StoreOptions) -> "PostgresStore":
    """Open (creating its tables if needed and allowed) the store at a ``postgresql://`` URL."""
    parsed = parse_url(url)
    try:
        import psycopg  # noqa: F401 - the optional driver
    except ImportError:
        raise StoreUnavailableError(parsed.redacted, "the PostgreSQL driver is not installed "
                                                     "(pip install 'metalog[postgres]')") from None
    from .store import PostgresStore
    return PostgresStore(parsed, projections, options)
