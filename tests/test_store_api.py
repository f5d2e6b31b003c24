"""The Store API through its public surface (SPEC §2, docs/FORMAT.md).

Round trips of append / append_many / transaction against a model, read
filters, versions and expected_version, subscribers, closing, readonly,
refusing foreign paths ([F-01]), segment rollover ([F-03], [F-04]) and the
three durability modes.
"""
from __future__ import annotations

import copy
import os
import pickle
import tempfile
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import eventstore
from eventstore import (
    ConcurrencyError, Event, NotAStoreError, ReadOnlyError, StoreClosedError, ValidationError,
)

from eventstore.fs import FileSystem
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


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(commit, min_size=1, max_size=6), st.sampled_from(["none", "flush"]))
def test_append_round_trip_against_model(commits, durability):
    """What append/append_many/transaction return is what read returns, before and after reopen."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "s")
        expected = []  # (seq, type, key, data, meta)
        versions: dict[str, int] = {}
        with eventstore.open(path, durability=durability) as store:
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
        with eventstore.open(path) as store:
            again = list(store.read())
            assert again == first_pass
            assert store.last_seq == len(expected)
            for k, v in versions.items():
                assert store.version(k) == v
        ts = [e.ts for e in first_pass]
        assert ts == sorted(ts)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.tuples(st.sampled_from("abc"), st.sampled_from(["k1", "k2", "k3"])),
                         min_size=1, max_size=4), min_size=0, max_size=10),
       st.integers(0, 30), st.one_of(st.none(), st.integers(0, 30)),
       st.one_of(st.none(), st.sampled_from(["k1", "k2", "k3", "nope"])),
       st.one_of(st.none(), st.just("a"), st.sets(st.sampled_from("abcz"), max_size=3)))
def test_read_filters_against_model(commits, start, stop, key, type_filter):
    """read(start, stop, key=, types=): seq order, stop exclusive, filters exact."""
    with tempfile.TemporaryDirectory() as tmp:
        with eventstore.open(os.path.join(tmp, "s"), durability="none", segment_bytes=4096) as store:
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


def test_event_is_immutable_and_ts_is_utc_ns(store_dir):
    before = time.time_ns()
    with eventstore.open(store_dir) as store:
        ev = store.append("t", "k", {"a": 1}, meta={"actor": "alice", "reason": "r"})
    after = time.time_ns()
    assert before <= ev.ts <= after
    with pytest.raises(AttributeError):
        ev.seq = 5  # type: ignore[misc]
    with eventstore.open(store_dir, readonly=True) as ro:
        [back] = list(ro.read())
    assert back == ev and back.meta == {"actor": "alice", "reason": "r"}


def test_event_is_immutable_and_compares_pickles_and_prints_by_value(store_dir):
    """SPEC §2: Event is immutable; it is a value (==, pickle, copy) with named fields."""
    with eventstore.open(store_dir) as store:
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


def test_append_returns_copies_the_caller_cannot_change_afterwards(store_dir):
    """The returned Event is not the caller's dict (mutating the input changes nothing stored)."""
    data = {"a": 1}
    with eventstore.open(store_dir) as store:
        ev = store.append("t", "k", data)
        data["a"] = 2
        assert ev.data == {"a": 1}
        assert list(store.read())[0].data == {"a": 1}


@pytest.mark.parametrize("how", ["append", "append_many", "transaction"])
def test_nested_values_are_not_shared_with_the_caller(store_dir, how):
    """Nested lists and dicts too: the events append returns (and subscribers get) hold the
    values as read() returns them (tuples as lists), sharing nothing the caller can change
    afterwards. (They used to share the caller's nested lists and keep tuples.)"""
    data = {"tags": ["a", "b"], "size": {"w": 1}, "pair": (1, 2)}
    meta = {"by": ["me"]}
    seen = []
    with eventstore.open(store_dir) as store:
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


def test_empty_append_many_and_transaction_write_nothing(store_dir, segment_files):
    with eventstore.open(store_dir) as store:
        store.append("t", "k")
        [seg] = segment_files(store_dir)
        size = os.path.getsize(seg)
        assert store.append_many([]) == []
        with store.transaction() as tx:
            pass
        assert tx.events == []
        assert store.last_seq == 1 and os.path.getsize(seg) == size


