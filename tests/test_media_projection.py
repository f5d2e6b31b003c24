"""MediaProjection: apply semantics, and snapshot + replay == full replay."""
from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import eventstore
from eventstore.event import Event
from projections import MediaProjection
from projections.events import (AT, CONT, CREATED, DESCRIPTION_SET, FORGOTTEN,
                                LEGACY_IMPORT_REDONE, LEGACY_IMPORT_STARTED, LEGACY_IMPORT_UNDONE,
                                LEGACY_IMPORTED, MERGE, OP, REDO_OF, RENAMED, TITLE_SET, UNDO_OF)

KEYS = ["/m/a", "/m/b", "/m/c"]


def ev(seq: int, typ: str, key: str, data: dict | None = None, **meta) -> Event:
    return Event(seq, 1_000_000_000 * seq, typ, key, data or {}, meta)


def test_sets_create_update_and_count_versions() -> None:
    p = MediaProjection()
    p.apply(ev(1, TITLE_SET, "/m/a", {"value": "A"}))
    p.apply(ev(2, DESCRIPTION_SET, "/m/a", {"value": "about A"}))
    rec = p.get("/m/a")
    assert rec is not None
    assert (rec.title, rec.description, rec.version) == ("A", "about A", 2)
    assert (rec.created, rec.updated) == (1.0, 2.0)
    assert p.last_seq == 2 and len(p) == 1 and "/m/a" in p


def test_item_without_metadata_is_not_live_but_keeps_its_version() -> None:
    p = MediaProjection()
    p.apply(ev(1, TITLE_SET, "/m/a", {"value": "A"}))
    p.apply(ev(2, TITLE_SET, "/m/a", {"value": ""}))
    assert "/m/a" not in p and p.get("/m/a") is None
    assert p.key_version("/m/a") == 2


def test_forget_and_rename() -> None:
    p = MediaProjection()
    p.apply(ev(1, TITLE_SET, "/m/a", {"value": "A"}))
    p.apply(ev(2, RENAMED, "/m/a", {"to": "/m/b"}))
    p.apply(ev(3, RENAMED, "/m/b", {"from": "/m/a"}, cont=True))
    assert p.as_dict() == {"/m/b": ("A", "")}
    assert p.get("/m/b").created == 1.0
    top = p.undo_top("/m/b")                     # the rename is the item's last undo step
    assert (top.step, top.changes) == (2, {"key": ("/m/a", "/m/b")})
    assert p.undo_top("/m/a") is None
    p.apply(ev(4, FORGOTTEN, "/m/b"))            # a forget is one too: it keeps the values
    assert len(p) == 0
    assert p.undo_top("/m/b").changes == {"key": ("/m/b", ""), "title": ("A", "")}
    p.apply(ev(5, TITLE_SET, "/m/b", {"value": "A"}, **{UNDO_OF: 4}))
    assert p.as_dict() == {"/m/b": ("A", "")} and p.redo_top("/m/b").step == 4
    p.apply(ev(6, RENAMED, "/m/b", {"to": "/m/a"}, **{UNDO_OF: 2}))    # renamed back
    p.apply(ev(7, RENAMED, "/m/a", {"from": "/m/b"}, cont=True, **{UNDO_OF: 2}))
    assert p.as_dict() == {"/m/a": ("A", "")}
    assert p.undo_top("/m/a").step == 1 and p.redo_top("/m/a").step == 2


def test_commit_is_one_undo_step_and_undo_redo_move_it() -> None:
    p = MediaProjection()
    p.apply(ev(1, TITLE_SET, "/m/a", {"value": "A"}))
    p.apply(ev(2, TITLE_SET, "/m/b", {"value": "B"}, **{CONT: True}))
    p.apply(ev(3, DESCRIPTION_SET, "/m/a", {"value": "d"}, **{CONT: True}))
    group = p.last_undo_group()
    assert [(u.key, u.step) for u in group] == [("/m/a", 1), ("/m/b", 1)]
    assert group[0].changes == {"title": ("", "A"), "description": ("", "d")}
    p.apply(ev(4, TITLE_SET, "/m/a", {"value": ""}, **{UNDO_OF: 1}))
    p.apply(ev(5, DESCRIPTION_SET, "/m/a", {"value": ""}, **{UNDO_OF: 1, CONT: True}))
    assert p.undo_top("/m/a") is None and p.redo_top("/m/a").order == 4
    p.apply(ev(6, TITLE_SET, "/m/a", {"value": "A"}, **{REDO_OF: 1}))
    assert p.undo_top("/m/a").order == 6 and p.redo_top("/m/a") is None


