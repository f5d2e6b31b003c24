"""The `metalog` command: argument parsing, dispatch and exit codes.

This module owns the command line of SPEC §6: the argparse parser (with an
example-bearing ``--help`` for every command), the global options
(``--store``, ``--json``, ``--actor``), and the mapping of errors to exit
codes: 0 ok, 1 problems found, 2 usage, 3 locked, 4 corruption (also when
a read-only command met damage and showed what is intact). Users never see
a traceback for their own mistakes. The table of commands is `commands`';
the commands themselves live in `media`, `listing`, `edit`, `log`,
`restore` and `demo`. `eventstore` never imports this module.
"""
from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from .commands import COMMANDS, actor_problem, actor_type
from .context import DEFAULT_STORE, Context, UsageError, default_actor, is_url, store_url
from .output import Printer, visible

__all__ = ["main", "run", "build_parser", "EXIT_OK", "EXIT_PROBLEMS", "EXIT_USAGE",
           "EXIT_LOCKED", "EXIT_CORRUPTION"]

# Nothing here imports `eventstore`, the catalog or the command modules at
# import time: `metalog --help` must not pay for msgpack, zstandard and the
# store (issue 16). A command's module is imported when it runs.

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2
EXIT_LOCKED = 3
EXIT_CORRUPTION = 4

_DESCRIPTION = """\
metalog: an event-sourced, append-only log for media metadata.

Every change to a media item's title or description is an event in a
checksummed log; history, undo, time travel and audit come from replaying it.
"""

_EPILOG = """\
examples:
  metalog demo                                 # a guided tour in a temp dir
  metalog init                                 # create ./metalog-data
  metalog set-title clip.mp4 "Sunset over the bay"
  metalog history clip.mp4
  metalog --json ls | jq .
  metalog log --since 1h --type title.set
  metalog tail -f                              # watch another process write
  metalog verify && metalog compact
  metalog export -o events.jsonl && metalog --store copy restore events.jsonl

exit codes: 0 ok, 1 problems found (an unknown item included), 2 usage,
            3 store locked, 4 corruption (read-only commands still show what
            is intact, then exit 4).
environment: METALOG_STORE (default store), METALOG_ACTOR (default actor),
             METALOG_PROGRESS=0|1 (progress bars off / on even without a tty).
"""

Handler = Callable[[argparse.Namespace, Context], int]


def _handler(spec: str) -> Handler:
    """The command function named ``module:function``, imported when it runs."""
    module, name = spec.split(":")

    def run(args: argparse.Namespace, ctx: Context) -> int:
        found: Handler = getattr(importlib.import_module(f"{__package__}.{module}"), name)
        return found(args, ctx)
    return run


def run_demo(args: argparse.Namespace, ctx: Context) -> int:
    """`demo` runs real command lines through `main`, handed over so that
    `demo` and this module do not import each other."""
    if ctx.explicit_store:
        raise UsageError("demo builds its own store in a temporary directory and never touches "
                         "--store; `metalog demo --dir DIR` keeps it in DIR/store")
    from . import demo
    return demo.cmd_demo(args, ctx, main)


