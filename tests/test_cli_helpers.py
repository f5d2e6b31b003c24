"""Shared helpers for the CLI tests: run the installed `metalog` command.

Tests run the real console script as a subprocess (the one installed next
to this Python, else on PATH, else ``python -m projections``), with a
clean environment: no progress bars, a fixed actor, and the store given
explicitly.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

import eventstore
from eventstore.local.layout import FRAME_HEADER_SIZE, SEGMENT_HEADER_SIZE


def metalog_command() -> list[str]:
    beside = Path(sys.executable).parent / "metalog"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("metalog")
    if found:
        return [found]
    return [sys.executable, "-m", "projections"]


METALOG = metalog_command()


CHECKOUT = str(Path(__file__).resolve().parents[1])


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METALOG_")}
    env.update({"METALOG_PROGRESS": "0", "METALOG_ACTOR": "tester"})
    # The command must run this checkout's code, not whichever checkout the
    # `metalog` script was installed from (an editable install of another
    # worktree would otherwise be tested instead).
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (CHECKOUT, env.get("PYTHONPATH"))))
    env.update(extra)
    return env


def run(*args: str, store: Path | None = None, cwd: Path | None = None,
        input: str | None = None, env: dict[str, str] | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``metalog [--store STORE] ARGS``; never raises on a non-zero exit."""
    argv = list(METALOG) + (["--store", str(store)] if store is not None else []) + list(args)
    return subprocess.run(argv, capture_output=True, text=True, input=input,
                          cwd=cwd, env=env or cli_env(), timeout=timeout)


def run_json(*args: str, store: Path | None = None, code: int = 0, **kw: Any) -> Any:
    """Run with ``--json``, check the exit code, and parse stdout."""
    proc = run("--json", *args, store=store, **kw)
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    return json.loads(proc.stdout)


def run_jsonl(*args: str, store: Path | None = None, **kw: Any) -> list[Any]:
    proc = run("--json", *args, store=store, **kw)
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr)
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def ok(*args: str, store: Path | None = None, **kw: Any) -> str:
    proc = run(*args, store=store, **kw)
    assert proc.returncode == 0, (args, proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    return proc.stdout


def plain_segments(store: Path) -> list[Path]:
    return sorted((store / "segments").glob("*.seg"))


def fill(store: Path, items: Sequence[tuple[str, str]]) -> None:
    """Write title events directly through the store API (fast)."""
    with eventstore.open(str(store), durability="none") as s:
        for key, title in items:
            s.append("title.set", key, {"value": title}, meta={"actor": "fill"})


def flip_first_frame(store: Path) -> tuple[Path, int]:
    """Damage the first commit while valid commits follow it: corruption,
    not a torn write (SPEC §7.3). Returns the segment and the frame's offset."""
    segment = plain_segments(store)[0]
    data = bytearray(segment.read_bytes())
    offset = SEGMENT_HEADER_SIZE + FRAME_HEADER_SIZE + 3   # inside the first payload
    data[offset] ^= 0x01
    segment.write_bytes(bytes(data))
    return segment, SEGMENT_HEADER_SIZE


def tear_tail(store: Path, nbytes: int = 5) -> Path:
    """Cut the last ``nbytes`` off the newest segment: a torn write of its last commit."""
    segment = plain_segments(store)[-1]
    with open(segment, "r+b") as f:
        f.truncate(segment.stat().st_size - nbytes)
    return segment


def cli_in_process(capsys: Any, *argv: str) -> tuple[int, str, str]:
    """Run ``metalog argv`` in this process: (exit code, stdout, stderr)."""
    from projections.cli import main
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def fill_for_copy(path: str, n: int, *, pad: str = "", **options: Any) -> None:
    """``n`` edits through a catalog: single sets on five items (each title padded with
    ``pad``), every fourth a two-event batch, then one undo. A source for `metalog copy`."""
    from projections import MediaCatalog
    with MediaCatalog.open(path, actor="me", **options) as cat:
        for i in range(n):
            if i % 4 == 3:
                with cat.batch():
                    cat.set_title(f"/m/{i}.mp4", f"T{i}")
                    cat.set_description(f"/m/{i}.mp4", f"D{i}")
            else:
                cat.set_title(f"/m/{i % 5}.mp4", f"T{i}" + pad)
        cat.undo()


def copy_interrupted_then_resumed(capsys: Any, monkeypatch: Any, src: str, dst: str, stop_after: int) -> int:
    """`metalog copy` stopped by Ctrl-C after ``stop_after`` commits (exit 130), then run again
    to the end (exit 0, resumed where the first stopped, verified equal); the seq it resumed at."""
    from projections.cli import copy as copy_mod
    real, calls = copy_mod._Copy.write, []

    def write_then_stop(self: Any, commit: Any) -> None:
        if len(calls) == stop_after:
            raise KeyboardInterrupt
        calls.append(commit.first_seq)
        real(self, commit)
    monkeypatch.setattr(copy_mod._Copy, "write", write_then_stop)
    assert cli_in_process(capsys, "copy", src, dst)[0] == 130
    monkeypatch.undo()
    with eventstore.open(dst, readonly=True) as half:
        held = half.last_seq
    code, out, _ = cli_in_process(capsys, "--json", "copy", src, dst)
    result = json.loads(out)
    assert code == 0 and result["resumed_at"] == held and result["equal"]
    return held