def test_merge_joins_the_previous_single_field_unit() -> None:
    p = MediaProjection()
    p.apply(ev(1, TITLE_SET, "/m/a", {"value": "H"}))
    p.apply(ev(2, TITLE_SET, "/m/a", {"value": "He"}, **{MERGE: True}))
    p.apply(ev(3, TITLE_SET, "/m/a", {"value": "Hey"}, **{MERGE: True}))
    top = p.undo_top("/m/a")
    assert top.changes == {"title": ("", "Hey")} and top.order == 3
    p.apply(ev(4, DESCRIPTION_SET, "/m/a", {"value": "d"}, **{MERGE: True}))
    assert p.undo_top("/m/a").changes == {"description": ("", "d")}   # other field: new unit


def test_undo_depth_is_bounded() -> None:
    p = MediaProjection(undo_depth=3)
    depths = []
    for seq in range(1, 101):
        p.apply(ev(seq, TITLE_SET, "/m/a", {"value": str(seq)}))
        depths.append(p.undo_depths()[0])
    assert max(depths) == 6 and min(depths[10:]) == 3    # between depth and twice it
    top = p.undo_top("/m/a")
    assert top.changes == {"title": ("99", "100")}       # the newest are kept


def test_foreign_events_only_count_versions() -> None:
    p = MediaProjection()
    p.apply(ev(1, "something.else", "/m/a", {"value": "x"}))
    p.apply(ev(2, TITLE_SET, "/m/a", {"value": 5}))
    p.apply(ev(3, LEGACY_IMPORTED, "legacy-json:ff", {"sha256": "ff"}))
    assert len(p) == 0 and p.key_version("/m/a") == 2 and p.imported("ff") == 3


def test_frozen_projection_refuses_changes() -> None:
    p = MediaProjection().freeze()
    with pytest.raises(RuntimeError):
        p.apply(ev(1, TITLE_SET, "/m/a", {"value": "A"}))
    with pytest.raises(RuntimeError):
        p.restore(MediaProjection().snapshot())


# ----------------------------------------------- snapshot + replay == replay

@st.composite
def event_logs(draw: st.DrawFn) -> list[Event]:
    """Logs as the catalog writes them, plus raw oddities."""
    out: list[Event] = []
    steps = draw(st.lists(st.integers(0, 14), min_size=1, max_size=60))
    for choice in steps:
        seq = len(out) + 1
        key = draw(st.sampled_from(KEYS))
        value = draw(st.sampled_from(["", "t", "u", "long value"]))
        meta: dict = {"actor": "p"}
        if choice <= 4:
            typ = TITLE_SET if choice % 2 else DESCRIPTION_SET
            if choice == 4:
                meta[MERGE] = True
            if out and choice == 3:
                meta[CONT] = True
            out.append(ev(seq, typ, key, {"value": value}, **meta))
        elif choice in (5, 6):
            # an undo/redo referring to an earlier step (maybe a wrong one)
            ref = draw(st.integers(1, seq))
            meta[UNDO_OF if choice == 5 else REDO_OF] = ref
            out.append(ev(seq, draw(st.sampled_from([TITLE_SET, DESCRIPTION_SET])), key,
                          {"value": value}, **meta))
        elif choice == 7:
            out.append(ev(seq, FORGOTTEN, key, {}, **meta))
        elif choice == 8:
            new = draw(st.sampled_from(KEYS))
            out.append(ev(seq, RENAMED, key, {"to": new}, **meta))
            out.append(ev(seq + 1, RENAMED, new, {"from": key}, actor="p", cont=True))
        elif choice == 9:
            out.append(ev(seq, LEGACY_IMPORTED, "legacy-json:x", {"sha256": value}, **meta))
        elif choice == 10:
            # a later commit of an import (meta op), its sets dated by the legacy file
            meta[OP] = draw(st.integers(1, seq))
            dates = draw(st.sampled_from([{}, {AT: 5}, {AT: 7, CREATED: 3}, {CREATED: 2}]))
            out.append(ev(seq, TITLE_SET, key, {"value": value, **dates}, **meta))
        else:
            typ = [LEGACY_IMPORT_STARTED, LEGACY_IMPORTED, LEGACY_IMPORT_UNDONE,
                   LEGACY_IMPORT_REDONE][choice - 11]
            data = {"sha256": draw(st.sampled_from(["s1", "s2"])), "source": "/f.json",
                    OP: draw(st.integers(0, seq))}
            out.append(ev(seq, typ, "legacy-json:s", data, **meta))
    return out


