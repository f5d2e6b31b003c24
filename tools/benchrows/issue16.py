"""Issue 16 items 1 and 2: bulk append and replay of its event shape, against SQLite.

Events are ``("title.set", "/media/000123.jpg", {"title": "title 123",
"n": 123})`` over 20,000 keys (`data.title_events`); the media-shape rows of
issue 3 (`core`) stay as they are. Every side of a comparison runs in the
same rounds, interleaved, and is judged on CPU time (medians).

- ``append16``: ``append_many`` of 100 events with ``durability="none"``
  (the final ``flush()`` included) against SQLite WAL ``executemany`` in one
  transaction.
- ``replay16``: ``eventstore.open`` replaying every event, with no
  projection, a plain projection (``state[e.key] = e.data``) by ``apply``,
  the same by ``apply_batch`` over the events and over the batch's columns,
  and `MediaProjection`; against SQLite ``SELECT key, data ORDER BY seq`` +
  ``msgpack.unpackb`` into a dict (and, for `MediaProjection`, the same rows
  fed to its ``apply``).
"""
from __future__ import annotations

import sqlite3
from typing import Any, Callable, Union

import msgpack
import msgspec

import eventstore
from eventstore import Event, EventBatch
from eventstore.codec import _reference_events, decode_columns
from eventstore.event import plain_columns
from projections.media import MediaProjection

from .common import Bench, Row, Span, cpu_row, interleaved, med, ms, now
from .data import replay_fixture, sqlite_insert, sqlite_open, title_events

KEYS = 20_000


def _count(b: Bench) -> int:
    return 50_000 if b.quick else 200_000


def bench_append16(b: Bench) -> None:
    """16/1: bulk append of issue 16's events, commits of 100, vs one SQLite transaction."""
    n = _count(b)
    items = title_events(n, KEYS)
    flushes: list[float] = []

    def metalog() -> tuple[float, float]:
        store = eventstore.open(b.fresh("append16"), durability="none", snapshot_every=0)
        with Span() as span:
            for i in range(0, n, 100):
                store.append_many(items[i:i + 100])
            t1 = now()
            store.flush()
            flushes.append(now() - t1)
        store.close()
        return span.wall, span.cpu

    def sqlite() -> tuple[float, float]:
        db = sqlite_open(b.fresh("append16.sqlite"))
        with Span() as span:
            sqlite_insert(db, items)
        db.close()
        return span.wall, span.cpu

    ours, theirs = interleaved(b.repeats + 2, metalog, sqlite)
    cpu_row(b, "append16", "16/1", f"bulk append, issue 16 shape ({n:,} events over {KEYS:,} keys, "
            "append_many of 100, durability=none)", n, ours, theirs, "SQLite", 3.5,
            f"metalog includes the final flush() (median {ms(sorted(flushes)[len(flushes) // 2])} wall); "
            "SQLite: executemany in one transaction, WAL, synchronous=NORMAL")
    _check_costs(b, items)


# A typed msgspec conversion checks shapes, str map keys and scalar values in C and copies the
# dicts, but passes str subclasses (str enums too) through as they are and turns a Decimal into a
# float: alone it is not the plain check (docs/decisions/perf-append-checks.md). What each costs:
_CONVERT_TYPE = list[tuple[str, str, dict[str, Union[str, int, float, bool, None]]]]


def _check_costs(b: Bench, items: list[Any]) -> None:
    batches = [items[i:i + 100] for i in range(0, len(items), 100)]
    known = {"title.set"}

    def column_check() -> float:
        with Span() as span:
            for batch in batches:
                _, _, datas, _ = plain_columns(batch, known)  # type: ignore[misc]
                list(map(dict.copy, datas))
        return span.cpu

    def typed_conversion() -> float:
        with Span() as span:
            for batch in batches:
                msgspec.convert(batch, _CONVERT_TYPE)
        return span.cpu

    ours, theirs = interleaved(b.repeats + 2, column_check, typed_conversion)
    n = len(items)
    b.add(Row("append16", "16/1", "check and copy a batch: exact column-wise check + dict copies vs "
              "msgspec.convert to a typed schema", f"{med(ours) / n * 1e6:.3f} us/event",
              f"msgspec.convert {med(theirs) / n * 1e6:.3f} us/event", med(theirs) / med(ours), "", None,
              {"column_check_cpu_s": ours, "typed_conversion_cpu_s": theirs},
              note="event.plain_columns (what Intake.many runs) vs msgspec.convert(batch, list[tuple[str, str, "
                   "dict[str, scalar]]]), CPU time; the conversion alone would let str subclasses and Decimal "
                   "through"))


class Plain:
    """``state[e.key] = e.data`` by ``apply``: the per-event protocol."""

    name, version = "plain", 1

    def __init__(self) -> None:
        self.state: dict[str, Any] = {}

    def apply(self, e: Event) -> None:
        self.state[e.key] = e.data

    def snapshot(self) -> Any:
        return self.state

    def restore(self, state: Any) -> None:
        self.state = state


class PlainBatch(Plain):
    """The same by ``apply_batch``, one loop over the commit's events."""

    def apply_batch(self, events: EventBatch) -> None:
        state = self.state
        for e in events:
            state[e.key] = e.data


