"""The opt-in batch protocol: a projection with ``apply_batch`` gets each commit's events at once.

SPEC §2 (projection protocol), `eventstore.projection`: the store hands a
`BatchProjection` one `EventBatch` per commit, in seq order, on open (replay),
for its own commits and for other writers' it takes in; a projection with only
``apply`` still gets one call per event, unchanged. Both end in the same state.
"""
from __future__ import annotations

from typing import Any

import pytest

import eventstore
from eventstore import Event, EventBatch


class PerEvent:
    """The plain protocol: ``apply`` per event."""

    name, version = "per-event", 1

    def __init__(self) -> None:
        self.seen: list[tuple[int, str, str, dict[str, Any]]] = []

    def apply(self, e: Event) -> None:
        self.seen.append((e.seq, e.type, e.key, e.data))

    def snapshot(self) -> Any:
        return self.seen

    def restore(self, state: Any) -> None:
        self.seen = [tuple(s) for s in state]


class Batched(PerEvent):
    """Reads the batch's columns; ``apply`` is for callers other than the store."""

    name = "batched"

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[tuple[int, int]] = []
        self.applied = 0

    def apply(self, e: Event) -> None:
        self.applied += 1
        super().apply(e)

    def apply_batch(self, events: EventBatch) -> None:
        assert isinstance(events, EventBatch) and len(events) >= 1
        self.batches.append((events.first_seq, len(events)))
        seqs = range(events.first_seq, events.first_seq + len(events))
        self.seen.extend(zip(seqs, events.types, events.keys, events.datas))


class Looping(PerEvent):
    """Iterates the batch as events."""

    name = "looping"

    def apply_batch(self, events: EventBatch) -> None:
        for e in events:
            PerEvent.apply(self, e)


def _write(store: eventstore.Store) -> None:
    store.append("t", "a", {"v": 1})
    store.append_many([("t", "b", {"v": 2}), ("u", "a", {"v": 3}, {"actor": "x"}), ("t", "c", {"v": [4]})])
    with store.transaction() as tx:
        tx.append("t", "d", {"v": b"5"})
        tx.append("u", "b", {})


def test_batch_projections_see_what_per_event_ones_see(make_store):
    ps = (PerEvent(), Batched(), Looping())
    store = make_store(projections=ps, snapshot_every=0)
    _write(store)
    assert ps[1].batches == [(1, 1), (2, 3), (5, 2)] and ps[1].applied == 0
    assert ps[0].seen == ps[1].seen == ps[2].seen and len(ps[0].seen) == 6
    store.close()
    again = (PerEvent(), Batched(), Looping())
    with make_store(projections=again, snapshot_every=0) as reopened:  # a replay
        assert again[0].seen == again[1].seen == again[2].seen == ps[0].seen
        assert again[1].batches == [(1, 1), (2, 3), (5, 2)] and again[1].applied == 0
        assert reopened.last_seq == 6


def test_batch_projections_take_in_other_writers_commits(make_store):
    mine = (PerEvent(), Batched())
    store = make_store(projections=mine, snapshot_every=0)
    with make_store(snapshot_every=0) as other:
        _write(other)
    assert store.last_seq == 6  # refreshes: the other writer's commits are published here
    assert mine[0].seen == mine[1].seen and len(mine[0].seen) == 6
    assert sum(n for _, n in mine[1].batches) == 6 and mine[1].applied == 0


def test_a_failing_apply_batch_publishes_the_durable_commit_then_refuses_writes(make_store):
    class Fragile(Batched):
        def apply_batch(self, events: EventBatch) -> None:
            if "boom" in events.keys:
                raise RuntimeError("bug in projection")
            super().apply_batch(events)

    store = make_store(projections=(Fragile(),))
    store.append("t", "ok", {})
    assert store.append("t", "boom", {}).seq == 2 and store.last_seq == 2
    with pytest.raises(eventstore.StoreFailedError):
        store.append("t", "after", {})
