"""Time travel: the media state at an earlier point of the log, and diffs.

This module owns replaying the log into a fresh, undo-less
`MediaProjection` up to a seq (starting from the live state when the
point is now, else from the nearest snapshot the store offers), finding
the seq of a point in time through the projection's coarse time index,
and comparing two points. `MediaCatalog.state_at` and `diff` call it
holding the catalog's lock, and so does whole-import undo to learn the
values an import replaced. It only reads the store.
"""
from __future__ import annotations

import datetime as _dt
from typing import Any

from .events import RENAMED, TO, MediaRecord
from .media import MediaProjection

__all__ = ["replay_to", "seq_at_time", "diff_states"]

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


def replay_to(store: Any, live: MediaProjection, seq: int) -> MediaProjection:
    """A new projection (no undo stacks) after every event up to ``seq``."""
    view = MediaProjection(track_undo=False)
    start = 1
    if seq >= live.last_seq:
        view.restore(live.snapshot(stacks=False))  # the view keeps no stacks
        start = live.last_seq + 1
    if start == 1 and seq > 0:
        found = store.nearest_snapshot(view.name, view.version, seq)
        if found is not None and found.seq <= seq:
            view.restore(found.state)
            start = found.seq + 1
    if seq >= start:
        for event in store.read(start, seq + 1):
            view.apply(event)
    return view


def seq_at_time(store: Any, live: MediaProjection, when: float | _dt.datetime) -> int:
    """The last seq whose event time is <= ``when`` (0 if none).

    Times compare at microsecond precision (what a float of seconds since
    the epoch can hold), so passing back an event's or a `Change`'s
    ``time`` includes that event. Event times are assigned at commit and
    never go backwards within a log, so the projection's coarse time index
    narrows the answer to one window of at most ``TIME_STRIDE`` events,
    which is read once.
    """
    if isinstance(when, _dt.datetime):
        if when.tzinfo is None:
            raise ValueError("time must be timezone-aware (or seconds since the epoch)")
        micros = (when - _EPOCH) // _dt.timedelta(microseconds=1)
    else:
        micros = round(float(when) * 1e6)
    limit = micros * 1000 + 999
    lo, hi = live.seq_window(limit)
    found = lo
    stop = None if hi is None else hi + 1
    if hi is None or hi > lo:
        for event in store.read(lo + 1, stop):
            if event.ts > limit:
                break
            found = event.seq
    return found


def diff_states(store: Any, live: MediaProjection, lo: int, hi: int
                ) -> dict[str, tuple[MediaRecord | None, MediaRecord | None]]:
    """{key: (record at ``lo``, record at ``hi``)} for the items that differ, in key order.

    ``lo <= hi <= store.last_seq``. Costs one replay to ``lo`` plus either a
    copy of the live state (when ``hi`` is now) or a replay between the two.
    """
    before = replay_to(store, live, lo)
    if hi >= live.last_seq:
        # Up to now: the live state is the "after"; compare every key
        # instead of reading lo..hi just to learn which were touched.
        after = replay_to(store, live, hi)
        touched = set(before.keys()) | set(after.keys())
    else:
        after = MediaProjection(track_undo=False)
        after.restore(before.snapshot())
        touched = set()
        for event in store.read(lo + 1, hi + 1):
            after.apply(event)
            touched.add(event.key)
            if event.type == RENAMED and isinstance(event.data.get(TO), str):
                touched.add(event.data[TO])
    out = {}
    for key in sorted(touched):
        if before.values(key) != after.values(key):
            out[key] = (before.get(key), after.get(key))
    return out
