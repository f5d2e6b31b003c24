"""`python -m projections`: the same as the `metalog` command."""
from __future__ import annotations

from .cli import run

if __name__ == "__main__":
    run()
