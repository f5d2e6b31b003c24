"""history(): the audit trail of one item, oldest first, renames followed."""
from __future__ import annotations

import pathlib

import pytest

from projections import Change, MediaCatalog



def test_history_records_old_new_actor_reason(cat: MediaCatalog) -> None:
    e1 = cat.set_title("/m/a", "one", reason="upload")
    cat.set_description("/m/a", "desc")
    e3 = cat.set_title("/m/a", "two", reason="typo")
    hist = cat.history("/m/a")
    assert all(isinstance(c, Change) for c in hist)
    assert [(c.field, c.old, c.new, c.actor, c.reason) for c in hist] == [
        ("title", "", "one", "alice", "upload"),
        ("description", "", "desc", "alice", None),
        ("title", "one", "two", "alice", "typo")]
    assert hist[0].seq == e1.seq and hist[-1].seq == e3.seq
    assert hist[0].time == pytest.approx(e1.ts / 1e9)
    assert cat.history("/m/nothing") == []


def test_history_follows_renames(cat: MediaCatalog) -> None:
    cat.set_title("/m/a", "one")
    cat.set_title("/m/other", "x")
    cat.rename("/m/a", "/m/b", reason="moved")
    cat.set_title("/m/b", "two")
    cat.rename("/m/b", "/m/c")
    hist = cat.history("/m/c")
    assert [(c.field, c.old, c.new) for c in hist] == [
        ("title", "", "one"), ("key", "/m/a", "/m/b"), ("title", "one", "two"),
        ("key", "/m/b", "/m/c")]
    assert hist[1].reason == "moved"
    # the old key still tells where the item went
    assert [(c.field, c.old, c.new) for c in cat.history("/m/a")][-1] == ("key", "/m/a", "/m/b")


def test_history_shows_forget_and_a_new_life(cat: MediaCatalog) -> None:
    cat.set_title("/m/a", "one")
    cat.forget("/m/a", reason="gone")
    cat.set_title("/m/a", "again")
    assert [(c.field, c.old, c.new, c.reason) for c in cat.history("/m/a")] == [
        ("title", "", "one", None), ("key", "/m/a", None, "gone"), ("title", "", "again", None)]


def test_rename_onto_a_forgotten_key_shows_only_the_renamed_items_lineage(
        cat: MediaCatalog) -> None:
    cat.set_title("/m/b", "old b")
    cat.forget("/m/b")
    cat.set_title("/m/a", "a")
    cat.rename("/m/a", "/m/b")
    assert [(c.field, c.new) for c in cat.history("/m/b")] == [("title", "a"), ("key", "/m/b")]
    # the earlier item at /m/b is still in the log
    assert [e.type for e in cat.store.read(key="/m/b")][:2] == ["title.set", "media.forgotten"]


def test_undo_and_batch_show_in_history(cat: MediaCatalog) -> None:
    cat.set_title("/m/a", "one")
    with cat.batch():
        cat.set_title("/m/a", "two")
        cat.set_title("/m/a", "three")               # only the final value is committed
    cat.undo()
    assert [(c.old, c.new) for c in cat.history("/m/a")] == [
        ("", "one"), ("one", "three"), ("three", "one")]
