"""Closing, readonly stores, refused options, and a state machine of random operations and
reopens against a model (SPEC §2), on every backend."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, invariant, precondition, rule,
                                 run_state_machine_as_test)

from eventstore import ConcurrencyError, ReadOnlyError, StoreClosedError, ValidationError


def test_closed_store_raises(make_store):
    store = make_store()
    store.append("t", "k")
    store.close()
    store.close()  # idempotent
    for call in (lambda: store.append("t", "k"), lambda: store.append_many([("t", "k", {})]),
                 lambda: list(store.read()), lambda: list(store.follow(timeout=0)),
                 lambda: store.transaction().__enter__(), lambda: store.snapshot()):
        with pytest.raises(StoreClosedError):
            call()
    with make_store() as again:  # lock was released
        assert again.last_seq == 1


@pytest.mark.parametrize("readonly", [False, True])
def test_closed_store_refuses_its_accessors_too(make_store, readonly):
    """A closed store no longer follows the log (a writer has released its lock, so another
    may move the log on): `last_seq`, `version`, `stats` and the rest raise StoreClosedError as `read` does,
    instead of answering from stale state. `close` stays idempotent."""
    with make_store() as writer:
        writer.append("t", "k")
    store = make_store(readonly=readonly)
    assert (store.last_seq, store.version("k"), store.stats()["events"]) == (1, 1, 1)
    store.close()
    calls = {"last_seq": lambda: store.last_seq, "version": lambda: store.version("k"),
             "stats": store.stats, "projections": lambda: store.projections,
             "flush": store.flush, "subscribe": lambda: store.subscribe(lambda e: None),
             "verify": store.verify, "compact": store.compact,
             "nearest_snapshot": lambda: store.nearest_snapshot("p", 1, 1)}
    for name, call in calls.items():
        with pytest.raises(StoreClosedError):
            call()
            pytest.fail(f"{name} answered on a closed store")
    store.close()                                   # still idempotent
    assert "eventstore.Store" in repr(store)        # repr never raises


def test_readonly_store_refuses_writes(make_store):
    with make_store() as store:
        store.append("t", "k")
    before = make_store.footprint()
    with make_store(readonly=True) as ro:
        for call in (lambda: ro.append("t", "k"), lambda: ro.append_many([("t", "k", {})]),
                     lambda: ro.transaction().__enter__(), lambda: ro.snapshot(), lambda: ro.compact()):
            with pytest.raises(ReadOnlyError):
                call()
        assert [e.key for e in ro.read()] == ["k"] and ro.last_seq == 1
    assert make_store.footprint() == before


def test_bad_open_options_are_refused(make_store):
    for kwargs in ({"durability": "sometimes"}, {"recovery": "yolo"}, {"segment_bytes": 10},
                   {"max_event_bytes": 0}, {"snapshot_every": -1}):
        with pytest.raises(ValidationError):
            make_store(**kwargs)
    assert make_store.footprint() == {}  # nothing created


class StoreMachine(RuleBasedStateMachine):
    """Appends, batches, refused writes, flushes and reopens (with rollover) vs a list model."""

    def __init__(self, make_store):
        super().__init__()
        self.make_store = make_store.fresh()
        self.durability = "none"
        self.store = self.make_store(durability=self.durability, segment_bytes=4096)
        self.model: list[tuple[str, str, dict]] = []

    def teardown(self):
        self.store.close()

    def version(self, key):
        return sum(1 for _, k, _ in self.model if k == key)

    @rule(key=st.sampled_from(["a", "b", "c"]), size=st.integers(0, 700), expect=st.booleans())
    def append(self, key, size, expect):
        data = {"n": len(self.model), "pad": "p" * size}
        ev = self.store.append("t", key, data, expected_version=self.version(key) if expect else None)
        assert ev.seq == len(self.model) + 1
        self.model.append(("t", key, data))

    @rule(keys=st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=6))
    def append_many(self, keys):
        items = [("m", k, {"n": len(self.model) + i}) for i, k in enumerate(keys)]
        evs = self.store.append_many(items)
        assert [e.seq for e in evs] == list(range(len(self.model) + 1, len(self.model) + 1 + len(items)))
        self.model += items

    @rule(keys=st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=4), fail=st.booleans())
    def transaction(self, keys, fail):
        items = [("x", k, {"n": len(self.model) + i}) for i, k in enumerate(keys)]
        try:
            with self.store.transaction() as tx:
                for t, k, d in items:
                    tx.append(t, k, d)
                if fail:
                    raise KeyError("abort")
        except KeyError:
            return
        self.model += items

    @rule(key=st.sampled_from(["a", "b", "c"]), off=st.sampled_from([-1, 1, 5]))
    def stale_expected_version(self, key, off):
        v = self.version(key) + off
        if v < 0:
            return
        with pytest.raises(ConcurrencyError):
            self.store.append("t", key, {"never": True}, expected_version=v)

    @rule(bad=st.sampled_from(["", "\x00", "\ud800", 5]))
    def bad_key_in_batch(self, bad):
        with pytest.raises(ValidationError):
            self.store.append_many([("t", "a", {"never": 1}), ("t", bad, {"never": 2})])

    @rule()
    def flush(self):
        self.store.flush()

    @rule(durability=st.sampled_from(["none", "flush", "fsync"]))
    def reopen(self, durability):
        self.store.close()
        self.durability = durability
        self.store = self.make_store(durability=durability, segment_bytes=4096)
        assert not self.store.recovery_report

    @precondition(lambda self: len(self.model) > 0)
    @rule(data=st.data())
    def read_range(self, data):
        start = data.draw(st.integers(1, len(self.model)))
        stop = data.draw(st.integers(start, len(self.model) + 1))
        got = [(e.type, e.key, e.data) for e in self.store.read(start, stop)]
        assert got == self.model[start - 1:stop - 1]

    @invariant()
    def matches_model(self):
        assert self.store.last_seq == len(self.model)
        for key in ("a", "b", "c"):
            assert self.store.version(key) == self.version(key)

    @invariant()
    def disk_matches_model(self):
        if len(self.model) % 5 == 0:  # a full read now and then keeps the machine fast
            assert [(e.type, e.key, e.data) for e in self.store.read()] == self.model


def test_store_state_machine(make_store):
    run_state_machine_as_test(lambda: StoreMachine(make_store), settings=settings(
        max_examples=25, stateful_step_count=30, deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]))
