"""What every benchmark shares: the results table, timing spans, and interleaved rounds.

`Row` is one line of the results; `Bench` holds one run's state (where data
goes, sizes, the rows so far); `interleaved` alternates metalog and its
baseline so a noisy neighbour hurts both alike, and `cpu_row` turns the two
sides' CPU times into a row judged on CPU time. `REPO` is the checkout
measured.
"""
from __future__ import annotations

import gc
import os
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from . import REPO  # noqa: F401  (re-exported: the checkout measured)

now = time.perf_counter


# --------------------------------------------------------------------------- results

@dataclass
class Row:
    """One line of the results table."""

    bench: str            # benchmark name (--only)
    issue: str            # "3a", "4", ...
    what: str             # what was measured
    metalog: str          # metalog's figure, human
    baseline: str         # the baseline's figure, human
    ratio: float | None   # metalog vs baseline, oriented so the target reads naturally
    target: str           # e.g. ">= 3x"; "" when the issue sets none
    ok: bool | None       # None: no target (information)
    values: dict[str, Any] = field(default_factory=dict)  # raw numbers for --json
    note: str = ""
    score: float | None = None  # metalog's figure in seconds, to pick a median row without a ratio

    @property
    def verdict(self) -> str:
        return "info" if self.ok is None else ("PASS" if self.ok else "FAIL")

    def line(self) -> str:
        ratio = "" if self.ratio is None else f" = {self.ratio:.2f}x"
        target = f" (target {self.target})" if self.target else ""
        vs = f" vs {self.baseline}" if self.baseline else ""
        return f"{self.what}: {self.metalog}{vs}{ratio}{target} {self.verdict}"


class Bench:
    """Shared state of one run: where data goes, sizes, cached stores, rows."""

    def __init__(self, root: str, quick: bool, repeats: int, out: Callable[[str], None]) -> None:
        self.root = root
        self.quick = quick
        self.repeats = repeats
        self.out = out
        self.rows: list[Row] = []
        self._n = 0
        self.big: dict[str, Any] | None = None   # the cached 1M-event store

    def fresh(self, name: str) -> str:
        """A new, not yet existing path under the bench dir."""
        self._n += 1
        return os.path.join(self.root, f"{self._n:03d}-{name}")

    def add(self, row: Row) -> None:
        self.rows.append(row)
        self.out("  " + row.line())
        if row.note:
            self.out("    " + row.note)

    def info(self, text: str) -> None:
        self.out("    " + text)


def med(xs: Iterable[float]) -> float:
    return statistics.median(list(xs))


def rate(n: float, seconds: float) -> str:
    r = n / seconds
    if r >= 1e6:
        return f"{r / 1e6:.2f}M ev/s"
    if r >= 1e4:
        return f"{r / 1e3:.0f}k ev/s"
    return f"{r:,.0f}/s"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3g} ms" if seconds < 1 else f"{seconds:.2f} s"


def mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def dir_bytes(path: str, suffix: str | None = None) -> int:
    total = 0
    for dirpath, _, names in os.walk(path):
        for name in names:
            if suffix is None or name.endswith(suffix):
                total += os.path.getsize(os.path.join(dirpath, name))
    return total


class Span:
    """Wall-clock and CPU seconds of a block (CPU: this process, all its threads).

    On this shared 2-core machine (load average 3-6 while others run their
    tests) wall time of a CPU-bound loop mostly measures the scheduler; the
    CPU-bound benchmarks judge their target on CPU time and print both.
    """

    def __enter__(self) -> "Span":
        self._w, self._c = now(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = now() - self._w, time.process_time() - self._c


def cpu_row(b: Bench, bench: str, issue: str, what: str, n: int, ours: list, theirs: list,
            base: str, target: float | None, note: str, **values: Any) -> None:
    """A row for a CPU-bound comparison of event rates: verdict on CPU time, wall shown too."""
    mw, mc = med(x[0] for x in ours), med(x[1] for x in ours)
    sw, sc = med(x[0] for x in theirs), med(x[1] for x in theirs)
    ratio = sc / mc
    b.add(Row(bench, issue, what, f"{rate(n, mc)} CPU ({rate(n, mw)} wall)",
              f"{base} {rate(n, sc)} CPU ({rate(n, sw)} wall)", ratio,
              "" if target is None else f">= {target:g}x", None if target is None else ratio >= target,
              {"events": n, "metalog_wall_s": [x[0] for x in ours], "metalog_cpu_s": [x[1] for x in ours],
               "baseline_wall_s": [x[0] for x in theirs], "baseline_cpu_s": [x[1] for x in theirs],
               "wall_ratio": sw / mw, **values},
              note=f"{note}; wall-clock ratio {sw / mw:.2f}x"))


def interleaved(repeats: int, *sides: Callable[[], Any], warmup: bool = False) -> list[list[Any]]:
    """Run the sides in turn ``repeats`` times; the list of results per side.

    With ``warmup`` one extra first round is run and thrown away.
    """
    results: list[list[Any]] = [[] for _ in sides]
    if warmup:
        for side in sides:
            side()
    for _ in range(repeats):
        for i, side in enumerate(sides):
            gc.collect()
            results[i].append(side())
    return results
