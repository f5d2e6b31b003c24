"""`metalog ls` and `metalog state-at`: media items as a table or as JSON,
written while they are read.

A listing sorts the keys (the one thing it must see whole), measures the
key column once, and then streams: the table in blocks whose other columns
only grow (`output.StreamTable`), the JSON one item per line inside one
document. Nothing builds the whole table in memory, so ``metalog ls | head``
prints its first lines at once on a large store, and ``--json`` never
builds the human table. Cells are measured by display width, with a fast
path for ASCII text.
"""
from __future__ import annotations

import argparse
import bisect
import contextlib
import gc
import json
import os
from typing import TYPE_CHECKING, Iterable, Iterator

from .context import Context, UsageError, parse_time
from .output import (StreamTable, cell, display_width, format_time, iso_time, json_item,
                     key_shower, plain_cell, plural, visible)

if TYPE_CHECKING:
    from ..events import MediaRecord
    from ..media import MediaProjection

__all__ = ["cmd_ls", "cmd_state_at", "under", "print_items", "HEADERS"]

HEADERS = ("KEY", "TITLE", "DESCRIPTION", "VER", "UPDATED")
TITLE_WIDTH = 32
_SHOWER_ROWS = 1023         # rows - 1 between two looks at the current directory (a power of 2 - 1)
DESCRIPTION_WIDTH = 40


def under(prefix: str | None, keys: Iterable[str]) -> list[str]:
    """The keys that are ``prefix`` or lie under it (a directory), sorted."""
    if not prefix:
        return sorted(keys)
    from ..keys import media_key as normalise_key

    norm = normalise_key(prefix)
    inside = norm.rstrip(os.sep) + os.sep
    return sorted(k for k in keys if k == norm or k.startswith(inside))


def _key_width(keys: list[str]) -> int:
    """The widest key as the table shows it (relative to the current
    directory, control characters escaped): `key_width_plain`'s answer.

    ``keys`` are sorted, so those under the current directory are one run
    of them (found by bisection); when every key is printable ASCII, each is
    as wide as it is long and the widest of a run is found by ``max(map(len))``
    in C, instead of a Python step per key."""
    joined = "".join(keys)
    if not (joined.isascii() and joined.isprintable()):
        return key_width_plain(keys)
    try:
        here = os.getcwd().rstrip(os.sep) + os.sep
    except OSError:
        return max(map(len, keys), default=0)
    lo = bisect.bisect_left(keys, here)
    hi = bisect.bisect_left(keys, here[:-1] + chr(ord(here[-1]) + 1), lo)
    if lo < hi and keys[lo] == here:        # the directory itself is shown whole
        lo += 1
    inside = max(map(len, keys[lo:hi]), default=len(here)) - len(here)
    return max(inside, max(map(len, keys[:lo]), default=0), max(map(len, keys[hi:]), default=0))


def key_width_plain(keys: Iterable[str]) -> int:
    """The widest key as the table shows it, measured key by key (the reference)."""
    show = key_shower()
    return max((display_width(visible(show(key))) for key in keys), default=0)


def print_items(ctx: Context, projection: "MediaProjection", keys: list[str],
                head: dict[str, object]) -> None:
    """Items ``keys`` of ``projection`` as a table, or as one JSON document
    holding ``head``'s fields, then ``count`` and ``items``."""
    if ctx.json:
        _json_items(ctx, projection, keys, head)
        return
    if not keys:
        ctx.out.text("(no media items)")
        return
    table = StreamTable(ctx.out.out, HEADERS, right=("VER",), widths=(_key_width(keys), 0, 0, 0, 0))
    with _no_gc():
        _rows(table, keys, _records(projection, keys, table.first))
    table.flush()


def _records(projection: "MediaProjection", keys: list[str], first: int) -> Iterator["MediaRecord | None"]:
    """`MediaProjection.records` of the first rows on their own (so the first
    lines go out before the rest of the values are cut out), then of the rest."""
    yield from projection.records(keys[:first])
    yield from projection.records(keys[first:])


def _rows(table: StreamTable, keys: list[str], records: Iterable["MediaRecord | None"]) -> None:
    """The table's rows: a row of printable ASCII cells (as `plain_cell` makes
    them) goes to the table as plain, so it is not checked again."""
    add = table.add
    for n, (key, record) in enumerate(zip(keys, records)):
        assert record is not None           # the keys are the projection's own
        if not n & _SHOWER_ROWS:            # the current directory: looked up per 1024 rows
            show = key_shower()
        title = plain_cell(record.title, TITLE_WIDTH)
        desc = plain_cell(record.description, DESCRIPTION_WIDTH)
        plain = title is not None and desc is not None and key.isascii() and key.isprintable()
        add((show(key), cell(record.title, TITLE_WIDTH) if title is None else title,
             cell(record.description, DESCRIPTION_WIDTH) if desc is None else desc,
             str(record.version), format_time(record.updated)), plain)


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """The cyclic GC paused while a listing makes its rows: they hold no cycles,
    and 100,000 of them would make it walk every object of the store's state
    over and over (a fifth of a listing's time)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _json_items(ctx: Context, projection: "MediaProjection", keys: list[str],
                head: dict[str, object]) -> None:
    """One JSON document, written item by item (one compact item per line)."""
    out = ctx.out.out
    opening = json.dumps({**head, "count": len(keys)}, ensure_ascii=False, indent=2)
    out.write(opening[:-2] + ',\n  "items": [')
    with _no_gc():
        lines: list[str] = []               # written 1024 items at a time
        for n, (key, record) in enumerate(zip(keys, projection.records(keys))):
            assert record is not None       # the keys are the projection's own
            item = {"key": key, "title": record.title, "description": record.description,
                    "version": record.version, "created": iso_time(record.created),
                    "updated": iso_time(record.updated)}
            lines.append(("\n    " if n == 0 else ",\n    ") + json_item(item))
            if not (n + 1) & _SHOWER_ROWS:
                out.write("".join(lines))
                lines.clear()
        out.write("".join(lines))
    out.write("\n  ]" if keys else "]")
    error = ctx.out.error_for({})
    if error is not None:
        out.write(',\n  "error": ' + json_item(error))
    out.write("\n}\n")


def cmd_ls(args: argparse.Namespace, ctx: Context) -> int:
    with ctx.catalog(readonly=True) as cat:
        projection = cat.projection
        print_items(ctx, projection, under(args.prefix, projection.keys()), {})
    return 0


def cmd_state_at(args: argparse.Namespace, ctx: Context) -> int:
    if (args.seq is None) == (args.time is None):
        raise UsageError("state-at needs exactly one of SEQ or --time TIME")
    with ctx.catalog(readonly=True) as cat:
        if args.time is not None:
            view = cat.state_at(time=parse_time(args.time) / 1e9)
        else:
            view = cat.state_at(seq=args.seq)
    keys = under(args.prefix, view.keys())
    at_seq = view.last_seq
    point = f"seq {args.seq}" if args.time is None else f"time {args.time}"
    ctx.out.text(f"state at {point}" + (f" (seq {at_seq})" if args.time and at_seq else "")
                 + f": {plural(len(keys), 'item')}")
    if keys or ctx.json:
        print_items(ctx, view, keys, {"at": {"seq": at_seq, "time": args.time}})
    return 0
