#!/usr/bin/env python3
"""Wall times of the `metalog` command on a large store (issue 16, item 5).

Run from a checkout (``pip install -e .`` done)::

    python tools/cli_timing.py                   # 100,000 items, 5 runs each
    python tools/cli_timing.py --items 10000 --runs 3
    python tools/cli_timing.py --store /tmp/big --keep   # build once, reuse later
    python tools/cli_timing.py --json
    python tools/cli_timing.py --compare main   # main's code on its own store, taking turns

It builds a store of ``--items`` media items (a title and a description
each, long enough that `ls` shortens them) through `MediaCatalog` in
batches, takes a snapshot as an application's store would have, and then
times, as separate processes (median of ``--runs``, wall time and the
child's CPU time; the runs of the commands take turns, so a noisy
neighbour slows them alike):

- ``python -c pass``               (the interpreter alone: the baseline)
- ``metalog --help``
- ``metalog get KEY``              (the first item built)
- ``metalog ls > /dev/null``       (the whole table)
- ``metalog ls | head -1``         (until the first line arrives on the pipe)
- ``metalog --json ls > /dev/null``
- ``python -c "import eventstore; eventstore.open(STORE, readonly=True)"``
  (the store open alone, with the media projection: the part of `get` and
  `ls` that is the store's, not the CLI's)

With ``--breakdown`` it also splits one process's time into phases (median
of ``--runs``, measured inside the process with ``perf_counter``): the
interpreter until the script runs, importing the CLI, importing the store
and the catalog, opening the store (snapshot read and replay), and the
command's own work: ``get``'s lookup and printing, and ``ls``'s sort, key
column and rows.

The command run is what this checkout's ``pyproject.toml`` declares as the
``metalog`` console script, run as an installed script runs it, with this
checkout first on ``PYTHONPATH``, so the figures are this checkout's. The
checkout's modules are byte-compiled first and the children run without
``PYTHONDONTWRITEBYTECODE``, as an installed package has its ``.pyc`` files
(compiling every module from source costs ~80 ms a start). Each command is
judged against its target (issue 16 item 5) on its wall-time median; the
CPU time is printed beside it, since on a shared machine the wall time
also measures the neighbours. SPEC §7.8: timings live in scripts like this
one, never in tests.
"""
from __future__ import annotations

import argparse
import compileall
import inspect
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from projections import MediaCatalog  # noqa: E402


def metalog_command(repo: Path = REPO) -> list[str]:
    """The `metalog` command as the checkout's pyproject.toml declares it: what the
    installed console script runs (``from MODULE import FUNC; sys.exit(FUNC())``),
    so a script installed from an older checkout cannot stand in for this one."""
    entry = "projections.cli:main"
    for line in (repo / "pyproject.toml").read_text(encoding="utf-8").splitlines():
        name, _, value = line.partition("=")
        if name.strip() == "metalog":
            entry = value.strip().strip('"')
    module, func = entry.split(":")
    return [sys.executable, "-c", f"import sys; from {module} import {func}; sys.argv[0] = 'metalog'; "
                                  f"sys.exit({func}())"]


def environment(repo: Path = REPO) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("METALOG_") and k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH")}
    env["PYTHONPATH"] = str(repo)
    env["PYTHONSAFEPATH"] = "1"     # `python -c` must not import from the current directory
    env["METALOG_PROGRESS"] = "0"
    return env


def byte_compile(repo: Path = REPO) -> None:
    """The checkout's ``.pyc`` files, as an installed package has them."""
    for package in ("eventstore", "projections"):
        compileall.compile_dir(str(repo / package), quiet=1)


def build_with(repo: Path, store: Path, items: int) -> None:
    """`build` run by another checkout's code (its store format), as `--compare` needs:
    the same source, in a process that imports that checkout's `projections`."""
    script = "\n".join(["import sys", "from pathlib import Path", "from projections import MediaCatalog",
                        inspect.getsource(key_of), inspect.getsource(build),
                        "build(Path(sys.argv[1]), int(sys.argv[2]))"])
    subprocess.run([sys.executable, "-c", script, str(store), str(items)], env=environment(repo),
                   check=True)


