"""The `metalog` command: argument parsing, dispatch and exit codes.

This module owns the command line of SPEC §6: the argparse parser (with an
example-bearing ``--help`` for every command), the global options
(``--store``, ``--json``, ``--actor``), and the mapping of errors to exit
codes: 0 ok, 1 problems found, 2 usage, 3 locked, 4 corruption. Users never
see a traceback for their own mistakes. The commands themselves live in
`media` (the catalog), `log` (the raw log and its upkeep) and
`demo`. `eventstore` never imports this module.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import unicodedata
from pathlib import Path
from typing import Any, Callable, Sequence

from .context import DEFAULT_STORE, Context, UsageError, default_actor
from .output import Printer, visible

__all__ = ["main", "build_parser", "EXIT_OK", "EXIT_PROBLEMS", "EXIT_USAGE",
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

# (name, help, examples, adder of arguments, handler: "module:function" of this package)
_Command = tuple[str, str, str, Callable[[argparse.ArgumentParser], None], str]
Handler = Callable[[argparse.Namespace, Context], int]


def _media_arg(p: argparse.ArgumentParser, optional: bool = False) -> None:
    p.add_argument("media", nargs="?" if optional else None, metavar="MEDIA",
                   help="a media file path (normalised to an absolute path)")


def _reason_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reason", "-m", help="why: stored in the event's meta for the audit trail")


def _log_filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="from_seq", type=_seq, metavar="SEQ",
                   help="first seq to show (inclusive)")
    p.add_argument("--to", dest="to_seq", type=_seq, metavar="SEQ",
                   help="last seq to show (inclusive)")
    p.add_argument("--key", type=_media_key, metavar="MEDIA", help="only events of this media key")
    p.add_argument("--type", dest="types", action="append", metavar="TYPE",
                   help="only events of this type (repeatable)")
    p.add_argument("--since", metavar="TIME",
                   help="only events at or after TIME (ISO 8601, @EPOCH, or 10m/2h/3d ago)")
    p.add_argument("--until", metavar="TIME", help="only events at or before TIME")


def _at_least_zero(convert: Callable[[str], float], what: str) -> Callable[[str], Any]:
    """An argparse type for a number >= 0 whose messages say what it is."""
    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
        if not value >= 0:  # also refuses nan
            raise argparse.ArgumentTypeError(f"{what} must be >= 0, not {value}")
        return value
    return parse


_seq = _at_least_zero(int, "a seq number")
_lines = _at_least_zero(int, "a number of events")
_seconds = _at_least_zero(float, "a number of seconds")


def _media_key(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("a media key must not be empty")
    return text


def actor_problem(actor: str) -> str | None:
    """Why ``actor`` cannot name who made a change (None when it can): it is
    written into every event's meta and shown on one line of history."""
    if not actor.strip():
        return "an actor must not be empty"
    if any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in actor):
        return f"an actor must be one line without control characters, not {actor!r}"
    return None


