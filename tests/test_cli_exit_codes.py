"""Every documented exit code of `metalog`, provoked for real (SPEC §6):
0 ok, 1 problems found, 2 usage, 3 locked (names the pid), 4 corruption
(names file and offset). No traceback reaches the user in any of them.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import eventstore
from test_cli_helpers import fill, flip_first_frame, ok, plain_segments, run, run_json


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "store"
    fill(path, [(f"/media/{i}.mp4", f"title {i}") for i in range(6)])
    return path


def assert_clean(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout


# ------------------------------------------------------------------ 2: usage


@pytest.mark.parametrize("argv", [
    [],                                  # no command
    ["frobnicate"],                      # unknown command
    ["diff", "not-a-seq"],               # bad argument type
    ["log", "--from", "-3"],             # negative seq
    ["state-at"],                        # needs SEQ or --time
    ["state-at", "3", "--time", "now"],  # not both
    ["log", "--since", "yesterday-ish"], # unparseable time
    ["set-title", "a.mp4"],              # missing TITLE
    ["log", "--key", ""],                # an empty key (was taken as no filter)
    ["export", "--key", ""],
    ["log", "--limit", "-1"],            # a negative count
    ["tail", "-n", "-3"],
])
def test_usage_errors_exit_2(store: Path, argv: list[str]) -> None:
    proc = run(*argv, store=store)
    assert proc.returncode == 2, proc
    assert proc.stderr.strip()
    assert_clean(proc)
    if argv:
        err = run_json(*argv, store=store, code=2)["error"]
        assert err["exit_code"] == 2 and err["message"]
    if argv[-2:-1] in (["--limit"], ["-n"]):   # says what the number is, not "a seq"
        assert "a number of events must be >= 0" in proc.stderr, proc.stderr


def test_missing_store_is_a_usage_error(tmp_path: Path) -> None:
    proc = run("ls", store=tmp_path / "nope")
    assert proc.returncode == 2
    assert "no metalog store" in proc.stderr and "init" in proc.stderr
    assert not (tmp_path / "nope").exists()       # read commands never create
    assert_clean(proc)


def test_foreign_directory_is_refused_untouched(tmp_path: Path) -> None:
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"\xff\xd8")
    proc = run("init", store=foreign)
    assert proc.returncode == 2
    assert sorted(p.name for p in foreign.iterdir()) == ["holiday.jpg"]
    err = run_json("init", store=foreign, code=2)["error"]
    assert err["kind"] == "not-a-store"


def test_only_init_creates_a_store(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    for argv in (["set-title", "a.mp4", "x"], ["ls"], ["compact"], ["log"]):
        proc = run(*argv, store=empty)
        assert proc.returncode == 2 and "init" in proc.stderr, (argv, proc)
    assert list(empty.iterdir()) == []
    ok("init", store=empty)
    assert run_json("ls", store=empty)["count"] == 0


def test_invalid_value_is_a_usage_error(store: Path) -> None:
    proc = run("set-title", "a.mp4", "-", store=store, input="x" * (2 << 20))  # > 1 MiB
    assert proc.returncode == 2, proc
    assert_clean(proc)


def test_import_of_missing_file_is_a_usage_error(store: Path, tmp_path: Path) -> None:
    proc = run("import-json", str(tmp_path / "missing.json"), store=store)
    assert proc.returncode == 2 and "no such file" in proc.stderr


def test_import_of_a_directory_says_it_is_a_directory(store: Path, tmp_path: Path) -> None:
    """`import-json .` says the path is a directory, not "no such file"."""
    events = run_json("stats", store=store)["events"]
    proc = run("import-json", ".", store=store, cwd=tmp_path)
    assert proc.returncode == 2, proc
    assert "directory" in proc.stderr and "no such file" not in proc.stderr, proc.stderr
    assert_clean(proc)
    err = run_json("import-json", ".", store=store, cwd=tmp_path, code=2)["error"]
    assert err["kind"] == "usage" and "directory" in err["message"]
    assert run_json("stats", store=store)["events"] == events      # nothing written


# ---------------------------------------------------------- 1: problems found


def test_get_of_unknown_item_exits_1(store: Path) -> None:
    proc = run("get", "/media/unknown.mp4", store=store)
    assert proc.returncode == 1 and "no media item" in proc.stderr
    assert run_json("get", "/media/unknown.mp4", store=store, code=1)["found"] is False


def test_verify_finding_a_damaged_snapshot_exits_1(store: Path) -> None:
    ok("snapshot", store=store)
    snaps = sorted((store / "snapshots").glob("*.snap"))
    assert snaps
    data = bytearray(snaps[-1].read_bytes())
    data[len(data) // 2 + 20] ^= 0x40               # flip one bit inside the body
    snaps[-1].write_bytes(bytes(data))

    proc = run("verify", store=store)
    assert proc.returncode == 1, proc
    assert snaps[-1].name in proc.stdout
    report = run_json("verify", store=store, code=1)
    assert report["ok"] is False and report["problems"]
    assert any(snaps[-1].name in p["message"] for p in report["problems"])
    # the state is still right: the damaged snapshot is skipped, the log replayed
    assert run_json("get", "/media/5.mp4", store=store)["title"] == "title 5"


# ---------------------------------------------------- 3: locked (never, beside a writer)


HOLDER = textwrap.dedent("""
    import sys, eventstore
    store = eventstore.open(sys.argv[1])
    print("ready", flush=True)
    sys.stdin.read()
    store.close()
