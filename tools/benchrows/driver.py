"""The command: picks the benchmarks (``--only``), runs them, prints and summarizes rows.

`BENCHES` maps each name ``--only`` accepts to its function, in the order a
full run takes them; `main` is ``tools/bench.py``'s entry point.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from typing import Any, Callable

import msgpack
import zstandard

import eventstore

from . import bigstore, catalog, cli, core, durable, issue16, pg, writers
from .common import REPO, Bench, now

DESCRIPTION = "metalog benchmarks: every figure against a baseline measured in the same run."


BENCHES: dict[str, Callable[[Bench], None]] = {
    "append": core.bench_append,
    "replay": core.bench_replay,
    "durable": durable.bench_durable,
    "group": durable.bench_group,
    "change": catalog.bench_change,
    "import": catalog.bench_import,
    "open": bigstore.bench_open,
    "stall": bigstore.bench_stall,
    "compact": bigstore.bench_compact,
    "history": bigstore.bench_history,
    "writers": writers.bench_writers,
    "append16": issue16.bench_append16,
    "replay16": issue16.bench_replay16,
    "memory": cli.bench_memory,
    "cli": cli.bench_cli,
}
BENCHES.update(pg.PG_BENCHES)  # the PostgreSQL section's


def fs_type(path: str) -> str:
    path = os.path.realpath(path)
    best, kind = "", "?"
    try:
        with open("/proc/mounts", encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                mount = parts[1]
                if (path == mount or path.startswith(mount.rstrip("/") + "/")) and len(mount) > len(best):
                    best, kind = mount, f"{parts[2]} ({parts[0]} on {mount})"
    except OSError:
        pass
    return kind


def machine(root: str) -> dict[str, Any]:
    try:
        commit = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "eventstore", "projections"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "", ""
    commit = commit or "not a git checkout"
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "cpus": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
        "platform": platform.platform(), "bench_dir": root, "fs": fs_type(root),
        "sqlite": sqlite3.sqlite_version, "msgpack": ".".join(map(str, msgpack.version)),
        "zstandard": zstandard.__version__, "commit": commit + (" (eventstore/projections modified)" if dirty else ""),
        "loadavg_start": os.getloadavg(), "eventstore": os.path.dirname(eventstore.__file__),
    }


def _profiled(fn: Callable[[Bench], None], b: Bench, out: Callable[[str], None]) -> None:
    import cProfile
    import io
    import pstats
    prof = cProfile.Profile()
    prof.enable()
    try:
        fn(b)
    finally:
        prof.disable()
        text = io.StringIO()
        pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(r"eventstore|projections|msgpack|zstd|sqlite|posix|\{", 15)
        for line in text.getvalue().splitlines()[4:]:
            if line.strip():
                out("    | " + line)


def summarize(paths: list[str]) -> int:
    """Markdown table of several ``--json`` runs: per row the run with the median ratio."""
    runs = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            runs.append(json.load(f))
    print(f"{len(runs)} runs: " + "; ".join(f"{r['machine']['date_utc']} UTC, load "
                                           f"{r['machine']['loadavg_start'][0]:.1f}" for r in runs))
    print()
    print("| benchmark | issue | metalog | baseline | ratio (median) | ratio per run | target | result |")
    print("|---|---|---|---|---|---|---|---|")
    for i, row in enumerate(runs[0]["rows"]):
        same = [r["rows"][i] for r in runs if i < len(r["rows"]) and r["rows"][i]["what"] == row["what"]]
        ratios = [r["ratio"] for r in same if r["ratio"] is not None]
        if ratios:
            mid = sorted(same, key=lambda r: r["ratio"])[(len(same) - 1) // 2]
            per_run = ", ".join(f"{x:.2f}" for x in ratios)
        else:
            scored = [r for r in same if r.get("score") is not None] or same
            mid = sorted(scored, key=lambda r: r.get("score") or 0)[(len(scored) - 1) // 2]
            per_run = ""
        ratio = "" if mid["ratio"] is None else f"{mid['ratio']:.2f}x"
        verdicts = {r["verdict"] for r in same}
        verdict = mid["verdict"] if len(verdicts) == 1 else f"{mid['verdict']} ({'/'.join(r['verdict'] for r in same)})"
        print(f"| {row['what']} | {row['issue']} | {mid['metalog']} | {mid['baseline']} | {ratio} | "
              f"{per_run} | {row['target']} | {verdict} |")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=DESCRIPTION,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller data and fewer appends (about a minute)")
    ap.add_argument("--only", action="append", choices=sorted(BENCHES), metavar="NAME",
                    help=f"run only this benchmark (repeatable): {', '.join(BENCHES)}")
    ap.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    ap.add_argument("--dir", default=None,
                    help="parent directory for the temporary data (default: the checkout's parent, "
                         "a real disk; not tmpfs)")
    ap.add_argument("--repeats", type=int, default=None, help="rounds per short measurement (default 3; 2 with --quick)")
    ap.add_argument("--markdown", action="store_true", help="also print the results as a Markdown table")
    ap.add_argument("--keep", action="store_true", help="keep the temporary data")
    ap.add_argument("--profile", action="store_true",
                    help="run each benchmark under cProfile and print its top functions (figures are "
                         "then slower; use it to find hot spots, not to record numbers)")
    ap.add_argument("--summarize", nargs="+", metavar="RUN.json",
                    help="do not measure: print a Markdown table of the median of several --json runs")
    args = ap.parse_args(argv)
    if args.summarize:
        return summarize(args.summarize)
    repeats = args.repeats or (2 if args.quick else 3)
    parent = os.path.abspath(args.dir or os.path.dirname(REPO))
    os.makedirs(parent, exist_ok=True)
    root = tempfile.mkdtemp(prefix="metalog-bench-", dir=parent)
    out = (lambda s: print(s, file=sys.stderr, flush=True)) if args.json else (lambda s: print(s, flush=True))
    facts = machine(root)
    out("metalog benchmarks — " + " ".join(["python tools/bench.py", *(argv if argv is not None else sys.argv[1:])]))
    for k in ("date_utc", "cpus", "cpu", "python", "platform", "fs", "sqlite", "msgpack", "zstandard",
              "commit", "eventstore", "loadavg_start"):
        out(f"  {k:14} {facts[k]}")
    if facts["fs"].startswith("tmpfs"):
        out("  WARNING: the bench dir is on tmpfs; fsync figures mean nothing there (use --dir)")
    b = Bench(root, args.quick, repeats, out)
    names = args.only or list(BENCHES)
    t_all = now()
    try:
        for name in names:
            out(f"[{name}] {BENCHES[name].__doc__.splitlines()[0]}")
            t0 = now()
            if args.profile:
                _profiled(BENCHES[name], b, out)
            else:
                BENCHES[name](b)
            out(f"  ({now() - t0:.1f} s)")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    facts["loadavg_end"] = os.getloadavg()
    facts["total_s"] = round(now() - t_all, 1)
    out(f"done in {facts['total_s']} s; load average at the end {facts['loadavg_end']}")
    failed = [r for r in b.rows if r.ok is False]
    out(f"{sum(r.ok is True for r in b.rows)} PASS, {len(failed)} FAIL, "
        f"{sum(r.ok is None for r in b.rows)} info")
    if args.markdown:
        out("")
        out("| benchmark | issue | metalog | baseline | ratio | target | result |")
        out("|---|---|---|---|---|---|---|")
        for r in b.rows:
            ratio = "" if r.ratio is None else f"{r.ratio:.2f}x"
            out(f"| {r.what} | {r.issue} | {r.metalog} | {r.baseline} | {ratio} | {r.target} | {r.verdict} |")
    if args.json:
        rows = []
        for r in b.rows:
            d = asdict(r)
            d["verdict"] = r.verdict
            rows.append(d)
        json.dump({"machine": facts, "quick": args.quick, "repeats": repeats, "rows": rows},
                  sys.stdout, indent=2, default=str)
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
