"""The `metalog` commands that speak in media items, through `MediaCatalog`.

init, set-title, set-description, get, history, diff, stats and
import-json (listings are `listing`'s; undo, redo, rename and forget are
`edit`'s). Each takes the parsed arguments and a `Context`, prints human
text or JSON, and returns an exit code. Commands that only look open the
catalog read-only, so they run beside a writer; an unknown item exits 1.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any, Iterator

from .output import Progress, display_key, format_time, iso_time, plain, plural, shorten, table, visible
from .context import Context, UsageError
from .damage import Damage
from ..events import FIELD_OF_TYPE, FIELDS, VALUE, Change, MediaRecord

if TYPE_CHECKING:   # imported by import-json only: `get` never loads the importer
    from ..legacy import ImportReport

__all__ = [
    "cmd_init", "cmd_set_title", "cmd_set_description", "cmd_get", "cmd_history",
    "cmd_diff", "cmd_stats", "cmd_import_json", "record_dict", "change_dict", "event_summary",
    "quote", "unknown_item",
]

# --------------------------------------------------------------- conversions


def record_dict(record: MediaRecord) -> dict[str, Any]:
    """A `MediaRecord` as a plain dict, with ISO 8601 times."""
    out = record._asdict()
    out["created"], out["updated"] = iso_time(record.created), iso_time(record.updated)
    return out


def change_dict(change: Change) -> dict[str, Any]:
    """A history `Change` as a plain dict, with an ISO 8601 time."""
    out = plain(change)
    out["time"] = iso_time(change.time)
    return out


def quote(value: Any) -> str:
    if value is None:
        return "(unset)"
    return repr(shorten(str(value), 60)) if isinstance(value, str) else str(value)


def event_summary(event: Any) -> str:
    """One line about what an event did: its data and who/why from meta."""
    data = event.data or {}
    field = FIELD_OF_TYPE.get(event.type)
    if field is not None and set(data) == {VALUE}:
        parts = [f"{field}={quote(data[VALUE])}"]
    else:
        parts = [f"{k}={quote(v)}" for k, v in data.items()]
    meta = event.meta or {}
    if meta.get("actor"):
        parts.append(f"by {meta['actor']}")
    for name in ("undo_of", "redo_of"):
        if meta.get(name) is not None:
            parts.append(f"{name.replace('_', ' ')} #{meta[name]}")
    if meta.get("reason"):
        parts.append(f"({shorten(str(meta['reason']), 50)})")
    return " ".join(parts)


def _text_arg(value: str) -> str:
    return sys.stdin.read().rstrip("\n") if value == "-" else value


# ------------------------------------------------------------------- commands


def cmd_init(args: argparse.Namespace, ctx: Context) -> int:
    existed = ctx.store_exists()
    with ctx.catalog(create=True) as cat:
        count = len(cat)
        last = cat.store.last_seq
    ctx.out.json({"store": str(ctx.store), "created": not existed, "items": count, "last_seq": last})
    if existed:
        ctx.out.text(f"metalog store already exists in {ctx.store} "
                     f"({plural(count, 'item')}, {plural(last, 'event')})")
    else:
        ctx.out.text(f"Initialized empty metalog store in {ctx.store}")
    return 0


def unknown_item(ctx: Context, key: str) -> int:
    """An item the store has never heard of: say so and exit 1 (as `get`)."""
    ctx.out.json({"key": key, "found": False})
    if not ctx.json:
        sys.stderr.write(visible(f"metalog: no media item {key}") + "\n")
    return 1


def _set(args: argparse.Namespace, ctx: Context, field: str, value: str) -> int:
    value = _text_arg(value)
    with ctx.catalog() as cat:
        if value == "":
            _refuse_emptying(cat, args.media, field)
        setter = cat.set_title if field == "title" else cat.set_description
        event = setter(args.media, value, reason=args.reason)
        key = event.key if event is not None else cat.key(args.media)
    ctx.out.json({"key": key, "field": field, "value": value, "changed": event is not None,
                  "seq": event.seq if event is not None else None, "actor": ctx.actor})
    if event is None:
        ctx.out.text(f"{display_key(key)}: {field} unchanged (no event written)")
    else:
        ctx.out.text(f"{display_key(key)}: {field} set to {quote(value)} (seq {event.seq}, by {ctx.actor})")
    return 0


def _refuse_emptying(cat: Any, media: str, field: str) -> None:
    """Clearing the only field an item has left would end the item (an item
    is its title and description): `get` and `ls` would lose it while
    `history` still shows it. That is `forget`'s job, said out loud."""
    record = cat.get(media)
    other = "description" if field == "title" else "title"
    if record is not None and getattr(record, field) and not getattr(record, other):
        key = display_key(cat.key(media))
        raise UsageError(f"{key} has no {other}, so clearing its {field} would leave no item; "
                         f"to remove the item use `metalog forget {key}` (undo brings it back), "
                         f"or set its {other} first")


