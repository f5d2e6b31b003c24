#!/usr/bin/env python3
"""metalog benchmarks: every figure against a baseline measured in the same run.

Run from a checkout (``pip install -e .`` done)::

    python tools/bench.py                 # everything, a few minutes on 2 cores
    python tools/bench.py --quick         # smaller data, fewer rounds
    python tools/bench.py --only replay   # one benchmark (repeatable flag)
    python tools/bench.py --json          # machine output on stdout
    python tools/bench.py --dir /some/fs  # where the temporary data lives

Each benchmark prints its figure, the baseline it measured itself, and the
ratio against the target of issues 3, 4, 5, 14 and 16 (SPEC §7.8: scripts, not
timed tests). Short measurements are repeated (``--repeats``, default 3)
with metalog and baseline rounds interleaved, so a noisy neighbour hurts
both sides alike; the median of each side is reported. The baselines:

- SQLite in WAL mode, ``synchronous=NORMAL``, table (seq, ts, type, key,
  data msgpack blob), inserted with ``executemany`` in one transaction;
- a raw ``os.write`` + ``os.fdatasync`` loop (the sync call the store uses);
- ``OldJsonStore`` (``benchrows/data.py``): the old uploader's DataManager, one dict
  ``{media_key: {"title", "description"}}`` rewritten to disk on every
  change (json.dump to a temp file, fsync, rename), with its batch mode.

This script only reads the public API of ``eventstore`` and
``projections``; it never changes the code it measures. The benchmarks live
in ``tools/benchrows/`` (one module per subject: ``core`` for bulk append
and replay, ``issue16`` for the rows of issue 16, ``durable``, ``catalog``,
``bigstore``, ``pg``, ``writers``; ``driver`` is this command).
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # tools/, for benchrows

from benchrows.driver import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
