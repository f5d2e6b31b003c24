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
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import eventstore

from . import demo as demo_commands, log as log_commands, media as media_commands
from .output import Printer, visible
from .context import DEFAULT_STORE, Context, UsageError, default_actor
from ..catalog import UndoError

__all__ = ["main", "build_parser", "EXIT_OK", "EXIT_PROBLEMS", "EXIT_USAGE",
           "EXIT_LOCKED", "EXIT_CORRUPTION"]

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

exit codes: 0 ok, 1 problems found, 2 usage, 3 store locked, 4 corruption.
environment: METALOG_STORE (default store), METALOG_ACTOR (default actor),
             METALOG_PROGRESS=0|1 (progress bars off / on even without a tty).
"""

# (name, help, examples, adder of arguments, handler)
_Command = tuple[str, str, str, Callable[[argparse.ArgumentParser], None],
                 Callable[[argparse.Namespace, Context], int]]


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


def _at_least_zero(convert: Callable[[str], Any], what: str) -> Callable[[str], Any]:
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


def _commands() -> list[_Command]:
    m, lg, demo = media_commands, log_commands, demo_commands

    def init_args(p: argparse.ArgumentParser) -> None:
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

    def import_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("file", metavar="FILE",
                       help='the old JSON file: {"<media>": {"title": ..., "description": ...}}')

    def demo_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--dir", metavar="DIR",
                       help="build the demo store in DIR and keep it (default: a temp dir)")

    def nothing(p: argparse.ArgumentParser) -> None:
        pass

    return [
        ("init", "create an empty store", "metalog init\n  metalog --store /srv/media/.metalog init",
         init_args, m.cmd_init),
        ("set-title", "set a media item's title",
         'metalog set-title clip.mp4 "Sunset over the bay"\n'
         '  metalog --actor alice set-title clip.mp4 "Sunset" -m "shorter"\n'
         '  echo "From stdin" | metalog set-title clip.mp4 -',
         set_title_args, m.cmd_set_title),
        ("set-description", "set a media item's description",
         'metalog set-description clip.mp4 "Shot from the pier at 7pm"',
         set_desc_args, m.cmd_set_description),
        ("get", "show one media item", "metalog get clip.mp4\n  metalog --json get clip.mp4",
         get_args, m.cmd_get),
        ("ls", "list media items", "metalog ls\n  metalog ls ~/videos/2026\n  metalog --json ls",
         ls_args, m.cmd_ls),
        ("history", "every change of one media item, oldest first",
         "metalog history clip.mp4", get_args, m.cmd_history),
        ("undo", "revert the last change (of MEDIA, or the last commit overall)",
         "metalog undo clip.mp4\n  metalog undo", undo_args, m.cmd_undo),
        ("redo", "re-apply the last undone change", "metalog redo clip.mp4\n  metalog redo",
         undo_args, m.cmd_redo),
        ("log", "the raw event log, with filters",
         "metalog log\n  metalog log --from 100 --to 120\n"
         "  metalog log --key clip.mp4 --type title.set\n"
         "  metalog log --since 2026-11-26T04:00 --until 1h\n  metalog --json log | jq .data",
         log_args, lg.cmd_log),
        ("tail", "the last events; with -f, follow a store another process writes",
         "metalog tail\n  metalog tail -n 50\n  metalog tail -f\n  metalog --json tail -f --timeout 60",
         tail_args, lg.cmd_tail),
        ("state-at", "every item as it was at a seq or a time",
         "metalog state-at 42\n  metalog state-at --time 2026-11-26T04:00\n  metalog state-at --time 2h",
         state_at_args, m.cmd_state_at),
        ("diff", "what changed between two seqs", "metalog diff 10 42\n  metalog diff 10",
         diff_args, m.cmd_diff),
        ("stats", "sizes and counts", "metalog stats\n  metalog --json stats", nothing, m.cmd_stats),
        ("verify", "re-read everything: checksums, seq continuity, digest chain, snapshots",
         "metalog verify\n  metalog --json verify", nothing, lg.cmd_verify),
        ("recover", "open read-write and repair: a torn tail, or with --salvage, damage",
         "metalog recover\n  metalog recover --salvage", recover_args, lg.cmd_recover),
        ("compact", "seal and compress old segments, then snapshot",
         "metalog compact", nothing, lg.cmd_compact),
        ("snapshot", "write a snapshot of the current state now",
         "metalog snapshot", nothing, lg.cmd_snapshot),
        ("export", "every event as JSON Lines (one event per line)",
         "metalog export > events.jsonl\n  metalog export -o events.jsonl --since 1d",
         export_args, lg.cmd_export),
        ("import-json", "import the old JSON persistence file (once; idempotent)",
         "metalog import-json media_metadata.json", import_args, m.cmd_import_json),
        ("demo", "a guided tour in a temporary store (history, undo, time travel, repair)",
         "metalog demo\n  metalog demo --dir /tmp/metalog-demo", demo_args, lambda args, ctx: demo.cmd_demo(args, ctx, main)),
    ]


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
    p.add_argument("--store", metavar="DIR",
                   default=(os.environ.get("METALOG_STORE") or DEFAULT_STORE) if defaults else suppress,
                   help="the store directory (default: $METALOG_STORE, else ./metalog-data)")
    p.add_argument("--json", action="store_true", default=False if defaults else suppress,
                   help="machine-readable JSON output")
    p.add_argument("--actor", metavar="NAME", default=None if defaults else suppress,
                   help="who makes the change (default: $METALOG_ACTOR, else your login)")
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="metalog", description=_DESCRIPTION, epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_common_options(defaults=True)],
    )
    parser.add_argument("--version", action="version", version=f"metalog {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    common = _common_options(defaults=False)
    for name, help_, examples, add_args, handler in _commands():
        p = sub.add_parser(
            name, help=help_, description=help_[:1].upper() + help_[1:] + ".",
            epilog="examples:\n  " + examples, parents=[common],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        add_args(p)
        p.set_defaults(handler=handler)
    return parser


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("metalog")
    except Exception:
        return "unknown"


def _fail(ctx_json: bool, code: int, kind: str, message: str, *, prog: str = "metalog",
          **fields: Any) -> int:
    """Report an error on stderr (and as JSON on stdout with --json)."""
    sys.stderr.write(visible(f"{prog}: {message}") + "\n")
    if ctx_json:
        body = {"error": {"kind": kind, "message": message, "exit_code": code, **fields}}
        sys.stdout.write(json.dumps(body, ensure_ascii=False) + "\n")
    return code


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
    ctx = Context(store=Path(args.store).expanduser().absolute(),
                  actor=args.actor or default_actor(), out=Printer(args.json))
    js = args.json
    try:
        return args.handler(args, ctx)
    except UsageError as exc:
        return _fail(js, EXIT_USAGE, "usage", str(exc))
    except eventstore.LockedError as exc:
        holder = f"process {exc.pid}" if exc.pid else "another process"
        return _fail(js, EXIT_LOCKED, "locked",
                     f"store {ctx.store} is locked by {holder}, which is writing to it; "
                     "read-only commands (get, ls, log, tail, verify, ...) still work",
                     pid=exc.pid)
    except eventstore.CorruptionError as exc:
        where = exc.file if exc.offset is None else f"{exc.file} at offset {exc.offset}"
        return _fail(js, EXIT_CORRUPTION, "corruption",
                     f"corruption in {where}: {exc.reason}\n"
                     "hint: `metalog recover --salvage` keeps every intact event "
                     "(damaged bytes are moved to quarantine/, never deleted)",
                     file=exc.file, offset=exc.offset, reason=exc.reason)
    except eventstore.NotAStoreError as exc:
        empty = ctx.store.is_dir() and not any(ctx.store.iterdir())
        hint = f" (`metalog --store {ctx.store} init` creates one)" if empty else ""
        return _fail(js, EXIT_USAGE, "not-a-store", f"{exc}{hint}")
    except eventstore.ValidationError as exc:
        return _fail(js, EXIT_USAGE, "invalid", str(exc))
    except UndoError as exc:
        # the step on top cannot be reverted (a rename back onto a live item)
        return _fail(js, EXIT_PROBLEMS, "undo-refused", str(exc), key=exc.key, step=exc.step)
    except eventstore.EventStoreError as exc:
        return _fail(js, EXIT_PROBLEMS, type(exc).__name__, str(exc))
    except FileNotFoundError as exc:
        return _fail(js, EXIT_USAGE, "not-found", f"{exc.filename or exc}: no such file")
    except (PermissionError, IsADirectoryError, NotADirectoryError) as exc:
        return _fail(js, EXIT_USAGE, "os", f"{exc.filename or ''}: {exc.strerror or exc}")
    except BrokenPipeError:
        # `metalog log | head`: the reader left; that is not an error.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except OSError as exc:  # after BrokenPipeError, its subclass
        # a full disk or an I/O error the store did not translate: one line, not a traceback
        # (issue 13 item 4)
        return _fail(js, EXIT_PROBLEMS, "os", f"{exc.filename or ctx.store}: {exc.strerror or exc}")
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        return 130
