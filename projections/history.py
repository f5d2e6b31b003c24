"""Item history: the audit trail of one media item, read back from the log.

This module owns turning the events of one key into `Change` records,
oldest first. It follows renames backwards (the ``{"from": old}`` half of
a rename points at the old key, whose events up to the rename are the
item's earlier life), computes each change's old value by replaying the
item's values, and takes actor and reason from event meta. It reads the
store through ``store.read(key=...)`` only and never writes.
"""
from __future__ import annotations

from typing import Any, Iterable

from eventstore.event import Event

from .events import (ACTOR, FIELD_OF_TYPE, FORGOTTEN, FROM, REASON, RENAMED, TO, VALUE,
                     Change, ns_to_seconds)

__all__ = ["item_history"]

_MAX_RENAME_DEPTH = 1000


def item_history(store: Any, key: str) -> list[Change]:
    """Every change of the item now (or last) at ``key``, oldest first."""
    changes, _ = _history(store, key, None, 0)
    return changes


def _history(store: Any, key: str, stop: int | None,
             depth: int) -> tuple[list[Change], dict[str, str]]:
    """Changes of ``key`` before seq ``stop``, and its values at that point."""
    events: Iterable[Event] = store.read(1, stop, key=key)
    out: list[Change] = []
    values = {"title": "", "description": ""}
    for ev in events:
        field = FIELD_OF_TYPE.get(ev.type)
        meta = ev.meta or {}
        if field is not None:
            new = ev.data.get(VALUE)
            if not isinstance(new, str) or new == values[field]:
                continue
            out.append(_change(ev, meta, field, values[field], new))
            values[field] = new
        elif ev.type == FORGOTTEN:
            out.append(_change(ev, meta, "key", key, None))
            values = {"title": "", "description": ""}
        elif ev.type == RENAMED:
            source = ev.data.get(FROM)
            target = ev.data.get(TO)
            if isinstance(source, str) and source != key:
                if depth < _MAX_RENAME_DEPTH:
                    earlier, values = _history(store, source, ev.seq, depth + 1)
                    out.extend(earlier)
                    out.sort(key=lambda c: c.seq)
                out.append(_change(ev, meta, "key", source, key))
            elif isinstance(target, str) and target != key and stop is None:
                # Reading the old key directly: show where the item went.
                # (While following a rename backwards the new key's own
                # ``from`` event reports the move instead.)
                out.append(_change(ev, meta, "key", key, target))
                values = {"title": "", "description": ""}
    return out, values


def _change(ev: Event, meta: dict[str, Any], field: str, old: Any, new: Any) -> Change:
    return Change(ev.seq, ns_to_seconds(ev.ts), field, old, new,
                  meta.get(ACTOR), meta.get(REASON))
