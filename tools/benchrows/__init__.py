"""The benchmarks of ``tools/bench.py``, one module per subject (see that script).

Modules only measure through the public API of ``eventstore`` and
``projections``. Importing this package puts the checkout it sits in first
on ``sys.path``, before any module imports them, so they measure this tree.
"""
from __future__ import annotations

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if sys.path[:1] != [REPO]:
    sys.path.insert(0, REPO)
