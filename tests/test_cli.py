"""The `metalog` command, run as a subprocess: every SPEC §6 command, human
and ``--json`` output. Exit codes for failures are in test_cli_exit_codes.py.
"""
from __future__ import annotations

import json
import re
import signal
import subprocess
import time
import unicodedata
from pathlib import Path

import pytest

from projections import MediaCatalog
from projections.cli import main
from test_cli_helpers import METALOG, cli_env, fill, ok, run, run_json, run_jsonl

COMMANDS = ["init", "set-title", "set-description", "get", "ls", "history", "undo",
            "redo", "rename", "forget", "delete", "log", "tail", "state-at", "diff", "stats",
            "verify", "recover", "compact", "snapshot", "export", "restore", "import-json", "demo"]


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "store"
    out = run_json("init", store=path, cwd=tmp_path)
    assert out == {"store": str(path), "created": True, "items": 0, "last_seq": 0}
    return path


def edit(store: Path, cwd: Path, *args: str, actor: str = "tester") -> dict:
    return run_json("--actor", actor, *args, store=store, cwd=cwd)


def test_help_lists_every_command_with_examples(capsys: pytest.CaptureFixture[str]) -> None:
    top = ok("--help")
    assert "exit codes:" in top
    for name in COMMANDS:
        assert name in top
    assert "examples:" in ok("demo", "--help")
    for name in COMMANDS:  # every page, in-process (21 subprocesses would cost 5 s)
        assert main([name, "--help"]) == 0
        page = capsys.readouterr().out
        assert "examples:" in page and f"metalog {name}" in page, name


def test_init_is_idempotent(store: Path, tmp_path: Path) -> None:
    again = run_json("init", store=store)
    assert again["created"] is False
    assert "already exists" in ok("init", store=store)


def test_store_defaults_to_env_then_cwd(tmp_path: Path) -> None:
    ok("init", cwd=tmp_path)
    assert (tmp_path / "metalog-data").is_dir()
    env_store = tmp_path / "from-env"
    ok("init", cwd=tmp_path, env=cli_env(METALOG_STORE=str(env_store)))
    assert env_store.is_dir()


def test_set_get_ls_human_and_json(store: Path, tmp_path: Path) -> None:
    key = str(tmp_path / "clip.mp4")
    out = edit(store, tmp_path, "set-title", "clip.mp4", "Sunset", "--reason", "first cut")
    assert out["key"] == key and out["changed"] is True and out["seq"] == 1
    assert out["actor"] == "tester"
    edit(store, tmp_path, "set-description", "clip.mp4", "From the pier")
    unchanged = edit(store, tmp_path, "set-title", "clip.mp4", "Sunset")
    assert unchanged["changed"] is False and unchanged["seq"] is None

    got = run_json("get", "clip.mp4", store=store, cwd=tmp_path)
    assert got["found"] and got["title"] == "Sunset" and got["description"] == "From the pier"
    assert got["version"] == 2 and got["created"].endswith("Z")
    human = ok("get", key, store=store)
    assert "title:" in human and "Sunset" in human and "From the pier" in human

    listing = run_json("ls", store=store)
    assert listing["count"] == 1 and listing["items"][0]["key"] == key
    table = ok("ls", store=store).splitlines()
    assert table[0].split() == ["KEY", "TITLE", "DESCRIPTION", "VER", "UPDATED"]
    assert table[1].startswith(key) and "Sunset" in table[1]
    assert run_json("ls", str(tmp_path / "elsewhere"), store=store)["count"] == 0


def test_description_from_stdin(store: Path, tmp_path: Path) -> None:
    proc = run("set-description", "a.mp4", "-", store=store, cwd=tmp_path, input="piped\n")
    assert proc.returncode == 0
    assert run_json("get", "a.mp4", store=store, cwd=tmp_path)["description"] == "piped"


