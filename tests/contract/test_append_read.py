"""Appends, reads and events through the Store protocol (SPEC §2), on every backend.

Round trips of append / append_many / transaction against a model (before and
after a reopen), read filters, what an `Event` is, what a commit shares with
its caller, empty commits and finished transactions.
"""
from __future__ import annotations

import copy
import pickle
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import eventstore
from eventstore import Event
from test_codec import assert_same  # the strict, type-checking comparison

# -- strategies -------------------------------------------------------------------------
text = st.text(max_size=10)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1),
                    st.floats(allow_nan=False), text, st.binary(max_size=12))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(text, inner, max_size=3)),
                      max_leaves=8)
data_dicts = st.dictionaries(text, values, max_size=4)
keys = st.sampled_from(["k1", "k2", "ключ", "k/with/slashes", "x" * 300])
types = st.sampled_from(["created", "title", "desc", "é"])
item = st.tuples(types, keys, data_dicts, st.one_of(st.none(), st.dictionaries(text, scalars, max_size=2)))
commit = st.tuples(st.sampled_from(["append", "append_many", "transaction"]),
                   st.lists(item, min_size=1, max_size=5))
FIXTURE_PER_TEST = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]


def do_commit(store, kind, items):
    if kind == "append":  # one commit per item
        return [store.append(t, k, d, meta=m) for t, k, d, m in items]
    if kind == "append_many":
        return store.append_many([(t, k, d) if m is None else (t, k, d, m) for t, k, d, m in items])
    with store.transaction() as tx:
        for t, k, d, m in items:
            tx.append(t, k, d, meta=m)
    return tx.events


def check_event(ev, seq, t, k, d, m):
    assert isinstance(ev, Event)
    assert (ev.seq, ev.type, ev.key) == (seq, t, k)
    assert_same(ev.data, d)
    assert_same(ev.meta, m or {})


@settings(max_examples=30, deadline=None, suppress_health_check=FIXTURE_PER_TEST)
@given(st.lists(commit, min_size=1, max_size=6), st.sampled_from(["none", "flush"]))
def test_append_round_trip_against_model(make_store, commits, durability):
    """What append/append_many/transaction return is what read returns, before and after reopen."""
    target = make_store.fresh()
    expected = []  # (seq, type, key, data, meta)
    versions: dict[str, int] = {}
    with target(durability=durability) as store:
        for kind, items in commits:
            before = store.last_seq
            got = do_commit(store, kind, items)
            assert len(got) == len(items)
            if kind != "append":  # one commit: one ts
                assert len({e.ts for e in got}) == 1
            for i, (ev, (t, k, d, m)) in enumerate(zip(got, items)):
                check_event(ev, before + 1 + i, t, k, d, m)
                expected.append((before + 1 + i, t, k, d, m))
                versions[k] = versions.get(k, 0) + 1
            assert store.last_seq == before + len(items)
        first_pass = list(store.read())
        for k, v in versions.items():
            assert store.version(k) == v
    assert len(first_pass) == len(expected)
    for ev, exp in zip(first_pass, expected):
        check_event(ev, *exp)
    with target() as store:
        again = list(store.read())
        assert again == first_pass
        assert store.last_seq == len(expected)
        for k, v in versions.items():
            assert store.version(k) == v
    ts = [e.ts for e in first_pass]
    assert ts == sorted(ts)


@settings(max_examples=60, deadline=None, suppress_health_check=FIXTURE_PER_TEST)
@given(st.lists(st.lists(st.tuples(st.sampled_from("abc"), st.sampled_from(["k1", "k2", "k3"])),
                         min_size=1, max_size=4), min_size=0, max_size=10),
       st.integers(0, 30), st.one_of(st.none(), st.integers(0, 30)),
       st.one_of(st.none(), st.sampled_from(["k1", "k2", "k3", "nope"])),
       st.one_of(st.none(), st.just("a"), st.sets(st.sampled_from("abcz"), max_size=3)))
def test_read_filters_against_model(make_store, commits, start, stop, key, type_filter):
    """read(start, stop, key=, types=): seq order, stop exclusive, filters exact."""
    with make_store.fresh()(durability="none", segment_bytes=4096) as store:
        model = []
        for i, c in enumerate(commits):
            evs = store.append_many([(t, k, {"i": i, "j": j}) for j, (t, k) in enumerate(c)])
            model += [(e.seq, e.type, e.key, e.data) for e in evs]
        want = [m for m in model
                if m[0] >= start and (stop is None or m[0] < stop)
                and (key is None or m[2] == key)
                and (type_filter is None or m[1] in ({type_filter} if isinstance(type_filter, str) else type_filter))]
        got = [(e.seq, e.type, e.key, e.data)
               for e in store.read(start, stop, key=key, types=type_filter)]
        assert got == want