def cmd_set_title(args: argparse.Namespace, ctx: Context) -> int:
    return _set(args, ctx, "title", args.title)


def cmd_set_description(args: argparse.Namespace, ctx: Context) -> int:
    return _set(args, ctx, "description", args.text)


def cmd_get(args: argparse.Namespace, ctx: Context) -> int:
    with ctx.catalog(readonly=True) as cat:
        record = cat.get(args.media)
        key = cat.key(args.media)
    if record is None:
        return unknown_item(ctx, key)
    ctx.out.json({"key": key, "found": True, **record_dict(record)})
    ctx.out.kv([("key", key), ("title", record.title), ("description", record.description),
                ("version", record.version), ("created", format_time(record.created)),
                ("updated", format_time(record.updated))])
    return 0


def cmd_history(args: argparse.Namespace, ctx: Context) -> int:
    """Exit 1 for a key without a single event; damage: the intact history, exit 4."""
    import eventstore
    from ..history import item_history

    with ctx.catalog(readonly=True) as cat:
        key = cat.key(args.media)
        known = cat.store.version(key) > 0
        try:
            changes = cat.history(args.media)
        except eventstore.CorruptionError as exc:
            ctx.note_damage([Damage(exc.file, exc.offset, exc.reason)])
            changes = None
    if changes is None:             # the log is damaged: read what is intact
        changes = item_history(ctx.intact_events(), key)
    if not known and not changes:
        return unknown_item(ctx, key)
    ctx.out.json({"key": key, "changes": [change_dict(c) for c in changes]})
    if not changes:
        ctx.out.text(f"{display_key(key)}: no history")
        return 0
    rows = [(c.seq, format_time(c.time), c.actor or "-", c.field,
             f"{quote(c.old)} -> {quote(c.new)}", c.reason or "") for c in changes]
    ctx.out.text(display_key(key), *table(["SEQ", "TIME", "ACTOR", "FIELD", "CHANGE", "REASON"], rows,
                                          right=("SEQ",)))
    return 0


def cmd_diff(args: argparse.Namespace, ctx: Context) -> int:
    with ctx.catalog(readonly=True) as cat:
        last = cat.store.last_seq
        b = args.b if args.b is not None else last
        beyond = [f"{name} = {seq}" for name, seq in (("A", args.a), ("B", b)) if seq > last]
        if beyond:
            raise UsageError(f"{' and '.join(beyond)}: past the last seq of the store ({last})")
        changes = cat.diff(args.a, b)
    out = {str(k): {"before": _maybe_record(v[0]), "after": _maybe_record(v[1])}
           for k, v in sorted(changes.items())}
    ctx.out.json({"a": args.a, "b": b, "changes": out})
    ctx.out.text(f"diff seq {args.a} -> {b}: {plural(len(out), 'item')} changed")
    for key, pair in out.items():
        before, after = pair["before"] or {}, pair["after"] or {}
        status = "added" if not pair["before"] else "removed" if not pair["after"] else "changed"
        ctx.out.text(f"{status:8} {display_key(key)}")
        for name in FIELDS:
            old, new = before.get(name), after.get(name)
            if (old or "") != (new or ""):
                ctx.out.text(f"  {name + ':':13} {quote(old)} -> {quote(new)}")
    return 0


def _maybe_record(record: MediaRecord | None) -> dict[str, Any] | None:
    return None if record is None else record_dict(record)


def cmd_stats(args: argparse.Namespace, ctx: Context) -> int:
    with ctx.catalog(readonly=True) as cat:
        stats = dict(cat.stats())
    for name in _HANDLE_STATS:  # this command's own read-only handle, not the store's
        stats.pop(name, None)
    ctx.out.json(stats)
    first = ("items", "events", "keys", "last_seq", "snapshot_seq", "segments", "bytes_on_disk")
    pairs = dict(_flatten({k: v for k, v in stats.items() if not isinstance(v, dict)}))
    ordered = [(k, pairs.pop(k)) for k in first if k in pairs] + sorted(pairs.items())
    ctx.out.kv(ordered)
    return 0


_HANDLE_STATS = ("readonly", "durability", "pending", "key_cache", "path_cache")


