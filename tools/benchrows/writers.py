"""Issue 14: several writer processes on one store, against the exclusive store before them."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import eventstore

from .common import REPO, Bench, Row, interleaved, med, ms, rate


# One writer process of `bench_writers`, run with ``python -c`` so that the tree on
# PYTHONPATH decides which eventstore it measures (this checkout, or the exclusive
# store before many writers). It opens the store, says READY, waits for the go file,
# appends, and prints one JSON line.
WRITER_CHILD = r"""
import json, os, sys, time
import eventstore
mode, path, durability, exclusive, amount, go = sys.argv[1:7]
options = {"durability": durability, "snapshot_every": 0}
if exclusive == "1":
    options["exclusive"] = True
store = eventstore.open(path, **options)
pid = os.getpid()
store.append("bench.start", f"/warm/{pid}", {})
def item(i):
    return ("media.title", f"/media/p{pid}/2024/IMG_{i % 5000:05d}.jpg",
            {"value": f"Holiday photo {i} taken at the beach with the family"})
items = [item(i) for i in range(int(amount))] if mode != "loop" else []
print("READY", flush=True)
if mode == "turns":                      # one durable append per line from the parent
    for t, k, d in items:
        sys.stdin.readline()
        t0 = time.perf_counter()
        store.append(t, k, d)
        print(time.perf_counter() - t0, flush=True)
    store.close()
    sys.exit(0)
while not os.path.exists(go):
    time.sleep(0.0005)
out = {"eventstore": os.path.dirname(eventstore.__file__)}
if mode == "bulk":                       # append_many of 100, durability none, then flush
    w, c = time.perf_counter(), time.process_time()
    for i in range(0, len(items), 100):
        store.append_many(items[i:i + 100])
    store.flush()
    out.update(seconds=time.perf_counter() - w, cpu=time.process_time() - c, events=len(items))
else:                                    # single durable appends for a fixed time
    n, end = 0, time.monotonic() + float(amount)
    t0, c0 = time.perf_counter(), time.process_time()
    while time.monotonic() < end:
        store.append(*item(n))
        n += 1
    out.update(seconds=time.perf_counter() - t0, cpu=time.process_time() - c0, commits=n)
store.close()
print(json.dumps(out), flush=True)
"""


# The same loop with no store: one write of a frame-sized record and one fdatasync per
# commit, to one file shared by every process (what the disk and kernel give N processes).
RAW_CHILD = r"""
import os, sys, time
path, go, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
record = b"\x5a" * 150
print("READY", flush=True)
while not os.path.exists(go):
    time.sleep(0.0005)
n, end = 0, time.monotonic() + seconds
t0 = time.perf_counter()
while time.monotonic() < end:
    os.write(fd, record)
    os.fdatasync(fd)
    n += 1
