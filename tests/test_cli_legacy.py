"""`metalog import-json` and `metalog undo` of an import, run as the real command:
conflicts, Ctrl-C, encodings, kept fields, one-line undo.
"""
from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

import eventstore
from projections import MediaCatalog
from test_cli_helpers import METALOG, cli_env, ok, run, run_json


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "store"
    run_json("init", store=path, cwd=tmp_path)
    return path


def legacy_file(path: Path, n: int, **extra: object) -> Path:
    data = {str(path.parent / f"m{i:06}.jpg"): {"title": f"t{i}", "description": f"d{i}", **extra}
            for i in range(n)}
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_reimport_keeps_an_edit_lists_the_conflict_exits_1_and_overwrite_forces(
        store: Path, tmp_path: Path) -> None:
    src = legacy_file(tmp_path / "media.json", 3)
    ok("import-json", str(src), store=store)
    ok("set-title", "m000001.jpg", "Edited in metalog", store=store, cwd=tmp_path)
    data = json.loads(src.read_text())
    data[str(tmp_path / "m000001.jpg")]["title"] = "changed in the file"
    data[str(tmp_path / "m000002.jpg")]["title"] = "also changed in the file"
    src.write_text(json.dumps(data))
    proc = run("import-json", str(src), store=store)
    assert proc.returncode == 1, proc
    assert "1 conflict" in proc.stdout
    assert "m000001.jpg title: kept 'Edited in metalog', file has 'changed in the file'" in proc.stdout
    get = run_json("get", "m000001.jpg", store=store, cwd=tmp_path)
    assert get["title"] == "Edited in metalog"
    assert run_json("get", "m000002.jpg", store=store, cwd=tmp_path)["title"] == "also changed in the file"
    forced = run_json("import-json", "--overwrite", str(src), store=store)
    assert forced["conflicts"] == 0 and forced["imported"] == 1
    assert run_json("get", "m000001.jpg", store=store, cwd=tmp_path)["title"] == "changed in the file"


def _last_seq(store: Path) -> int:
    with eventstore.open(str(store), readonly=True) as reader:
        return reader.last_seq


def test_ctrl_c_during_import_json_says_how_far_and_the_same_command_finishes(
        store: Path, tmp_path: Path) -> None:
    n = 100_000
    src = legacy_file(tmp_path / "big.json", n)
    proc = subprocess.Popen(METALOG + ["--store", str(store), "import-json", str(src)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=cli_env(), cwd=tmp_path)
    try:
        while _last_seq(store) == 0 and proc.poll() is None:   # until a first commit is there
            time.sleep(0.005)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, (out, err)
    with MediaCatalog.open(store, readonly=True) as reader:
        done = len(reader)
    assert 0 < done < n
    assert f"interrupted after {done} of {n} entries; run the same command again to finish" in err
    again = run_json("import-json", str(src), store=store)
    assert again["resumed"] is True and again["imported"] == n and again["events"] == 2 * (n - done)
    assert run_json("stats", store=store)["items"] == n
    assert "already imported" in ok("import-json", str(src), store=store)


def test_encodings_bom_accepted_latin1_refused_then_imported_with_encoding(
        store: Path, tmp_path: Path) -> None:
    bom = tmp_path / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf" + json.dumps({str(tmp_path / "a.jpg"): {"title": "A"}}).encode())
    assert run_json("import-json", str(bom), store=store)["imported"] == 1
    latin = tmp_path / "latin1.json"
    latin.write_bytes(json.dumps({str(tmp_path / "caf\u00e9.jpg"): {"title": "Caf\u00e9"}},
                                 ensure_ascii=False).encode("latin-1"))
    before = _last_seq(store)
    proc = run("import-json", str(latin), store=store)
    offset = latin.read_bytes().index(b"\xe9")
    assert proc.returncode == 2, proc
    assert f"offset {offset}" in proc.stderr and "--encoding" in proc.stderr
    assert _last_seq(store) == before
    ok("import-json", "--encoding", "latin-1", str(latin), store=store)
    keys = [item["key"] for item in run_json("ls", store=store)["items"]]
    assert str(tmp_path / "caf\u00e9.jpg") in keys and not any("\ufffd" in k for k in keys)


def test_import_keeps_other_fields_says_so_and_dates_items_from_the_file(
        store: Path, tmp_path: Path) -> None:
    src = legacy_file(tmp_path / "media.json", 2, last_modified=1_500_000_000, album="Summer")
    proc = run("import-json", str(src), store=store)
    assert proc.returncode == 0, proc
    assert "kept from the file's entries: album (2), last_modified (2)" in proc.stdout
    got = run_json("get", "m000000.jpg", store=store, cwd=tmp_path)
    assert got["updated"].startswith("2017-07-14T02:40:00") and got["created"] == got["updated"]
    history = run_json("history", "m000000.jpg", store=store, cwd=tmp_path)["changes"]
    assert history[0]["legacy"] == {"last_modified": 1_500_000_000, "album": "Summer"}


def test_undo_after_an_import_is_one_line_and_a_rerun_imports_again(
        store: Path, tmp_path: Path) -> None:
    n = 2500                                    # three commits of at most 1000 items
    src = legacy_file(tmp_path / "media.json", n)
    ok("import-json", str(src), store=store)
    out = ok("undo", store=store).splitlines()
    assert out == [f"undid the import of media.json (seq 1): {n} items changed ({2 * n} changes)"]
    assert run_json("stats", store=store)["items"] == 0
    again = run_json("import-json", str(src), store=store)
    assert again["already_imported"] is False and again["imported"] == n


def test_undo_of_a_batch_is_one_line(store: Path, tmp_path: Path) -> None:
    with MediaCatalog.open(store, actor="app") as cat, cat.batch():
        for name in ("a.jpg", "b.jpg", "c.jpg"):
            cat.set_title(tmp_path / name, name.upper())
    assert ok("undo", store=store).splitlines() == ["undid seq 1: 3 items changed (3 changes)"]
    assert run_json("stats", store=store)["items"] == 0
