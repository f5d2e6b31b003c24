"""The table of `metalog` commands: name, help, examples, arguments, handler.

This module owns what each command accepts: its arguments and their
argparse types (seqs, counts, media keys, the actor), its one-line help and
its ``--help`` examples, and where its handler lives, as ``module:function``
of this package, so that building the parser imports no command module (and
no store). `app` builds the parser from `COMMANDS` and dispatches.
"""
from __future__ import annotations

import argparse
import unicodedata
from typing import Any, Callable

__all__ = ["COMMANDS", "Command", "actor_problem", "actor_type"]

# (name, help, examples, adder of arguments, handler: "module:function" of this package)
Command = tuple[str, str, str, Callable[[argparse.ArgumentParser], None], str]


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


def actor_type(text: str) -> str:
    problem = actor_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def _nothing(p: argparse.ArgumentParser) -> None:
    pass


def _set_title_args(p: argparse.ArgumentParser) -> None:
    _media_arg(p)
    p.add_argument("title", help="the new title ('-' reads it from stdin)")
    _reason_arg(p)


def _set_desc_args(p: argparse.ArgumentParser) -> None:
    _media_arg(p)
    p.add_argument("text", help="the new description ('-' reads it from stdin)")
    _reason_arg(p)


def _get_args(p: argparse.ArgumentParser) -> None:
    _media_arg(p)


def _ls_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("prefix", nargs="?", metavar="DIR",
                   help="only items under this directory (or key prefix)")


def _undo_args(p: argparse.ArgumentParser) -> None:
    _media_arg(p, optional=True)


def _rename_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("media", metavar="OLD", help="the item's current path")
    p.add_argument("new", metavar="NEW", help="its new path (must have no metadata)")
    _reason_arg(p)


def _forget_args(p: argparse.ArgumentParser) -> None:
    _media_arg(p)
    _reason_arg(p)


def _log_args(p: argparse.ArgumentParser) -> None:
    _log_filters(p)
    p.add_argument("--limit", "-n", type=_lines, metavar="N", help="show at most N events")


def _tail_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-n", "--lines", type=_lines, default=10, metavar="N",
                   help="show the last N events first (default 10)")
    p.add_argument("-f", "--follow", action="store_true",
                   help="keep running and print new events as they are committed")
    p.add_argument("--timeout", type=_seconds, metavar="SEC",
                   help="with -f: stop after SEC seconds without a new event")


def _state_at_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("seq", nargs="?", type=_seq, metavar="SEQ",
                   help="state after every event up to and including SEQ")
    p.add_argument("--time", metavar="TIME", help="state as of TIME instead of a seq")
    p.add_argument("prefix", nargs="?", metavar="DIR", help="only items under DIR")


def _diff_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("a", type=_seq, metavar="A", help="the earlier seq")
    p.add_argument("b", type=_seq, nargs="?", metavar="B", help="the later seq (default: now)")


def _recover_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--salvage", action="store_true",
                   help="keep every intact frame after damage (default: only repair a torn tail)")


def _export_args(p: argparse.ArgumentParser) -> None:
    _log_filters(p)
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")


def _restore_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", help="an export: JSON Lines, one event per line "
                                                "('-' reads stdin)")


def _copy_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", metavar="SRC", help="the store to copy: a directory or a postgresql:// URL")
    p.add_argument("dst", metavar="DST", help="where to: a new or empty store, or one an interrupted "
                                              "copy of SRC left (it goes on from there)")


def _import_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE",
                   help='the old JSON file: {"<media>": {"title": ..., "description": ...}}')
    p.add_argument("--overwrite", action="store_true",
                   help="write the file's values over fields edited in metalog since its "
                        "last import (default: keep them and report a conflict)")
    p.add_argument("--encoding", metavar="NAME",
                   help="the file's encoding (default: UTF-8, or what its BOM says), "
                        "e.g. latin-1 or cp1252")


def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dir", metavar="DIR",
                   help="build the demo store in DIR and keep it (default: a temp dir)")


_FORGET_WHAT = ("drop an item's title and description (an event: history stays, undo "
                "brings it back)")
_FORGET_EXAMPLES = ('metalog forget old/clip.mp4 -m "file deleted"\n'
                    "  metalog delete old/clip.mp4       # the same command\n"
                    "  metalog undo old/clip.mp4         # brings title and description back")