print(n, time.perf_counter() - t0, flush=True)
"""


def _raw_writers(b: Bench, processes: int, seconds: float) -> float:
    """Commits per second of ``processes`` raw write+fdatasync loops on one file."""
    path = b.fresh(f"writers-raw{processes}")
    lines = _together([[sys.executable, "-c", RAW_CHILD, path, path + ".go", str(seconds)]] * processes,
                      path + ".go", dict(os.environ))
    done = [line.split() for line in lines]
    return sum(int(n) for n, _ in done) / max(float(s) for _, s in done)


def _together(commands: list[list[str]], go: str, env: dict[str, str]) -> list[str]:
    """Start every command; once each has said READY, create ``go`` (they start at once);
    the last line each printed."""
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for cmd in commands]
    try:
        for p in procs:
            line = p.stdout.readline()
            if line.strip() != "READY":
                raise RuntimeError(f"bench child failed: {line!r} {p.stderr.read()[-2000:]}")
        open(go, "w").close()
        lines = []
        for p in procs:
            out, err = p.communicate(timeout=600)
            if p.returncode:
                raise RuntimeError(f"bench child exited {p.returncode}: {err[-2000:]}")
            lines.append(out.strip().splitlines()[-1])
        return lines
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def _exclusive_baseline(b: Bench) -> tuple[str, bool, str]:
    """(PYTHONPATH, exclusive flag, description) of the store to compare one writer against.

    ``eventstore.open(..., exclusive=True)`` when this checkout has it; else the
    eventstore of the commit before many writers (its lock was held for the whole
    open), extracted from git; ("", False, why) when neither is available.
    """
    import inspect
    if "exclusive" in inspect.signature(eventstore.open).parameters:
        return REPO, True, "this checkout with exclusive=True"
    try:
        seam = subprocess.run(["git", "-C", REPO, "log", "--format=%H", "-1", "--grep",
                               "the Store seam and many writers"], capture_output=True, text=True,
                              timeout=10).stdout.strip()
        if not seam:
            return "", False, "no exclusive=True here and no git history to take the old store from"
        tree = b.fresh("exclusive-tree")
        os.makedirs(tree)
        archive = subprocess.run(["git", "-C", REPO, "archive", f"{seam}^", "eventstore"],
                                 capture_output=True, timeout=30, check=True).stdout
        subprocess.run(["tar", "-x", "-C", tree], input=archive, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        return "", False, f"no exclusive=True here and the old store could not be extracted ({exc})"
    return tree, False, f"the exclusive store of {seam[:7]}^ (lock held per open), from git"


def _writers(b: Bench, pythonpath: str, mode: str, path: str, durability: str, exclusive: bool,
             amount: float, processes: int = 1) -> list[dict[str, Any]]:
    """Run ``processes`` writer children on ``path`` at once; their JSON results."""
    go = path + ".go"
    command = [sys.executable, "-c", WRITER_CHILD, mode, path, durability, "1" if exclusive else "0",
               str(amount), go]
    lines = _together([command] * processes, go, dict(os.environ, PYTHONPATH=pythonpath))
    return [json.loads(line) for line in lines]


def _turns(b: Bench, sides: list[tuple[str, bool]], n: int) -> list[list[float]]:
    """One writer child per (PYTHONPATH, exclusive) side, each on a fresh store, appending
    durably one event at a time in turn; the latencies each measured."""
    procs = []
    try:
        for pythonpath, exclusive in sides:
            env = dict(os.environ, PYTHONPATH=pythonpath)
            p = subprocess.Popen([sys.executable, "-c", WRITER_CHILD, "turns", b.fresh("writers-turns"), "fsync",
                                  "1" if exclusive else "0", str(n), "-"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            procs.append(p)
            if p.stdout.readline().strip() != "READY":
                raise RuntimeError(f"bench writer failed: {p.stderr.read()[-2000:]}")
        latencies: list[list[float]] = [[] for _ in sides]
        for _ in range(n):
            for i, p in enumerate(procs):
                p.stdin.write("\n")
                p.stdin.flush()
                latencies[i].append(float(p.stdout.readline()))
        for p in procs:
            p.stdin.close()
            if p.wait(60):
                raise RuntimeError(f"bench writer exited {p.returncode}: {p.stderr.read()[-2000:]}")
        return latencies
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def bench_writers(b: Bench) -> None:
    """14: writers in several processes: one alone vs the exclusive store; 4 durable vs 1."""
    base_path, base_exclusive, base_name = _exclusive_baseline(b)
    if base_path:
        b.info(f"baseline for one process alone: {base_name}")
        n_bulk = 50_000 if b.quick else 200_000
        n_durable = 300 if b.quick else 800

        def one(pythonpath: str, exclusive: bool, mode: str, durability: str, n: int) -> dict[str, Any]:
            return _writers(b, pythonpath, mode, b.fresh(f"writers-{mode}"), durability, exclusive, n)[0]

        ours, theirs = interleaved(b.repeats + 2, lambda: one(REPO, False, "bulk", "none", n_bulk),
                                   lambda: one(base_path, base_exclusive, "bulk", "none", n_bulk))
        mc, sc = med(r["cpu"] for r in ours), med(r["cpu"] for r in theirs)
        mw, sw = med(r["seconds"] for r in ours), med(r["seconds"] for r in theirs)
        ratio = sc / mc
        b.add(Row("writers", "14", f"one process alone, bulk append ({n_bulk:,} events, append_many of 100, "
                  "durability=none)", f"{rate(n_bulk, mc)} CPU ({rate(n_bulk, mw)} wall)",
                  f"exclusive {rate(n_bulk, sc)} CPU ({rate(n_bulk, sw)} wall)", ratio, ">= 0.95x",
                  ratio >= 0.95, {"ours": ours, "exclusive": theirs, "wall_ratio": sw / mw},
                  note=f"baseline: {base_name}; each side a fresh process and store, {b.repeats + 2} "
                       f"alternating rounds, medians; verdict on CPU time, wall-clock ratio {sw / mw:.2f}x"))

        # Durable appends alternate op by op between two processes, ours and the baseline's
        # (fsync latency on a shared disk drifts tenfold within seconds; see bench_durable).
        ours_lat, theirs_lat = _turns(b, [(REPO, False), (base_path, base_exclusive)], n_durable)
        m, s = med(ours_lat), med(theirs_lat)
        ratio = s / m
        b.add(Row("writers", "14", f"one process alone, durable single-event appends ({n_durable} appends, "
                  "durability=fsync)", rate(1, m), f"exclusive {rate(1, s)}", ratio, ">= 0.95x", ratio >= 0.95,
                  {"ours_median_s": m, "exclusive_median_s": s, "ours_total_s": sum(ours_lat),
                   "exclusive_total_s": sum(theirs_lat)},
                  note=f"baseline: {base_name}; two processes, each on its own store, take turns one "
                       f"append at a time; rates from the median latency (ours {ms(m)}, exclusive "
                       f"{ms(s)}); from the totals the ratio is {sum(theirs_lat) / sum(ours_lat):.2f}x"))
    else:
        b.info(f"one process alone vs the exclusive store: not measured ({base_name})")

    seconds = 1.0 if b.quick else 2.0
    rounds = b.repeats + 3

    cpu_per_commit: dict[int, list[float]] = {1: [], 4: []}

    def together(processes: int) -> float:
        results = _writers(b, REPO, "loop", b.fresh(f"writers-{processes}p"), "fsync", False, seconds,
                           processes)
        commits = sum(r["commits"] for r in results)
        cpu_per_commit[processes].append(sum(r["cpu"] for r in results) / commits)
        return commits / max(r["seconds"] for r in results)

    one_rate, four_rate, raw_one, raw_four = interleaved(
        rounds, lambda: together(1), lambda: together(4),
        lambda: _raw_writers(b, 1, seconds), lambda: _raw_writers(b, 4, seconds))
    c1, c4 = med(cpu_per_commit[1]), med(cpu_per_commit[4])
    pairs = sorted(f / o for o, f in zip(one_rate, four_rate))
    ratio = med(pairs)
    b.add(Row("writers", "14", f"4 processes appending durably together ({seconds:g} s of single-event "
              "commits each)", f"{med(four_rate):,.0f} commits/s",
              f"1 process {med(one_rate):,.0f} commits/s", ratio, ">= 2x", ratio >= 2,
              {"one_process_rate": one_rate, "four_process_rate": four_rate, "pair_ratios": pairs,
               "cpu_s_per_commit_1": cpu_per_commit[1], "cpu_s_per_commit_4": cpu_per_commit[4]},
              note=f"each process appends single events with durability=fsync in a loop for {seconds:g} s "
                   f"(one thread each); {rounds} alternating rounds, ratio = median of the rounds' ratios "
                   f"(min {pairs[0]:.2f}, max {pairs[-1]:.2f}); CPU per commit, all processes together: "
                   f"{c4 * 1e6:.0f} us with 4 (each also reads the others' commits), {c1 * 1e6:.0f} us "
                   f"with 1, on {os.cpu_count()} CPUs"))

    raw_pairs = sorted(f / o for o, f in zip(raw_one, raw_four))
    raw_ratio = med(raw_pairs)
    b.add(Row("writers", "14", "4 raw write+fdatasync loops on one file (no store: how far the disk scales)",
              f"{med(raw_four):,.0f} commits/s", f"1 loop {med(raw_one):,.0f} commits/s", raw_ratio, "", None,
              {"one_process_rate": raw_one, "four_process_rate": raw_four, "pair_ratios": raw_pairs},
              note=f"the row above without metalog: each process writes a 150-byte record and calls "
                   f"fdatasync, the kernel joining concurrent syncs of one file; measured in the same "
                   f"rounds (min {raw_pairs[0]:.2f}, max {raw_pairs[-1]:.2f}); how far 4 processes' syncs of one "
                   f"file scale on this machine with no store at all; the store's ratio is "
                   f"{ratio / raw_ratio:.0%} of it"))