def checkout(ref: str, into: Path) -> Path:
    """The files of commit ``ref`` of this repository, unpacked into ``into``."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


# (name, target in seconds or None): issue 16 item 5
TARGETS = {"metalog --help": 0.100, "metalog get KEY": 0.150, "metalog ls > /dev/null": 1.0,
           "metalog ls | head -1 (first line)": 0.300}


def key_of(i: int) -> str:
    return f"/srv/media/library/{2000 + i % 25}/{i % 97:02d}/clip-{i:07d}.mp4"


def build(store: Path, items: int, batch: int = 5000) -> None:
    """``items`` items, each a title and a description, in batches; then a snapshot."""
    with MediaCatalog.open(str(store), actor="timing", durability="none",
                           snapshot_every=0) as cat:
        for start in range(0, items, batch):
            with cat.batch():
                for i in range(start, min(start + batch, items)):
                    cat.set_title(key_of(i), f"Holiday footage, take {i} of the long weekend away")
                    cat.set_description(key_of(i), f"Shot on the pier at dusk; clip {i} of the "
                                                   "series, colour graded, with ambient sound")
        cat.snapshot()


Sample = tuple[float, float]     # (wall seconds, CPU seconds of the child)


def _reap(proc: "subprocess.Popen[bytes]") -> tuple[int, float]:
    """Wait for ``proc``: (exit status, its user + system CPU seconds)."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_utime + usage.ru_stime


def timed(argv: list[str], env: dict[str, str]) -> Sample:
    """Wall and CPU seconds of one run of ``argv`` (stdout to /dev/null)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    assert proc.stderr is not None
    err = proc.stderr.read()
    code, cpu = _reap(proc)
    elapsed = time.perf_counter() - start
    proc.stderr.close()
    if code != 0:
        raise SystemExit(f"{' '.join(argv)} exited {code}: {err.decode()[-500:]}")
    return elapsed, cpu


def first_line(argv: list[str], env: dict[str, str]) -> Sample:
    """Seconds until the first line arrives on a pipe, as `| head -1` sees it
    (the CPU figure is the whole child's, until it noticed the closed pipe)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    elapsed = time.perf_counter() - start
    proc.stdout.close()          # as head does: the writer gets EPIPE
    _, cpu = _reap(proc)
    if not line:
        raise SystemExit(f"{' '.join(argv)} printed nothing")
    return elapsed, cpu


OPEN_ONLY = ("import sys, eventstore; from projections.media import MediaProjection; "
             "eventstore.open(sys.argv[1], projections=(MediaProjection(),), readonly=True).close()")


PHASES = r"""
import io, json, sys, time
start = time.perf_counter()
from projections.cli.context import Context
from projections.cli.output import Printer
from projections.cli import listing, media
cli = time.perf_counter()
import projections.catalog
imports = time.perf_counter()
sink = io.StringIO()
ctx = Context(store=__import__("pathlib").Path(sys.argv[1]), actor="timing", out=Printer(False, sink))
with ctx.catalog(readonly=True) as cat:
    opened = time.perf_counter()
    record = cat.get(sys.argv[2])
    ctx.out.kv([("title", record.title), ("updated", record.updated)])
    got = time.perf_counter()
    projection = cat.projection
    keys = listing.under(None, projection.keys())
    listing.print_items(ctx, projection, keys, {})
    listed = time.perf_counter()
print(json.dumps({"import the CLI modules": cli - start,
                  "import store + catalog": imports - cli, "open (snapshot + replay)": opened - imports,
                  "get: lookup + print": got - opened, "ls: sort + rows": listed - got}))
"""


Result = tuple[str, float, list[float]]   # (name, median, every run)


def breakdown(store: Path, runs: int) -> list[Result]:
    """Phases of `get` and `ls` inside one process (see the module docstring)."""
    env = environment()
    samples: dict[str, list[float]] = {}
    for _ in range(runs):
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", PHASES, str(store), key_of(0)], env=env,
                             capture_output=True, text=True, check=True).stdout
        whole = time.perf_counter() - start
        phases = json.loads(out)
        phases["interpreter start + exit (the rest)"] = whole - sum(phases.values())
        for name, seconds in phases.items():
            samples.setdefault(name, []).append(seconds)
    return [(name, statistics.median(times), times) for name, times in samples.items()]


def cases_of(store: Path, repo: Path = REPO, label: str = "") -> list[tuple[str, Callable[[], Sample]]]:
    """The commands timed, run by the checkout at ``repo`` on ``store``."""
    env = environment(repo)
    byte_compile(repo)
    command = metalog_command(repo)
    cmd = command + ["--store", str(store)]
    probe = key_of(0)
    return [(label + name, once) for name, once in [
        ("python -c pass", lambda: timed([sys.executable, "-c", "pass"], env)),
        ("metalog --help", lambda: timed(command + ["--help"], env)),
        ("metalog get KEY", lambda: timed(cmd + ["get", probe], env)),
        ("metalog ls > /dev/null", lambda: timed(cmd + ["ls"], env)),
        ("metalog ls | head -1 (first line)", lambda: first_line(cmd + ["ls"], env)),
        ("metalog --json ls > /dev/null", lambda: timed(cmd + ["--json", "ls"], env)),
        ("store open alone (readonly, media projection)",
         lambda: timed([sys.executable, "-c", OPEN_ONLY, str(store)], env)),
    ]]


