"""What the contract suite (tests/contract, run on PostgreSQL too) checks through files
on the embedded store, checked here through the database's tables (SPEC §2, §8):
nothing is written by a refused commit, stats, readonly refusals, foreign schemas,
and the model round trip on a store that is reopened.
"""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import eventstore
from eventstore import ConcurrencyError, NotAStoreError, ReadOnlyError, ValidationError
from contract.test_append_read import check_event, commit, do_commit


def table_rows(admin, url, table):
    schema = url.rsplit("schema=", 1)[1]
    return admin.execute(f"SELECT * FROM {schema}.{table} ORDER BY 1").fetchall()


def test_refused_commits_write_nothing(pg_url, pg_admin):
    """ConcurrencyError, a bad item, an empty batch: no row changes (SPEC §2, §5)."""
    with eventstore.open(pg_url) as store:
        store.append("t", "k", {"n": 0}, expected_version=0)
        store.append("t", "k", {"n": 1}, expected_version=1)
        before = {t: table_rows(pg_admin, pg_url, t) for t in ("commits", "key_versions", "head")}
        for exp in (0, 1, 3):
            with pytest.raises(ConcurrencyError) as info:
                store.append("t", "k", {"bad": True}, expected_version=exp)
            assert (info.value.key, info.value.expected, info.value.actual) == ("k", exp, 2)
        with pytest.raises(ConcurrencyError):
            with store.transaction() as tx:
                tx.append("t", "k", {"bad": 1}, expected_version=2)
                tx.append("t", "k", {"bad": 3}, expected_version=2)  # is 3 after the first
        with pytest.raises(ValidationError):
            store.append_many([("t", "a", {}), ("t", "", {})])
        assert store.append_many([]) == []
        with store.transaction():
            pass
        assert {t: table_rows(pg_admin, pg_url, t) for t in before} == before
        with store.transaction() as tx:
            tx.append("t", "k", {"ok": 1}, expected_version=2)
            tx.append("t", "k", {"ok": 2}, expected_version=3)
        assert store.version("k") == 4 and store.last_seq == 4
    with eventstore.open(pg_url) as store:  # versions are rebuilt on open
        assert store.version("k") == 4
        assert [r[:2] for r in table_rows(pg_admin, pg_url, "key_versions")] == [("k", v) for v in range(1, 5)]


def test_stats_on_postgres(pg_url):
    with eventstore.open(pg_url, snapshot_every=0) as store:
        empty = store.stats()
        assert (empty["events"], empty["keys"], empty["last_seq"], empty["snapshot_seq"], empty["segments"]) \
            == (0, 0, 0, 0, 0)
        store.append_many([("t", "a", {"x": "y" * 5000}), ("t", "b", {}), ("t", "a", {})])
        s = store.stats()
        assert (s["events"], s["keys"], s["last_seq"]) == (3, 2, 3)
        assert s["bytes_on_disk"] > empty["bytes_on_disk"]
        assert s["path"] == store.location and s["durability"] == "fsync" and s["readonly"] is False
        store.snapshot()
        assert store.stats()["snapshot_seq"] == 3


def test_readonly_store_refuses_writes_and_changes_nothing(pg_url, pg_admin):
    with eventstore.open(pg_url) as store:
        store.append("t", "k")
    before = table_rows(pg_admin, pg_url, "commits")
    with eventstore.open(pg_url, readonly=True) as ro:
        for call in (lambda: ro.append("t", "k"), lambda: ro.append_many([("t", "k", {})]),
                     lambda: ro.transaction().__enter__(), lambda: ro.snapshot(), lambda: ro.compact()):
            with pytest.raises(ReadOnlyError):
                call()
        assert [e.key for e in ro.read()] == ["k"] and ro.last_seq == 1
    assert table_rows(pg_admin, pg_url, "commits") == before


def test_missing_and_foreign_schemas_are_refused_untouched(pg_url, pg_admin):
    """[P-03] create=False / readonly on a missing store, and a schema of someone else's tables."""
    schema = pg_url.rsplit("schema=", 1)[1]
    for kwargs in ({"readonly": True}, {"create": False}):
        with pytest.raises(NotAStoreError):
            eventstore.open(pg_url, **kwargs)
    assert not pg_admin.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchall()
    pg_admin.execute(f"CREATE SCHEMA {schema}; CREATE TABLE {schema}.orders (id int)")
    for kwargs in ({}, {"readonly": True}, {"create": False}):
        with pytest.raises(NotAStoreError):
            eventstore.open(pg_url, **kwargs)
    tables = pg_admin.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                              (schema,)).fetchall()
    assert tables == [("orders",)]