# -- versions, expected_version, stats --------------------------------------------------------
def test_version_and_expected_version(store_dir, segment_files):
    """ConcurrencyError writes nothing (SPEC §2) and reports the versions."""
    with eventstore.open(store_dir) as store:
        assert store.version("k") == 0 and store.last_seq == 0
        store.append("t", "k", {"n": 0}, expected_version=0)
        store.append("t", "k", {"n": 1}, expected_version=1)
        store.append("t", "other")
        assert store.version("k") == 2 and store.version("other") == 1 and store.version("none") == 0
        [seg] = segment_files(store_dir)
        size, data = os.path.getsize(seg), open(seg, "rb").read()
        for exp in (0, 1, 3):
            with pytest.raises(ConcurrencyError) as info:
                store.append("t", "k", {"bad": True}, expected_version=exp)
            assert (info.value.key, info.value.expected, info.value.actual) == ("k", exp, 2)
        # in a transaction, the second item sees the first's pending version
        with pytest.raises(ConcurrencyError):
            with store.transaction() as tx:
                tx.append("t", "k", {"bad": 1}, expected_version=2)
                tx.append("t", "other", {"bad": 2}, expected_version=1)
                tx.append("t", "k", {"bad": 3}, expected_version=2)  # is 3 after the first
        assert open(seg, "rb").read() == data and os.path.getsize(seg) == size
        assert store.last_seq == 3 and store.version("k") == 2 and store.version("other") == 1
        with store.transaction() as tx:
            tx.append("t", "k", {"ok": 1}, expected_version=2)
            tx.append("t", "k", {"ok": 2}, expected_version=3)
        assert store.version("k") == 4 and store.last_seq == 5
        assert [e.data for e in store.read(key="k")] == [{"n": 0}, {"n": 1}, {"ok": 1}, {"ok": 2}]
    with eventstore.open(store_dir) as store:  # versions are rebuilt on open
        assert store.version("k") == 4 and store.version("other") == 1


def test_stats_keys_and_values(store_dir):
    with eventstore.open(store_dir, snapshot_every=0) as store:
        empty = store.stats()
        for name in ("events", "keys", "segments", "bytes_on_disk", "last_seq", "snapshot_seq"):
            assert name in empty
        assert (empty["events"], empty["keys"], empty["last_seq"], empty["snapshot_seq"]) == (0, 0, 0, 0)
        store.append_many([("t", "a", {}), ("t", "b", {}), ("t", "a", {})])
        s = store.stats()
        assert (s["events"], s["keys"], s["last_seq"], s["segments"]) == (3, 2, 3, 1)
        assert s["bytes_on_disk"] > empty["bytes_on_disk"]
        store.snapshot()
        assert store.stats()["snapshot_seq"] == 3


# -- subscribers -------------------------------------------------------------------------------
def test_subscribe_order_and_unsubscribe(store_dir):
    with eventstore.open(store_dir, durability="none") as store:
        calls = []
        un_a = store.subscribe(lambda e: calls.append(("a", e.seq)))
        store.subscribe(lambda e: calls.append(("b", e.seq)))
        store.append("t", "k")
        store.append_many([("t", "k", {}), ("t", "j", {})])
        assert calls == [("a", 1), ("b", 1), ("a", 2), ("b", 2), ("a", 3), ("b", 3)]
        un_a()
        un_a()  # idempotent
        calls.clear()
        store.append("t", "k")
        assert calls == [("b", 4)]
        with pytest.raises(ValidationError):
            store.subscribe("not callable")  # type: ignore[arg-type]


def test_a_failing_subscriber_does_not_break_commits(store_dir):
    with eventstore.open(store_dir, durability="none") as store:
        seen = []
        store.subscribe(lambda e: 1 / 0)
        store.subscribe(lambda e: seen.append(e.seq))
        assert store.append("t", "k").seq == 1
        assert seen == [1] and [e.seq for e in store.read()] == [1]


