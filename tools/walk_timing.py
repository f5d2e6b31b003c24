#!/usr/bin/env python3
"""CPU time of a full replay and of reads through the segment walk (issue 14 item 4).

Two stores of 200,000 events: one commit per event (200,000 frames: the walk's
per-frame cost shows) and 100 events per commit (2,000 frames). For each:
an open replaying into a `MediaProjection`, a `read()` of everything, and a
readonly open plus a `read(key=...)`. Prints the median and the minimum CPU
time of ``--rounds`` runs after one warm-up. Run it on two checkouts (or
before and after a change) on an idle machine and compare.

    python tools/walk_timing.py [--rounds 7] [--dir DIR]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from typing import Callable

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import eventstore  # noqa: E402
from projections import MediaProjection  # noqa: E402

N = 200_000


def build(path: str, per_commit: int) -> None:
    if os.path.exists(path):
        return
    keys = N // 10
    with eventstore.open(path, durability="none", snapshot_every=0, segment_bytes=8 << 20) as s:
        for i in range(0, N, per_commit):
            s.append_many([("title", f"/m/{j % keys}.mp4", {"title": f"t{j}"}) for j in range(i, i + per_commit)])


def cpu(fn: Callable[[], None]) -> float:
    t = time.process_time()
    fn()
    return time.process_time() - t


def cases(path: str) -> dict[str, Callable[[], None]]:
    def replay() -> None:
        eventstore.open(path, [MediaProjection()], durability="none", snapshot_every=0).close()

    def read() -> None:
        with eventstore.open(path, durability="none", snapshot_every=0) as s:
            assert sum(1 for _ in s.read()) == N

    def read_key() -> None:
        with eventstore.open(path, readonly=True) as s:
            assert sum(1 for _ in s.read(key="/m/7.mp4")) == 10

    return {"replay": replay, "read": read, "read key": read_key}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--dir", help="where the two stores are built (kept for the next run)")
    args = ap.parse_args()
    base = args.dir or tempfile.mkdtemp(prefix="metalog-walk-timing-")
    os.makedirs(base, exist_ok=True)
    for per_commit in (1, 100):
        path = os.path.join(base, f"events-{per_commit}-per-commit")
        build(path, per_commit)
        for label, fn in cases(path).items():
            fn()
            times = [cpu(fn) for _ in range(args.rounds)]
            print(f"{per_commit:>3}/commit  {label:9} median {statistics.median(times) * 1000:7.1f} ms"
                  f"  min {min(times) * 1000:7.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