def _through_msgpack(state: object) -> object:
    return msgpack.unpackb(msgpack.packb(state), strict_map_key=False)


@settings(max_examples=300, deadline=None)
@given(log=event_logs(), data=st.data())
def test_snapshot_plus_replay_equals_full_replay(log: list[Event], data: st.DataObject) -> None:
    horizon = data.draw(st.sampled_from([1, 2, 10]))     # 1 and 2 < len(KEYS): evictions
    full = MediaProjection(undo_depth=4, undo_horizon=horizon)
    for e in log:
        full.apply(e)
    cut = data.draw(st.integers(0, len(log)))
    head = MediaProjection(undo_depth=4, undo_horizon=horizon)
    for e in log[:cut]:
        head.apply(e)
    taken = head.snapshot()
    packed = msgpack.packb(taken)
    for e in log[cut:]:             # the snapshot value must not change under later applies
        head.apply(e)
    assert msgpack.packb(taken) == packed
    resumed = MediaProjection(undo_depth=4, undo_horizon=horizon)
    resumed.restore(msgpack.unpackb(packed, strict_map_key=False))
    for e in log[cut:]:
        resumed.apply(e)
    assert _through_msgpack(resumed.snapshot()) == _through_msgpack(full.snapshot())
    assert _through_msgpack(head.snapshot()) == _through_msgpack(full.snapshot())
    assert resumed.items() == full.items()
    for key in KEYS:
        assert resumed.undo_top(key) == full.undo_top(key)
        assert resumed.redo_top(key) == full.redo_top(key)
        assert resumed.key_version(key) == full.key_version(key)
    assert resumed.last_undo_group() == full.last_undo_group()
    assert resumed.imports.ops() == full.imports.ops()
    assert resumed.imports.undo_candidate() == full.imports.undo_candidate()
    assert len(full._undo) <= horizon
    # a time-travel view (no undo stacks) restored from the same snapshot agrees on items
    light = MediaProjection(track_undo=False)
    light.restore(msgpack.unpackb(packed, strict_map_key=False))
    for e in log[cut:]:
        light.apply(e)
    assert light.items() == full.items() and light.last_seq == full.last_seq


def test_store_snapshot_plus_replay_equals_full_replay(tmp_path) -> None:
    """Through the real store: reopen from automatic snapshots vs no snapshots."""
    from projections import MediaCatalog

    path = tmp_path / "store"
    with MediaCatalog.open(path, actor="s", durability="none", snapshot_every=7) as cat:
        for i in range(60):
            cat.set_title(f"/m/{i % 5}", f"title {i}")
            if i % 4 == 0:
                cat.set_description(f"/m/{i % 3}", f"d{i}")
            if i % 9 == 0:
                cat.undo()
            if i % 13 == 0:
                cat.redo()
        cat.snapshot()
        cat.set_title("/m/after-snapshot", "x")
        expected = _through_msgpack(cat.projection.snapshot())
    with MediaCatalog.open(path, actor="s", durability="none", snapshot_every=7) as cat:
        assert _through_msgpack(cat.projection.snapshot()) == expected
    full = MediaProjection()
    with eventstore.open(path, durability="none", snapshot_every=0) as store:
        for e in store.read():
            full.apply(e)
    assert _through_msgpack(full.snapshot()) == expected