COMMANDS: list[Command] = [
    ("init", "create an empty store", "metalog init\n  metalog --store /srv/media/.metalog init",
     _nothing, "media:cmd_init"),
    ("set-title", "set a media item's title",
     'metalog set-title clip.mp4 "Sunset over the bay"\n'
     '  metalog --actor alice set-title clip.mp4 "Sunset" -m "shorter"\n'
     '  echo "From stdin" | metalog set-title clip.mp4 -',
     _set_title_args, "media:cmd_set_title"),
    ("set-description", "set a media item's description",
     'metalog set-description clip.mp4 "Shot from the pier at 7pm"\n'
     '  metalog set-description clip.mp4 ""      # clear it (the title stays)',
     _set_desc_args, "media:cmd_set_description"),
    ("get", "show one media item", "metalog get clip.mp4\n  metalog --json get clip.mp4",
     _get_args, "media:cmd_get"),
    ("ls", "list media items (streams: the first lines come at once)",
     "metalog ls\n  metalog ls ~/videos/2026\n  metalog ls | head\n  metalog --json ls",
     _ls_args, "listing:cmd_ls"),
    ("history", "every change of one media item, oldest first",
     "metalog history clip.mp4\n  metalog --json history clip.mp4", _get_args,
     "media:cmd_history"),
    ("undo", "revert the last change (of MEDIA, or the last commit overall)",
     "metalog undo clip.mp4\n  metalog undo", _undo_args, "edit:cmd_undo"),
    ("redo", "re-apply the last undone change", "metalog redo clip.mp4\n  metalog redo",
     _undo_args, "edit:cmd_redo"),
    ("rename", "move an item's metadata and history to a new path (undo moves it back)",
     "metalog rename clip.mp4 2026/clip.mp4\n"
     '  metalog rename a.mp4 b.mp4 -m "renamed on disk"', _rename_args, "edit:cmd_rename"),
    ("forget", _FORGET_WHAT + "; `delete` is another name for it", _FORGET_EXAMPLES,
     _forget_args, "edit:cmd_forget"),
    ("delete", _FORGET_WHAT + "; another name for `forget`", _FORGET_EXAMPLES,
     _forget_args, "edit:cmd_forget"),
    ("log", "the raw event log, with filters",
     "metalog log\n  metalog log --from 100 --to 120\n"
     "  metalog log --key clip.mp4 --type title.set\n"
     "  metalog log --since 2026-11-26T04:00 --until 1h\n  metalog --json log | jq .data",
     _log_args, "log:cmd_log"),
    ("tail", "the last events; with -f, follow a store another process writes",
     "metalog tail\n  metalog tail -n 50\n  metalog tail -f\n  metalog --json tail -f --timeout 60",
     _tail_args, "log:cmd_tail"),
    ("state-at", "every item as it was at a seq or a time",
     "metalog state-at 42\n  metalog state-at --time 2026-11-26T04:00\n  metalog state-at --time 2h",
     _state_at_args, "listing:cmd_state_at"),
    ("diff", "what changed between two seqs (both at most the last seq)",
     "metalog diff 10 42\n  metalog diff 10", _diff_args, "media:cmd_diff"),
    ("stats", "sizes and counts", "metalog stats\n  metalog --json stats", _nothing,
     "media:cmd_stats"),
    ("verify", "re-read everything: checksums, seq continuity, digest chain, snapshots",
     "metalog verify\n  metalog --json verify", _nothing, "log:cmd_verify"),
    ("recover", "open read-write and repair: a torn tail, or with --salvage, damage",
     "metalog recover\n  metalog recover --salvage", _recover_args, "log:cmd_recover"),
    ("compact", "seal and compress old segments, then snapshot",
     "metalog compact", _nothing, "log:cmd_compact"),
    ("snapshot", "write a snapshot of the current state now",
     "metalog snapshot", _nothing, "log:cmd_snapshot"),
    ("export", "every event as JSON Lines (one event per line)",
     "metalog export > events.jsonl\n  metalog export -o events.jsonl --since 1d",
     _export_args, "log:cmd_export"),
    ("restore", "write an export's events into a new store (--store), then check they are "
                "the same; refuses a store that holds events",
     "metalog --store restored restore events.jsonl\n"
     "  metalog export | metalog --store /backup/media restore -",
     _restore_args, "restore:cmd_restore"),
    ("copy", "copy every event of one store into another (directory <-> PostgreSQL), commit by "
             "commit; resumable; verified equal at the end",
     "metalog copy ./metalog-data 'postgresql://me@db:5432/media?schema=catalog'\n"
     "  metalog copy 'postgresql://me@db/media?schema=catalog' ./backup   # and back\n"
     "  metalog --json copy ./metalog-data ./copy-of-it",
     _copy_args, "copy:cmd_copy"),
    ("import-json", "import the old JSON persistence file (once; idempotent; resumable)",
     "metalog import-json media_metadata.json\n"
     "  metalog import-json --encoding latin-1 old.json\n"
     "  metalog import-json --overwrite media_metadata.json   # the file wins over edits",
     _import_args, "media:cmd_import_json"),
    ("demo", "a guided tour in a temporary store (history, undo, time travel, repair); "
             "it never touches --store",
     "metalog demo\n  metalog demo --dir /tmp/metalog-demo", _demo_args, "app:run_demo"),
]
