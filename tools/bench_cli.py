"""Issue 16 items 4 and 5 as rows of `tools/bench.py`: memory and the command line.

`tools/catalog_memory.py` and `tools/cli_timing.py` do the measuring (each
also runs on its own, with more detail); this module turns their results
into the fields of a bench ``Row``, each against the baseline the same run
measured:

- ``memory``: live bytes (tracemalloc) of a 100k-item catalog opened from a
  snapshot, against the old uploader's JSON file loaded as a dict of dicts
  (target: at most 1.1x), and the same catalog after a change (info);
- ``cli``: wall-clock medians of ``metalog --help``, ``get``, ``ls`` and the
  first line of ``ls | head -1`` on a 100k-item store, each with its target,
  against ``python -c pass`` measured in the same turns (the interpreter's
  own start: the part no change to metalog can remove).

Kept apart from bench.py so that file only registers two functions.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import catalog_memory
import cli_timing

ITEMS = 100_000

__all__ = ["memory_rows", "cli_rows"]


def _store(root: str) -> tuple[Path, Path]:
    """A fresh 100k-item store (as cli_timing builds it) and a scratch directory."""
    work = Path(tempfile.mkdtemp(prefix="bench-cli-", dir=root))
    store = work / "store"
    cli_timing.build(store, ITEMS)
    return store, work


def memory_rows(root: str, quick: bool) -> list[dict[str, Any]]:
    """Rows for item 4 (one measurement: live bytes are deterministic)."""
    store, work = _store(root)
    try:
        legacy = work / "legacy.json"
        catalog_memory.write_legacy_json(store, legacy)
        records = {r["case"]: r for r in catalog_memory.measure(store, legacy)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = int(records["dict"]["bytes"])
    rows = []
    for case, what in (("writer", f"catalog of {ITEMS // 1000}k items opened from a snapshot, live bytes"),
                       ("changed", "  ... the same after one set_title (the projection unpacked)")):
        r = records[case]
        mine = int(r["bytes"])
        target = catalog_memory.TARGET if case == "writer" else None
        rows.append({"bench": "memory", "issue": "16/4", "what": what,
                     "metalog": f"{mine / 2**20:.1f} MiB", "baseline": f"dict of dicts {base / 2**20:.1f} MiB",
                     "ratio": mine / base, "target": f"<= {target}x" if target else "",
                     "ok": None if target is None else mine / base <= target,
                     "values": {"bytes": mine, "baseline_bytes": base},
                     "note": "tracemalloc after a full collection, each in a fresh process; "
                             "baseline: json.load of the old JSON file holding the same items"})
    return rows


def cli_rows(root: str, quick: bool) -> list[dict[str, Any]]:
    """Rows for item 5: wall-clock medians against ``python -c pass`` of the same turns."""
    store, work = _store(root)
    try:
        results = {r["command"]: r for r in cli_timing.report(cli_timing.measure(store, 3 if quick else 7))}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = results["python -c pass"]
    rows = []
    for name, target in cli_timing.TARGETS.items():
        r = results[name]
        wall, cpu = float(r["median_s"]), float(r["cpu_median_s"])
        rows.append({"bench": "cli", "issue": "16/5", "what": f"{name}, {ITEMS // 1000}k items",
                     "metalog": f"{wall * 1e3:.0f} ms wall ({cpu * 1e3:.0f} ms CPU)",
                     "baseline": f"python -c pass {float(base['median_s']) * 1e3:.0f} ms",
                     "ratio": wall / float(base["median_s"]), "target": f"< {target * 1e3:.0f} ms",
                     "ok": wall < target, "score": wall,
                     "values": {"runs_s": r["runs_s"], "cpu_runs_s": r["cpu_runs_s"],
                                "baseline_runs_s": base["runs_s"]},
                     "note": "median wall time of separate processes, the commands taking turns; "
                             "ratio: times the interpreter's own start"})
    return rows
