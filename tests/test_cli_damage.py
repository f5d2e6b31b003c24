"""The command on a store that an open repaired or that is damaged: a writer's repair is told in one line on stderr; read-only
commands show what is intact, name the damage and `recover --salvage` on
stderr and exit 4; `verify` says what it found, not a salvage it never ran,
and names the media items of lost events where a snapshot still counts them.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from projections import MediaCatalog
from test_cli_helpers import fill, flip_first_frame, ok, run, run_json, tear_tail

ITEMS = [(f"/media/{i}.mp4", f"title {i}") for i in range(6)]


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "store"
    fill(path, ITEMS)
    return path


def stderr_lines(text: str, word: str) -> list[str]:
    return [line for line in text.splitlines() if word in line]


# ------------------------------------------------------------ 13: repairs told


def test_a_write_whose_open_cuts_a_torn_tail_says_so_in_one_line(store: Path) -> None:
    segment = tear_tail(store)
    proc = run("set-title", "/media/9.mp4", "after the crash", store=store)
    assert proc.returncode == 0, proc
    told = stderr_lines(proc.stderr, "repaired")
    assert len(told) == 1, proc.stderr
    quarantined = [p.name for p in (store / "quarantine").iterdir()]
    assert len(quarantined) == 1
    line = told[0]
    assert "torn tail" in line and segment.name in line and quarantined[0] in line, line
    assert "offset" in line and "bytes" in line
    again = run("set-title", "/media/9.mp4", "and again", store=store)   # nothing left to repair
    assert again.returncode == 0 and again.stderr == ""


def test_a_read_only_command_repairs_nothing_and_tells_nothing(store: Path) -> None:
    """A reader must not cut a tail (a writer may be mid-commit there): no notice, no change."""
    segment = tear_tail(store)
    size = segment.stat().st_size
    proc = run("ls", store=store)
    assert proc.returncode == 0 and proc.stderr == "", proc
    assert segment.stat().st_size == size and not (store / "quarantine").exists()


# -------------------------------------------------- 14: damage, read-only commands


@pytest.mark.parametrize("command, shown", [
    (["ls"], "title 5"),
    (["get", "/media/3.mp4"], "title 3"),
    (["history", "/media/3.mp4"], "'title 3'"),
    (["log"], "title='title 5'"),
    (["export"], '"value":"title 5"'),
])
def test_read_only_commands_show_what_is_intact_then_exit_4(
        store: Path, command: list[str], shown: str) -> None:
    segment, offset = flip_first_frame(store)
    before = segment.read_bytes()
    proc = run(*command, store=store)
    assert proc.returncode == 4, proc
    assert shown in proc.stdout, proc.stdout           # what is intact is shown...
    assert "title 0" not in proc.stdout                # ...and the lost commit is not invented
    assert segment.name in proc.stderr and f"offset {offset}" in proc.stderr
    assert "seq 1 lost" in proc.stderr and "recover --salvage" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert segment.read_bytes() == before and not (store / "quarantine").exists()  # read-only


def test_json_listing_of_a_damaged_store_carries_items_and_the_error(store: Path) -> None:
    segment, offset = flip_first_frame(store)
    doc = run_json("ls", store=store, code=4)
    assert [i["key"] for i in doc["items"]] == [key for key, _ in ITEMS[1:]]
    error = doc["error"]
    assert error["kind"] == "corruption" and error["exit_code"] == 4
    assert Path(error["file"]).name == segment.name and error["offset"] == offset
    assert error["damage"][0]["lost"] == [1, 1]


def test_json_log_of_a_damaged_store_ends_with_an_error_line(store: Path) -> None:
    flip_first_frame(store)
    proc = run("--json", "log", store=store)
    assert proc.returncode == 4
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [e["seq"] for e in lines[:-1]] == [2, 3, 4, 5, 6]
    assert lines[-1]["error"]["kind"] == "corruption"


def test_export_of_a_damaged_store_stays_pure_event_lines(store: Path, tmp_path: Path) -> None:
    """The export stream is data: the damage is told on stderr, never inside it."""
    flip_first_frame(store)
    proc = run("--json", "export", store=store)
    assert proc.returncode == 4
    assert all("error" not in json.loads(line) for line in proc.stdout.splitlines())
    target = tmp_path / "intact.jsonl"
    assert run("export", "-o", str(target), store=store).returncode == 4
    assert [json.loads(line)["seq"] for line in target.read_text().splitlines()] == [2, 3, 4, 5, 6]


def damaged_before_a_snapshot(store: Path) -> None:
    """The first commit (/media/0.mp4) is damaged; a snapshot taken before the
    damage still counts it, and two commits follow the snapshot."""
    with MediaCatalog.open(store) as cat:
        cat.snapshot()
    fill(store, [("/media/6.mp4", "title 6"), ("/media/7.mp4", "title 7")])
    flip_first_frame(store)


def test_verify_names_what_it_found_not_a_salvage_it_did_not_run(store: Path) -> None:
    damaged_before_a_snapshot(store)
    proc = run("verify", store=store)
    assert proc.returncode == 1, proc
    assert "salvage recovery" not in proc.stdout + proc.stderr       # it ran none
    assert "seq 1 lost" in proc.stdout
    assert "lost events of: /media/0.mp4 (1 event)" in proc.stdout, proc.stdout
    doc = run_json("verify", store=store, code=1)
    assert doc["lost_items"] == {"/media/0.mp4": 1}


def test_history_past_damage_names_the_lost_item(store: Path) -> None:
    damaged_before_a_snapshot(store)
    proc = run("history", "/media/0.mp4", store=store)
    assert proc.returncode == 4, proc
    assert "/media/0.mp4 (1 event)" in proc.stderr, proc.stderr
    # the state itself is whole: the snapshot holds what the damaged commit did
    assert "title 0" in ok("get", "/media/0.mp4", store=store)
