"""Undo and redo: compensating events, per item or per commit, merge window."""
from __future__ import annotations

import pathlib

import pytest

from _cat import open_cat
from projections import MediaCatalog




def test_undo_appends_compensating_events_and_never_rewrites(cat: MediaCatalog) -> None:
    first = cat.set_title("/m/a", "one")
    cat.set_title("/m/a", "two")
    before = list(cat.store.read())
    events = cat.undo("/m/a", reason="oops")
    assert cat.title("/m/a") == "one"
    assert len(events) == 1 and events[0].data == {"value": "one"}
    assert events[0].meta["undo_of"] == first.seq + 1 and events[0].meta["reason"] == "oops"
    assert list(cat.store.read(1, len(before) + 1)) == before      # history intact
    assert [c.new for c in cat.history("/m/a")] == ["one", "two", "one"]


def test_undo_to_the_beginning_then_nothing_left(cat: MediaCatalog) -> None:
    cat.set_title("/m/a", "one")
    cat.set_description("/m/a", "d")
    cat.undo("/m/a")
    cat.undo("/m/a")
    assert "/m/a" not in cat
    assert cat.undo("/m/a") == [] and cat.undo() == []


def test_per_item_undo_leaves_other_items_alone(cat: MediaCatalog) -> None:
    cat.set_title("/m/a", "A")
    cat.set_title("/m/b", "B")
    cat.undo("/m/a")
    assert "/m/a" not in cat and cat.title("/m/b") == "B"


def test_global_undo_takes_the_last_commit_whole(cat: MediaCatalog) -> None:
    cat.set_title("/m/a", "A")
    with cat.batch():
        cat.set_title("/m/a", "A2")
        cat.set_title("/m/b", "B")
        cat.set_description("/m/b", "bee")
    cat.set_title("/m/c", "C")
    cat.undo()
    assert "/m/c" not in cat and cat.title("/m/a") == "A2"
    events = cat.undo()
    assert len(events) == 3 and cat.title("/m/a") == "A" and "/m/b" not in cat
    cat.redo()
    assert cat.title("/m/a") == "A2" and cat.get("/m/b")[:2] == ("B", "bee")
    cat.redo()
    assert cat.title("/m/c") == "C"
    assert cat.redo() == []


def test_redo_cleared_by_a_new_edit(cat: MediaCatalog) -> None:
    cat.set_title("/m/a", "one")
    cat.set_title("/m/a", "two")
    cat.undo("/m/a")
    cat.set_title("/m/a", "three")
    assert cat.redo("/m/a") == [] and cat.redo() == []
    assert cat.title("/m/a") == "three"
    cat.undo("/m/a")
    assert cat.title("/m/a") == "one"


def test_undo_redo_state_survives_reopen(tmp_path) -> None:
    with open_cat(tmp_path) as c:
        c.set_title("/m/a", "one")
        c.set_title("/m/a", "two")
        c.set_title("/m/a", "three")
        c.undo("/m/a")
    with open_cat(tmp_path) as c:
        assert c.title("/m/a") == "two"
        c.redo("/m/a")
        assert c.title("/m/a") == "three"
        c.undo()
        c.undo()
    with open_cat(tmp_path, snapshot_every=1) as c:      # and through a snapshot
        assert c.title("/m/a") == "one"
        c.snapshot()
    with open_cat(tmp_path) as c:
        c.redo()
        assert c.title("/m/a") == "two"


def test_undo_after_rename_reverts_the_rename_first(cat: MediaCatalog) -> None:
    cat.set_title("/m/a", "one")
    cat.set_title("/m/a", "two")
    cat.rename("/m/a", "/m/b")
    cat.undo("/m/b")                                  # the rename is the item's last change
    assert cat.title("/m/a") == "two" and "/m/b" not in cat
    cat.undo("/m/a")
    assert cat.title("/m/a") == "one"


def test_forget_is_undone_as_the_last_commit(cat: MediaCatalog) -> None:
    cat.set_title("/m/a", "A")
    cat.set_title("/m/b", "B")
    cat.forget("/m/b")
    assert cat.undo() != [] and cat.title("/m/b") == "B" and cat.title("/m/a") == "A"
    cat.forget("/m/b")
    assert cat.undo("/m/b") != [] and cat.title("/m/b") == "B"


