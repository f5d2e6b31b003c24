"""Undo and redo of renames and forgets (SPEC §3: undo reverts "the last
change of that item, or the last commit overall"; a rename or a forget is
such a change), and history after them: one item's lineage only."""
from __future__ import annotations

import shutil

import pytest

from _cat import open_cat
from projections import MediaCatalog, UndoError
from test_cli_helpers import run, run_json


def _state(cat: MediaCatalog) -> dict:
    return {k: (r.title, r.description) for k, r in cat.items()}


# ------------------------------------------------------------------- rename

def test_undo_right_after_a_rename_reverts_the_rename(cat: MediaCatalog) -> None:
    cat.set_title("/m/x.mp4", "X title")
    cat.rename("/m/x.mp4", "/m/z.mp4")
    before = list(cat.store.read())
    events = cat.undo()
    assert [(e.type, e.key, e.data) for e in events] == [
        ("media.renamed", "/m/z.mp4", {"to": "/m/x.mp4"}),
        ("media.renamed", "/m/x.mp4", {"from": "/m/z.mp4"})]
    assert all(e.meta["undo_of"] == before[1].seq for e in events)
    assert _state(cat) == {"/m/x.mp4": ("X title", "")}
    assert list(cat.store.read(1, len(before) + 1)) == before          # history never rewritten
    cat.redo()
    assert _state(cat) == {"/m/z.mp4": ("X title", "")}
    cat.undo()
    cat.undo()                                                          # then the title
    assert _state(cat) == {}
    assert cat.undo() == []


def test_undo_of_the_renamed_item_reverts_the_rename_then_its_edits(cat: MediaCatalog) -> None:
    cat.set_title("/m/a", "one")
    cat.set_title("/m/a", "two")
    cat.rename("/m/a", "/m/b")
    cat.set_description("/m/b", "desc at b")
    cat.undo("/m/b")
    assert _state(cat) == {"/m/b": ("two", "")}
    cat.undo("/m/b")
    assert _state(cat) == {"/m/a": ("two", "")}
    assert cat.undo("/m/b") == []                  # the item and its undo are back at /m/a
    cat.undo("/m/a")
    assert _state(cat) == {"/m/a": ("one", "")}
    cat.redo("/m/a")
    cat.redo("/m/a")                               # the rename again
    assert _state(cat) == {"/m/b": ("two", "")}
    cat.redo("/m/b")
    assert _state(cat) == {"/m/b": ("two", "desc at b")}


def test_undo_of_a_rename_refuses_when_the_old_key_is_live_again(cat: MediaCatalog) -> None:
    cat.set_title("/m/x", "X")
    cat.rename("/m/x", "/m/z")
    cat.set_title("/m/x", "a new item at x")
    seq = cat.store.last_seq
    with pytest.raises(UndoError, match="/m/x"):
        cat.undo("/m/z")
    assert cat.store.last_seq == seq               # nothing written
    assert _state(cat) == {"/m/x": ("a new item at x", ""), "/m/z": ("X", "")}
    cat.undo()                                     # the last commit overall is the new item
    assert _state(cat) == {"/m/z": ("X", "")}
    cat.undo()                                     # now the rename can go
    assert _state(cat) == {"/m/x": ("X", "")}


def test_redo_of_a_rename_refuses_when_the_new_key_is_taken(cat: MediaCatalog) -> None:
    cat.set_title("/m/x", "X")
    cat.rename("/m/x", "/m/z")
    cat.undo()
    cat.set_title("/m/z", "someone else")
    with pytest.raises(UndoError, match="/m/z"):
        cat.redo("/m/x")
    with pytest.raises(UndoError):
        cat.redo()
    assert _state(cat) == {"/m/x": ("X", ""), "/m/z": ("someone else", "")}


def test_a_rename_clears_the_items_redo(cat: MediaCatalog) -> None:
    cat.set_title("/m/a", "one")
    cat.set_title("/m/a", "two")
    cat.undo()
    cat.rename("/m/a", "/m/b")                     # a new change: nothing left to redo
    assert cat.redo("/m/b") == [] and cat.redo() == []
    assert _state(cat) == {"/m/b": ("one", "")}


def test_rename_undo_survives_reopen_and_snapshots(tmp_path) -> None:
    with open_cat(tmp_path, snapshot_every=2) as c:
        c.set_title("/m/a", "A")
        c.rename("/m/a", "/m/b")
        c.set_title("/m/c", "C")
        c.rename("/m/c", "/m/d")
        c.undo()                                   # d back to c
        undo_state = (c.projection.snapshot(), _state(c))
    for drop_snapshots in (False, True):
        if drop_snapshots:
            shutil.rmtree(tmp_path / "store" / "snapshots", ignore_errors=True)
        with open_cat(tmp_path) as c:
            assert (c.stats()["snapshot_seq"] > 0) is not drop_snapshots   # restored, or replayed
            assert (c.projection.snapshot(), _state(c)) == undo_state
    with open_cat(tmp_path) as c:
        c.redo()
        assert _state(c) == {"/m/b": ("A", ""), "/m/d": ("C", "")}
        c.undo()
        c.undo()                                   # the C title
        c.undo()                                   # b back to a
        assert _state(c) == {"/m/a": ("A", "")}