def _actor(text: str) -> str:
    problem = actor_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def _commands() -> list[_Command]:
    def nothing(p: argparse.ArgumentParser) -> None:
        pass

    def set_title_args(p: argparse.ArgumentParser) -> None:
        _media_arg(p)
        p.add_argument("title", help="the new title ('-' reads it from stdin)")
        _reason_arg(p)

    def set_desc_args(p: argparse.ArgumentParser) -> None:
        _media_arg(p)
        p.add_argument("text", help="the new description ('-' reads it from stdin)")
        _reason_arg(p)

    def get_args(p: argparse.ArgumentParser) -> None:
        _media_arg(p)

    def ls_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("prefix", nargs="?", metavar="DIR",
                       help="only items under this directory (or key prefix)")

    def undo_args(p: argparse.ArgumentParser) -> None:
        _media_arg(p, optional=True)

    def rename_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("media", metavar="OLD", help="the item's current path")
        p.add_argument("new", metavar="NEW", help="its new path (must have no metadata)")
        _reason_arg(p)

    def forget_args(p: argparse.ArgumentParser) -> None:
        _media_arg(p)
        _reason_arg(p)

    def log_args(p: argparse.ArgumentParser) -> None:
        _log_filters(p)
        p.add_argument("--limit", "-n", type=_lines, metavar="N", help="show at most N events")

    def tail_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("-n", "--lines", type=_lines, default=10, metavar="N",
                       help="show the last N events first (default 10)")
        p.add_argument("-f", "--follow", action="store_true",
                       help="keep running and print new events as they are committed")
        p.add_argument("--timeout", type=_seconds, metavar="SEC",
                       help="with -f: stop after SEC seconds without a new event")

    def state_at_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("seq", nargs="?", type=_seq, metavar="SEQ",
                       help="state after every event up to and including SEQ")
        p.add_argument("--time", metavar="TIME", help="state as of TIME instead of a seq")
        p.add_argument("prefix", nargs="?", metavar="DIR", help="only items under DIR")

    def diff_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("a", type=_seq, metavar="A", help="the earlier seq")
        p.add_argument("b", type=_seq, nargs="?", metavar="B", help="the later seq (default: now)")

    def recover_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--salvage", action="store_true",
                       help="keep every intact frame after damage (default: only repair a torn tail)")

    def export_args(p: argparse.ArgumentParser) -> None:
        _log_filters(p)
        p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")

    def restore_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("file", metavar="FILE", help="an export: JSON Lines, one event per line "
                                                    "('-' reads stdin)")

    def import_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("file", metavar="FILE",
                       help='the old JSON file: {"<media>": {"title": ..., "description": ...}}')

    def demo_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--dir", metavar="DIR",
                       help="build the demo store in DIR and keep it (default: a temp dir)")

    forget_help = ("drop an item's title and description (an event: history stays, undo "
                   "brings it back); `delete` is another name for it")
    forget_examples = ('metalog forget old/clip.mp4 -m "file deleted"\n'
                       "  metalog delete old/clip.mp4       # the same command\n"
                       "  metalog undo old/clip.mp4         # brings title and description back")
    return [
        ("init", "create an empty store", "metalog init\n  metalog --store /srv/media/.metalog init",
         nothing, "media:cmd_init"),
        ("set-title", "set a media item's title",
         'metalog set-title clip.mp4 "Sunset over the bay"\n'
         '  metalog --actor alice set-title clip.mp4 "Sunset" -m "shorter"\n'
         '  echo "From stdin" | metalog set-title clip.mp4 -',
         set_title_args, "media:cmd_set_title"),
        ("set-description", "set a media item's description",
         'metalog set-description clip.mp4 "Shot from the pier at 7pm"\n'
         '  metalog set-description clip.mp4 ""      # clear it (the title stays)',
         set_desc_args, "media:cmd_set_description"),
        ("get", "show one media item", "metalog get clip.mp4\n  metalog --json get clip.mp4",
         get_args, "media:cmd_get"),
        ("ls", "list media items (streams: the first lines come at once)",
         "metalog ls\n  metalog ls ~/videos/2026\n  metalog ls | head\n  metalog --json ls",
         ls_args, "listing:cmd_ls"),
        ("history", "every change of one media item, oldest first",
         "metalog history clip.mp4\n  metalog --json history clip.mp4", get_args,
         "media:cmd_history"),
        ("undo", "revert the last change (of MEDIA, or the last commit overall)",
         "metalog undo clip.mp4\n  metalog undo", undo_args, "edit:cmd_undo"),
        ("redo", "re-apply the last undone change", "metalog redo clip.mp4\n  metalog redo",
         undo_args, "edit:cmd_redo"),
        ("rename", "move an item's metadata and history to a new path (undo moves it back)",
         "metalog rename clip.mp4 2026/clip.mp4\n"
         '  metalog rename a.mp4 b.mp4 -m "renamed on disk"', rename_args, "edit:cmd_rename"),
        ("forget", forget_help, forget_examples, forget_args, "edit:cmd_forget"),
        ("delete", forget_help.replace("`delete` is another name for it",
                                       "another name for `forget`"),
         forget_examples, forget_args, "edit:cmd_forget"),
        ("log", "the raw event log, with filters",
         "metalog log\n  metalog log --from 100 --to 120\n"
         "  metalog log --key clip.mp4 --type title.set\n"
         "  metalog log --since 2026-11-26T04:00 --until 1h\n  metalog --json log | jq .data",
         log_args, "log:cmd_log"),
        ("tail", "the last events; with -f, follow a store another process writes",
         "metalog tail\n  metalog tail -n 50\n  metalog tail -f\n  metalog --json tail -f --timeout 60",
         tail_args, "log:cmd_tail"),
        ("state-at", "every item as it was at a seq or a time",
         "metalog state-at 42\n  metalog state-at --time 2026-11-26T04:00\n  metalog state-at --time 2h",
         state_at_args, "listing:cmd_state_at"),
        ("diff", "what changed between two seqs (both at most the last seq)",
         "metalog diff 10 42\n  metalog diff 10", diff_args, "media:cmd_diff"),
        ("stats", "sizes and counts", "metalog stats\n  metalog --json stats", nothing,
         "media:cmd_stats"),
        ("verify", "re-read everything: checksums, seq continuity, digest chain, snapshots",
         "metalog verify\n  metalog --json verify", nothing, "log:cmd_verify"),
        ("recover", "open read-write and repair: a torn tail, or with --salvage, damage",
         "metalog recover\n  metalog recover --salvage", recover_args, "log:cmd_recover"),
        ("compact", "seal and compress old segments, then snapshot",
         "metalog compact", nothing, "log:cmd_compact"),
        ("snapshot", "write a snapshot of the current state now",
         "metalog snapshot", nothing, "log:cmd_snapshot"),
        ("export", "every event as JSON Lines (one event per line)",
         "metalog export > events.jsonl\n  metalog export -o events.jsonl --since 1d",
         export_args, "log:cmd_export"),
        ("restore", "write an export's events into a new store (--store), then check they are "
                    "the same; refuses a store that holds events",
         "metalog --store restored restore events.jsonl\n"
         "  metalog export | metalog --store /backup/media restore -",
         restore_args, "restore:cmd_restore"),
        ("import-json", "import the old JSON persistence file (once; idempotent)",
         "metalog import-json media_metadata.json", import_args, "media:cmd_import_json"),
        ("demo", "a guided tour in a temporary store (history, undo, time travel, repair); "
                 "it never touches --store",
         "metalog demo\n  metalog demo --dir /tmp/metalog-demo", demo_args, "app:run_demo"),
    ]


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

    def error(self, message: str) -> Any:  # type: ignore[override]
        raise _UsageExit(self.prog, self.format_usage(), message)


def _common_options(defaults: bool) -> argparse.ArgumentParser:
    """The global options; accepted before or after the command name."""
    p = argparse.ArgumentParser(add_help=False)
    suppress = argparse.SUPPRESS
    p.add_argument("--store", metavar="DIR", default=None if defaults else suppress,
                   help="the store directory (default: $METALOG_STORE, else ./metalog-data)")
    p.add_argument("--json", action="store_true", default=False if defaults else suppress,
                   help="machine-readable JSON output")
    p.add_argument("--actor", metavar="NAME", type=_actor, default=None if defaults else suppress,
                   help="who makes the change (default: $METALOG_ACTOR, else your login)")
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="metalog", description=_DESCRIPTION, epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_common_options(defaults=True)],
    )
    parser.add_argument("--version", action=_Version, nargs=0,
                        help="show the installed metalog version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    common = _common_options(defaults=False)
    for name, help_, examples, add_args, handler in _commands():
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
    return Context(store=Path(store).expanduser().absolute(), actor=actor,
                   out=Printer(args.json), explicit_store=args.store is not None)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``metalog``; returns the exit code instead of raising SystemExit."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
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
    from ..catalog import UndoError

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
        empty = ctx.store.is_dir() and not any(ctx.store.iterdir())
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