def test_history_undo_redo(store: Path, tmp_path: Path) -> None:
    edit(store, tmp_path, "set-title", "a.mp4", "One", actor="alice")
    edit(store, tmp_path, "set-title", "a.mp4", "Two", "-m", "better", actor="bob")
    hist = run_json("history", "a.mp4", store=store, cwd=tmp_path)
    changes = hist["changes"]
    assert [(c["field"], c["old"], c["new"], c["actor"]) for c in changes] == [
        ("title", None, "One", "alice"), ("title", "One", "Two", "bob")] or \
        [(c["new"], c["actor"]) for c in changes] == [("One", "alice"), ("Two", "bob")]
    assert changes[1]["reason"] == "better" and changes[0]["time"].endswith("Z")
    human = ok("history", "a.mp4", store=store, cwd=tmp_path)
    assert "bob" in human and "'One' -> 'Two'" in human

    undone = edit(store, tmp_path, "undo", "a.mp4")
    assert undone["changed"] and undone["undo"][0]["data"] == {"value": "One"}
    assert run_json("get", "a.mp4", store=store, cwd=tmp_path)["title"] == "One"
    redone = edit(store, tmp_path, "redo", "a.mp4")
    assert redone["changed"]
    assert run_json("get", "a.mp4", store=store, cwd=tmp_path)["title"] == "Two"
    assert "undid" in ok("undo", store=store)
    assert "redid" in ok("redo", "a.mp4", store=store, cwd=tmp_path)
    assert "nothing to redo" in ok("redo", "a.mp4", store=store, cwd=tmp_path)


def _populate(store: Path, cwd: Path) -> None:
    """Five title edits by alternating actors, written in-process (the tests
    that use this read them back through the command)."""
    for i, (name, title) in enumerate([("a.mp4", "A1"), ("b.mp4", "B1"), ("a.mp4", "A2"),
                                       ("c.mp4", "C1"), ("b.mp4", "B2")]):
        with MediaCatalog.open(store, actor="alice" if i % 2 else "bob") as cat:
            cat.set_title(cwd / name, title)
        time.sleep(0.005)                 # distinct commit times for --since/--until


def test_log_filters(store: Path, tmp_path: Path) -> None:
    _populate(store, tmp_path)
    edit(store, tmp_path, "set-description", "c.mp4", "desc")
    everything = run_jsonl("log", store=store)
    assert [e["seq"] for e in everything] == [1, 2, 3, 4, 5, 6]
    first = everything[0]
    assert set(first) == {"seq", "ts", "time", "type", "key", "data", "meta"}
    assert first["type"] == "title.set" and first["meta"]["actor"] == "bob"

    assert [e["seq"] for e in run_jsonl("log", "--from", "2", "--to", "4", store=store)] == [2, 3, 4]
    assert [e["seq"] for e in run_jsonl("log", "--key", "a.mp4", store=store,
                                        cwd=tmp_path)] == [1, 3]
    assert [e["seq"] for e in run_jsonl("log", "--type", "description.set",
                                        store=store)] == [6]
    assert [e["seq"] for e in run_jsonl("log", "--limit", "2", store=store)] == [1, 2]
    between = (everything[2]["ts"] + everything[3]["ts"]) / 2 / 1e9   # edits are >= 5 ms apart
    assert [e["seq"] for e in run_jsonl("log", "--since", f"@{between}", store=store)] == [4, 5, 6]
    assert [e["seq"] for e in run_jsonl("log", "--until", f"@{between}", store=store)] == [1, 2, 3]
    assert run_jsonl("log", "--until", "2000-01-01", store=store) == []
    assert len(run_jsonl("log", "--since", "1h", store=store)) == 6

    human = ok("log", store=store).splitlines()
    assert human[0].split()[:4] == ["SEQ", "TIME", "TYPE", "KEY"]
    assert "title='A1'" in human[1] and "by bob" in human[1]


def test_tail_last_events(store: Path, tmp_path: Path) -> None:
    _populate(store, tmp_path)
    assert [e["seq"] for e in run_jsonl("tail", "-n", "2", store=store)] == [4, 5]
    assert len(ok("tail", store=store).splitlines()) == 5


