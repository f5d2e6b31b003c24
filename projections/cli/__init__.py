"""The `metalog` command line (SPEC §6), on top of `MediaCatalog` and the `eventstore` API.

`app` parses arguments, dispatches and maps errors to exit codes; `context`
opens stores and catalogs for a command; `output` formats; `media`, `log`
and `demo` hold the commands. `eventstore` never imports this package.
"""
from __future__ import annotations

from .app import (EXIT_CORRUPTION, EXIT_LOCKED, EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE, build_parser,
                  main)

__all__ = ["main", "build_parser", "EXIT_OK", "EXIT_PROBLEMS", "EXIT_USAGE", "EXIT_LOCKED",
           "EXIT_CORRUPTION"]