def test_event_is_immutable_and_ts_is_utc_ns(make_store):
    before = time.time_ns()
    with make_store() as store:
        ev = store.append("t", "k", {"a": 1}, meta={"actor": "alice", "reason": "r"})
    after = time.time_ns()
    assert before <= ev.ts <= after
    with pytest.raises(AttributeError):
        ev.seq = 5  # type: ignore[misc]
    with make_store(readonly=True) as ro:
        [back] = list(ro.read())
    assert back == ev and back.meta == {"actor": "alice", "reason": "r"}


def test_event_is_immutable_and_compares_pickles_and_prints_by_value(make_store):
    """SPEC §2: Event is immutable; it is a value (==, pickle, copy) with named fields."""
    with make_store() as store:
        ev = store.append("t", "k", {"a": 1}, meta={"actor": "me"})
        [again] = store.read()
    assert ev == again and ev is not again
    for field, value in (("seq", 9), ("data", {}), ("meta", {}), ("key", "x")):
        with pytest.raises(AttributeError):
            setattr(ev, field, value)
    assert pickle.loads(pickle.dumps(ev)) == ev == copy.deepcopy(ev)
    assert (ev.seq, ev.type, ev.key, ev.data, ev.meta) == (1, "t", "k", {"a": 1}, {"actor": "me"})
    assert repr(ev).startswith("Event(seq=1, ts=") and "key='k'" in repr(ev)
    assert ev != Event(2, ev.ts, "t", "k", {"a": 1}, {"actor": "me"})


def test_append_returns_copies_the_caller_cannot_change_afterwards(make_store):
    """The returned Event is not the caller's dict (mutating the input changes nothing stored)."""
    data = {"a": 1}
    with make_store() as store:
        ev = store.append("t", "k", data)
        data["a"] = 2
        assert ev.data == {"a": 1}
        assert list(store.read())[0].data == {"a": 1}


@pytest.mark.parametrize("how", ["append", "append_many", "transaction"])
def test_nested_values_are_not_shared_with_the_caller(make_store, how):
    """Nested lists and dicts too: the events append returns (and subscribers get) hold the
    values as read() returns them (tuples as lists), sharing nothing the caller can change
    afterwards."""
    data = {"tags": ["a", "b"], "size": {"w": 1}, "pair": (1, 2)}
    meta = {"by": ["me"]}
    seen = []
    with make_store() as store:
        store.subscribe(seen.append)
        if how == "append":
            (ev,) = [store.append("t", "k", data, meta=meta)]
        elif how == "append_many":
            (ev,) = store.append_many([("t", "k", data, meta)])
        else:
            with store.transaction() as tx:
                tx.append("t", "k", data, meta=meta)
            (ev,) = tx.events
        data["tags"].append("c")
        data["size"]["w"] = 2
        meta["by"].append("you")
        (stored,) = store.read()
    want = {"tags": ["a", "b"], "size": {"w": 1}, "pair": [1, 2]}
    assert ev.data == stored.data == seen[0].data == want
    assert type(ev.data["pair"]) is list
    assert ev.meta == stored.meta == {"by": ["me"]}
    assert ev == stored


def test_empty_append_many_and_transaction_write_nothing(make_store):
    with make_store() as store:
        store.append("t", "k")
        before = make_store.footprint()
        assert store.append_many([]) == []
        with store.transaction() as tx:
            pass
        assert tx.events == []
        assert store.last_seq == 1 and make_store.footprint() == before


def test_appending_to_a_finished_transaction_is_refused(make_store):
    with make_store() as s:
        with s.transaction() as tx:
            tx.append("t", "k", {})
        with pytest.raises(eventstore.ValidationError):
            tx.append("t", "late", {})
        assert [e.key for e in s.read()] == ["k"]


@pytest.mark.parametrize("durability", ["fsync", "flush", "none"])
def test_each_durability_survives_close_and_reopen(make_store, durability):
    with make_store(durability=durability) as store:
        written = [store.append("t", f"k{i}", {"i": i}) for i in range(50)]
        written += store.append_many([("t", "batch", {"j": j}) for j in range(20)])
    with make_store() as store:
        assert list(store.read()) == written
        assert store.recovery_report.entries == [] and not store.recovery_report


def test_flush_makes_buffered_commits_visible_to_a_reader(make_store):
    """durability="none" buffers in process; flush() hands them to the OS."""
    with make_store(durability="none") as store:
        written = [store.append("t", "k", {"i": i}) for i in range(10)]
        store.flush()
        with make_store(readonly=True) as ro:
            assert list(ro.read()) == written
