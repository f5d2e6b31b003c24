"""Bad input raises before a byte is written, and a bad item aborts its whole batch
(SPEC §5, docs/FORMAT.md [F-12]), on every backend. Hostile files on disk are the local
backend's: tests/test_validation.py."""
from __future__ import annotations

import collections

import pytest

from eventstore import ValidationError
from eventstore.codec import encode_event
from eventstore.event import plain_columns

BAD_KEYS = [123, None, b"bytes", "", "a\x00b", "x" * 4097, "é" * 2049, "\ud800", "ok\udfffok"]
BAD_TYPES = [5, None, "", "t\x00", "\udfff"]
BAD_DATA = [
    {"a": object()}, {"a": {1, 2}}, {"a": 2**70}, {"a": -(2**63) - 1}, {1: "int key"},
    {"a": {2: "nested int key"}}, {"a": "\ud800"}, {"\ud800": 1}, {"a": ["ok", "\udc00"]},
    [1, 2], "a string", {"a": bytearray(b"x")}, {"a": 1j},
]


def _nested(depth):
    d = {}
    for _ in range(depth):
        d = {"d": d}
    return d


@pytest.fixture
def store(make_store):
    s = make_store(max_event_bytes=4096, durability="flush")
    # Types the store has seen take the column-wise fast check of append_many
    # (event.plain_columns); every bad item below must be refused on that path too.
    s.append_many([("seed", "k", {"v": 1}), ("t", "seed-key", {}), ("ok", "seed-key", {})])
    yield s
    s.close()


def assert_nothing_written(make_store, store, before, last_seq):
    assert make_store.footprint() == before
    assert store.last_seq == last_seq


def attempts(store, type_, key, data, meta=None):
    """Every way of writing the bad item; each must raise ValidationError."""
    good = ("ok", "good-key", {"fine": True})
    # items of one width, so a batch of known types meets the column-wise check first
    bad = (type_, key, data) if meta is None else (type_, key, data, meta)
    same = good if meta is None else (*good, {"actor": "a"})
    yield lambda: store.append(type_, key, data, meta=meta)
    yield lambda: store.append_many([same, bad, same])
    yield lambda: store.append_many([same, same, bad])
    yield lambda: store.append_many([good, (type_, key, data, meta), good])

    def tx():
        with store.transaction() as t:
            t.append(*good)
            t.append(type_, key, data, meta=meta)
    yield tx


@pytest.mark.parametrize("case", [("key", k) for k in BAD_KEYS] + [("type", t) for t in BAD_TYPES]
                         + [("data", d) for d in BAD_DATA] + [("meta", d) for d in BAD_DATA]
                         + [("data", _nested(100))], ids=repr)
def test_bad_input_raises_and_writes_nothing(make_store, store, case):
    """SPEC §5: a bad key/type/value raises ValidationError (a ValueError) before a byte is
    written, and a bad item aborts its whole batch."""
    what, bad = case
    item = {"type": "t", "key": "k", "data": {"x": 1}, "meta": None}
    item[what] = bad
    before, last = make_store.footprint(), store.last_seq
    versions = (store.version("k"), store.version("good-key"))
    for attempt in attempts(store, item["type"], item["key"], item["data"], item["meta"]):
        with pytest.raises(ValidationError) as info:
            attempt()
        assert isinstance(info.value, ValueError)
        assert_nothing_written(make_store, store, before, last)
    assert (store.version("k"), store.version("good-key")) == versions
    # the store is not broken: the next good append gets the next seq
    assert store.append("t", "k", {"after": True}).seq == last + 1


def test_key_limit_is_inclusive(make_store):
    """A key of exactly 4096 UTF-8 bytes is accepted (and read back)."""
    with make_store() as s:
        assert s.append("t", "x" * 4096).key == "x" * 4096
        assert s.append("t", "é" * 2048).key == "é" * 2048
        assert [e.key for e in s.read()] == ["x" * 4096, "é" * 2048]


def test_event_limit_is_inclusive(make_store, store):
    """An event of exactly max_event_bytes is accepted; one more byte is refused ([F-12])."""
    base = len(encode_event("t", "k", {"p": ""}, {}))
    # str headers grow at 32 and 256 bytes; find a pad whose event is exactly 4096 bytes
    pad = next(n for n in range(4096) if len(encode_event("t", "k", {"p": "x" * n}, {})) == 4096)
    assert base < 4096
    ok = store.append("t", "k", {"p": "x" * pad})
    assert len(encode_event("t", "k", {"p": "x" * pad}, {})) == 4096 and ok.data["p"] == "x" * pad
    before, last = make_store.footprint(), store.last_seq
    with pytest.raises(ValidationError, match="max_event_bytes"):
        store.append("t", "k", {"p": "x" * (pad + 1)})
    with pytest.raises(ValidationError):
        store.append_many([("t", "k", {})] * 5 + [("t", "k", {"p": "x" * (pad + 1)})])
    with pytest.raises(ValidationError):
        store.append("t", "k", {}, meta={"p": "x" * 5000})
    assert_nothing_written(make_store, store, before, last)


