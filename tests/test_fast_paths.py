"""Every fast path accepts and refuses exactly what the plain path does, with the same result.

SPEC §5 and docs/FORMAT.md [F-08], [F-09], [F-12]. The fast paths:

- appends: `Intake.many` and `Intake.one` check a plain batch column by column
  (`event.plain_columns`, `event.plain_item`), encode it with msgspec and give
  the events copies of the values; the plain path checks item by item, encodes
  with msgpack and gives the events what the payload decodes to;
- replay: `codec.decode_columns` decodes a flat payload with one typed msgspec
  call; the plain path is msgpack with limits (`codec._reference_events`).

Each property draws inputs that are mostly plain with odd values mixed in (str
subclasses, bool for int, enums, odd types, non-str keys, NaN, huge ints, deep
nesting, size limits, lone surrogates) and checks: both refuse, or both accept
with the same payload bytes and events equal field by field *and type by type*.
"""
from __future__ import annotations

import tracemalloc

import collections
import datetime
import decimal
import enum
import fractions
import math
import struct
import uuid
from typing import Any, Callable, NamedTuple

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventstore import CorruptionError, Event, EventBatch, ValidationError
from eventstore.codec import _decode_flat, _reference_events, decode_columns
from eventstore.commit import Intake, split_item
from eventstore.event import MAX_DEPTH


# -- odd values --------------------------------------------------------------------------
class StrSub(str):
    pass


class Liar(str):
    """Hashes and compares like "t" whatever its text."""

    def __hash__(self) -> int:
        return hash("t")

    def __eq__(self, other: object) -> bool:
        return other == "t"


class Color(str, enum.Enum):
    RED = "red"


class Weird(str, enum.Enum):
    """Its text ("A") is not its value ("a"): msgpack writes the text, msgspec the value."""

    def __new__(cls, value: str) -> "Weird":
        member = str.__new__(cls, value.upper())
        member._value_ = value
        return member

    A = "a"


class Level(enum.IntEnum):
    HIGH = 3


class IntSub(int):
    pass


class FloatSub(float):
    pass


class DictSub(dict):
    """Its entries are not what ``items()`` says."""

    def items(self):  # type: ignore[override]
        return [("x", 1)]


class Pair3(tuple):
    """An item that is a tuple subclass (a NamedTuple would be one)."""


class Pair(NamedTuple):
    a: int
    b: int


def _deep(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


ODD_VALUES = [
    StrSub("s"), Liar("\x00x"), Color.RED, Weird.A, Level.HIGH, IntSub(7), FloatSub(1.5), True, False,
    decimal.Decimal("1.5"), fractions.Fraction(1, 3), uuid.UUID(int=5), datetime.datetime(2024, 1, 1),
    datetime.date(2024, 1, 1), bytearray(b"ba"), memoryview(b"mv"), {1, 2}, frozenset(), 1j, object(), ...,
    (1, 2), [1, [2]], {"n": {"m": 1}}, Pair(1, 2), DictSub(a=2), msgpack.ExtType(1, b"x"),
    2**63 - 1, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, float("nan"), float("inf"), -0.0,
    "\ud800", "a\udfffb", "\x00", "", "é" * 300, b"", b"\x00\xff",
    _deep(MAX_DEPTH - 2), _deep(MAX_DEPTH - 1), _deep(MAX_DEPTH), _deep(MAX_DEPTH + 3),
]
ODD_KEYS = [StrSub("k"), Liar("\x00"), Color.RED, 1, 1.5, None, b"k", (1,), True, "\ud800", "", "\x00"]
ODD_NAMES = ["", "\x00", "a\x00b", "x" * 1024, "x" * 1025, "é" * 1024, "é" * 2048, "é" * 2049,
             "\ud800", StrSub("t"), Liar("\x00" * 300), Color.RED, 5, None, b"t", 1.5, ("t",)]

texts = st.text(max_size=8)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**64), 2**65), st.floats(), texts,
                    st.binary(max_size=8))
