"""Connections to the server: opening, session settings, losing them, and reconnecting.

A `Link` is one connection for one role (the writer, the readers, the
listener, a snapshot), opened when first needed and again after it was
lost: a server restart or a killed backend costs the statement in flight,
never the store. `connection_lost` tells a lost connection from every other
error by the connection's state and the SQLSTATE class (``08``: connection
exception, ``57P``: operator intervention), never by an error's text. Every
failure to connect becomes one `StoreUnavailableError` naming the URL
without its password.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Sequence, TypeVar

import psycopg
from psycopg.conninfo import make_conninfo

from .errors import StoreUnavailableError
from .url import StoreURL

__all__ = ["Link", "Conn", "connection_lost", "CONNECT_TIMEOUT"]

Conn = psycopg.Connection[tuple[Any, ...]]
"""A connection whose rows are tuples of what the columns hold (the SQL says which types)."""
T = TypeVar("T")
CONNECT_TIMEOUT = 5
"""Seconds to wait for the server when the URL does not say (``connect_timeout``)."""
_LOST_SQLSTATE = ("08", "57P")


def connection_lost(exc: BaseException, conn: Conn | None) -> bool:
    """Whether ``exc`` leaves the statement's outcome unknown: the connection is gone.

    An error the server reported itself (it carries a SQLSTATE) means the server
    handled the statement and refused it, unless its class says the session was
    ended (``08``, ``57P``). An error without one comes from the client side of
    a connection that broke mid-conversation (libpq's "cannot exit pipeline mode
    while busy", a reset socket, ...): the server may have done anything.
    """
    if not isinstance(exc, psycopg.Error):
        return False
    if conn is not None and (conn.broken or conn.closed):
        return True
    state = getattr(exc, "sqlstate", None) or ""
    return not state or state.startswith(_LOST_SQLSTATE)


class Link:
    """One reconnecting connection, used by one thread at a time (hold ``lock``)."""

    def __init__(self, url: StoreURL, role: str, settings: Sequence[str] = ()) -> None:
        self.url = url
        self.role = role
        self.settings = tuple(settings)  # SET statements run on every new connection
        self.lock = threading.RLock()
        self._conn: Conn | None = None

    def conn(self) -> Conn:
        """The open connection, connecting first if there is none (or it was lost)."""
        conn = self._conn
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        self.drop()
        self._conn = conn = connect(self.url, f"metalog {self.role} {self.url.schema}")
        try:
            for statement in self.settings:
                conn.execute(statement)
        except psycopg.Error as exc:
            self.drop()
            raise StoreUnavailableError(self.url.redacted, f"session setup failed: {exc}") from exc
        return conn

    @property
    def backend_pid(self) -> int | None:
        conn = self._conn
        return None if conn is None or conn.closed else conn.info.backend_pid

    def drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - it is being thrown away
                pass

    def run(self, work: Callable[[Conn], T]) -> T:
        """``work(conn)`` holding the lock; once more on a new connection if this one was lost.

        Only for work that may run twice (reads): a lost connection says nothing
        of what the first run did.
        """
        with self.lock:
            conn = self.conn()
            try:
                return work(conn)
            except psycopg.Error as exc:
                if not connection_lost(exc, conn):
                    raise
                self.drop()
            return work(self.conn())

    close = drop


def connect(url: StoreURL, application_name: str) -> Conn:
    """A new autocommit connection, or `StoreUnavailableError`."""
    conninfo = url.conninfo
    if "connect_timeout" not in conninfo:
        conninfo = make_conninfo(conninfo, connect_timeout=CONNECT_TIMEOUT)
    try:
        return psycopg.connect(conninfo, autocommit=True, application_name=application_name)
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StoreUnavailableError(url.redacted, f"cannot connect: {reason}") from None