def test_tail_follows_another_writer(store: Path, tmp_path: Path) -> None:
    edit(store, tmp_path, "set-title", "a.mp4", "before")
    follower = subprocess.Popen(METALOG + ["--store", str(store), "--json", "tail", "-f", "-n", "1",
                                           "--timeout", "30"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=cli_env(), cwd=tmp_path)
    try:
        first = json.loads(follower.stdout.readline())
        assert first["seq"] == 1
        edit(store, tmp_path, "set-title", "a.mp4", "live 1")
        edit(store, tmp_path, "set-title", "b.mp4", "live 2")
        seen = [json.loads(follower.stdout.readline()) for _ in range(2)]
        assert [(e["seq"], e["data"]["value"]) for e in seen] == [(2, "live 1"), (3, "live 2")]
    finally:
        follower.send_signal(signal.SIGINT)
        follower.wait(timeout=10)
    assert follower.returncode == 0
    assert "Traceback" not in follower.stderr.read()


def test_tail_follow_timeout_ends(store: Path) -> None:
    start = time.monotonic()
    proc = run("tail", "-f", "--timeout", "0.5", store=store)
    assert proc.returncode == 0 and time.monotonic() - start < 15


def test_state_at_and_diff(store: Path, tmp_path: Path) -> None:
    _populate(store, tmp_path)
    at2 = run_json("state-at", "2", store=store)
    assert {i["key"].rsplit("/", 1)[1]: i["title"] for i in at2["items"]} == {
        "a.mp4": "A1", "b.mp4": "B1"}
    assert "2 items" in ok("state-at", "2", store=store)
    now = run_json("state-at", "--time", "now", store=store)
    assert now["count"] == 3

    diff = run_json("diff", "2", "5", store=store)
    changes = {k.rsplit("/", 1)[1]: v for k, v in diff["changes"].items()}
    assert set(changes) == {"a.mp4", "b.mp4", "c.mp4"}
    assert changes["a.mp4"]["before"]["title"] == "A1"
    assert changes["a.mp4"]["after"]["title"] == "A2"
    assert changes["c.mp4"]["before"] is None
    assert run_json("diff", "2", store=store)["b"] == 5
    human = ok("diff", "2", "5", store=store)
    assert "'A1' -> 'A2'" in human and "added" in human


def test_stats_verify_compact_snapshot(store: Path, tmp_path: Path) -> None:
    _populate(store, tmp_path)
    stats = run_json("stats", store=store)
    for name in ("events", "keys", "segments", "bytes_on_disk", "last_seq", "snapshot_seq"):
        assert name in stats
    assert stats["events"] == 5 and stats["last_seq"] == 5
    assert "bytes_on_disk" in ok("stats", store=store)
    # not the options of the command's own read-only handle (they said readonly: True)
    assert not {"readonly", "durability", "pending", "key_cache", "path_cache"} & set(stats)

    assert run_json("verify", store=store)["ok"] is True
    assert ok("verify", store=store).startswith("ok:")

    snap = run_json("snapshot", store=store)
    assert snap["snapshot_seq"] == 5
    compacted = run_json("compact", store=store)
    assert compacted["after"]["last_seq"] == 5
    assert "bytes on disk" in ok("compact", store=store)
    assert run_json("verify", store=store)["ok"] is True
    assert run_json("get", "a.mp4", store=store, cwd=tmp_path)["title"] == "A2"


def test_export_jsonl(store: Path, tmp_path: Path) -> None:
    _populate(store, tmp_path)
    lines = ok("export", store=store).splitlines()
    events = [json.loads(line) for line in lines]
    assert [e["seq"] for e in events] == [1, 2, 3, 4, 5]
    target = tmp_path / "out.jsonl"
    summary = run_json("export", "-o", str(target), "--from", "3", store=store)
    assert summary == {"events": 3, "file": str(target)}
    assert [json.loads(x)["seq"] for x in target.read_text().splitlines()] == [3, 4, 5]


def test_import_json_is_idempotent(store: Path, tmp_path: Path) -> None:
    legacy = tmp_path / "media_metadata.json"
    data = {str(tmp_path / "x.jpg"): {"title": "X", "description": "old x"},
            str(tmp_path / "y.jpg"): {"title": "Y", "description": ""}}
    legacy.write_text(json.dumps(data))
    first = run_json("import-json", str(legacy), store=store)
    assert (first["entries"], first["imported"], first["invalid"]) == (2, 2, 0)
    assert first["already_imported"] is False
    assert run_json("get", "x.jpg", store=store, cwd=tmp_path)["description"] == "old x"
    events = run_json("stats", store=store)["events"]
    again = run_json("import-json", str(legacy), store=store)
    assert again["already_imported"] is True
    assert "already imported" in ok("import-json", str(legacy), store=store)
    assert run_json("stats", store=store)["events"] == events
    assert json.loads(legacy.read_text()) == data


def test_import_of_a_damaged_file_imports_what_it_can_and_exits_1(store: Path,
                                                                   tmp_path: Path) -> None:
    legacy = tmp_path / "cut.json"
    whole = json.dumps({str(tmp_path / "x.jpg"): {"title": "X", "description": ""},
                        str(tmp_path / "y.jpg"): {"title": "Y", "description": ""}})
    legacy.write_text(whole[: len(whole) - 12])               # truncated mid-entry
    proc = run("import-json", str(legacy), store=store)
    assert proc.returncode == 1, proc
    assert "damaged" in proc.stdout
    assert run_json("get", "x.jpg", store=store, cwd=tmp_path)["title"] == "X"


def test_import_skips_an_oversized_entry_lists_every_invalid_one_and_exits_1(
        store: Path, tmp_path: Path) -> None:
    legacy = tmp_path / "media2.json"
    legacy.write_text('{"ok.jpg": {"title": "fine"}, "big.jpg": {"title": "' + "x" * 1_100_000
                      + '"}, "nul\\u0000.jpg": {"title": "n"}, "lone.jpg": {"title": "\\udc80"}}')
    proc = run("import-json", str(legacy), store=store, cwd=tmp_path)
    assert proc.returncode == 1, proc
    assert "1 item changed" in proc.stdout and "3 invalid" in proc.stdout
    for name in ("big.jpg", "nul", "lone.jpg"):
        assert any(name in line for line in proc.stdout.splitlines()[1:]), (name, proc.stdout)
    assert run_json("get", "ok.jpg", store=store, cwd=tmp_path)["title"] == "fine"
    again = run_json("import-json", str(legacy), store=store, cwd=tmp_path)
    assert again["already_imported"] is True


def test_import_json_output_lists_every_invalid_entry(store: Path, tmp_path: Path) -> None:
    legacy = tmp_path / "media.json"
    legacy.write_text('{"ok.jpg": {"title": "fine"}, "nul\\u0000.jpg": {"title": "n"},'
                      ' "lone.jpg": {"title": "\\udc80"}}')
    out = run_json("import-json", str(legacy), store=store, cwd=tmp_path, code=1)
    assert (out["imported"], out["invalid"]) == (1, 2)
    assert len(out["errors"]) == 2
    assert any("nul" in e for e in out["errors"]) and any("lone.jpg" in e for e in out["errors"])


def test_demo_runs_and_reports_json() -> None:
    start = time.monotonic()
    out = ok("demo")
    assert time.monotonic() - start < 20
    assert "torn" in out and "Demo finished" in out
    report = run_json("demo")
    assert report["ok"] is True and report["failures"] == []
    titles = [s["title"] for s in report["steps"]]
    assert any("Undo" in t for t in titles) and any("torn" in t for t in titles)


def test_demo_keeps_dir(tmp_path: Path) -> None:
    target = tmp_path / "demo"
    ok("demo", "--dir", str(target))
    assert (target / "store" / "quarantine").is_dir()
    assert run_json("verify", store=target / "store")["ok"] is True


def test_control_characters_never_reach_the_terminal_raw(store: Path, tmp_path: Path) -> None:
    """A title, key or actor holding ESC sequences is shown escaped (\\x1b) in human output,
    so it cannot recolour or rewrite the reader's terminal; JSON keeps the value whole."""
    evil = "red\x1b[31m!\x07\x9b"
    # the command refuses such an actor (test_actor_must_be_one_printable_line); an
    # application writing through the API may still record one
    with MediaCatalog.open(store, actor="mal\x1b[2Jlory") as cat:
        cat.set_title(tmp_path / "a\x01.mp4", evil)
    for args in (["get", "a\x01.mp4"], ["ls"], ["log"], ["history", "a\x01.mp4"], ["tail"]):
        proc = run(*args, store=store, cwd=tmp_path)
        assert proc.returncode == 0, (args, proc.stderr)
        shown = proc.stdout + proc.stderr
        assert not any(c in shown for c in "\x1b\x07\x9b\x01"), (args, shown)
        assert "\\x1b" in shown, (args, shown)
    proc = run("get", "b\x1b[1m.mp4", store=store, cwd=tmp_path)   # an error message naming the key
    assert proc.returncode == 1 and "\x1b" not in proc.stderr and "\\x1b[1m" in proc.stderr
    assert run_json("get", "a\x01.mp4", store=store, cwd=tmp_path)["title"] == evil


def test_export_and_json_output_are_strict_json_with_nan_and_infinity(store: Path) -> None:
    """JSON has no NaN: non-finite floats an application stored print as the strings
    "NaN", "Infinity", "-Infinity", so every exported line parses as strict JSON
    (a bare NaN would not)."""
    import eventstore
    with eventstore.open(store) as s:
        s.append("measure", "/m", {"a": float("nan"), "b": float("inf"), "c": -float("inf"), "d": 1.5})

    def strict(text: str):
        return json.loads(text, parse_constant=lambda name: pytest.fail(f"bare {name} in {text!r}"))

    lines = ok("export", store=store).splitlines()
    assert [strict(line)["data"] for line in lines] == [{"a": "NaN", "b": "Infinity", "c": "-Infinity", "d": 1.5}]
    assert strict(run("--json", "log", store=store).stdout)["data"]["a"] == "NaN"


def cells(text: str) -> int:
    """Terminal cells ``text`` takes, counted here rather than by the code under test:
    East Asian wide and fullwidth characters take two, combining marks none."""
    return sum(0 if unicodedata.combining(c) else
               2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in text)


def test_log_cuts_long_keys_in_human_output_only(store: Path, tmp_path: Path) -> None:
    """A long key is cut in the middle in `log`/`tail` (the file name stays), so it does
    not widen the KEY column of every line, and the columns line up by display width even
    for wide characters. --json keeps every key whole."""
    long_key = ("/media/" + "/".join(f"a-rather-long-directory-name-{i}" for i in range(6))
                + "/final-cut.mp4")
    keys = ["/media/a.mp4", long_key, "/media/映画/予告編.mp4"]
    fill(store, [(key, f"title {i}") for i, key in enumerate(keys)])

    for command, header in (("log", True), ("tail", False)):
        lines = ok(command, store=store, cwd=tmp_path).splitlines()
        assert long_key not in "\n".join(lines), command
        rows = lines[1:] if header else lines
        shown = [row.split()[4] for row in rows]          # SEQ, date, time, TYPE, KEY
        assert shown[0] == keys[0] and shown[2] == keys[2], shown
        cut = shown[1]
        assert "\u2026" in cut and cells(cut) < cells(long_key), cut
        assert cut.startswith("/media/") and cut.endswith("/final-cut.mp4"), cut
        change_at = {cells(row[:row.index("title=")]) for row in rows}
        assert len(change_at) == 1, (command, lines)       # CHANGE starts in one column
        if header:
            assert change_at == {cells(lines[0][:lines[0].index("CHANGE")])}, lines

    assert [e["key"] for e in run_jsonl("log", store=store)] == keys
    assert [e["key"] for e in run_jsonl("tail", store=store)] == keys


def test_ls_pads_columns_by_display_width(store: Path, tmp_path: Path) -> None:
    """Wide (East Asian) characters take two terminal cells and combining marks none;
    `ls` padded by character count, so a row with "映画タイトル" pushed its later
    columns six cells to the right of the others."""
    items = [("plain.mp4", "Plain title", "desc plain"),
             ("wide.mp4", "映画タイトル", "desc wide"),
             ("accent.mp4", "Cafe\u0301 noir", "desc accent"),
             ("予告編.mp4", "x", "desc key")]
    with MediaCatalog.open(store, actor="tester") as cat:
        for name, title, description in items:
            cat.set_title(tmp_path / name, title)
            cat.set_description(tmp_path / name, description)
    lines = ok("ls", store=store, cwd=tmp_path).splitlines()
    header, rows = lines[0], lines[1:]
    assert len(rows) == len(items)
    for name, title, description in items:
        row = next(r for r in rows if r.startswith(name + " "))
        date = re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", row)
        assert date is not None, row
        for column, text_at in (("TITLE", row.index(title)), ("DESCRIPTION", row.index(description)),
                                ("UPDATED", date.start())):
            assert cells(row[:text_at]) == cells(header[:header.index(column)]), (column, lines)


def test_json_events_keep_the_cont_meta_the_catalog_writes(store: Path, tmp_path: Path) -> None:
    """`cont` is not store-internal: the catalog writes it on every event of a commit
    but the first (projections/events.py), and it is how a replay of
    the log tells commit boundaries (a batch is one undo step). So `--json` output and
    `export` print `meta` as stored, `cont` included; human output leaves it out."""
    with MediaCatalog.open(store, actor="tester") as cat:
        with cat.batch():
            cat.set_title(tmp_path / "a.mp4", "A")
            cat.set_title(tmp_path / "b.mp4", "B")
    exported = [json.loads(line) for line in ok("export", store=store).splitlines()]
    for shown in (exported, run_jsonl("log", store=store), run_jsonl("tail", store=store)):
        assert [e["meta"].get("cont") for e in shown] == [None, True], shown
    assert "cont" not in ok("log", store=store, cwd=tmp_path)   # keys shown relative: a.mp4