values = st.one_of(scalars, scalars, scalars, st.sampled_from(ODD_VALUES))
map_keys = st.one_of(texts, texts, texts, st.sampled_from(ODD_KEYS))
maps = st.dictionaries(map_keys, values, max_size=3)
names = st.one_of(st.sampled_from(["t", "title.set", "u"]), st.text(min_size=1, max_size=6),
                  st.sampled_from(ODD_NAMES))
datas = st.one_of(maps, maps, maps, st.sampled_from([None, [], "text", DictSub(a=1), Pair(1, 2)]))


@st.composite
def batches(draw: Callable[..., Any]) -> Callable[[], list[Any]]:
    """A recipe for an `append_many` batch (called once per path: an item may be an iterator)."""
    width = draw(st.sampled_from([3, 4]))
    plain = draw(st.booleans())  # half the batches are plain, so the fast path takes them
    name = st.sampled_from(["t", "title.set"]) if plain else names
    key = st.text(min_size=1, max_size=12).filter(lambda k: "\x00" not in k) if plain else names
    flat = st.dictionaries(texts, scalars, max_size=3)
    rows = draw(st.lists(st.tuples(name, key, flat if plain else datas, flat if plain else datas),
                         min_size=1, max_size=5))
    shape = st.sampled_from([tuple, list] if plain else [tuple, list, collections.deque, iter, Pair3])
    shapes = draw(st.lists(shape, min_size=len(rows), max_size=len(rows)))
    if plain and draw(st.integers(0, 3)) == 0:  # one odd value in a plain batch
        at, field = draw(st.integers(0, len(rows) - 1)), draw(st.integers(2, 3))
        row = list(rows[at])
        row[field] = {draw(map_keys): draw(values)}
        rows[at] = tuple(row)
    ragged = draw(st.integers(0, 9)) == 0
    return lambda: [shape(row[:width - 1] if ragged and i == 0 else row[:width])
                    for i, (row, shape) in enumerate(zip(rows, shapes))]


def assert_same(a: Any, b: Any, path: str = "value") -> None:
    """Equal and of the same types all the way down (NaN equals NaN, -0.0 is not 0.0)."""
    assert type(a) is type(b), f"{path}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, dict):
        assert len(a) == len(b) and all(type(x) is type(y) for x, y in zip(a, b)), path
        assert list(a) == list(b), path
        for k in a:
            assert_same(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, float):
        assert struct.pack("<d", a) == struct.pack("<d", b) or (math.isnan(a) and math.isnan(b)), path
    else:
        assert a == b, path


def assert_same_events(xs: list[Event], ys: list[Event]) -> None:
    assert len(xs) == len(ys)
    for x, y in zip(xs, ys):
        for name in ("seq", "ts", "type", "key", "data", "meta"):
            assert_same(getattr(x, name), getattr(y, name), f"seq {x.seq} {name}")


def outcome(run: Callable[[], Any]) -> Any:
    try:
        return run()
    except ValidationError:
        return ValidationError


# -- appends -------------------------------------------------------------------------------
def _plain_many(intake: Intake, items: list[Any]) -> Any:
    """The item-by-item path of `append_many`: check each item, encode with msgpack, decode."""
    return intake.rows([intake.check_item(*split_item(item)) for item in items], None)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches(), st.sampled_from([64, 200, 1 << 20]))