""")


def test_a_write_beside_an_app_that_holds_the_store_open_succeeds(store: Path) -> None:
    """Exit 3 is for a lock that cannot be shared; the commit lock is held per group
    commit, so an app holding the store open never refuses the command line."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(store)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        proc = run("set-title", "/media/0.mp4", "new", store=store)
        assert proc.returncode == 0, proc
        assert_clean(proc)
        assert run_json("compact", store=store)["after"]["last_seq"] >= 1
        assert run_json("get", "/media/0.mp4", store=store)["title"] == "new"
        assert run_json("verify", store=store)["ok"] is True
    finally:
        holder.communicate("", timeout=10)


def test_a_write_beside_an_exclusive_writer_exits_3_naming_its_pid(store: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER.replace("open(sys.argv[1])",
                                                                    "open(sys.argv[1], exclusive=True)"),
                               str(store)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        proc = run("set-title", "/media/0.mp4", "new", store=store)
        assert proc.returncode == 3, proc
        assert str(holder.pid) in proc.stderr and "locked" in proc.stderr
        assert_clean(proc)
        err = run_json("compact", store=store, code=3)["error"]
        assert err["kind"] == "locked" and err["pid"] == holder.pid
        assert run_json("get", "/media/0.mp4", store=store)["title"] == "title 0"  # readers work
    finally:
        holder.communicate("", timeout=10)


# ------------------------------------------------------------ 4: corruption


@pytest.mark.parametrize("command", [["get", "/media/1.mp4"], ["ls"], ["log"],
                                     ["set-title", "/media/1.mp4", "x"], ["export"]])
def test_corrupted_segment_exits_4_naming_file_and_offset(store: Path, command: list[str]) -> None:
    segment, offset = flip_first_frame(store)
    proc = run(*command, store=store)
    assert proc.returncode == 4, proc
    assert segment.name in proc.stderr and f"offset {offset}" in proc.stderr
    assert "recover --salvage" in proc.stderr
    assert_clean(proc)


def test_verify_lists_a_corrupted_segment_and_exits_1(store: Path) -> None:
    """verify opens past the damage (read-only salvage) and reports it as a problem."""
    segment, offset = flip_first_frame(store)
    before = segment.read_bytes()
    doc = run_json("verify", store=store, code=1)
    assert doc["ok"] is False
    assert any(p["file"].endswith(segment.name) and p["offset"] == offset for p in doc["problems"]), doc
    assert segment.read_bytes() == before  # verify never writes
    proc = run("verify", store=store)
    assert proc.returncode == 1 and segment.name in proc.stdout + proc.stderr
    assert_clean(proc)


def test_corruption_json_error_has_fields(store: Path) -> None:
    segment, offset = flip_first_frame(store)
    err = run_json("ls", store=store, code=4)["error"]
    assert err["kind"] == "corruption"
    assert Path(err["file"]).name == segment.name and err["offset"] == offset


def test_recover_salvage_keeps_intact_events(store: Path) -> None:
    flip_first_frame(store)
    assert run("recover", store=store).returncode == 4        # strict refuses
    out = run_json("recover", "--salvage", store=store)
    assert out["ok"] is True and out["repaired"] is True
    assert (store / "quarantine").is_dir()
    titles = {i["key"]: i["title"] for i in run_json("ls", store=store)["items"]}
    assert "/media/0.mp4" not in titles                       # the damaged commit
    assert titles["/media/5.mp4"] == "title 5"                # everything after it
    assert run_json("verify", store=store)["ok"] is True


# ------------------------------------------------------------- torn tail: 0


def test_verify_reports_a_torn_tail_and_recover_repairs_it(store: Path) -> None:
    segment = plain_segments(store)[-1]
    with open(segment, "r+b") as f:
        f.truncate(segment.stat().st_size - 5)
    proc = run("verify", store=store)                           # read-only: reports, repairs nothing
    assert proc.returncode == 1 and "torn" in proc.stdout and "metalog recover" in proc.stderr
    assert run_json("ls", store=store)["count"] == 5            # readers see the intact prefix
    assert run_json("recover", store=store)["ok"] is True
    assert run("verify", store=store).returncode == 0


def test_torn_tail_is_repaired_by_recover(store: Path) -> None:
    segment = plain_segments(store)[-1]
    size = segment.stat().st_size
    with open(segment, "r+b") as f:
        f.truncate(size - 5)                                   # cut the last frame short
    out = run_json("recover", store=store)
    assert out["ok"] is True and out["repaired"] is True
    assert out["report"]
    assert list((store / "quarantine").iterdir())
    with eventstore.open(str(store), readonly=True) as s:
        assert s.last_seq == 5                                  # only the torn commit is gone
    again = run_json("recover", store=store)
    assert again["repaired"] is False
    assert "nothing to repair" in ok("recover", store=store)


def test_export_after_recovery_round_trips(store: Path, tmp_path: Path) -> None:
    target = tmp_path / "all.jsonl"
    ok("export", "-o", str(target), store=store)
    events = [json.loads(line) for line in target.read_text().splitlines()]
    with eventstore.open(str(store), readonly=True) as s:
        expected = [(e.seq, e.key, e.data) for e in s.read()]
    assert [(e["seq"], e["key"], e["data"]) for e in events] == expected
