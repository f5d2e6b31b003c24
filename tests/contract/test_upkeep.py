"""Snapshots, compaction and verify through the Store protocol (SPEC §2, §4.8), on every
backend: snapshot + tail replay equals a full replay, a projection whose version changed
is rebuilt, a follower sees every event once while the store compacts, and a clean store
verifies. How snapshots and compressed segments look on disk is tests/test_snapshots.py,
tests/test_compaction.py and tests/test_verify.py.
"""
from __future__ import annotations

import json
import os
import threading

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _verbs import KV, Applies, Counter, replay


def _newest_snapshot_file_seq(root: str) -> int:
    """The local backend's newest snapshot file (its name is its seq), 0 when none."""
    from eventstore.fs import DEFAULT_FS
    from eventstore.local.snapshot import list_snapshots
    newest = list_snapshots(DEFAULT_FS, os.path.join(root, "snapshots"))
    return newest[0][0] if newest else 0


# -- property: snapshot + replay == full replay -----------------------------------------------
event_st = st.tuples(
    st.sampled_from(["set", "del", "tag"]),
    st.sampled_from([f"k{i}" for i in range(6)] + ["ключ", "a/b"]),
    st.dictionaries(st.sampled_from(["t", "d", "n"]),
                    st.one_of(st.integers(-2**63, 2**63 - 1), st.text(max_size=20), st.none(),
                              st.binary(max_size=8), st.lists(st.integers(0, 9), max_size=3)),
                    max_size=3),
)
step_st = st.one_of(
    st.lists(event_st, min_size=1, max_size=4).map(lambda items: ("commit", items)),
    st.just(("snapshot", None)),
    st.just(("compact", None)),
    st.just(("reopen", None)),
)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(steps=st.lists(step_st, min_size=1, max_size=30), snapshot_every=st.sampled_from([0, 3, 7]))
def test_snapshot_plus_tail_equals_full_replay(make_store, steps, snapshot_every) -> None:
    """[F-21], SPEC §4.8: whatever snapshots exist, open restores the newest one, replays only
    the tail, and ends in exactly the state (and key versions) of a full replay."""
    target = make_store.fresh()
    opts = dict(segment_bytes=4096, snapshot_every=snapshot_every)
    kv, counter = KV(), Counter()
    s = target([kv, counter], **opts)
    try:
        for kind, items in steps:
            if kind == "commit":
                s.append_many(items)
            elif kind == "snapshot":
                s.snapshot()
            elif kind == "compact":
                s.compact()
            else:
                s.close()
                kv, counter = KV(), Counter()
                s = target([kv, counter], **opts)
        events = list(s.read())
        versions = {k: s.version(k) for k in {e.key for e in events}}
    finally:
        s.close()
    full, full_counter = replay(events), replay(events, Counter)
    assert kv.state() == full.state() and counter.by_type == full_counter.by_type

    fresh, c2 = Applies(), Counter()
    with target([fresh, c2], **opts) as s:
        assert not s.recovery_report
        snap_seq = s.stats()["snapshot_seq"]
        if target.backend == "local":
            assert snap_seq == _newest_snapshot_file_seq(target.target)
        assert fresh.applied == len(events) - snap_seq  # only the tail was replayed
        assert fresh.state() == full.state() and c2.by_type == full_counter.by_type
        assert {k: s.version(k) for k in versions} == versions
        assert s.last_seq == len(events)
        report = s.verify()
        assert report.ok, str(report)


def _store_with_two_snapshots(make_store) -> tuple[list, tuple]:
    kv = KV()
    with make_store([kv, Counter()], snapshot_every=0) as s:
        for i in range(10):
            s.append("set", f"k{i % 3}", {"i": i})
        s.snapshot()
        for i in range(10, 20):
            s.append("set", f"k{i % 3}", {"i": i})
        s.snapshot()
        for i in range(20, 25):
            s.append("del", f"k{i % 3}", {"i": i})
        return list(s.read()), kv.state()


def test_mismatched_projection_version_is_rebuilt_by_replay(make_store) -> None:
    """[F-22]: only the projection whose version changed is replayed in full."""
    events, state = _store_with_two_snapshots(make_store)
    kv, counter = Applies(), Counter(version=2)
    with make_store([kv, counter]):
        assert kv.applied == 5  # restored from the snapshot at 20
        assert counter.by_type == replay(events, Counter).by_type  # rebuilt from seq 1
        assert kv.state() == state


def test_snapshot_of_an_empty_store_and_of_a_store_with_no_projections(make_store) -> None:
    with make_store([KV()]) as s:
        assert s.snapshot() == 0
    with make_store([]) as s:
        assert s.last_seq == 0
        s.append("set", "k", {})
        assert s.snapshot() == 1
    kv = KV()
    with make_store([kv]) as s:
        assert not s.recovery_report
        assert kv.count == 1 and s.version("k") == 1  # no kv state in that snapshot: replayed


def fill(s, start: int, n: int) -> None:
    for i in range(start, start + n):
        s.append("title", f"/media/photos/2024/IMG_{i % 40:04d}.jpg",
                 {"title": f"Holiday photo {i}", "description": f"Taken on day {i % 7} at the beach"},
                 meta={"actor": "alice"})


def test_follow_and_appends_while_compacting(make_store) -> None:
    """A live follower sees every event exactly once, in order, while the store compacts
    (on the local backend: segments are compressed and their plain files removed under it)."""
    with make_store([KV()], segment_bytes=4096, snapshot_every=0) as s:
        fill(s, 0, 100)
        seen: list[int] = []
        done = threading.Event()

        def follow() -> None:
            for e in s.follow(start=1, poll=0.001, timeout=1.0):
                seen.append(e.seq)
                if e.seq == 700:
                    break
            done.set()

        t = threading.Thread(target=follow)
        t.start()
        for round_ in range(6):
            fill(s, 100 + round_ * 100, 100)
            s.compact()
        t.join(10)
        assert done.is_set()
        assert seen == list(range(1, 701))
        if make_store.backend == "local":
            zsegs = [n for n in os.listdir(os.path.join(make_store.target, "segments")) if n.endswith(".zseg")]
            assert len(zsegs) > 5


def test_clean_store_verifies(make_store) -> None:
    with make_store([KV()], snapshot_every=0, segment_bytes=4096) as s:
        for i in range(30):
            s.append("set", f"k{i % 3}", {"title": f"title {i:03d}"})
    with make_store([KV()]) as s:
        s.append_many([("set", "x", {}), ("set", "y", {})])
        s.snapshot()
        report = s.verify()
        assert report.ok and report.problems == []
        assert (report.events, report.commits, report.last_seq, report.snapshots) == (32, 31, 32, 1)
        doc = json.loads(json.dumps(report.as_dict()))
        assert doc["ok"] is True and doc["events"] == 32
        assert str(report).startswith("ok:")