def test_append_many_fast_path_is_the_plain_path(recipe, max_event_bytes):
    fast = outcome(lambda: Intake(max_event_bytes).many(recipe()))
    slow = outcome(lambda: _plain_many(Intake(max_event_bytes), recipe()))
    if fast is ValidationError or slow is ValidationError:
        assert fast is slow
        return
    assert fast.payload == slow.payload
    assert list(fast.keys) == list(slow.keys) and list(fast.types) == list(slow.types)
    assert_same_events(fast.events(11, 5), slow.events(11, 5))


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(names, names, datas, st.one_of(st.none(), datas), st.sampled_from([64, 1 << 20]), st.data())
def test_append_one_fast_path_is_the_plain_path(type_, key, data, meta, max_event_bytes, draw):
    if draw.draw(st.booleans()):  # a plain event, so the fast path takes it
        type_, key = "t", draw.draw(st.text(min_size=1, max_size=8).filter(lambda k: "\x00" not in k))
        data = draw.draw(st.dictionaries(texts, scalars, max_size=3))
    fast_intake, slow_intake = Intake(max_event_bytes), Intake(max_event_bytes)
    for intake in (fast_intake, slow_intake):  # both know the type, as after a first append
        outcome(lambda: intake.check_item("t", "k", None, None))
    fast = outcome(lambda: fast_intake.one(type_, key, data, meta, None))
    slow = outcome(lambda: slow_intake.rows([slow_intake.check_item(type_, key, data, meta)], None))
    if fast is ValidationError or slow is ValidationError:
        assert fast is slow
        return
    assert fast.payload == slow.payload
    assert_same_events(fast.events(3, 9), slow.events(3, 9))


def test_odd_values_each_take_the_same_way_on_both_paths():
    """Every odd value alone in a batch: same refusal, or the same bytes and events."""
    for odd in ODD_VALUES + [{k: 1} for k in ODD_KEYS if isinstance(k, (str, int, float, bytes))]:
        for items in ([("t", "k", {"v": odd})], [("t", "k", {}, {"v": odd})], [("t", "k", odd)]):
            fast = outcome(lambda: Intake(1 << 20).many(list(items)))
            slow = outcome(lambda: _plain_many(Intake(1 << 20), list(items)))
            assert (fast is ValidationError) == (slow is ValidationError), (odd, fast, slow)
            if fast is not ValidationError:
                assert fast.payload == slow.payload, odd
                assert_same_events(fast.events(1, 1), slow.events(1, 1))


# -- replay ----------------------------------------------------------------------------------
wire_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(),
                         texts, st.binary(max_size=6))
wire_values = st.recursive(wire_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(texts, inner, max_size=3)), max_leaves=6)
wire_odd = st.sampled_from([msgpack.ExtType(3, b"e"), msgpack.Timestamp(1, 2), {1: "int key"},
                            {b"k": 1}, {None: 1}, {2.5: 1}, _deep(5)])
wire_maps = st.dictionaries(st.one_of(texts, texts, st.integers(0, 3)),
                            st.one_of(wire_scalars, wire_scalars, wire_values, wire_odd), max_size=3)
wire_fields = st.one_of(texts, texts, st.integers(-(2**63), 2**64 - 1), st.binary(max_size=3), st.none(), st.just([]))


@st.composite
def payloads(draw: Callable[..., Any]) -> tuple[bytes, int]:
    """A payload (often valid and flat, sometimes not) and the count its frame claims."""
    flat = draw(st.booleans())
    field = texts if flat else wire_fields
    body = st.dictionaries(texts, wire_scalars, max_size=3) if flat else st.one_of(wire_maps, wire_fields)
    rows = draw(st.lists(st.tuples(field, field, body, body), min_size=1, max_size=5))
    shaped: list[Any] = [list(r) if draw(st.integers(0, 12)) else list(r)[:draw(st.integers(0, 5))]
                         for r in rows]
    try:  # float32 where every float fits one
        payload = msgpack.packb(shaped, use_bin_type=True, use_single_float=draw(st.booleans()))
    except OverflowError:
        payload = msgpack.packb(shaped, use_bin_type=True)
    damage = draw(st.integers(0, 5))
    if damage == 1 and len(payload) > 1:  # a byte changed
        at = draw(st.integers(0, len(payload) - 1))
        payload = payload[:at] + bytes([draw(st.integers(0, 255))]) + payload[at + 1:]
    elif damage == 2:  # cut, or something after it
        payload = payload[:draw(st.integers(0, len(payload)))] if draw(st.booleans()) else payload + b"\xc0"
    count = len(rows) + (draw(st.sampled_from([-1, 1])) if draw(st.integers(0, 9)) == 0 else 0)
    return payload, max(count, 1)