def test_a_failing_projection_refuses_writes_after_publishing(pg_url):
    class Fragile:
        name, version = "fragile", 1

        def __init__(self):
            self.seen = []

        def apply(self, event):
            if event.key == "boom":
                raise RuntimeError("bug in projection")
            self.seen.append(event.seq)

        def snapshot(self):
            return self.seen

        def restore(self, state):
            self.seen = list(state)

    store = eventstore.open(pg_url, projections=(Fragile(),))
    store.append("t", "ok", {})
    assert store.append("t", "boom", {}).seq == 2
    with pytest.raises(eventstore.StoreFailedError):
        store.append("t", "after", {})
    store.close()
    with eventstore.open(pg_url) as again:
        assert [(e.seq, e.key) for e in again.read()] == [(1, "ok"), (2, "boom")]


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                HealthCheck.function_scoped_fixture])
@given(st.lists(commit, min_size=1, max_size=5), st.sampled_from(["none", "fsync"]))
def test_append_round_trip_against_model_on_postgres(pg_base, commits, durability):
    """What append/append_many/transaction return is what read returns, before and after reopen
    (the model test of test_store_api, one fresh schema per example)."""
    from pg_support import drop_schema, fresh_schema_url
    url = fresh_schema_url(pg_base)
    try:
        expected, versions = [], {}
        with eventstore.open(url, durability=durability) as store:
            for kind, items in commits:
                before = store.last_seq
                got = do_commit(store, kind, items)
                if kind != "append":
                    assert len({e.ts for e in got}) == 1
                for i, (ev, (t, k, d, m)) in enumerate(zip(got, items)):
                    check_event(ev, before + 1 + i, t, k, d, m)
                    expected.append((before + 1 + i, t, k, d, m))
                    versions[k] = versions.get(k, 0) + 1
            first_pass = list(store.read())
        for ev, exp in zip(first_pass, expected, strict=True):
            check_event(ev, *exp)
        with eventstore.open(url) as store:
            assert list(store.read()) == first_pass
            assert {k: store.version(k) for k in versions} == versions
        ts = [e.ts for e in first_pass]
        assert ts == sorted(ts)
    finally:
        drop_schema(url)


def test_read_filters_on_postgres(pg_url):
    """key= uses the key index, types= the payload test; both exact, in seq order, stop exclusive."""
    with eventstore.open(pg_url, durability="none") as store:
        model = []
        for i in range(60):
            evs = store.append_many([(t, f"k{(i + j) % 5}", {"i": i}) for j, t in enumerate("abc"[: i % 3 + 1])])
            model += [(e.seq, e.type, e.key) for e in evs]
        for start, stop, key, types in [(1, None, "k1", None), (7, 50, None, {"b"}), (3, 90, "k2", {"a", "c"}),
                                        (0, 0, None, None), (40, None, "nope", None), (5, 6, None, "a")]:
            tset = None if types is None else ({types} if isinstance(types, str) else types)
            want = [m for m in model if m[0] >= start and (stop is None or m[0] < stop)
                    and (key is None or m[2] == key) and (tset is None or m[1] in tset)]
            got = [(e.seq, e.type, e.key) for e in store.read(start, stop, key=key, types=types)]
            assert got == want, (start, stop, key, types)


def _backend_syncs(store, work):
    """(WAL writes, fdatasyncs) the writer's backend makes while ``work`` runs, seen by strace
    (the server is local); skips where strace is missing or may not attach."""
    import shutil
    import subprocess
    import time
    if not shutil.which("strace"):
        pytest.skip("strace is not installed")
    store.append("t", "warm")
    out = f"/tmp/metalog-strace-{store._writer.link.backend_pid}.txt"
    tracer = subprocess.Popen(["strace", "-p", str(store._writer.link.backend_pid), "-o", out],
                              stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    if tracer.poll() is not None:
        pytest.skip("strace cannot attach to the server here")
    work()
    time.sleep(0.3)
    tracer.terminate()
    tracer.wait()
    with open(out) as f:
        calls = [line.split("(")[0] for line in f]
    return calls.count("pwrite64") + calls.count("write"), calls.count("fdatasync") + calls.count("fsync")


def test_durability_fsync_flushes_every_commit_and_flush_flushes_the_others(pg_url, pg_admin):
    """[P-21] "fsync": each commit's own backend flushes the WAL before it is acknowledged;
    "none": commits are not flushed by it, and flush() makes one flush that covers them all
    (a synchronous commit flushes only if it wrote WAL itself: a no-op row update)."""
    if pg_admin.execute("SHOW fsync").fetchone()[0] != "on":
        pytest.skip("the server runs with fsync off")
    with eventstore.open(pg_url, snapshot_every=0) as store:
        _, syncs = _backend_syncs(store, lambda: [store.append("t", "k", {"i": i}) for i in range(10)])
        assert syncs >= 10
    with eventstore.open(pg_url, durability="none", snapshot_every=0) as store:
        _, syncs = _backend_syncs(store, lambda: [store.append("t", "k", {"i": i}) for i in range(10)])
        assert syncs == 0
        _, syncs = _backend_syncs(store, store.flush)
        assert syncs >= 1
