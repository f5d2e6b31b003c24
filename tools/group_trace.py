"""Group commit in steady state: how long each sync takes and what lies between syncs.

    python tools/group_trace.py                  # 8 threads x 200 durable appends, 5 rounds
    python tools/group_trace.py --threads 4 --appends 500 --rounds 3

Each round opens a fresh store (``durability="fsync"``) whose file-system
layer (the documented ``fs=`` hook) timestamps every ``fdatasync``, lets the
threads append, and leaves out the first and last five syncs (threads
arriving and leaving). It prints the median sync, the median time from the
end of one sync to the start of the next (the leader's and the committers'
Python, and their wake-ups), commits per sync and the rate of the whole
round. The time between syncs is what group commit's design can change;
`tools/bench.py --only group` gives the ratio the issue asks for.

Like bench.py, it imports the checkout it sits in.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import eventstore  # noqa: E402
from eventstore.fs import FileSystem  # noqa: E402


class TimedSyncFS(FileSystem):
    """Records (start, end) of every data sync, in perf_counter_ns."""

    def __init__(self) -> None:
        self.syncs: list[tuple[int, int]] = []

    def fdatasync(self, fd: int) -> None:
        start = time.perf_counter_ns()
        super().fdatasync(fd)
        self.syncs.append((start, time.perf_counter_ns()))


def one_round(path: str, threads: int, appends: int) -> tuple[list[float], list[float], float, float]:
    """(sync durations us, gaps between syncs us, commits per sync, events/s) of one round."""
    fs = TimedSyncFS()
    store = eventstore.open(path, durability="fsync", snapshot_every=0, fs=fs)
    store.append("trace.start", "/warm", {})
    gate = threading.Barrier(threads + 1)

    def worker(j: int) -> None:
        append = store.append
        gate.wait()
        for i in range(appends):
            append("media.title", f"/t{j}/{i % 50}", {"value": f"title {i}"})

    workers = [threading.Thread(target=worker, args=(j,)) for j in range(threads)]
    for w in workers:
        w.start()
    gate.wait()
    t0 = time.perf_counter()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - t0
    store.close()
    steady = fs.syncs[6:-5]  # the warm-up append's sync, then five at each end
    syncs = [(end - start) / 1e3 for start, end in steady]
    gaps = [(steady[i + 1][0] - steady[i][1]) / 1e3 for i in range(len(steady) - 1)]
    return syncs, gaps, threads * appends / max(len(fs.syncs) - 1, 1), threads * appends / elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--appends", type=int, default=200, help="durable appends per thread per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--dir", help="parent directory for the stores (default: beside the checkout)")
    args = ap.parse_args()
    if min(args.threads, args.appends, args.rounds) < 1 or args.appends < 20:
        ap.error("--threads and --rounds must be positive, --appends at least 20")
    parent = os.path.abspath(args.dir or os.path.dirname(REPO))
    os.makedirs(parent, exist_ok=True)
    root = tempfile.mkdtemp(prefix="metalog-trace-", dir=parent)
    try:
        syncs: list[float] = []
        gaps: list[float] = []
        per_sync: list[float] = []
        rates: list[float] = []
        for r in range(args.rounds):
            s, g, c, rate = one_round(os.path.join(root, f"r{r}"), args.threads, args.appends)
            syncs += s
            gaps += g
            per_sync.append(c)
            rates.append(rate)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"{args.threads} threads x {args.appends} durable appends, {args.rounds} rounds "
          f"({os.path.join(REPO, 'eventstore')})")
    print(f"  fdatasync           median {statistics.median(syncs):7.0f} us")
    print(f"  between two syncs   median {statistics.median(gaps):7.0f} us")
    print(f"  commits per sync    median {statistics.median(per_sync):7.1f}")
    print(f"  rate                median {statistics.median(rates):7,.0f} ev/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