def _decoded(run: Callable[[], Any]) -> Any:
    try:
        return run()
    except CorruptionError as exc:
        return ("corrupt", exc.file, exc.offset)


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payloads(), st.integers(1, 2**40), st.integers(0, 2**62))
def test_replay_fast_decode_is_the_reference_decode(payload_count, first_seq, ts):
    """[F-08]: a payload decodes to exactly ``count`` events of the shape, or the frame is corrupt;
    the typed msgspec decode and msgpack agree on which, and on the events."""
    payload, count = payload_count
    fast = _decoded(lambda: decode_columns(payload, first_seq, count, ts, "seg", 48).events)
    ref = _decoded(lambda: _reference_events(payload, first_seq, count, ts, "seg", 48))
    if isinstance(fast, tuple) or isinstance(ref, tuple):
        assert fast == ref
        return
    assert_same_events(fast, ref)
    try:
        rows = _decode_flat(payload)
    except Exception:  # noqa: BLE001 - not flat: the reference decided, above
        return
    assert len(rows) == count


def test_hostile_payloads_are_corruption_without_allocating():
    """[F-09]: lengths far past the payload are refused before anything is allocated."""
    for payload in (b"\xdd\xff\xff\xff\xff", b"\x91\x94\xdb\xff\xff\xff\xffab", b"\x91\x94\xa1t\xa1k\xdf\xff\xff\xff\xff",
                    b"\x91" * 100_000 + b"\xc0", b"\x91\x94\xa1t\xa1k\x81\xa1v" + b"\x91" * 5000 + b"\xc0\x80"):
        tracemalloc.start()
        try:
            with pytest.raises(CorruptionError):
                decode_columns(payload, 1, 1, 0, "seg", 48)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < (4 << 20), f"{peak} bytes allocated to refuse {payload[:12]!r}..."


# -- EventBatch ------------------------------------------------------------------------------
@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(texts, texts, st.dictionaries(texts, wire_scalars, max_size=2)), min_size=1, max_size=6),
       st.integers(1, 1000), st.integers(0, 2**62))
def test_a_batch_is_its_events_and_its_columns_agree(rows, first_seq, ts):
    payload = msgpack.packb([[t, k, d, {}] for t, k, d in rows])
    decoded = decode_columns(payload, first_seq, len(rows), ts, "seg", 0)
    events = _reference_events(payload, first_seq, len(rows), ts, "seg", 0)
    for batch in (decoded, EventBatch.of(events)):
        assert len(batch) == len(events) and batch.first_seq == first_seq and batch.ts == ts
        assert batch.last_seq == first_seq + len(rows) - 1
        assert_same_events(list(batch), events)
        assert_same_events(batch[1:], events[1:])
        assert_same_events([batch[-1]], events[-1:])
        assert_same_events(list(reversed(batch)), events[::-1])
        if not any(v != v for _, _, d in rows for v in d.values()):  # NaN equals nothing, itself included
            assert events[0] in batch
        assert list(batch.keys) == [e.key for e in events] and list(batch.types) == [e.type for e in events]
        for name, column in (("data", batch.datas), ("meta", batch.metas)):
            assert len(column) == len(events)
            for value, e in zip(column, events):
                assert_same(value, getattr(e, name), f"seq {e.seq} {name} column")


def test_reading_a_batch_s_columns_builds_no_event():
    payload = msgpack.packb([["t", f"k{i}", {"v": i}, {}] for i in range(3)])
    batch = decode_columns(payload, 1, 3, 0, "seg", 0)
    assert batch.keys == ("k0", "k1", "k2") and batch.datas == ({"v": 0}, {"v": 1}, {"v": 2})
    assert batch._events is None and len(batch) == 3
    assert [e.seq for e in batch] == [1, 2, 3] and batch._events is not None