def test_merge_window_merges_quick_typing_into_one_step(tmp_path) -> None:
    clock = [1000.0]
    import projections.catalog as catalog_module

    class FakeTime:
        @staticmethod
        def monotonic() -> float:
            return clock[0]

        @staticmethod
        def time() -> float:
            return clock[0]

    with open_cat(tmp_path, undo_merge_window=1.0) as c:
        real = catalog_module._time
        catalog_module._time = FakeTime  # type: ignore[assignment]
        try:
            c.set_title("/m/a", "Start")
            clock[0] += 5
            for text in ("H", "He", "Hel", "Hell", "Hello"):
                c.set_title("/m/a", text)
                clock[0] += 0.5                       # typing: < 1 s apart
            c.set_description("/m/a", "other field")  # other field: its own step
            clock[0] += 0.2
            c.set_title("/m/a", "Hello!")             # after another field: new step
            clock[0] += 3
            c.set_title("/m/a", "Hello!!")            # too late to merge
        finally:
            catalog_module._time = real
        assert len(c.history("/m/a")) == 9            # every change is still in history
        c.undo("/m/a")
        assert c.title("/m/a") == "Hello!"
        c.undo("/m/a")
        assert c.title("/m/a") == "Hello"
        c.undo("/m/a")
        assert c.description("/m/a") == ""
        c.undo("/m/a")
        assert c.title("/m/a") == "Start"             # the five keystrokes as one step
        c.redo("/m/a")
        assert c.title("/m/a") == "Hello"
    with open_cat(tmp_path) as c:                     # merging is in the log: survives reopen
        c.undo("/m/a")
        assert c.title("/m/a") == "Start"


def test_no_merge_with_a_zero_window(cat: MediaCatalog) -> None:
    for text in ("H", "He", "Hel"):
        cat.set_title("/m/a", text)
    cat.undo("/m/a")
    assert cat.title("/m/a") == "He"


def test_no_merge_across_actors(tmp_path) -> None:
    with open_cat(tmp_path, actor="alice", undo_merge_window=60) as c:
        c.set_title("/m/a", "alice")
    with open_cat(tmp_path, actor="bob", undo_merge_window=60) as c:
        c.set_title("/m/a", "bob")
        c.undo("/m/a")
        assert c.title("/m/a") == "alice"


# ------------------------------------------------------------------ undo horizon

def open_small_horizon(path: pathlib.Path, horizon: int, **kw) -> MediaCatalog:
    """A catalog whose projection keeps undo for only ``horizon`` items."""
    import eventstore
    from projections import MediaProjection
    proj = MediaProjection(undo_horizon=horizon)
    kw.setdefault("durability", "none")
    store = eventstore.open(path / "store", projections=[proj], **kw)
    return MediaCatalog(store, proj, actor="alice")


def _undo_state(c: MediaCatalog, keys: list[str]) -> list:
    p = c.projection
    return [(p.undo_top(k), p.redo_top(k)) for k in keys] + [p.last_undo_group(), p.undo_depths()]


def test_editing_k_plus_one_items_evicts_the_oldest_items_undo(tmp_path) -> None:
    K = 4
    keys = [f"/m/{i}" for i in range(K + 1)]
    with open_small_horizon(tmp_path, K, snapshot_every=0) as c:
        for k in keys[:K]:
            c.set_title(k, "first " + k)
        c.set_title(keys[0], "second")          # keys[0] is now the most recently changed
        c.set_title(keys[K], "first new")       # K + 1 items: keys[1] loses its undo
        assert c.undo(keys[1]) == [] and c.title(keys[1]) == "first /m/1"
        assert c.redo(keys[1]) == []
        c.undo(keys[0])
        assert c.title(keys[0]) == "first /m/0"   # still undoable
        c.redo(keys[0])
        c.snapshot()                             # a snapshot in the middle...
        c.set_title(keys[1], "edited again")     # ...then keys[2] goes, keys[1] gets a new stack
        c.undo(keys[3])
        assert c.undo(keys[2]) == []
        assert c.undo(keys[1]) != [] and c.title(keys[1]) == "first /m/1"
        live = _undo_state(c, keys)
    with open_small_horizon(tmp_path, K) as c:   # reopen: snapshot + replay
        assert c.store.stats()["snapshot_seq"] > 0
        assert _undo_state(c, keys) == live
    import shutil
    shutil.rmtree(tmp_path / "store" / "snapshots")
    with open_small_horizon(tmp_path, K) as c:   # and a full replay, no snapshot
        assert c.store.stats()["snapshot_seq"] == 0
        assert _undo_state(c, keys) == live
        c.redo()                                  # the last undo overall is still redoable
        assert c.title(keys[1]) == "edited again"


def test_default_catalog_keeps_undo_for_ten_thousand_items(tmp_path) -> None:
    from projections.media import UNDO_HORIZON
    assert UNDO_HORIZON == 10_000
    with open_cat(tmp_path) as c:
        assert c.projection.undo_horizon == UNDO_HORIZON
