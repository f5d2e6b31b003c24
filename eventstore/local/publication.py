"""What a `LocalStore` has taken in and shows: the published seq, key versions, subscribers.

`Publication` applies commits to the projections (other writers' first: they
come first in the log), counts key versions, moves the seq that reads may
return, hands events to subscribers outside the commit path, and asks for an
automatic snapshot when enough events went by. `refresh` takes in the commits
other writers made since (a writer through its `LogWriter`, a reader through
the `LogReader` from its cursor). It never writes the log.
"""
from __future__ import annotations

import logging
import threading
from typing import Callable, Sequence

from ..commit import PreparedCommit
from ..errors import CorruptionError, StoreClosedError
from ..event import Event
from ..projection import Projection
from ..publish import KeyVersions, Publisher, keys_of
from .groupcommit import GroupCommit
from .opening import OpenResult
from .reader import Cursor, LogReader
from .writer import Caught, LogWriter

__all__ = ["Publication"]

log = logging.getLogger("eventstore")


class Publication:
    """The published state of one store, and how commits get into it."""

    def __init__(self, root: str, projections: Sequence[Projection], engine: GroupCommit[PreparedCommit, list[Event]],
                 reader: LogReader, snapshot_every: int, snapshot_due: Callable[[], None]) -> None:
        self.root = root
        self.publisher = Publisher(projections)
        self.engine = engine
        self.reader = reader
        self.versions = KeyVersions()
        self.seq = 0  # the last seq applied and visible to reads
        self.cursor = Cursor.start()  # readonly: where the next refresh reads from
        self.lost = 0  # events lost in salvage gaps, as the open's report counts them
        self.since_snapshot = 0
        self.undelivered: list[Event] = []  # published, for the subscribers (leader only)
        self._snapshot_every = snapshot_every
        self._snapshot_due = snapshot_due
        self._refresh_lock = threading.RLock()
        self._refreshing = False  # applying other writers' commits (re-entrant reads see the old state)

    def opened(self, result: OpenResult) -> None:
        """Start from what the open replayed."""
        self.versions = result.versions
        self.lost = result.lost
        self.seq = result.end.next_seq - 1

    # -- publishing ------------------------------------------------------------------------------
    def publish(self, caught: Caught, ours: Sequence[list[Event]], next_seq: int) -> None:
        """Apply commits (other writers' first), then show them up to ``next_seq - 1``."""
        published = 0
        engine = self.engine
        for events in [events for _, events in caught] + list(ours):
            failed = self.publisher.apply(events)
            if failed is not None and engine.failed is None:
                # The commit is durable, so it is published; but the projection now
                # disagrees with the log. Refuse further writes and snapshots (which
                # would persist the wrong state) until the store is reopened.
                log.error("%s; %s refuses writes until reopened", failed, self.root)
                engine.failed = failed
            if self.publisher.subscribers:
                self.undelivered.extend(events)
            published += len(events)
        if not published:
            return
        self.seq = next_seq - 1
        self.since_snapshot += published
        if self._snapshot_every and self.since_snapshot >= self._snapshot_every:
            self._snapshot_due()

    def take_in(self, caught: Caught, next_seq: int) -> int:
        """Count and publish other writers' commits; returns how many events."""
        for _, events in caught:
            self.versions.note(keys_of(events))
        self.publish(caught, (), next_seq)
        return sum(len(events) for _, events in caught)

    def deliver(self) -> None:
        """Hand what was published to the subscribers (outside the commit path)."""
        events, self.undelivered = self.undelivered, []
        if events:
            self.publisher.deliver(events)

    # -- other writers' commits ------------------------------------------------------------------
    def refresh(self, writer: LogWriter | None, *, strict: bool = True) -> int:
        """Take in the commits other writers made since; returns how many events.

        When the log has not moved it costs a few `stat` calls. ``strict=False``
        keeps the state we have instead of raising when another thread closes
        the store meanwhile or the new bytes are damaged.
        """
        if not strict:
            try:
                return self.refresh(writer)
            except StoreClosedError:
                return 0
            except CorruptionError as exc:
                log.warning("%s stays at seq %d: %s", self.root, self.seq, exc)
                return 0
        if self.engine.closed:
            raise StoreClosedError(f"store {self.root} is closed")
        with self._refresh_lock:  # re-entrant: a projection of ours may read the store
            if self._refreshing:
                return 0
            self._refreshing = True
            try:
                return self._refresh_reader() if writer is None else self._refresh_writer(writer)
            finally:
                self._refreshing = False

    def _refresh_writer(self, writer: LogWriter) -> int:
        if writer.lock.held or not self.reader.moved(writer.cursor):
            return 0
        with self.engine.exclusive():
            n = self.take_in(writer.catch_up(), writer.cursor.next_seq)
        self.deliver()
        return n

    def _refresh_reader(self) -> int:
        if not self.reader.moved(self.cursor):
            return 0
        n = 0
        cursor = self.cursor.copy()
        mutex = self.engine.mutex
        for _, events in self.reader.decoded(self.seq + 1, None, cursor):
            self.publisher.apply(events)
            with mutex:
                self.versions.note(keys_of(events))
                self.cursor = cursor.copy()
                self.seq = cursor.next_seq - 1
            n += len(events)
        with mutex:  # past trailing gap frames, or into a new empty segment
            self.cursor = cursor
            self.seq = cursor.next_seq - 1
        return n
