#!/usr/bin/env python3
"""Live memory of a catalog opened from a snapshot (issue 16, item 4).

Run from a checkout (``pip install -e .`` done)::

    python tools/catalog_memory.py                  # 100,000 items
    python tools/catalog_memory.py --items 10000 --json
    python tools/catalog_memory.py --store /tmp/big  # build once (as cli_timing does), reuse

It builds the store `tools/cli_timing.py` builds (``--items`` items, a title
and a description each, one snapshot at the end) and the old uploader's
JSON file holding the same items, then measures, each in a fresh process
with ``tracemalloc`` started after the imports (so only data is counted):

- the baseline: the old JSON file loaded with ``json.load``, a plain dict
  of dicts ``{key: {"title": ..., "description": ...}}`` of the same strings;
- ``MediaCatalog.open`` of the store (a writer, as an application opens it),
  its live bytes after a full garbage collection;
- the same catalog after one ``set_title`` (the projection is then the
  one a writer keeps), and after ``store.version(key)`` too (the store's
  key versions built);
- a read-only open (what `metalog get` and `ls` hold).

The ratio is metalog's live bytes over the baseline's (target: at most
1.1x for the catalog as opened). Memory is deterministic, so one run of
each is enough. SPEC §7.8: figures live in scripts like this one.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

from cli_timing import build, environment, key_of  # noqa: E402

TARGET = 1.1

CHILD = r"""
import gc, json, sys, tracemalloc
import eventstore, msgpack, zstandard
from projections.catalog import MediaCatalog
what, path, probe = sys.argv[1:4]
gc.collect()
tracemalloc.start()
if what == "dict":
    with open(path, encoding="utf-8") as f:
        held = json.load(f)
else:
    held = MediaCatalog.open(path, readonly=what == "readonly", create=False, durability="none",
                             snapshot_every=0, actor="memory")
    if what in ("changed", "versions"):
        held.set_title(probe, "a changed title")
    if what == "versions":
        held.store.version(probe)
gc.collect()
print(tracemalloc.get_traced_memory()[0])
"""

CASES = [
    ("dict", "baseline: json.load of the old JSON file (dict of dicts)"),
    ("writer", "MediaCatalog.open from a snapshot (writer)"),
    ("changed", "  ... after one set_title"),
    ("versions", "  ... and store.version(key) (key versions built)"),
    ("readonly", "MediaCatalog.open(readonly=True) (what get and ls hold)"),
]


def write_legacy_json(store: Path, path: Path) -> None:
    """The old uploader's file for the same items: {key: {"title", "description"}}."""
    from projections.catalog import MediaCatalog

    with MediaCatalog.open(str(store), readonly=True, create=False) as cat:
        doc = {key: {"title": r.title, "description": r.description} for key, r in cat.items()}
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f)


def live_bytes(what: str, target: Path) -> int:
    """Live bytes one child holds for case ``what`` (a writer works on a copy)."""
    env = environment()
    work = target
    scratch = None
    if what in ("writer", "changed", "versions"):
        scratch = Path(tempfile.mkdtemp(prefix="metalog-memory-"))
        work = scratch / "store"
        shutil.copytree(target, work)
    try:
        out = subprocess.run([sys.executable, "-c", CHILD, what, str(work), key_of(0)], env=env,
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"{what}: {out.stderr[-800:]}")
        return int(out.stdout.split()[-1])
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def measure(store: Path, legacy: Path) -> list[dict[str, object]]:
    """One record per case: live bytes, ratio to the baseline, target and verdict."""
    base = live_bytes("dict", legacy)
    records: list[dict[str, object]] = []
    for what, label in CASES:
        size = base if what == "dict" else live_bytes(what, store)
        target = TARGET if what == "writer" else None
        records.append({"case": what, "what": label, "bytes": size, "ratio": size / base,
                        "target": target, "ok": None if target is None else size / base <= target})
    return records


def prepare(store: Path | None, items: int, work: Path) -> tuple[Path, Path]:
    """The store (built when missing) and the legacy JSON file of its items."""
    if store is None:
        store = work / "store"
    if not store.exists():
        build(store, items)
    legacy = work / "legacy.json"
    write_legacy_json(store, legacy)
    return store, legacy


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000, help="media items (default 100000)")
    parser.add_argument("--store", type=Path, help="build (or reuse, if it exists) the store here")
    parser.add_argument("--json", action="store_true", help="machine output")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="metalog-memory-"))
    try:
        store, legacy = prepare(args.store, args.items, work)
        records = measure(store, legacy)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps({"items": args.items, "results": records}, indent=2))
        return 0
    print(f"live bytes (tracemalloc), {args.items} items, python {sys.version.split()[0]}")
    for r in records:
        verdict = "info" if r["ok"] is None else ("PASS" if r["ok"] else "FAIL")
        goal = f"<= {TARGET}x" if r["target"] else ""
        print(f"  {r['what']:58} {int(r['bytes']) / 2**20:7.1f} MiB  "  # type: ignore[call-overload]
              f"{float(r['ratio']):5.2f}x {goal:>8} {verdict}")  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    sys.exit(main())