# ------------------------------------------------------------------- forget

def test_undo_after_forget_restores_the_item(cat: MediaCatalog) -> None:
    cat.set_title("/m/a", "A")
    cat.set_title("/m/b", "B")
    cat.set_description("/m/b", "bee")
    cat.forget("/m/b")
    events = cat.undo()
    assert events and {e.key for e in events} == {"/m/b"}
    assert _state(cat) == {"/m/a": ("A", ""), "/m/b": ("B", "bee")}
    cat.redo()                                     # a forget again
    assert _state(cat) == {"/m/a": ("A", "")}
    assert cat.store.read(cat.store.last_seq).__next__().type == "media.forgotten"
    cat.undo("/m/b")
    assert _state(cat) == {"/m/a": ("A", ""), "/m/b": ("B", "bee")}
    cat.undo("/m/b")                               # earlier edits are still undoable
    assert _state(cat) == {"/m/a": ("A", ""), "/m/b": ("B", "")}


def test_undo_after_cleanup_missing_restores_every_item(cat: MediaCatalog, tmp_path) -> None:
    files = [tmp_path / f"{n}.mp4" for n in "abc"]
    for f in files:
        f.write_bytes(b"x")
        cat.set_title(f, f.name)
    files[0].unlink()
    files[2].unlink()
    cat.path_checker.invalidate(str(files[0]))
    cat.path_checker.invalidate(str(files[2]))
    assert len(cat.cleanup_missing()) == 2 and len(cat) == 1
    cat.undo()                                     # one commit, one undo step
    assert len(cat) == 3 and cat.title(files[2]) == "c.mp4"


# ------------------------------------------------------------------ history

def test_history_after_undoing_a_rename_lists_each_change_once(cat: MediaCatalog) -> None:
    cat.set_title("/m/x", "X")
    cat.rename("/m/x", "/m/z")
    cat.undo()
    cat.redo()
    hist = [(c.field, c.old, c.new) for c in cat.history("/m/z")]
    assert hist == [("title", "", "X"), ("key", "/m/x", "/m/z"), ("key", "/m/z", "/m/x"),
                    ("key", "/m/x", "/m/z")]
    seqs = [c.seq for c in cat.history("/m/z")]
    assert seqs == sorted(set(seqs))


def test_rename_onto_a_key_with_history_shows_only_the_renamed_items_lineage(
        cat: MediaCatalog) -> None:
    cat.set_title("/m/c", "old c")
    cat.set_title("/m/a", "a1")
    cat.set_description("/m/c", "old c desc")
    cat.forget("/m/c")
    cat.set_title("/m/a", "a2")
    cat.rename("/m/a", "/m/c")
    assert [(c.field, c.old, c.new) for c in cat.history("/m/c")] == [
        ("title", "", "a1"), ("title", "a1", "a2"), ("key", "/m/a", "/m/c")]


def test_a_key_reused_after_its_item_moved_away_has_a_history_of_its_own(
        cat: MediaCatalog) -> None:
    cat.set_title("/m/x", "X")
    cat.rename("/m/x", "/m/z")
    cat.set_title("/m/x", "new x")
    assert [(c.field, c.old, c.new) for c in cat.history("/m/x")] == [("title", "", "new x")]
    assert [(c.field, c.old, c.new) for c in cat.history("/m/z")] == [
        ("title", "", "X"), ("key", "/m/x", "/m/z")]


# ---------------------------------------------------------------------- CLI

def test_cli_undo_redo_of_a_rename_and_a_refusal(tmp_path) -> None:
    store = tmp_path / "store"
    with open_cat(tmp_path) as c:
        c.set_title("/m/x.mp4", "X title")
        c.rename("/m/x.mp4", "/m/z.mp4")
    out = run_json("undo", store=store)
    assert out["changed"] and out["undo"][0]["data"] == {"to": "/m/x.mp4"}
    human = run("redo", store=store)
    assert human.returncode == 0 and "/m/z.mp4" in human.stdout, human
    assert run_json("get", "/m/z.mp4", store=store)["title"] == "X title"
    hist = run_json("history", "/m/z.mp4", store=store)["changes"]
    assert [(c["field"], c["new"]) for c in hist] == [
        ("title", "X title"), ("key", "/m/z.mp4"), ("key", "/m/x.mp4"), ("key", "/m/z.mp4")]
    with open_cat(tmp_path) as c:
        c.set_title("/m/x.mp4", "another")
    refused = run("undo", "/m/z.mp4", store=store)
    assert refused.returncode == 1 and "/m/x.mp4" in refused.stderr, refused
    assert "Traceback" not in refused.stderr