class _UsageExit(Exception):
    """argparse rejected the command line (exit code 2)."""

    def __init__(self, prog: str, usage: str, message: str) -> None:
        super().__init__(message)
        self.prog, self.usage, self.message = prog, usage, message


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises on bad usage instead of exiting, so
    `main` can report it like every other error (also as JSON)."""

    def error(self, message: str) -> Any:
        raise _UsageExit(self.prog, self.format_usage(), message)


def _common_options(defaults: bool) -> _Parser:
    """The global options; accepted before or after the command name."""
    p = _Parser(add_help=False)
    suppress = argparse.SUPPRESS
    p.add_argument("--store", metavar="DIR|URL", default=None if defaults else suppress,
                   help="the store: a directory, or postgresql://user@host:port/db?schema=NAME "
                        "(default: $METALOG_STORE, else ./metalog-data)")
    p.add_argument("--json", action="store_true", default=False if defaults else suppress,
                   help="machine-readable JSON output")
    p.add_argument("--actor", metavar="NAME", type=actor_type, default=None if defaults else suppress,
                   help="who makes the change (default: $METALOG_ACTOR, else your login)")
    return p


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The ``metalog`` parser; with ``only``, a command's name, only that
    command's subparser is built (a command line naming it parses the same)."""
    parser = _Parser(
        prog="metalog", description=_DESCRIPTION, epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_common_options(defaults=True)],
    )
    parser.add_argument("--version", action=_Version, nargs=0,
                        help="show the installed metalog version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    common = _common_options(defaults=False)
    for name, help_, examples, add_args, handler in COMMANDS:
        if only is not None and name != only:
            continue
        p = sub.add_parser(
            name, help=help_, description=help_[:1].upper() + help_[1:] + ".",
            epilog="examples:\n  " + examples, parents=[common],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        add_args(p)
        p.set_defaults(handler=_handler(handler))
    return parser


class _Version(argparse.Action):
    """``--version``, looked up only when asked (importlib.metadata is slow to import)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        try:
            from importlib.metadata import version
            found = version("metalog")
        except Exception:  # noqa: BLE001 - not installed (run from a checkout)
            found = "unknown"
        parser.exit(message=f"metalog {found}\n")


def _fail(ctx_json: bool, code: int, kind: str, message: str, *, prog: str = "metalog",
          **fields: Any) -> int:
    """Report an error on stderr (and as JSON on stdout with --json)."""
    sys.stderr.write(visible(f"{prog}: {message}") + "\n")
    if ctx_json:
        body = {"error": {"kind": kind, "message": message, "exit_code": code, **fields}}
        sys.stdout.write(json.dumps(body, ensure_ascii=False) + "\n")
    return code


def _route_store_log() -> None:
    """What `eventstore` logs (a background snapshot that failed, ...) goes to
    stderr as ``metalog: ...``. What an open repaired or skipped is reported
    by `context` from the store's recovery report instead."""
    import logging

    class StoreLog(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            try:
                sys.stderr.write(visible(f"metalog: {record.getMessage()}") + "\n")
            except Exception:  # noqa: BLE001 - logging must never end the command
                self.handleError(record)

    store_log = logging.getLogger("eventstore")
    if not any(getattr(h, "metalog_cli", False) for h in store_log.handlers):
        handler = StoreLog(logging.WARNING)
        handler.metalog_cli = True  # type: ignore[attr-defined]
        store_log.addHandler(handler)
        store_log.propagate = False


def _context(args: argparse.Namespace) -> Context:
    store = args.store or os.environ.get("METALOG_STORE") or DEFAULT_STORE
    actor = args.actor or default_actor()
    problem = actor_problem(actor)
    if problem:     # from $METALOG_ACTOR or the login name
        raise UsageError(f"{problem} (from $METALOG_ACTOR or the login name; pass --actor NAME)")
    where: Path | str = store_url(store) if is_url(store) else Path(store).expanduser().absolute()
    return Context(store=where, actor=actor, out=Printer(args.json), explicit_store=args.store is not None)


_VALUED = ("--store", "--actor")   # the global options that take a value
_NAMES = frozenset(name for name, *_ in COMMANDS)


def command_named(argv: Sequence[str]) -> str | None:
    """The command an ``argv`` names, when plainly so: its first word that is
    neither an option nor a global option's value, if that is a command."""
    skip = False
    for word in argv:
        if skip:
            skip = False
        elif word.startswith("--") and len(word) > 2 and any(v.startswith(word) for v in _VALUED):
            skip = True                     # --store, or an abbreviation argparse takes for it
        elif word in ("--", "-h", "--help") or word.startswith(("--h", "--v")):
            return None                     # the whole parser answers these
        elif not word.startswith("-") or word == "-":
            return word if word in _NAMES else None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``metalog``; returns the exit code instead of raising SystemExit."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # A command line that names its command parses with that command's subparser
    # alone: building all of them costs more than `metalog get` does otherwise.
    parser = build_parser(command_named(argv))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help or --version
        return int(exc.code or 0)
    except _UsageExit as exc:
        sys.stderr.write(exc.usage)
        return _fail("--json" in argv, EXIT_USAGE, "usage", exc.message, prog=exc.prog)
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        ctx = _context(args)
    except UsageError as exc:
        return _fail(args.json, EXIT_USAGE, "usage", str(exc))
    _route_store_log()
    try:
        code = args.handler(args, ctx)
    except BrokenPipeError:
        # `metalog log | head`: the reader left; that is not an error.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except OSError as exc:  # after BrokenPipeError, its subclass
        # a full disk or an I/O error (the store's own StoreIOError included): one line
        failed = _failure(exc, ctx)
        if failed is not None:
            return failed
        return _fail(ctx.json, EXIT_PROBLEMS, "os", f"{exc.filename or ctx.store}: {exc.strerror or exc}")
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        return 130
    except Exception as exc:  # noqa: BLE001 - mapped to an exit code, or raised again
        failed = _failure(exc, ctx)
        if failed is None:
            raise
        return failed
    return ctx.finish(code)


def _failure(exc: Exception, ctx: Context) -> int | None:
    """The exit code for an error a user can cause (reported on stderr), or
    None for a bug (raised again, with its traceback)."""
    import eventstore
    from ..undo import UndoError

    js = ctx.json
    if isinstance(exc, UsageError):
        return _fail(js, EXIT_USAGE, "usage", str(exc))
    if isinstance(exc, eventstore.LockedError):
        holder = f"process {exc.pid}" if exc.pid else "another process"
        return _fail(js, EXIT_LOCKED, "locked",
                     f"store {ctx.store} is locked by {holder}, which is writing to it; "
                     "read-only commands (get, ls, log, tail, verify, ...) still work",
                     pid=exc.pid)
    if isinstance(exc, eventstore.CorruptionError):
        where = exc.file if exc.offset is None else f"{exc.file} at offset {exc.offset}"
        return _fail(js, EXIT_CORRUPTION, "corruption",
                     f"corruption in {where}: {exc.reason}\n"
                     "hint: `metalog recover --salvage` keeps every intact event "
                     "(damaged bytes are moved to quarantine/, never deleted)",
                     file=exc.file, offset=exc.offset, reason=exc.reason)
    if isinstance(exc, eventstore.NotAStoreError):
        empty = isinstance(ctx.store, Path) and ctx.store.is_dir() and not any(ctx.store.iterdir())
        hint = f" (`metalog --store {ctx.store} init` creates one)" if empty else ""
        return _fail(js, EXIT_USAGE, "not-a-store", f"{exc}{hint}")
    if isinstance(exc, eventstore.ValidationError):
        return _fail(js, EXIT_USAGE, "invalid", str(exc))
    if isinstance(exc, UndoError):
        # the step on top cannot be reverted (a rename back onto a live item)
        return _fail(js, EXIT_PROBLEMS, "undo-refused", str(exc), key=exc.key, step=exc.step)
    if isinstance(exc, eventstore.EventStoreError):
        return _fail(js, EXIT_PROBLEMS, type(exc).__name__, str(exc))
    if isinstance(exc, FileNotFoundError):
        return _fail(js, EXIT_USAGE, "not-found", f"{exc.filename or exc}: no such file")
    if isinstance(exc, (PermissionError, IsADirectoryError, NotADirectoryError)):
        return _fail(js, EXIT_USAGE, "os", f"{exc.filename or ''}: {exc.strerror or exc}")
    return None


# Commands that only read the store and write only to stdout/stderr: after them
# the process may end without tearing the interpreter down (`run`).
_QUICK_EXIT = frozenset(("get", "ls", "history", "log", "state-at", "diff", "stats", "verify"))


def run() -> None:
    """The `metalog` command (console script and ``python -m projections``): `main`,
    then the process ends with its exit code.

    A command of `_QUICK_EXIT` (a short read) runs without the cyclic GC,
    which would only walk the modules it imports (32 collections for `get`),
    and the process ends at once when stdout and stderr are flushed
    (``os._exit``) if no other thread runs: tearing down the interpreter (its
    modules, the store's state, a last garbage collection) costs more than
    `metalog get` itself does. Every other command, and any process with
    another thread, runs and exits the usual way.
    """
    argv = sys.argv[1:]
    quick = command_named(argv) in _QUICK_EXIT
    if quick:       # a short read: the cyclic GC would only walk the modules being imported
        gc.disable()
    code = main(argv)
    if not quick:
        sys.exit(code)
    import threading

    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (BrokenPipeError, ValueError):   # the reader left (or a stream was closed)
        sys.exit(code)
    if threading.active_count() > 1:
        sys.exit(code)
    if "logging" in sys.modules:
        sys.modules["logging"].shutdown()
    os._exit(code)