def _flatten(stats: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    pairs: list[tuple[str, Any]] = []
    for key, value in stats.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            pairs.extend(_flatten(value, name + "."))
        elif name.endswith("bytes_on_disk") or name.endswith("_bytes"):
            pairs.append((name, f"{value} ({_human_bytes(value)})"))
        else:
            pairs.append((name, value))
    return pairs


def _human_bytes(n: Any) -> str:
    try:
        size = float(n)
    except (TypeError, ValueError):
        return str(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(n)


def cmd_import_json(args: argparse.Namespace, ctx: Context) -> int:
    """Exit 1 when the file was damaged, held invalid entries, or conflicts were
    kept (what could be imported is imported all the same); 130 on Ctrl-C."""
    if os.path.isdir(args.file):
        raise UsageError(f"{args.file}: is a directory, not a JSON file "
                         "(give the old persistence file itself, e.g. media_metadata.json)")
    if not os.path.exists(args.file):
        raise UsageError(f"{args.file}: no such file")
    if not os.path.isfile(args.file):
        raise UsageError(f"{args.file}: not a regular file (a JSON file is read once, whole)")
    from ..legacy import ImportInterrupted, LegacyDecodeError

    name = os.path.basename(args.file)
    try:
        with ctx.catalog() as cat, Progress(f"importing {args.file}") as bar, \
                _stop_between_commits() as stop:
            def progress(done: int, total: int) -> None:
                bar.update(done, total)
                if stop.is_set():
                    raise KeyboardInterrupt
            report = cat.import_legacy_json(args.file, overwrite=args.overwrite,
                                            encoding=args.encoding, progress=progress)
    except LegacyDecodeError as exc:
        raise UsageError(f"{args.file}: {exc}: --encoding NAME") from None
    except ImportInterrupted as exc:
        ctx.out.json({**plain(exc.report), "interrupted": True})
        sys.stderr.write(f"\n{name}: interrupted after {exc.report.done} of {exc.report.entries} "
                         "entries; run the same command again to finish\n")
        return 130
    except KeyboardInterrupt:
        sys.stderr.write(f"\n{name}: interrupted before anything was written\n")
        return 130
    info = plain(report)
    ctx.out.json(info)
    if report.already_imported:
        ctx.out.text(f"{name} was already imported (same SHA-256); nothing written")
        if report.problems():
            ctx.out.text("that import found: " + "; ".join(report.problems()))
        return 0
    _print_import(ctx, name, report)
    return 1 if report.damaged or report.invalid or report.conflicts else 0


@contextlib.contextmanager
def _stop_between_commits() -> Iterator[threading.Event]:
    """While importing, a first Ctrl-C sets the event (the import stops after the commit
    in progress, so the store never sees an interrupt inside a commit); a second one
    interrupts at once."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: Any) -> None:
        stop.set()
        signal.signal(signal.SIGINT, previous)
        sys.stderr.write("\nstopping after the commit in progress (Ctrl-C again: at once)\n")

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def _print_import(ctx: Context, name: str, report: ImportReport) -> None:
    verb = "finished the interrupted import of" if report.resumed else "imported"
    line = (f"{verb} {name}: {plural(report.entries, 'entry')}, "
            f"{plural(report.imported, 'item')} changed ({plural(report.events, 'event')}), "
            f"{report.unchanged} unchanged, {report.invalid} invalid")
    if report.conflicts:
        line += f", {plural(report.conflicts, 'conflict')}"
    ctx.out.text(line)
    if report.kept:
        fields = ", ".join(f"{k} ({v})" for k, v in sorted(report.kept.items()))
        ctx.out.text(f"kept from the file's entries: {fields}"
                     + (f"; created/updated times from the file for {plural(report.dated, 'item')}"
                        if report.dated else ""))
    if report.damaged:
        ctx.out.text("the file is damaged (not valid JSON): imported every entry that could be read")
    for error in report.errors:
        ctx.out.text(f"  {error}")
    for note in report.notes:
        ctx.out.text(f"  {note}")
    if report.conflicts:
        ctx.out.text(f"{plural(report.conflicts, 'field')} edited in metalog since the file's last "
                     "import kept (--overwrite writes the file's values):")
        for c in report.conflicted:
            ctx.out.text(f"  {display_key(c.key)} {c.field}: kept {quote(c.kept)}, "
                         f"file has {quote(c.file)}")
        if report.conflicts > len(report.conflicted):
            ctx.out.text(f"  ... and {report.conflicts - len(report.conflicted)} more")
