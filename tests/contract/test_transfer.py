"""Whole commits out and in: `read_commits` and `import_commit` (SPEC §8 `metalog copy`), on
every backend. A commit read from one store and imported into another keeps its seqs, its
time and its chain digest; an import that does not chain on the destination's head writes
nothing."""
from __future__ import annotations

import dataclasses

import pytest

from eventstore import Event, ValidationError
from eventstore.api import Commit
from eventstore.chain import ZERO_DIGEST, commit_digest


def _fill(store) -> None:
    store.append("title.set", "/m/a", {"value": "A"}, meta={"actor": "me"})
    store.append_many([("title.set", "/m/b", {"value": "B"}), ("desc.set", "/m/b", {"value": "b"}, {"x": 1})])
    with store.transaction() as tx:
        tx.append("title.set", "/m/c", {"value": "C"})
        tx.append("title.set", "/m/a", {"value": "A2"})
        tx.append("desc.set", "/m/c", {"value": [1, 2.5, b"\x00", None, True]})
    store.append("title.set", "/m/d", {"value": "D"})


def _as_tuple(c: Commit) -> tuple:
    return (c.first_seq, c.ts, c.prev, c.digest, c.payload,
            [(e.seq, e.ts, e.type, e.key, e.data, e.meta) for e in c.events])


def test_read_commits_gives_whole_commits_linked_by_the_digest_chain(make_store):
    with make_store(durability="none") as store:
        _fill(store)
        commits = list(store.read_commits())
        assert [(c.first_seq, len(c.events)) for c in commits] == [(1, 1), (2, 2), (4, 3), (7, 1)]
        assert [e for c in commits for e in c.events] == list(store.read())
        prev = ZERO_DIGEST
        for c in commits:
            assert c.prev == prev
            assert c.digest == commit_digest(c.prev, c.first_seq, len(c.events), c.ts, c.payload)
            assert {e.ts for e in c.events} == {c.ts} and c.last_seq == c.events[-1].seq
            prev = c.digest
        assert [c.first_seq for c in store.read_commits(5)] == [4, 7]  # from the commit holding 5
        assert list(store.read_commits(8)) == []
        for bad in (-1, True, "1", 1.0):
            with pytest.raises(ValidationError):
                store.read_commits(bad)  # refused at the call, before anything is iterated


def test_imported_commits_keep_seqs_times_and_digests(make_store):
    source = make_store(durability="none")
    _fill(source)
    target = make_store.fresh()
    seen = []
    with target(durability="none") as copy:
        copy.subscribe(seen.append)
        for c in source.read_commits():
            events = copy.import_commit(c)
            assert events == c.events
        assert [_as_tuple(c) for c in copy.read_commits()] == [_as_tuple(c) for c in source.read_commits()]
        assert list(copy.read()) == list(source.read()) and seen == list(source.read())
        assert copy.version("/m/a") == 2 and copy.last_seq == 7
        after = copy.append("title.set", "/m/e", {"value": "E"})  # the chain goes on from the import
        assert after.seq == 8 and after.ts >= list(source.read_commits())[-1].ts
        assert copy.verify().ok
    with target(readonly=True) as again:
        assert [_as_tuple(c) for c in again.read_commits()][:4] == [_as_tuple(c) for c in source.read_commits()]


def _event(e: Event, **change) -> Event:
    fields = {"seq": e.seq, "ts": e.ts, "type": e.type, "key": e.key, "data": e.data, "meta": e.meta}
    fields.update(change)
    return Event(**fields)


def _bad(first: Commit, second: Commit, how: str) -> Commit:
    """``second`` (to import after ``first``) spoiled in one way."""
    if how == "skips a seq":
        return dataclasses.replace(second, first_seq=second.first_seq + 1)
    if how == "chains on another digest":
        prev = bytes(16)
        return dataclasses.replace(second, prev=prev, digest=commit_digest(
            prev, second.first_seq, len(second.events), second.ts, second.payload))
    if how == "digest does not recompute":
        return dataclasses.replace(second, digest=bytes(reversed(second.digest)))
    if how == "payload is not its events":
        events = [_event(e, data={"value": "forged"}) for e in second.events]
        return dataclasses.replace(second, events=events)
    if how == "dated before the head":
        ts = first.ts - 1
        events = [_event(e, ts=ts) for e in second.events]
        return dataclasses.replace(second, ts=ts, events=events, digest=commit_digest(
            second.prev, second.first_seq, len(second.events), ts, second.payload))
    if how == "holds no event":
        return dataclasses.replace(second, events=[])
    if how == "an event is invalid":
        events = [_event(e, key="") for e in second.events]
        return dataclasses.replace(second, events=events)
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["skips a seq", "chains on another digest", "digest does not recompute",
                                 "payload is not its events", "dated before the head", "holds no event",
                                 "an event is invalid"])
def test_an_import_that_does_not_chain_on_the_head_writes_nothing(make_store, how):
    source = make_store(durability="none")
    _fill(source)
    first, second = list(source.read_commits())[:2]
    target = make_store.fresh()
    with target() as copy:
        copy.import_commit(first)
        before = target.footprint()
        with pytest.raises(ValidationError):
            copy.import_commit(_bad(first, second, how))
        assert copy.last_seq == first.last_seq
        assert target.footprint() == before
        assert copy.import_commit(second) == second.events  # and the right commit still goes in
        assert copy.verify().ok


def test_import_is_refused_by_a_readonly_store(make_store):
    source = make_store(durability="none")
    _fill(source)
    source.close()
    from eventstore import ReadOnlyError
    target = make_store.fresh()
    target().close()
    with target(readonly=True) as reader:
        with pytest.raises(ReadOnlyError):
            reader.import_commit(next(make_store(readonly=True).read_commits()))
