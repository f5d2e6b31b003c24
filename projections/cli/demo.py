"""`metalog demo`: the guided tour a newcomer runs first.

It builds a store in a temporary directory and runs real `metalog` commands
against it, in this process: import the old JSON file, edits by two actors,
history, undo/redo, state at an earlier point, a diff, compaction, a torn
write (bytes cut off the end of the active segment, as a crash mid-write
leaves it) and its repair on reopen, and verify. Each step prints the
command and its real output; with ``--json`` the outputs are collected into
one JSON document. It owns nothing but the script of the tour.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shlex
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import eventstore
from eventstore.local import layout
from eventstore.local.frame import payload_length

from .context import Context, UsageError

__all__ = ["cmd_demo", "LEGACY_SAMPLE", "tear_active_segment"]

#: The old application's persistence file: one dict rewritten on every change.
LEGACY_SAMPLE = {
    "beach.mp4": {"title": "beach", "description": ""},
    "harbor.mp4": {"title": "Harbor", "description": "Boats at the old harbor"},
    "kids/party.jpg": {"title": "Party", "description": "Birthday, 2019"},
}

def tear_active_segment(store: Path) -> tuple[Path, int]:
    """Append the first half of a frame to the newest plain segment, as a
    crash halfway through writing a commit leaves it: the frame's header
    promises more bytes than the file holds. The half frame is a copy of the
    segment's last frame (docs/FORMAT.md §4). Returns (file, bytes added)."""
    segments = sorted((store / "segments").glob("*" + layout.SEGMENT_SUFFIX))
    if not segments:
        raise RuntimeError(f"no plain segment under {store / 'segments'}")
    active = segments[-1]
    data = active.read_bytes()
    offset, last = layout.SEGMENT_HEADER_SIZE, None
    while offset + layout.FRAME_HEADER_SIZE <= len(data):
        last, offset = offset, offset + layout.FRAME_HEADER_SIZE + payload_length(data, offset)
    if last is None:
        raise RuntimeError(f"{active} holds no frame to copy")
    half = data[last:offset][: (offset - last) // 2]
    with open(active, "ab") as f:
        f.write(half)
    return active, len(half)


class _Tour:
    """Runs the steps, printing them (or collecting JSON), and checks exit codes."""

    def __init__(self, ctx: Context, store: Path, media: Path, main: Callable[[list[str]], int]) -> None:
        self.ctx = ctx
        self.main = main
        self.store = store
        self.media = media
        self.steps: list[dict[str, Any]] = []
        self.failed: list[str] = []
        self.number = 0

    def say(self, title: str, *lines: str) -> None:
        self.number += 1
        self.steps.append({"step": self.number, "title": title, "notes": list(lines),
                           "commands": []})
        if not self.ctx.json:
            bar = "-" * max(60 - len(title), 4)
            print(f"\n-- {self.number}. {title} {bar}")
            for line in lines:
                print(f"   {line}")

    def note(self, line: str) -> None:
        self.steps[-1]["notes"].append(line)
        if not self.ctx.json:
            print(f"   {line}")

    def run(self, *argv: str, actor: str = "demo", expect: int = 0) -> Any:
        """Run ``metalog ARGV`` against the demo store in this process."""
        shown = ["metalog"] + (["--actor", actor] if actor != "demo" else []) + list(argv)
        full = ["--store", str(self.store), "--actor", actor]
        if self.ctx.json:
            full.append("--json")
        buffer = io.StringIO()
        if not self.ctx.json:
            print("$ " + shlex.join(shown))
            sys.stdout.flush()
            code = self.main(full + list(argv))
        else:
            with contextlib.redirect_stdout(buffer):
                code = self.main(full + list(argv))
        output = _parse_json(buffer.getvalue()) if self.ctx.json else None
        self.steps[-1]["commands"].append({"command": shown, "exit_code": code, "output": output})
        if code != expect:
            self.failed.append(f"`{shlex.join(shown)}` exited {code}, expected {expect}")
        return output


def _parse_json(text: str) -> Any:
    text = text.strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def _last_seq(store: Path) -> int:
    with eventstore.open(str(store), readonly=True) as s:
        return s.last_seq


def _script(t: _Tour, legacy: Path) -> None:
    t.say("An old JSON persistence file",
          f"The old uploader rewrote {legacy.name} on every keystroke",
          "(keys are the files' full paths, shortened here):",
          *("  " + line for line in json.dumps(LEGACY_SAMPLE).replace("}, ", "},\n ").splitlines()))
    t.run("init")
    t.run("import-json", os.path.relpath(legacy))
    imported = _last_seq(t.store)

    t.say("Two people edit", "Each change is one event in a checksummed, append-only log.")
    t.run("set-title", "beach.mp4", "Sunset at the beach", actor="alice")
    t.run("set-description", "beach.mp4", "Golden hour, shot from the pier", actor="bob")
    t.run("set-title", "harbor.mp4", "Harbor at noon", actor="bob", )
    t.run("set-title", "beach.mp4", "Sunset, Brighton beach", "--reason", "add the place",
          actor="alice")
    t.run("ls")

    t.say("History: who changed what, when, and why")
    t.run("history", "beach.mp4")

    t.say("Undo and redo", "Undo appends a compensating event; history is never rewritten.")
    t.run("undo", "beach.mp4", actor="alice")
    t.run("get", "beach.mp4")
    t.run("redo", "beach.mp4", actor="alice")

    t.say("Time travel", f"Seq {imported} is right after the import, before anyone edited.")
    t.run("state-at", str(imported))
    t.run("diff", str(imported))
    t.run("log", "--key", "beach.mp4")

    t.say("Compaction", "Seals the active segment, compresses it with zstd, writes a snapshot;",
          "the next open loads the snapshot and replays only what came after it.")
    t.run("compact")

    t.say("A torn write, and its repair")
    t.run("set-title", "harbor.mp4", "Harbor at dawn", actor="bob")
    segment, added = tear_active_segment(t.store)
    t.note(f"Now the power fails halfway through the next commit: only its first {added} bytes")
    t.note(f"reach the end of {segment.relative_to(t.store)}. Opening for writing finds the")
    t.note("torn frame, copies it to quarantine/, and truncates the segment:")
    t.run("recover")
    t.note("Every acknowledged commit is still there (seq 13 included); the torn one,")
    t.note("whose append never returned, is not. Nothing was deleted.")
    t.run("get", "harbor.mp4")
    quarantined = sorted(p.name for p in (t.store / "quarantine").iterdir()) \
        if (t.store / "quarantine").is_dir() else []
    t.note("quarantine/ holds: " + (", ".join(quarantined) or "(nothing)"))

    t.say("Verify: checksums, seq continuity, digest chain, snapshots")
    t.run("verify")
    t.run("stats")


def cmd_demo(args: argparse.Namespace, ctx: Context, main: Callable[[list[str]], int]) -> int:
    """``main`` runs one `metalog` command line (the tour's steps), passed in to keep the import graph acyclic."""
    keep = args.dir is not None
    if keep:
        root = Path(args.dir).expanduser().absolute()
        if root.exists() and any(root.iterdir()):
            raise UsageError(f"--dir {root} is not empty; the demo wants a fresh directory")
        root.mkdir(parents=True, exist_ok=True)
    else:
        root = Path(tempfile.mkdtemp(prefix="metalog-demo-"))
    store, media = root / "store", root / "media"
    (media / "kids").mkdir(parents=True)
    for name in LEGACY_SAMPLE:
        (media / name).touch()
    legacy = root / "media_metadata.json"
    legacy.write_text(json.dumps({str(media / k): v for k, v in LEGACY_SAMPLE.items()},
                                 indent=1), encoding="utf-8")
    tour = _Tour(ctx, store, media, main)
    if not ctx.json:
        print(f"metalog demo: a store in {store}")
        print(f"(every command below runs with --store {store}, from {media})")
    cwd = os.getcwd()
    try:
        os.chdir(media)
        _script(tour, legacy)
    finally:
        os.chdir(cwd)
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    ok = not tour.failed
    if ctx.json:
        json.dump({"ok": ok, "store": str(store), "kept": keep, "steps": tour.steps,
                   "failures": tour.failed}, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        print()
        if ok:
            print("Demo finished: every step did what it should."
                  + (f" The store is kept in {store}." if keep else ""))
        else:
            print("Demo FAILED:", *tour.failed, sep="\n  ")
    return 0 if ok else 1