def test_protocol_attributes() -> None:
    from eventstore.projection import Projection
    p = MediaProjection()
    assert isinstance(p, Projection)
    assert (p.name, p.version) == ("media", 5)       # plain values, not methods


# ------------------------------------------------------------------ undo horizon

def test_undo_horizon_evicts_the_least_recently_changed_item() -> None:
    p = MediaProjection(undo_horizon=3)
    for seq, key in enumerate(["/m/a", "/m/b", "/m/c"], 1):
        p.apply(ev(seq, TITLE_SET, key, {"value": key}))
    p.apply(ev(4, TITLE_SET, "/m/a", {"value": "a again"}))     # /m/a is now the most recent
    p.apply(ev(5, TITLE_SET, "/m/d", {"value": "d"}))           # 4 items: /m/b goes
    assert p.undo_top("/m/b") is None and p.redo_top("/m/b") is None
    assert [p.undo_top(k).step for k in ("/m/a", "/m/c", "/m/d")] == [4, 3, 5]
    assert p.title("/m/b") == "/m/b" and p.key_version("/m/b") == 1   # only undo is gone
    # undo and redo keep an item recent; an undo of an evicted step changes no stack
    p.apply(ev(6, TITLE_SET, "/m/c", {"value": ""}, **{UNDO_OF: 3}))
    assert p.redo_top("/m/c").step == 3
    p.apply(ev(7, TITLE_SET, "/m/e", {"value": "e"}))           # evicts /m/a, not /m/c
    assert p.undo_top("/m/a") is None and p.redo_top("/m/c") is not None
    p.apply(ev(8, TITLE_SET, "/m/b", {"value": "B"}, **{UNDO_OF: 2}))
    assert p.undo_top("/m/b") is None and p.redo_top("/m/b") is None
    assert p.title("/m/b") == "B"
    assert p.undo_depths() == (2, 1)


def test_undo_horizon_follows_renames_and_forgets() -> None:
    p = MediaProjection(undo_horizon=2)
    p.apply(ev(1, TITLE_SET, "/m/a", {"value": "A"}))
    p.apply(ev(2, TITLE_SET, "/m/b", {"value": "B"}))
    p.apply(ev(3, RENAMED, "/m/a", {"to": "/m/x"}))             # /m/x is now the most recent
    p.apply(ev(4, RENAMED, "/m/x", {"from": "/m/a"}, cont=True))
    p.apply(ev(5, TITLE_SET, "/m/c", {"value": "C"}))           # evicts /m/b
    assert p.undo_top("/m/b") is None and p.undo_top("/m/x").step == 3
    p.apply(ev(6, FORGOTTEN, "/m/x"))                          # undoable: /m/x keeps its stacks
    p.apply(ev(7, TITLE_SET, "/m/d", {"value": "D"}))           # evicts /m/c
    assert p.undo_top("/m/c") is None and p.undo_top("/m/d").step == 7
    assert p.undo_top("/m/x").step == 6
    assert p.key_version("/m/a") == 2 and p.key_version("/m/x") == 2


def test_snapshot_is_not_mutated_by_later_applies_and_restore_trims_to_the_horizon() -> None:
    p = MediaProjection(undo_horizon=5)
    for i in range(1, 11):
        p.apply(ev(i, TITLE_SET, f"/m/{i % 4}", {"value": f"v{i}"}))
    state = p.snapshot()
    before = msgpack.packb(state)
    for i in range(11, 40):
        p.apply(ev(i, DESCRIPTION_SET if i % 2 else TITLE_SET, f"/m/{i % 7}", {"value": f"w{i}"}))
        p.apply(ev(i + 100, TITLE_SET, "/m/0", {"value": ""}, **{UNDO_OF: i}))
    assert msgpack.packb(state) == before
    small = MediaProjection(undo_horizon=2)
    small.restore(msgpack.unpackb(before, strict_map_key=False))
    small._need_stacks()                               # built when first needed
    assert list(small._undo) == ["/m/1", "/m/2"]      # the two most recently changed
    assert small.undo_top("/m/1").step == 9