@pytest.mark.parametrize("durability", ["fsync", "none"])
def test_subscriber_that_appends_neither_deadlocks_nor_reorders(store_dir, durability):
    """A subscriber may append; every subscriber still sees seqs in order ([F-11], SPEC §4.3)."""
    store = eventstore.open(store_dir, durability=durability)
    seen_a, seen_b = [], []

    def echo(e):
        seen_a.append(e.seq)
        if e.type == "orig":
            store.append("echo", e.key, {"of": e.seq})

    store.subscribe(echo)
    store.subscribe(lambda e: seen_b.append(e.seq))
    done = threading.Event()

    def work():
        store.append("orig", "k")
        store.append_many([("orig", "k", {}), ("orig", "j", {})])
        done.set()

    t = threading.Thread(target=work, daemon=True)
    t.start()
    t.join(10)
    assert done.is_set(), "a subscriber that appends deadlocked the store"
    assert store.last_seq == 6
    assert seen_a == [1, 2, 3, 4, 5, 6], seen_a
    assert seen_b == [1, 2, 3, 4, 5, 6], seen_b
    origs = [e.seq for e in store.read(types="orig")]
    echoes = [e.data["of"] for e in store.read(types="echo")]
    assert origs == [1, 3, 4] and echoes == [1, 3, 4]
    store.close()


def _append_mixed(store, w, per, every, parts, errors):
    """A writer thread: ``per`` appends to key ``w{w}``; every ``every``-th is one
    ``append_many`` of ``parts`` events. Exceptions are collected in ``errors``."""
    try:
        for i in range(per):
            if i % every == every - 1:
                store.append_many([("t", f"w{w}", {"i": i, "part": p}) for p in range(parts)])
            else:
                store.append("t", f"w{w}", {"i": i})
    except Exception as exc:  # pragma: no cover - reported by the test
        errors.append(exc)