def test_default_max_event_bytes_is_one_mib(make_store):
    with make_store() as s:
        with pytest.raises(ValidationError):
            s.append("t", "k", {"p": b"\x00" * (1 << 20)})
        assert s.last_seq == 0
        s.append("t", "k", {"p": b"\x00" * ((1 << 20) - 100)})  # just under: fine
        assert s.last_seq == 1


@pytest.mark.parametrize("bad", [["t", "k"], ("t",), ("t", "k", {}, {}, {}), {"type": "t"}, "tkd", None])
def test_bad_append_many_item_shapes(make_store, store, bad):
    before, last = make_store.footprint(), store.last_seq
    with pytest.raises(ValidationError):
        store.append_many([("t", "k", {}), bad])
    assert_nothing_written(make_store, store, before, last)


@pytest.mark.parametrize("bad", ["1", -1, True, 1.0])
def test_bad_expected_version(make_store, store, bad):
    before, last = make_store.footprint(), store.last_seq
    with pytest.raises(ValidationError):
        store.append("t", "k", {}, expected_version=bad)
    assert_nothing_written(make_store, store, before, last)


def test_exception_inside_transaction_writes_nothing(make_store, store):
    before, last = make_store.footprint(), store.last_seq
    with pytest.raises(RuntimeError, match="boom"):
        with store.transaction() as tx:
            for i in range(10):
                tx.append("t", f"k{i}", {"i": i})
            raise RuntimeError("boom")
    assert_nothing_written(make_store, store, before, last)
    assert store.version("k0") == 0
    with store.transaction() as tx:
        tx.append("t", "k0", {"i": 0})
    assert tx.events[0].seq == last + 1


def test_bad_read_arguments(store):
    for kwargs in ({"start": -1}, {"start": "1"}, {"stop": 1.5}, {"key": ""}, {"key": 5}):
        with pytest.raises(ValidationError):
            list(store.read(**kwargs))


def test_append_many_takes_any_iterable_items_on_both_paths(make_store):
    with make_store() as s:
        for _ in range(2):  # the first batch makes "t" a known type; the second meets the fast check
            got = s.append_many([iter(("t", "k", {"a": 1})), collections.deque(("t", "k", {"b": 2}, {"m": 1}))])
            assert [(e.type, e.key, e.data, e.meta) for e in got] == [("t", "k", {"a": 1}, {}),
                                                                     ("t", "k", {"b": 2}, {"m": 1})]


@pytest.mark.parametrize("bad", BAD_TYPES, ids=repr)
def test_first_batch_of_new_types_is_checked_like_any_other(make_store, bad):
    """SPEC §5: the first batch a store sees of its types (validated once, then checked
    column by column) still refuses a bad type anywhere in it, writing nothing; the good
    types it holds work afterwards."""
    with make_store() as s:
        for batch in ([("fresh.a", "k", {}), (bad, "k", {}), ("fresh.b", "k", {})],
                      [(bad, "k", {}), ("fresh.a", "k", {})]):
            with pytest.raises(ValidationError):
                s.append_many(batch)
            assert s.last_seq == 0
        got = s.append_many([("fresh.a", "k", {"v": 1}), ("fresh.b", "k", {"v": 2})])
        assert [(e.seq, e.type) for e in got] == [(1, "fresh.a"), (2, "fresh.b")]


def test_fast_and_full_checks_store_the_same_events(make_store):
    """A batch of tuples takes the fast check, even the first batch of a new type; the same
    batch as deques takes the full one; both store identical events (and copies of the
    caller's dicts)."""
    data = [{"value": f"v{i}", "n": i, "f": 0.5, "b": b"x", "none": None} for i in range(20)]
    with make_store() as s:
        fast = [("new.type", f"/k{i}", d, {"actor": "a"}) for i, d in enumerate(data)]
        assert plain_columns(fast, frozenset({"new.type"})) is not None
        assert plain_columns([collections.deque(item) for item in fast], frozenset({"new.type"})) is None
        first = s.append_many([collections.deque(item) for item in fast])
        second = s.append_many(fast)
        data[0]["value"] = "changed by the caller"
        stored = list(s.read())
    def body(e):
        return e.type, e.key, e.data, e.meta

    assert [body(e) for e in first] == [body(e) for e in second] != []
    assert stored[0].data["value"] == "v0" and first[0].data["value"] == "v0"
    assert [body(e) for e in stored] == [body(e) for e in first + second]