def test_versions_count_every_event_of_a_key() -> None:
    p = MediaProjection()
    p.apply(ev(1, "other.type", "/m/a", {"x": 1}))                  # foreign: counted
    p.apply(ev(2, TITLE_SET, "/m/a", {"value": "A"}))
    p.apply(ev(3, TITLE_SET, "/m/a", {"value": "A"}))               # unchanged: counted
    p.apply(ev(4, TITLE_SET, "/m/a", {"value": 5}))                 # not a str: counted
    assert p.get("/m/a").version == 4
    p.apply(ev(5, TITLE_SET, "/m/a", {"value": ""}))
    assert p.key_version("/m/a") == 5
    p.apply(ev(6, DESCRIPTION_SET, "/m/a", {"value": "d"}))
    assert p.get("/m/a").version == 6


def test_snapshot_without_stacks_restores_the_same_items_into_a_view() -> None:
    """state_at(now) copies the live projection without its undo stacks: same items,
    versions and time index as the full snapshot, nothing of the stacks."""
    p = MediaProjection()
    for seq in range(1, 40):
        p.apply(ev(seq, TITLE_SET, f"/m/{seq % 7}.jpg", {"value": f"t{seq}"}))
    full, lean = p.snapshot(), p.snapshot(stacks=False)
    assert full["stack_keys"] and not lean["stack_keys"] and not lean["stack_slots"]
    a, b = MediaProjection(track_undo=False), MediaProjection(track_undo=False)
    a.restore(full)
    b.restore(lean)
    assert a.as_dict() == b.as_dict() == p.as_dict() and b.last_seq == p.last_seq
    assert [b.get(k).version for k in p.as_dict()] == [p.get(k).version for k in p.as_dict()]


def test_restore_trims_stacks_taken_with_a_larger_undo_depth() -> None:
    deep = MediaProjection(undo_depth=10)
    seq = 0
    for i in range(19):             # 19 undo entries: under deep's trim point of 20
        seq += 1
        deep.apply(ev(seq, TITLE_SET, "/m/a", {"value": f"t{i}"}))
    for step in range(19, 2, -1):   # undo 17 of them: /m/a's redo stack holds 17
        seq += 1
        deep.apply(ev(seq, TITLE_SET, "/m/a", {"value": f"t{step - 2}"}, **{UNDO_OF: step}))
    assert deep.undo_depths() == (2, 17)
    for i in range(19):             # a second item with a full undo stack
        seq += 1
        deep.apply(ev(seq, DESCRIPTION_SET, "/m/b", {"value": f"d{i}"}))
    assert deep.undo_depths() == (21, 17)
    shallow = MediaProjection(undo_depth=3)
    shallow.restore(_through_msgpack(deep.snapshot()))
    # each stack is cut to at most undo_depth entries, keeping the newest
    assert shallow.undo_depths() == (2 + 3, 3)
    assert shallow.undo_top("/m/b") == deep.undo_top("/m/b")
    assert shallow.redo_top("/m/a") == deep.redo_top("/m/a")
    assert shallow.undo_top("/m/a") == deep.undo_top("/m/a")
    assert shallow.items() == deep.items()
    # within bounds, a restore keeps the stacks as they were
    same = MediaProjection(undo_depth=10)
    same.restore(_through_msgpack(deep.snapshot()))
    assert same.undo_depths() == deep.undo_depths()


def test_restore_with_the_same_depth_keeps_a_stack_past_the_trim_point() -> None:
    """A commit changing both fields extends the top unit without a trim, so a live stack
    may hold one entry past 2 * undo_depth; a restore must keep it, as a replay does."""
    p = MediaProjection(undo_depth=3)
    seq = 0
    for i in range(5):
        seq += 1
        p.apply(ev(seq, TITLE_SET, "/m/a", {"value": f"t{i}"}))
    p.apply(ev(seq + 1, TITLE_SET, "/m/a", {"value": "T"}))
    p.apply(ev(seq + 2, DESCRIPTION_SET, "/m/a", {"value": "D"}, **{CONT: True}))
    assert p.undo_depths() == (7, 0)   # past the trim point of 6
    q = MediaProjection(undo_depth=3)
    q.restore(_through_msgpack(p.snapshot()))
    assert _through_msgpack(q.snapshot()) == _through_msgpack(p.snapshot())
