"""The README's examples run, so the docs cannot rot (STYLE habit 11).

- every ```python block is executed, in order, in one namespace, in a fresh
  directory;
- the ``$ `` lines of the ```console blocks are run with bash, in order, in
  one fresh directory (the blocks tell one continuing story), and the
  output shown under each must match the real output. Matching ignores runs of
  spaces (column widths depend on path lengths), reads times as
  ``<TIME>``, reads the README's example directory ``/home/me/videos``
  as the test's directory, and reads the numbers on a line about bytes as
  ``N`` (sizes on disk depend on the length of that directory's path). ``...`` in a line matches any text; a line that
  is only ``...`` matches any number of lines. A command whose expected
  output ends with ``[exit N]`` must exit N, otherwise 0.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from test_cli_helpers import METALOG, cli_env

README = Path(__file__).resolve().parent.parent / "README.md"
EXAMPLE_DIR = "/home/me/videos"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
TIMES = re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?Z?")
NUMBERS = re.compile(r"\d+(\.\d+)?")
EXIT = re.compile(r"^\[exit (\d+)\]$")


def blocks(language: str) -> list[str]:
    text = README.read_text(encoding="utf-8")
    return [body for lang, body in FENCE.findall(text) if lang == language]


def normalise(text: str, directory: str | None = None) -> str:
    if directory:
        text = text.replace(directory, EXAMPLE_DIR)
    text = TIMES.sub("<TIME>", text)
    lines = [" ".join(line.split()) for line in text.strip().splitlines()]
    return "\n".join(NUMBERS.sub("N", line) if "bytes" in line else line for line in lines)


def expected_pattern(expected: str) -> re.Pattern[str]:
    parts = []
    for line in normalise(expected).splitlines():
        if line == "...":
            parts.append(r"(?:[^\n]*\n)*?")
            continue
        parts.append(".*".join(re.escape(piece) for piece in line.split("...")) + r"\n")
    return re.compile("".join(parts) + r"\Z", re.S)


def commands(block: str) -> list[tuple[str, str, int]]:
    """(command, expected output, expected exit code) for each ``$ `` line."""
    result: list[tuple[str, list[str], int]] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            result.append((line[2:], [], 0))
        elif result:
            match = EXIT.match(line.strip())
            if match:
                cmd, out, _ = result[-1]
                result[-1] = (cmd, out, int(match.group(1)))
            else:
                result[-1][1].append(line)
    return [(cmd, "\n".join(out), code) for cmd, out, code in result]


def test_readme_has_the_two_quick_start_commands() -> None:
    text = README.read_text(encoding="utf-8")
    assert "pip install -e . && metalog demo" in text
    assert "pip install -e '.[test]' && pytest" in text


def test_python_blocks_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    found = blocks("python")
    assert found, "the README shows the Python API"
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "readme"}
    for body in found:
        exec(compile(body, str(README), "exec"), namespace)  # noqa: S102


def test_console_blocks_run_with_the_shown_output(tmp_path: Path) -> None:
    body = "\n".join(blocks("console"))
    assert "$ metalog" in body, "the README shows the CLI"
    env = cli_env()
    env["PATH"] = os.pathsep.join([str(Path(METALOG[0]).parent), str(Path(sys.executable).parent),
                                   env.get("PATH", "")])
    env.pop("METALOG_ACTOR")
    env["USER"] = env["LOGNAME"] = "me"
    for command, expected, code in commands(body):
        if "metalog demo" in command or "pip install" in command or "pytest" in command:
            continue  # the quick start: run by CI itself and by test_cli
        proc = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == code, (command, proc.stdout, proc.stderr)
        if not expected.strip():
            continue  # the README shows no output for this line
        actual = normalise(proc.stdout + proc.stderr, str(tmp_path)) + "\n"
        assert expected_pattern(expected).match(actual), (
            f"$ {command}\n--- README shows:\n{normalise(expected)}\n--- actual:\n{actual}")
