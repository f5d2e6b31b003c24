"""`metalog ls` streams, and `--help` loads no store code. No timings here (SPEC §7.8): `tools/cli_timing.py` has
them. Streaming is shown by order instead: rows are formatted after the
first line went out, which a listing built whole before printing cannot do.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from projections import MediaCatalog
from test_cli_helpers import METALOG, cli_env, ok, run_json


def build(store: Path, keys: list[str], title: str = "Holiday footage") -> None:
    with MediaCatalog.open(store, actor="tester", durability="none") as cat:
        with cat.batch():
            for key in keys:
                cat.set_title(key, title)


def test_ls_prints_its_first_lines_before_it_formats_the_last(tmp_path: Path) -> None:
    """Keys are shown relative to the current directory, looked up as rows are
    formatted (once per 1024 rows). The reader takes the first line, then renames the directory the
    command runs in (the process stays in it, under the new name), then reads
    on. The pipe holds a few dozen KiB, so a streaming `ls` is still far from
    its last row: rows formatted after the rename show their keys whole. A
    listing formatted whole before its first line shows every key relative."""
    media = tmp_path / "media"
    media.mkdir()
    keys = [str(media / f"clip-{i:05d}.mp4") for i in range(20_000)]
    store = tmp_path / "store"
    build(store, keys)
    proc = subprocess.Popen(METALOG + ["--store", str(store), "ls"], cwd=media,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env())
    assert proc.stdout is not None
    try:
        header = proc.stdout.readline().decode()
        media.rename(tmp_path / "moved")
        rest = proc.stdout.read().decode().splitlines()
    finally:
        proc.stdout.close()
        proc.wait(timeout=60)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    assert header.split() == ["KEY", "TITLE", "DESCRIPTION", "VER", "UPDATED"]
    assert len(rest) == len(keys)
    assert rest[0].startswith("clip-00000.mp4 "), rest[0]          # before the rename
    assert rest[-1].startswith(keys[-1] + " "), rest[-1]           # formatted after it


def test_ls_keeps_its_columns_across_blocks(tmp_path: Path) -> None:
    """Rows go out in blocks; the key column is measured over every key first,
    so a long key late in the listing does not push its row's columns right."""
    keys = [f"/a/{i:04d}.mp4" for i in range(300)] + [f"/z/{'deep/' * 12}{i}.mp4" for i in range(3)]
    store = tmp_path / "store"
    build(store, keys)
    lines = ok("ls", store=store).splitlines()
    assert len(lines) == len(keys) + 1
    starts = {line.index("Holiday footage") for line in lines[1:]}
    assert starts == {lines[0].index("TITLE")}, starts


def test_ls_and_json_ls_agree_on_a_long_listing(tmp_path: Path) -> None:
    keys = [f"/m/{i:04d}-\u6620\u753b.mp4" for i in range(250)]        # wide characters too
    store = tmp_path / "store"
    build(store, keys, title="Caf\u00e9 " * 12)
    doc = run_json("ls", store=store)
    assert doc["count"] == len(keys) and [i["key"] for i in doc["items"]] == sorted(keys)
    assert {i["title"] for i in doc["items"]} == {"Caf\u00e9 " * 12}
    rows = ok("ls", store=store).splitlines()[1:]
    assert len(rows) == len(keys)
    assert all(re.search(r"Caf\u00e9 .*\u2026", row) for row in rows)   # shortened, one ellipsis


STORE_MODULES = ("eventstore", "msgpack", "zstandard", "msgspec", "projections.catalog",
                 "projections.media")


def test_help_loads_no_store_code() -> None:
    """`metalog --help` must not import the store, its codecs or the catalog."""
    probe = ("import sys; from projections.cli import main; code = main(['--help']); "
             f"print(sorted(m for m in sys.modules if m.startswith({STORE_MODULES!r})), "
             "file=sys.stderr); sys.exit(code)")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          env=cli_env())
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "[]", proc.stderr
    assert "restore" in proc.stdout and "exit codes" in proc.stdout


def test_the_console_entry_ends_quickly_with_every_line_and_the_exit_code(tmp_path: Path) -> None:
    """`run` (the console script, ``python -m projections``) ends read-only commands with
    ``os._exit`` after flushing: every line is out, stderr too, and the exit code is main's."""
    keys = [f"/m/{i:05d}.mp4" for i in range(3000)]
    store = tmp_path / "store"
    build(store, keys)
    entry = [sys.executable, "-m", "projections", "--store", str(store)]
    listed = subprocess.run(entry + ["ls"], capture_output=True, env=cli_env(), timeout=60)
    assert listed.returncode == 0 and len(listed.stdout.decode().splitlines()) == len(keys) + 1
    as_json = subprocess.run(entry + ["--json", "ls"], capture_output=True, env=cli_env(), timeout=60)
    assert as_json.returncode == 0 and len(__import__("json").loads(as_json.stdout)["items"]) == len(keys)
    missing = subprocess.run(entry + ["get", "/m/none.mp4"], capture_output=True, env=cli_env(), timeout=60)
    assert missing.returncode == 1 and b"none.mp4" in missing.stderr
    found = subprocess.run(entry + ["get", keys[7]], capture_output=True, env=cli_env(), timeout=60)
    assert found.returncode == 0 and b"Holiday footage" in found.stdout
    # the reader leaves after one line: not an error
    proc = subprocess.Popen(entry + ["ls"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env())
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().split()[0] == b"KEY"
    proc.stdout.close()
    assert proc.wait(timeout=60) == 0 and proc.stderr.read() == b""