class PlainColumns(Plain):
    """The same by ``apply_batch`` over the batch's columns: no `Event` objects are built."""

    def apply_batch(self, events: EventBatch) -> None:
        self.state.update(zip(events.keys, events.datas))


def bench_replay16(b: Bench) -> None:
    """16/2: open replaying issue 16's events (plain, batch, MediaProjection, none) vs SQLite."""
    n = _count(b)
    path, db_path = replay_fixture(b, "replay16", title_events(n, KEYS))
    states: dict[str, list[int]] = {}

    def opening(name: str, make: Callable[[], Any] | None) -> Callable[[], tuple[float, float]]:
        def side() -> tuple[float, float]:
            projections = [] if make is None else [make()]
            with Span() as span:
                store = eventstore.open(path, projections=projections, durability="none", snapshot_every=0)
            assert store.last_seq == n and store.stats()["snapshot_seq"] == 0
            store.close()
            states.setdefault(name, []).append(_size(projections))
            return span.wall, span.cpu
        return side

    def sqlite_plain() -> tuple[float, float]:
        state: dict[str, Any] = {}
        unpack = msgpack.unpackb
        with Span() as span:
            db = sqlite3.connect(db_path)
            for key, data in db.execute("SELECT key, data FROM events ORDER BY seq"):
                state[key] = unpack(data)
        db.close()
        states.setdefault("sqlite", []).append(len(state))
        return span.wall, span.cpu

    def sqlite_media() -> tuple[float, float]:
        proj = MediaProjection()
        apply, unpack = proj.apply, msgpack.unpackb
        with Span() as span:
            db = sqlite3.connect(db_path)
            for seq, ts, typ, key, data in db.execute("SELECT seq, ts, type, key, data FROM events ORDER BY seq"):
                apply(Event(seq, ts, typ, key, unpack(data), {}))
        db.close()
        states.setdefault("sqlite media", []).append(proj.last_seq)
        return span.wall, span.cpu

    sides = {"none": opening("none", None), "plain": opening("plain", Plain),
             "batch": opening("batch", PlainBatch), "columns": opening("columns", PlainColumns),
             "media": opening("media", MediaProjection), "sqlite": sqlite_plain, "sqlite media": sqlite_media}
    results = dict(zip(sides, interleaved(b.repeats + 2, *sides.values())))
    for name in ("plain", "batch", "columns", "sqlite"):
        assert set(states[name]) == {KEYS}, (name, states[name])
    _replay_rows(b, n, results)
    _decode_costs(b, n)


def _decode_costs(b: Bench, n: int) -> None:
    """The decode alone: one typed msgspec call per flat payload vs msgpack, the reference."""
    items = title_events(n, KEYS)
    payloads = [msgpack.packb([[*item, {}] for item in items[i:i + 100]]) for i in range(0, n, 100)]
    assert decode_columns(payloads[0], 1, 100, 0, "", 0).events == _reference_events(payloads[0], 1, 100, 0, "", 0)

    def typed() -> float:
        with Span() as span:
            for p in payloads:
                decode_columns(p, 1, 100, 0, "", 0).events
        return span.cpu

    def reference() -> float:
        with Span() as span:
            for p in payloads:
                _reference_events(p, 1, 100, 0, "", 0)
        return span.cpu

    ours, theirs = interleaved(b.repeats + 2, typed, reference)
    b.add(Row("replay16", "16/2", "decode commits of 100 into events: typed msgspec vs msgpack + a check per event",
              f"{med(ours) / n * 1e6:.3f} us/event", f"msgpack {med(theirs) / n * 1e6:.3f} us/event",
              med(theirs) / med(ours), "", None, {"typed_cpu_s": ours, "reference_cpu_s": theirs},
              note="codec.decode_columns(...).events vs codec._reference_events, CPU time; the events are "
                   "checked equal"))


def _size(projections: list[Any]) -> int:
    if not projections:
        return 0
    p = projections[0]
    return p.last_seq if isinstance(p, MediaProjection) else len(p.state)


def _replay_rows(b: Bench, n: int, r: dict[str, list[Any]]) -> None:
    base = "SELECT key, data + msgpack.unpackb into a dict: SQLite"
    for name, what, target, note in (
            ("plain", "a plain projection by apply(event)", 1.5,
             "state[e.key] = e.data, one apply call per event (the unchanged protocol)"),
            ("batch", "a plain projection by apply_batch(events), a loop over the events", 1.5,
             "the same in one call per commit (opt-in BatchProjection protocol)"),
            ("columns", "a plain projection by apply_batch reading the batch's columns", 1.5,
             "state.update(zip(events.keys, events.datas)): no Event objects are built"),
            ("none", "no projection", 2,
             "every payload is still decoded and checked ([F-08]); only the key versions are noted")):
        cpu_row(b, "replay16", "16/2", f"replay {n:,} events (issue 16 shape) on open into {what}", n,
                r[name], r["sqlite"], base, target, note)
    cpu_row(b, "replay16", "16/2", f"replay {n:,} events (issue 16 shape) on open into MediaProjection", n,
            r["media"], r["sqlite media"], "the same rows fed to MediaProjection.apply: SQLite", 1.7,
            "MediaProjection.apply_batch on open; the SQLite side calls apply per row")
