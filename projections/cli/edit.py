"""The `metalog` commands that change an item as a whole: undo, redo,
rename and forget (`delete` is another name for `forget`).

Each is one event (or one atomic pair) appended through `MediaCatalog`;
history is never rewritten, so every one of them can be undone. An item
the store has never heard of exits 1, as `get` does; a rename onto an item
that has metadata is refused (exit 1) before anything is written.
"""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from .context import Context
from .media import quote, unknown_item
from .output import display_key, plain
from ..events import FIELD_OF_TYPE, FORGOTTEN, RENAMED, TO, VALUE

if TYPE_CHECKING:
    from eventstore import Event

__all__ = ["cmd_undo", "cmd_redo", "cmd_rename", "cmd_forget"]


def _event_brief(event: "Event") -> dict[str, Any]:
    return {"seq": event.seq, "type": event.type, "key": event.key,
            "data": event.data, "meta": event.meta}


def _step_line(event: "Event", past: str, link: str) -> str | None:
    """One line about a compensating event (None for the first half of a move)."""
    step = (event.meta or {}).get(link)
    what = f" seq {step!s}" if step is not None else ""
    if event.type == RENAMED:
        target = event.data.get(TO)
        if not isinstance(target, str):
            return None                 # the {"from": ...} half of the same move
        change = f"renamed to {display_key(target)}"
    elif event.type == FORGOTTEN:
        change = "forgotten"
    else:
        change = f"{FIELD_OF_TYPE.get(event.type, event.type)} is now {quote(event.data.get(VALUE))}"
    return f"{past}{what}: {display_key(event.key)} {change} (event seq {event.seq})"


def _undo_redo(args: argparse.Namespace, ctx: Context, verb: str) -> int:
    with ctx.catalog() as cat:
        if args.media is not None and cat.store.version(cat.key(args.media)) == 0:
            return unknown_item(ctx, cat.key(args.media))
        events = (cat.undo if verb == "undo" else cat.redo)(args.media)   # UndoError: see app
    ctx.out.json({verb: [plain(_event_brief(e)) for e in events], "changed": bool(events),
                  "summary": events.info()})
    if not events:
        target = f" for {args.media}" if args.media else ""
        ctx.out.text(f"nothing to {verb}{target}")
        return 0
    summary = events.summary()      # one line for a whole import or a commit of many items
    if summary is not None:
        ctx.out.text(summary)
        return 0
    past, link = ("undid", "undo_of") if verb == "undo" else ("redid", "redo_of")
    for event in events:
        line = _step_line(event, past, link)
        if line is not None:
            ctx.out.text(line)
    return 0


def cmd_undo(args: argparse.Namespace, ctx: Context) -> int:
    return _undo_redo(args, ctx, "undo")


def cmd_redo(args: argparse.Namespace, ctx: Context) -> int:
    return _undo_redo(args, ctx, "redo")


def cmd_rename(args: argparse.Namespace, ctx: Context) -> int:
    """Exit 1 when OLD is not an item or NEW already is one (nothing written)."""
    with ctx.catalog() as cat:
        old, new = cat.key(args.media), cat.key(args.new)
        if cat.get(old) is None:
            return unknown_item(ctx, old)
        if old != new and cat.get(new) is not None:
            return ctx.fail(1, "target-exists", f"{new} already has metadata; forget it or "
                                                "choose another name (nothing was renamed)",
                            key=new)
        events = cat.rename(old, new, reason=args.reason)
    seqs = [e.seq for e in events]
    ctx.out.json({"from": old, "to": new, "changed": bool(events), "seqs": seqs,
                  "actor": ctx.actor})
    if not events:
        ctx.out.text(f"{display_key(old)}: already there (no event written)")
    else:
        ctx.out.text(f"renamed {display_key(old)} -> {display_key(new)} "
                     f"(seq {seqs[0]}-{seqs[-1]}, by {ctx.actor}); history follows it")
    return 0


def cmd_forget(args: argparse.Namespace, ctx: Context) -> int:
    """`forget` and `delete`: one ``media.forgotten`` event; exit 1 when there is no such item."""
    with ctx.catalog() as cat:
        key = cat.key(args.media)
        event = cat.forget(key, reason=args.reason)
    if event is None:
        return unknown_item(ctx, key)
    ctx.out.json({"key": key, "forgotten": True, "seq": event.seq, "actor": ctx.actor})
    ctx.out.text(f"{display_key(key)}: forgotten (seq {event.seq}, by {ctx.actor}); its history "
                 f"stays, `metalog undo {display_key(key)}` brings it back")
    return 0
