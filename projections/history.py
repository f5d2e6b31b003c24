"""Item history: the audit trail of one media item, read back from the log.

This module owns turning the events of one item into `Change` records,
oldest first. An item's history is its *lineage*: the events of the key it
is at, from the point the item came to that key, preceded by the lineage
it had at the key it was renamed from (the ``{"from": old}`` half of a
rename), and so on back. At a key, the item's life starts after the last
rename that moved another item away from the key (those events are that
item's history, under its new key) or at the rename that brought it there
(events of the key before that belong to an earlier item that was
forgotten or cleared, and are left out). A forget stays in the history of
its key: the next value set there continues it. Each change's old value
comes from replaying the lineage's values; actor and reason from event
meta. It reads the store through ``store.read(key=...)`` only, once per
key, and never writes.
"""
from __future__ import annotations

import json
import logging
from bisect import bisect_left
from operator import attrgetter
from typing import Any

from eventstore.event import Event

from .events import (ACTOR, FIELD_OF_TYPE, FORGOTTEN, FROM, LEGACY, REASON, RENAMED, TO, VALUE,
                     Change, ns_to_seconds)

__all__ = ["item_history"]

_MAX_RENAMES = 100_000     # renames followed back (undo/redo of a rename adds one each)
_seq = attrgetter("seq")
log = logging.getLogger(__name__)


def item_history(store: Any, key: str) -> list[Change]:
    """Every change of the item now (or last) at ``key``, oldest first."""
    cache: dict[str, list[Event]] = {}
    # Walk back from the newest piece: (key, its events in the lineage, arrival rename).
    pieces: list[tuple[str, list[Event], Event | None]] = []
    k, stop = key, None
    while True:
        if len(pieces) > _MAX_RENAMES:
            log.warning("history of %s: stopped after following %d renames back", key, _MAX_RENAMES)
            break
        events = cache.get(k)
        if events is None:
            events = cache[k] = list(store.read(key=k))
        if stop is not None:  # events are in seq order: cut, do not filter
            events = events[:bisect_left(events, stop, key=_seq)]
        start, arrival = _life_start(k, events)
        pieces.append((k, events[start:], arrival))
        if arrival is None:
            break
        k, stop = arrival.data[FROM], arrival.seq  # type: ignore[assignment]
    out: list[Change] = []
    values = {"title": "", "description": ""}
    last = len(pieces) - 1
    for n in range(last, -1, -1):
        k, events, arrival = pieces[n]
        if arrival is not None:
            out.append(_change(arrival, arrival.meta or {}, "key", arrival.data[FROM], k))
        for ev in events:
            meta = ev.meta or {}
            field = FIELD_OF_TYPE.get(ev.type)
            if field is not None:
                new = ev.data.get(VALUE)
                if isinstance(new, str) and new != values[field]:
                    out.append(_change(ev, meta, field, values[field], new))
                    values[field] = new
            elif ev.type == FORGOTTEN:
                out.append(_change(ev, meta, "key", k, None))
                values = {"title": "", "description": ""}
            elif ev.type == RENAMED and n == 0:
                # Reading the old key directly: show where the item went. (An
                # earlier piece ends with the move the next piece's arrival shows.)
                target = ev.data.get(TO)
                if isinstance(target, str) and target != k:
                    out.append(_change(ev, meta, "key", k, target))
                    values = {"title": "", "description": ""}
    return out


def _life_start(key: str, events: list[Event]) -> tuple[int, Event | None]:
    """Where the last item's life at ``key`` starts in ``events``, and the
    rename that brought it there (None if it started at this key).

    A ``to`` rename that is the last event is the item itself leaving; one
    with events after it was an earlier item leaving, so the life starts
    after it.
    """
    for i in range(len(events) - 1, -1, -1):
        ev = events[i]
        if ev.type != RENAMED:
            continue
        source, target = ev.data.get(FROM), ev.data.get(TO)
        if isinstance(source, str) and source != key:
            return i + 1, ev
        if isinstance(target, str) and target != key and i < len(events) - 1:
            return i + 1, None
    return 0, None


def _change(ev: Event, meta: dict[str, Any], field: str, old: Any, new: Any) -> Change:
    return Change(ev.seq, ns_to_seconds(ev.ts), field, old, new,
                  meta.get(ACTOR), meta.get(REASON), _legacy_fields(ev.data))


def _legacy_fields(data: dict[str, Any]) -> dict[str, Any] | None:
    """The legacy entry's other fields a legacy import kept on this event, if any."""
    text = data.get(LEGACY)
    if not isinstance(text, str):
        return None
    try:
        fields = json.loads(text)
    except (ValueError, RecursionError):
        log.warning("event data %r: not the JSON text of an object; ignored", LEGACY)
        return None
    return fields if isinstance(fields, dict) else None
