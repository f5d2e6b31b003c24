"""Waking followers and subscribers: LISTEN on the store's channel, with a polling fallback.

Every commit ends with ``NOTIFY metalog_<schema>, '<last seq>'``, delivered
to listeners when (and only if) it commits, in commit order. A `Listener`
holds one connection that LISTENs, in a daemon thread: each notification
bumps a generation counter and wakes the threads waiting in `wait`
(`follow`), and calls ``on_commit`` (the store's catch-up, which publishes
to subscribers). Waiters never rely on a notification alone: they wait at
most ``fallback`` seconds (``poll`` while the connection is down) and then
read anyway, so a lost notification or a listener reconnecting after a
server restart delays an event, never loses it. Reading is not done here.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

import psycopg

from .connection import connect
from .errors import StoreUnavailableError
from .connection import Conn
from .url import StoreURL

__all__ = ["Listener", "FALLBACK_SECONDS"]

log = logging.getLogger("eventstore")

FALLBACK_SECONDS = 1.0
"""How long a waiter trusts the listener before reading anyway, while it is connected."""
_TICK = 0.2  # the thread looks at `stopped` this often
_RETRY = 0.5  # seconds between reconnection attempts


class Listener:
    """One LISTEN connection and its thread, for one store."""

    def __init__(self, url: StoreURL, on_commit: Callable[[int], None]) -> None:
        self.url = url
        self.on_commit = on_commit  # called in the thread with the notified last seq (0: look)
        self.connected = False
        self.generation = 0
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="metalog-listen", daemon=True)
        self._thread.start()

    def wait(self, seen: int, poll: float, timeout: float | None) -> None:
        """Until the generation moves past ``seen``, or the fallback (``poll`` when not connected)."""
        limit = FALLBACK_SECONDS if self.connected else poll
        if timeout is not None:
            limit = min(limit, timeout)
        with self._cond:
            self._cond.wait_for(lambda: self.generation != seen or self._stopped, max(limit, 0.0))

    def _bump(self) -> None:
        with self._cond:
            self.generation += 1
            self._cond.notify_all()

    def _run(self) -> None:
        while not self._stopped:
            try:
                conn = connect(self.url, f"metalog listen {self.url.schema}")
            except StoreUnavailableError:
                time.sleep(_RETRY)
                continue
            try:
                conn.execute(f"LISTEN {self.url.channel}")
                self.connected = True
                self._bump()  # commits may have come while we were away: read now
                self._listen(conn)
            except psycopg.Error as exc:
                log.debug("listener of %s lost its connection: %s", self.url.redacted, exc)
            finally:
                self.connected = False
                try:
                    conn.close()
                except psycopg.Error:
                    pass
            if not self._stopped:
                time.sleep(_RETRY)

    def _listen(self, conn: Conn) -> None:
        checked = 0.0  # the catch-up also runs every FALLBACK_SECONDS: the polling fallback
        while not self._stopped:
            last = None
            for note in conn.notifies(timeout=_TICK):
                last = note.payload
                self._bump()
            now = time.monotonic()
            if last is None and now - checked < FALLBACK_SECONDS:
                continue
            checked = now
            try:
                self.on_commit(int(last) if last is not None and last.isdigit() else 0)
            except Exception:  # noqa: BLE001 - a failing catch-up must not end the listener
                log.exception("catching up %s after a notification failed", self.url.redacted)

    def close(self) -> None:
        self._stopped = True
        self._bump()
        if self._thread is not threading.current_thread():
            self._thread.join(2 * _TICK + 5)
