"""Commands a user reaches for, and results that agree with each other:
unknown items exit 1 everywhere, out-of-range
seqs and bad actors are refused, `demo` never touches `--store`; `rename`,
`forget`/`delete` (events, undoable), `restore` from an export into a new
store (read back equal), and clearing an item's last field is refused.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import eventstore
from projections import MediaCatalog
from test_cli_helpers import cli_env, flip_first_frame, ok, run, run_json


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "store"
    with MediaCatalog.open(path, actor="tester") as cat:
        cat.set_title("/m/a.mp4", "Alpha")
        cat.set_description("/m/a.mp4", "first")
        cat.set_title("/m/b.mp4", "Beta")
    return path


def events_of(store: Path) -> list[tuple]:
    with eventstore.open(str(store), readonly=True) as s:
        return [(e.type, e.key, e.data, e.meta) for e in s.read()]


# ------------------------------------------------------------ 15: consistent


@pytest.mark.parametrize("command", [["get"], ["history"], ["undo"], ["redo"], ["forget"],
                                     ["delete"]])
def test_an_unknown_item_exits_1_for_every_command(store: Path, command: list[str]) -> None:
    before = events_of(store)
    proc = run(*command, "/m/never.mp4", store=store)
    assert proc.returncode == 1, proc
    assert "no media item /m/never.mp4" in proc.stderr
    assert run_json(*command, "/m/never.mp4", store=store, code=1)["found"] is False
    assert events_of(store) == before


def test_a_known_item_with_nothing_to_undo_is_not_unknown(store: Path) -> None:
    assert "nothing to redo" in ok("redo", "/m/a.mp4", store=store)


@pytest.mark.parametrize("argv", [["diff", "1", "99"], ["diff", "50"], ["diff", "50", "1"]])
def test_diff_past_the_last_seq_is_an_error(store: Path, argv: list[str]) -> None:
    proc = run(*argv, store=store)
    assert proc.returncode == 2, proc
    assert "past the last seq of the store (3)" in proc.stderr
    assert run_json("diff", "1", "3", store=store)["b"] == 3          # the last seq itself is fine


@pytest.mark.parametrize("actor", ["", "   ", "alice\nbob", "eve\rcarol", "x\x1b[2J"])
def test_an_empty_or_multi_line_actor_is_refused(store: Path, actor: str) -> None:
    before = events_of(store)
    proc = run("--actor", actor, "set-title", "/m/a.mp4", "New", store=store)
    assert proc.returncode == 2, proc
    assert "actor" in proc.stderr
    from_env = actor if actor.strip() else "\n"       # an empty $METALOG_ACTOR means unset
    env_proc = run("set-title", "/m/a.mp4", "New", store=store, env=cli_env(METALOG_ACTOR=from_env))
    assert env_proc.returncode == 2, env_proc
    assert events_of(store) == before


def test_demo_refuses_store_instead_of_ignoring_it(tmp_path: Path) -> None:
    target = tmp_path / "mine"
    for argv in (["--store", str(target), "demo"], ["demo", "--store", str(target)]):
        proc = run(*argv)
        assert proc.returncode == 2, proc
        assert "--dir" in proc.stderr
    assert not target.exists()


# ---------------------------------------------------------- 16: rename, forget


def test_rename_moves_the_item_with_its_history_and_undo_moves_it_back(store: Path) -> None:
    out = run_json("rename", "/m/a.mp4", "/m/z.mp4", "-m", "moved on disk", store=store)
    assert out["changed"] and out["from"] == "/m/a.mp4" and out["to"] == "/m/z.mp4"
    assert run("get", "/m/a.mp4", store=store).returncode == 1
    moved = run_json("get", "/m/z.mp4", store=store)
    assert (moved["title"], moved["description"]) == ("Alpha", "first")
    fields = [c["field"] for c in run_json("history", "/m/z.mp4", store=store)["changes"]]
    assert fields == ["title", "description", "key"]
    ok("undo", "/m/z.mp4", store=store)
    assert run_json("get", "/m/a.mp4", store=store)["title"] == "Alpha"


def test_rename_onto_an_item_or_from_nothing_is_refused(store: Path) -> None:
    before = events_of(store)
    onto = run("rename", "/m/a.mp4", "/m/b.mp4", store=store)
    assert onto.returncode == 1 and "/m/b.mp4 already has metadata" in onto.stderr
    err = run_json("rename", "/m/a.mp4", "/m/b.mp4", store=store, code=1)["error"]
    assert err["kind"] == "target-exists" and err["key"] == "/m/b.mp4"
    assert run("rename", "/m/none.mp4", "/m/c.mp4", store=store).returncode == 1
    assert events_of(store) == before


@pytest.mark.parametrize("verb", ["forget", "delete"])
def test_forget_and_delete_are_one_undoable_event(store: Path, verb: str) -> None:
    out = run_json(verb, "/m/a.mp4", "-m", "file gone", store=store)
    assert out["forgotten"] and out["seq"] == 4
    assert events_of(store)[-1][:3] == ("media.forgotten", "/m/a.mp4", {})
    assert events_of(store)[-1][3]["reason"] == "file gone"
    assert run("get", "/m/a.mp4", store=store).returncode == 1
    assert [i["key"] for i in run_json("ls", store=store)["items"]] == ["/m/b.mp4"]
    assert run_json("history", "/m/a.mp4", store=store)["changes"][-1]["field"] == "key"
    ok("undo", "/m/a.mp4", store=store)
    back = run_json("get", "/m/a.mp4", store=store)
    assert (back["title"], back["description"]) == ("Alpha", "first")


def test_delete_says_it_is_forget(capsys: pytest.CaptureFixture[str]) -> None:
    from projections.cli import main
    assert main(["delete", "--help"]) == 0
    page = capsys.readouterr().out
    assert "another name for `forget`" in page and "examples:" in page


def test_clearing_the_last_field_is_refused_so_the_item_cannot_vanish(store: Path) -> None:
    """`set-title K ""` on an item without a description is refused: it would end the
    item silently (`get` saying "no media item" while `history` shows it); `forget` is
    the way to end one."""
    before = events_of(store)
    proc = run("set-title", "/m/b.mp4", "", store=store)
    assert proc.returncode == 2, proc
    assert "forget" in proc.stderr
    assert run_json("get", "/m/b.mp4", store=store)["title"] == "Beta"
    assert events_of(store) == before
    ok("set-description", "/m/a.mp4", "", store=store)      # a field another one outlives: fine
    assert run_json("get", "/m/a.mp4", store=store)["title"] == "Alpha"


# ------------------------------------------------------------------ 16: restore


def test_restore_writes_an_export_into_a_new_store_read_back_equal(store: Path,
                                                                   tmp_path: Path) -> None:
    ok("undo", "/m/a.mp4", store=store)
    ok("rename", "/m/b.mp4", "/m/c.mp4", store=store)
    export = tmp_path / "all.jsonl"
    ok("export", "-o", str(export), store=store)
    copy = tmp_path / "copy"
    out = run_json("restore", str(export), store=copy)
    assert out["equal"] is True and out["events"] == 6 and out["seq_map"] == []
    assert events_of(copy) == events_of(store)
    assert run_json("ls", store=copy)["items"][0]["key"] == "/m/a.mp4"
    assert run_json("verify", store=copy)["ok"] is True
    # undo works in the copy as in the original: the commits and their links were kept
    assert run_json("redo", "/m/a.mp4", store=copy)["changed"] is True


def test_restore_reads_stdin(store: Path, tmp_path: Path) -> None:
    export = ok("export", store=store)
    out = run_json("restore", "-", store=tmp_path / "copy", input=export)
    assert out["equal"] and events_of(tmp_path / "copy") == events_of(store)


def test_restore_refuses_a_store_that_holds_events(store: Path, tmp_path: Path) -> None:
    export = tmp_path / "all.jsonl"
    ok("export", "-o", str(export), store=store)
    before = events_of(store)
    proc = run("restore", str(export), store=store)
    assert proc.returncode == 2 and "already holds 3 events" in proc.stderr
    assert events_of(store) == before
    empty = tmp_path / "empty"
    ok("init", store=empty)                                   # an empty store is fine
    assert run_json("restore", str(export), store=empty)["equal"] is True


def test_restore_refuses_a_bad_export_before_writing(store: Path, tmp_path: Path) -> None:
    export = tmp_path / "bad.jsonl"
    good = ok("export", store=store).splitlines()
    export.write_text("\n".join([good[0], good[2], good[1]]) + "\n")      # out of order
    target = tmp_path / "copy"
    proc = run("restore", str(export), store=target)
    assert proc.returncode == 2 and "line 3" in proc.stderr, proc
    assert not target.exists()
    export.write_text(good[0] + "\n{not json\n")
    assert run("restore", str(export), store=target).returncode == 2
    assert not target.exists()


def test_restore_of_an_export_with_a_gap_reports_the_seq_mapping(tmp_path: Path) -> None:
    """A salvage lost seq 1; the export holds seqs 2-5; the copy numbers them 1-4, and
    an undo's link to its step follows the new numbering."""
    store = tmp_path / "store"
    with MediaCatalog.open(store, actor="t") as cat:
        cat.set_title("/m/x.mp4", "lost")
        cat.set_title("/m/a.mp4", "One")
        cat.set_title("/m/a.mp4", "Two")
        cat.undo("/m/a.mp4")                                   # undo_of: 3
        cat.set_title("/m/b.mp4", "Bee")
    flip_first_frame(store)
    ok("recover", "--salvage", store=store)
    export = tmp_path / "gap.jsonl"
    ok("export", "-o", str(export), store=store)
    seqs = [json.loads(line)["seq"] for line in export.read_text().splitlines()]
    assert seqs == [2, 3, 4, 5]
    copy = tmp_path / "copy"
    out = run_json("restore", str(export), store=copy)
    assert out["equal"] is True and out["seq_map"] == [[2, 5, 1]]
    assert "export seq 2-5 is now seq 1-4" in ok("restore", str(export), store=tmp_path / "human")
    undo = [e for e in events_of(copy) if "undo_of" in e[3]]
    assert [e[3]["undo_of"] for e in undo] == [2]
    assert run_json("get", "/m/a.mp4", store=copy)["title"] == "One"
    assert run_json("redo", "/m/a.mp4", store=copy)["changed"] is True   # the link still works
    assert run_json("get", "/m/a.mp4", store=copy)["title"] == "Two"
