"""The `metalog` command line (SPEC §6), on top of `MediaCatalog` and the `eventstore` API.

`app` parses arguments, dispatches and maps errors to exit codes; `commands`
is the table of commands; `context` opens stores and catalogs for a command
(and `damage` reads past damage); `output` and `cells` format; `media`,
`listing`, `edit`, `log`, `restore` and `demo` hold the commands, imported
only when one runs. `eventstore` never imports this package.
"""
from __future__ import annotations

from .app import (EXIT_CORRUPTION, EXIT_LOCKED, EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE, build_parser,
                  main, run)

__all__ = ["main", "run", "build_parser", "EXIT_OK", "EXIT_PROBLEMS", "EXIT_USAGE", "EXIT_LOCKED",
           "EXIT_CORRUPTION"]