def measure(store: Path, runs: int, *others: tuple[str, Path, Path]) -> list[tuple[str, list[Sample]]]:
    """Every command ``runs`` times, the commands taking turns; the samples per command.
    ``others``: (label, checkout, its store) timed in the same turns."""
    cases = cases_of(store)
    for label, repo, their_store in others:
        cases += cases_of(their_store, repo, f"{label}: ")
    for _, once in cases:        # warm the page cache and the .pyc files
        once()
    samples: dict[str, list[Sample]] = {name: [] for name, _ in cases}
    for _ in range(runs):
        for name, once in cases:
            samples[name].append(once())
    return list(samples.items())


def report(measured: list[tuple[str, list[Sample]]]) -> list[dict[str, object]]:
    """One record per command: wall and CPU medians, the runs, the target and verdict."""
    out: list[dict[str, object]] = []
    for name, runs in measured:
        wall = statistics.median(w for w, _ in runs)
        target = TARGETS.get(name)
        out.append({"command": name, "median_s": wall,
                    "cpu_median_s": statistics.median(c for _, c in runs),
                    "runs_s": [w for w, _ in runs], "cpu_runs_s": [c for _, c in runs],
                    "target_s": target, "ok": None if target is None else wall < target})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000, help="media items (default 100000)")
    parser.add_argument("--runs", type=int, default=5, help="runs per command; the median is shown")
    parser.add_argument("--store", type=Path, help="build (or reuse, if it exists) the store here")
    parser.add_argument("--keep", action="store_true", help="keep the store built in a temp dir")
    parser.add_argument("--json", action="store_true", help="machine output")
    parser.add_argument("--breakdown", action="store_true",
                        help="also split get and ls into phases inside one process")
    parser.add_argument("--compare", metavar="REF",
                        help="also time commit REF of this repository (git archive) on a store its "
                             "own code builds, in the same turns")
    args = parser.parse_args()

    temps: list[Path] = []
    store = args.store
    if store is None:
        temps.append(Path(tempfile.mkdtemp(prefix="metalog-cli-timing-")))
        store = temps[0] / "store"
    try:
        if not store.exists():
            start = time.perf_counter()
            build(store, args.items)
            if not args.json:
                print(f"built {args.items} items in {store} in {time.perf_counter() - start:.1f} s")
        others = []
        if args.compare:
            base = Path(tempfile.mkdtemp(prefix="metalog-cli-compare-"))
            temps.append(base)
            repo = checkout(args.compare, base / "checkout")
            build_with(repo, base / "store", args.items)
            others.append((args.compare, repo, base / "store"))
        results = report(measure(store, args.runs, *others))
        phases = breakdown(store, args.runs) if args.breakdown else []
    finally:
        for temp in temps if not args.keep else []:
            shutil.rmtree(temp, ignore_errors=True)
    if args.json:
        print(json.dumps({"items": args.items, "runs": args.runs, "results": results,
                          "phases": [{"phase": n, "median_s": m, "runs_s": t}
                                     for n, m, t in phases]}, indent=2))
        return 0
    print(f"median of {args.runs} runs, python {sys.version.split()[0]}, "
          f"load average {os.getloadavg()[0]:.1f}")
    show_commands(results)
    if phases:
        print("phases of one process that opens the store, gets one item and lists all:")
        show(phases)
    return 0


def show_commands(results: list[dict[str, object]]) -> None:
    print(f"  {'command':48} {'wall':>7}    {'CPU':>6}   {'target':>8}  verdict  (wall of each run, ms)")
    for r in results:
        target, ok = r["target_s"], r["ok"]
        verdict = "info" if ok is None else ("PASS" if ok else "FAIL")
        goal = "" if target is None else f"< {float(target) * 1000:.0f} ms"  # type: ignore[arg-type]
        spread = ", ".join(f"{t * 1000:.0f}" for t in r["runs_s"])  # type: ignore[attr-defined]
        print(f"  {r['command']:48} {float(r['median_s']) * 1000:5.0f} ms  "  # type: ignore[arg-type]
              f"{float(r['cpu_median_s']) * 1000:4.0f} ms  {goal:>9}  {verdict:7}  ({spread})")  # type: ignore[arg-type]


def show(rows: list[Result]) -> None:
    for name, med, times in rows:
        spread = ", ".join(f"{t * 1000:.0f}" for t in times)
        print(f"  {name:48} {med * 1000:7.0f} ms   ({spread})")


if __name__ == "__main__":
    sys.exit(main())
