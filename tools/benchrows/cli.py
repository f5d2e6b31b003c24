"""Issue 16 items 4 and 5: catalog memory and the command line.

The measuring is done by ``tools/catalog_memory.py`` and ``tools/cli_timing.py``
(each also runs alone, with more detail); ``tools/bench_cli.py`` turns their
results into rows, each against the baseline the same run measured.
"""
from __future__ import annotations

from .common import Bench, Row


def bench_memory(b: Bench) -> None:
    """Live bytes of a 100k-item catalog opened from a snapshot vs the old JSON file's dict (16/4)."""
    import bench_cli
    for row in bench_cli.memory_rows(b.root, b.quick):
        b.add(Row(**row))


def bench_cli(b: Bench) -> None:
    """metalog --help, get, ls and ls | head -1 on a 100k-item store, vs python -c pass (16/5)."""
    import bench_cli
    for row in bench_cli.cli_rows(b.root, b.quick):
        b.add(Row(**row))