def test_concurrent_appenders_get_contiguous_seqs(store_dir):
    """Group commit: 8 threads, every event once, each thread's events in its order."""
    n_threads, per = 8, 40
    with eventstore.open(store_dir, durability="fsync") as store:
        errors = []
        threads = [threading.Thread(target=_append_mixed, args=(store, w, per, 5, 3, errors))
                   for w in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors
        total = n_threads * (per + (per // 5) * 2)
        assert store.last_seq == total
    with eventstore.open(store_dir) as store:
        events = list(store.read())
    assert [e.seq for e in events] == list(range(1, total + 1))
    for w in range(n_threads):
        mine = [(e.data["i"], e.data.get("part")) for e in events if e.key == f"w{w}"]
        want = []
        for i in range(per):
            want += [(i, p) for p in range(3)] if i % 5 == 4 else [(i, None)]
        assert mine == want
    # the three events of one append_many are adjacent (one frame)
    for i, e in enumerate(events):
        if e.data.get("part") == 0:
            assert [x.data.get("part") for x in events[i:i + 3]] == [0, 1, 2]
            assert len({x.ts for x in events[i:i + 3]}) == 1


@pytest.mark.parametrize("durability", ["fsync", "none"])
def test_group_commit_hand_offs_never_strand_a_committer(store_dir, durability):
    """Group commit under churn: leaders hand over to parked committers, a subscriber appends
    from the leader's thread, flush/snapshot take the log exclusively. Every append returns
    (none is left parked with its commit published), and every event is there once."""
    n_threads, per = 8, 150
    seen = []
    with eventstore.open(store_dir, durability=durability, snapshot_every=0) as store:
        def echo(event):
            seen.append(event.seq)
            if event.type == "t" and event.data["i"] % 50 == 0:
                store.append("echo", event.key, {"of": event.seq})

        store.subscribe(echo)
        errors = []

        def exclusive():
            for _ in range(20):
                store.flush()
                store.snapshot()

        threads = [threading.Thread(target=_append_mixed, args=(store, w, per, 7, 2, errors), daemon=True)
                   for w in range(n_threads)]
        threads.append(threading.Thread(target=exclusive, daemon=True))
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not [t for t in threads if t.is_alive()], "an append never returned"
        assert not errors
        last = store.last_seq
    assert seen == list(range(1, last + 1))
    with eventstore.open(store_dir) as store:
        events = list(store.read())
    assert [e.seq for e in events] == list(range(1, last + 1))
    per_thread = per + sum(1 for i in range(per) if i % 7 == 6)
    assert sum(e.type == "t" for e in events) == n_threads * per_thread
    assert sum(e.type == "echo" for e in events) == n_threads * len(range(0, per, 50))


class _SlowSyncFS(FileSystem):
    """Counts data syncs and makes each take a millisecond longer, as on a slow disk."""

    syncs = 0

    def fdatasync(self, fd: int) -> None:
        self.syncs += 1
        time.sleep(0.001)
        super().fdatasync(fd)


def test_group_commit_follows_bursts_of_changing_width(store_dir):
    """Bursts of durable appenders, of changing width, with pauses between them. A batch is
    expected to be as wide as the last burst; a narrower burst, or a lone commit, must not be
    held waiting for it: every append returns, every event is there once and in its thread's
    order, and the wide bursts still share their syncs."""
    fs = _SlowSyncFS()
    widths, per = [8, 1, 3, 8, 8, 2, 1, 5, 1], 12
    with eventstore.open(store_dir, durability="fsync", snapshot_every=0, fs=fs) as store:
        for b, width in enumerate(widths):
            errors: list[BaseException] = []

            def writer(w: int) -> None:
                try:
                    for i in range(per):
                        store.append("t", f"b{b}w{w}", {"i": i})
                except BaseException as exc:  # pragma: no cover - reported below
                    errors.append(exc)

            before = fs.syncs
            threads = [threading.Thread(target=writer, args=(w,), daemon=True) for w in range(width)]
            for t in threads:
                t.start()
            deadline = time.monotonic() + 30
            for t in threads:
                t.join(max(0.0, deadline - time.monotonic()))
            assert not [t for t in threads if t.is_alive()], f"burst {b} (width {width}) never finished"
            assert not errors
            if width == 8:
                assert fs.syncs - before <= width * per // 2, "the wide burst did not share its syncs"
            time.sleep(0.03)  # a pause, long against a sync
    with eventstore.open(store_dir) as store:
        events = list(store.read())
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    got: dict[str, list[int]] = {}
    for e in events:
        got.setdefault(e.key, []).append(e.data["i"])
    assert got == {f"b{b}w{w}": list(range(per)) for b, width in enumerate(widths) for w in range(width)}


@pytest.mark.parametrize("count_at", [3, 1 << 20])
def test_versions_counted_lazily_are_exact_everywhere(store_dir, monkeypatch, count_at):
    """Commits note their keys and versions are counted when needed (or every _COUNT_AT keys):
    version(), expected_version, stats()['keys'], snapshots and a reopen all see every commit."""
    monkeypatch.setattr("eventstore.publish._COUNT_AT", count_at)
    want: dict[str, int] = {}

    def note(keys):
        for k in keys:
            want[k] = want.get(k, 0) + 1

    with eventstore.open(store_dir, snapshot_every=7) as store:
        for i in range(40):
            keys = [f"k{(i * 3 + j) % 11}" for j in range(i % 4 + 1)]
            store.append_many([("t", k, {"i": i}) for k in keys])
            note(keys)
            if i % 5 == 0:
                k = keys[0]
                store.append("t", k, {}, expected_version=want[k])
                note([k])
                with pytest.raises(ConcurrencyError):
                    store.append("t", k, {}, expected_version=want[k] - 1)
            if i % 9 == 0:
                assert {k: store.version(k) for k in want} == want
        assert store.stats()["keys"] == len(want)
        store.snapshot()
        store.append_many([("t", "late", {}), ("t", "k1", {})])
        note(["late", "k1"])
    with eventstore.open(store_dir) as store:
        assert store.stats()["snapshot_seq"] > 0
        assert {k: store.version(k) for k in want} == want and store.version("never") == 0


# -- lifecycle errors -------------------------------------------------------------------------
def test_closed_store_raises(store_dir):
    store = eventstore.open(store_dir)
    store.append("t", "k")
    store.close()
    store.close()  # idempotent
    for call in (lambda: store.append("t", "k"), lambda: store.append_many([("t", "k", {})]),
                 lambda: list(store.read()), lambda: list(store.follow(timeout=0)),
                 lambda: store.transaction().__enter__(), lambda: store.snapshot()):
        with pytest.raises(StoreClosedError):
            call()
    with eventstore.open(store_dir) as again:  # lock was released
        assert again.last_seq == 1


@pytest.mark.parametrize("readonly", [False, True])
def test_closed_store_refuses_its_accessors_too(store_dir, readonly):
    """A closed store no longer follows the log (a writer has released its lock, so another
    may move the log on): `last_seq`, `version`, `stats` and the rest raise StoreClosedError as `read` does,
    instead of answering from stale state (they used to answer). `close` stays idempotent."""
    with eventstore.open(store_dir) as writer:
        writer.append("t", "k")
    store = eventstore.open(store_dir, readonly=readonly)
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


def test_readonly_store_refuses_writes(store_dir, segment_files):
    with eventstore.open(store_dir) as store:
        store.append("t", "k")
    seg = segment_files(store_dir)[0]
    data = open(seg, "rb").read()
    with eventstore.open(store_dir, readonly=True) as ro:
        for call in (lambda: ro.append("t", "k"), lambda: ro.append_many([("t", "k", {})]),
                     lambda: ro.transaction().__enter__(), lambda: ro.snapshot(), lambda: ro.compact()):
            with pytest.raises(ReadOnlyError):
                call()
        assert [e.key for e in ro.read()] == ["k"] and ro.last_seq == 1
    assert open(seg, "rb").read() == data


def _tree(root):
    out = {}
    for dirpath, dirnames, names in os.walk(root):
        for n in dirnames + names:
            p = os.path.join(dirpath, n)
            st_ = os.stat(p)
            out[p] = (st_.st_mtime_ns, st_.st_size, None if os.path.isdir(p) else open(p, "rb").read())
    return out


def test_not_a_store_is_refused_and_untouched(tmp_path):
    """[F-01] a file, or a non-empty directory without METALOG, is refused; nothing changes."""
    f = tmp_path / "afile"
    f.write_bytes(b"precious")
    foreign = tmp_path / "foreign"
    (foreign / "sub").mkdir(parents=True)
    (foreign / "notes.txt").write_text("keep me")
    (foreign / "sub" / "x").write_bytes(b"\x00" * 10)
    before = _tree(tmp_path)
    for path in (f, foreign):
        for kwargs in ({}, {"readonly": True}, {"create": False}):
            with pytest.raises(NotAStoreError) as info:
                eventstore.open(path, **kwargs)
            assert isinstance(info.value, eventstore.EventStoreError)
    with pytest.raises(NotAStoreError):
        eventstore.open(tmp_path / "missing", readonly=True)
    with pytest.raises(NotAStoreError):
        eventstore.open(tmp_path / "missing", create=False)
    assert _tree(tmp_path) == before
    assert not (tmp_path / "missing").exists()


def test_empty_directory_becomes_a_store(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    with eventstore.open(d) as store:
        store.append("t", "k")
    assert (d / "METALOG").exists()


def test_bad_open_options_are_refused(store_dir):
    for kwargs in ({"durability": "sometimes"}, {"recovery": "yolo"}, {"segment_bytes": 10},
                   {"max_event_bytes": 0}, {"snapshot_every": -1}):
        with pytest.raises(ValidationError):
            eventstore.open(store_dir, **kwargs)
    assert not os.path.exists(store_dir)


# -- segments ---------------------------------------------------------------------------------
def test_rollover_and_reads_across_segments(store_dir, segment_files):
    """[F-03] names are first seqs and follow on; [F-04] rollover at segment_bytes."""
    payload = "x" * 300
    with eventstore.open(store_dir, segment_bytes=4096, durability="none") as store:
        for i in range(60):
            if i % 3 == 0:
                store.append_many([("t", f"k{i % 4}", {"i": i, "p": payload, "n": n}) for n in range(2)])
            else:
                store.append("t", f"k{i % 4}", {"i": i, "p": payload})
        total = store.last_seq
    segs = segment_files(store_dir)
    assert len(segs) >= 5
    firsts = [int(os.path.basename(p)[:20]) for p in segs]
    assert firsts[0] == 1 and firsts == sorted(firsts)
    for p in segs[:-1]:
        size = os.path.getsize(p)
        assert 4096 <= size < 4096 + 48 + 1024  # sealed right after crossing the limit
    with eventstore.open(store_dir, segment_bytes=4096) as store:
        events = list(store.read())
        assert [e.seq for e in events] == list(range(1, total + 1))
        # every segment's first seq is where a commit starts, one past the previous one's last
        starts = {e.seq for e in events if e.data.get("n", 0) == 0}
        assert set(firsts) <= starts
        mid = firsts[2] + 1
        assert [e.seq for e in store.read(mid, mid + 7)] == list(range(mid, mid + 7))
        assert [e.seq for e in store.read(key="k1")] == [e.seq for e in events if e.key == "k1"]
        assert store.stats()["segments"] == len(segs)
        store.append("t", "after-reopen")  # appends go on in the last segment
    with eventstore.open(store_dir, readonly=True) as ro:
        assert ro.last_seq == total + 1 and list(ro.read(total + 1))[0].key == "after-reopen"


@pytest.mark.parametrize("durability", ["fsync", "flush", "none"])
def test_each_durability_survives_close_and_reopen(store_dir, durability):
    with eventstore.open(store_dir, durability=durability) as store:
        written = [store.append("t", f"k{i}", {"i": i}) for i in range(50)]
        written += store.append_many([("t", "batch", {"j": j}) for j in range(20)])
    with eventstore.open(store_dir) as store:
        assert list(store.read()) == written
        assert store.recovery_report.entries == [] and not store.recovery_report


def test_flush_makes_buffered_commits_visible_to_a_reader(store_dir):
    """durability="none" buffers in process; flush() hands them to the OS."""
    with eventstore.open(store_dir, durability="none") as store:
        written = [store.append("t", "k", {"i": i}) for i in range(10)]
        store.flush()
        with eventstore.open(store_dir, readonly=True) as ro:
            assert list(ro.read()) == written


def test_expected_version_under_thread_contention(store_dir):
    """Optimistic concurrency: of racing appenders expecting the same version, exactly one wins;
    each stored event records the version it expected, which equals its index for the key."""
    n_threads, per = 6, 15
    with eventstore.open(store_dir, durability="none") as store:
        conflicts = [0] * n_threads

        def worker(w):
            done = 0
            while done < per:
                v = store.version("hot")
                try:
                    store.append("t", "hot", {"expected": v, "w": w}, expected_version=v)
                    done += 1
                except ConcurrencyError:
                    conflicts[w] += 1

        threads = [threading.Thread(target=worker, args=(w,)) for w in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert store.version("hot") == n_threads * per
        assert [e.data["expected"] for e in store.read(key="hot")] == list(range(n_threads * per))


@pytest.mark.parametrize("durability", ["none", "flush"])
def test_reads_during_appends_see_whole_commits_in_order(store_dir, durability):
    """[F-11] a reader racing a writer (same store, other thread) never sees part of a commit."""
    with eventstore.open(store_dir, durability=durability, segment_bytes=4096) as store:
        stop = threading.Event()
        problems, sizes = [], []

        def reader():
            while not stop.is_set():
                evs = list(store.read())
                sizes.append(len(evs))
                if [e.seq for e in evs] != list(range(1, len(evs) + 1)):
                    problems.append("gap")
                if len(evs) % 3:
                    problems.append(f"partial commit: {len(evs)} events")
                for i in range(0, len(evs), 3):
                    if [e.data["j"] for e in evs[i:i + 3]] != [0, 1, 2] or len({e.data["c"] for e in evs[i:i + 3]}) != 1:
                        problems.append(f"commit split at {i}")
                        break

        t = threading.Thread(target=reader)
        t.start()
        for c in range(1000):
            store.append_many([("t", f"k{c % 7}", {"c": c, "j": j}) for j in range(3)])
            if c % 100 == 0:
                time.sleep(0.005)  # let the reader in
        stop.set()
        t.join(30)
        assert problems == []
        assert len(set(sizes)) > 3  # the reader really raced the writer
        assert store.last_seq == 3000


@pytest.mark.parametrize("durability", ["fsync", "none"])
def test_close_while_threads_append(store_dir, durability):
    """Every append racing close() either returns (and its event is on disk) or raises
    StoreClosedError; none hangs."""
    store = eventstore.open(store_dir, durability=durability)
    acked, errors = [], []
    go = threading.Event()

    def worker(w):
        go.wait()
        i = 0
        while True:  # until close() stops us: close must not wait for appenders to give up
            try:
                acked.append(store.append("t", f"w{w}", {"i": i}))
            except StoreClosedError:
                return
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)
                return
            i += 1

    threads = [threading.Thread(target=worker, args=(w,), daemon=True) for w in range(4)]
    for t in threads:
        t.start()
    go.set()
    time.sleep(0.05)
    closer = threading.Thread(target=store.close, daemon=True)
    closer.start()
    closer.join(10)
    assert not closer.is_alive(), "close() starved behind appenders"
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads), "an append hung across close()"
    assert errors == []
    assert acked, "no append got in before close"
    with eventstore.open(store_dir) as again:
        on_disk = {e.seq: e for e in again.read()}
    for ev in acked:
        assert on_disk.get(ev.seq) == ev


# -- a state machine: random operations, reopens and refusals against a model -------------------
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule  # noqa: E402


class StoreMachine(RuleBasedStateMachine):
    """Appends, batches, refused writes, flushes and reopens (with rollover) vs a list model."""

    def __init__(self):
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.tmp.name, "s")
        self.durability = "none"
        self.store = eventstore.open(self.path, durability=self.durability, segment_bytes=4096)
        self.model: list[tuple[str, str, dict]] = []

    def teardown(self):
        self.store.close()
        self.tmp.cleanup()

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
        self.store = eventstore.open(self.path, durability=durability, segment_bytes=4096)
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


StoreMachine.TestCase.settings = settings(max_examples=25, stateful_step_count=30, deadline=None)
test_store_state_machine = StoreMachine.TestCase


def test_a_failing_projection_publishes_the_durable_commit_then_refuses_writes(tmp_path):
    """A projection that raises must not leave a store taking snapshots of wrong state."""
    class Fragile:
        name, version = "fragile", 1

        def __init__(self) -> None:
            self.seen: list[int] = []

        def apply(self, event):
            if event.key == "boom":
                raise RuntimeError("bug in projection")
            self.seen.append(event.seq)

        def snapshot(self):
            return self.seen

        def restore(self, state):
            self.seen = list(state)

    p = Fragile()
    store = eventstore.open(tmp_path / "s", projections=(p,))
    store.append("t", "ok", {})
    boom = store.append("t", "boom", {})  # durable: returned, on disk
    assert boom.seq == 2 and store.last_seq == 2
    with pytest.raises(eventstore.StoreFailedError):
        store.append("t", "after", {})
    with pytest.raises(eventstore.StoreFailedError):
        store.snapshot()
    store.close()
    with eventstore.open(tmp_path / "s") as again:
        assert [(e.seq, e.key) for e in again.read()] == [(1, "ok"), (2, "boom")]


def test_a_store_whose_segments_directory_vanished_is_refused(tmp_path):
    """The log is gone: open must not quietly start a new one at seq 1."""
    import shutil
    root = tmp_path / "s"
    with eventstore.open(root) as s:
        s.append("t", "k", {})
    shutil.rmtree(root / "segments")
    for readonly in (False, True):
        with pytest.raises(eventstore.CorruptionError) as info:
            eventstore.open(root, readonly=readonly)
        assert "segments" in str(info.value)
    assert not (root / "segments").exists()


def test_appending_to_a_finished_transaction_is_refused(tmp_path):
    with eventstore.open(tmp_path / "s") as s:
        with s.transaction() as tx:
            tx.append("t", "k", {})
        with pytest.raises(eventstore.ValidationError):
            tx.append("t", "late", {})
        assert [e.key for e in s.read()] == ["k"]
