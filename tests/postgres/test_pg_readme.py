"""The README's tour, run on PostgreSQL (issue 15: "the README tour runs on PostgreSQL too").

The Python blocks run with their store directories replaced by URLs of fresh
schemas. The console blocks run with ``METALOG_STORE`` set to a URL, and each
command's output must match what the README shows, except where the README
shows what only a directory has: its path stands for the URL, and the lines
counting its segment files and bytes on disk are compared by their first word
(a count of segments within a line stands for any).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pg_support import drop_schema, fresh_schema_url
from test_cli_helpers import METALOG, cli_env
from test_readme import blocks, commands, expected_pattern, normalise

# A directory store's path in the README's output stands for the URL on PostgreSQL; lines that
# count a directory's files (segments, bytes on disk) are compared by their first word only,
# and the line only a directory has is left out. Every other word is compared as it is.
DIRECTORY = "/home/me/videos/metalog-data"
DIRECTORY_FILES = ("bytes", "segments:")
DIRECTORY_ONLY = ("compressed_segments:",)  # lines PostgreSQL's stats do not have


@pytest.fixture
def urls(pg_base):
    made = [fresh_schema_url(pg_base) for _ in range(3)]
    yield made
    for url in made:
        drop_schema(url)


def test_python_tour_runs_on_postgres(urls, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "readme"}
    code = "\n".join(blocks("python"))
    assert '"catalog-data"' in code and '"raw-log"' in code
    code = code.replace('"catalog-data"', repr(urls[0])).replace('"raw-log"', repr(urls[1]))
    exec(compile(code, "README.md (on PostgreSQL)", "exec"), namespace)  # noqa: S102
    assert not (tmp_path / "catalog-data").exists() and not (tmp_path / "raw-log").exists()


def _loosen(expected: str) -> str:
    """The README's output with the directory's path as ``...``, the lines counting its files
    cut to their first word, and the lines only a directory has left out."""
    lines = []
    for line in expected.splitlines():
        if any(fact in line for fact in DIRECTORY_ONLY):
            continue
        if any(fact in line for fact in DIRECTORY_FILES):
            words = line.split()
            lines.append(f"{words[0]}..." if words else line)
        else:
            lines.append(re.sub(r"\b\d+ segments?\b", "...", line.replace(DIRECTORY, "...")))
    return "\n".join(lines)


def test_console_tour_runs_on_postgres(urls, tmp_path: Path) -> None:
    env = cli_env()
    env["PATH"] = os.pathsep.join([str(Path(METALOG[0]).parent), str(Path(sys.executable).parent),
                                   env.get("PATH", "")])
    env.pop("METALOG_ACTOR")
    env["USER"] = env["LOGNAME"] = "me"
    env["METALOG_STORE"] = urls[2]
    for command, expected, code in commands("\n".join(blocks("console"))):
        if "metalog demo" in command or "pip install" in command or "pytest" in command:
            continue
        if "--store" in command:
            continue  # a command about another (directory) store: run by test_readme
        proc = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == code, (command, proc.stdout, proc.stderr)
        assert "metalog-data" not in os.listdir(tmp_path), f"{command} made a directory store"
        if not expected.strip():
            continue
        actual = normalise(proc.stdout + proc.stderr, str(tmp_path)) + "\n"
        assert expected_pattern(_loosen(expected)).match(actual), (
            f"$ {command}\n--- README shows:\n{normalise(expected)}\n--- actual:\n{actual}")
