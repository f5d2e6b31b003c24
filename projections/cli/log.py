"""The `metalog` commands that work on the raw event log and its upkeep.

log, tail, export (read-only, beside a live writer), verify (read-only),
recover, compact and snapshot (writers). Events are printed one line each
for people, or as JSON Lines (one object per event) with ``--json``. On a
damaged store `log` and `export` go on past the damage with the intact
events (`Context.events`) and exit 4; `verify` names the media items of
the events it finds lost, where a snapshot still counts them.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import tempfile
import threading
import time
from typing import Any, Iterator, TextIO

from eventstore import Store

from .context import Context, log_key, parse_time
from .damage import describe_entry, lost_line
from .media import event_summary
from .output import (Progress, StreamTable, display_key, event_dict, format_time, json_line, plain,
                     plural, shorten_middle, visible)

__all__ = ["cmd_log", "cmd_tail", "cmd_export", "cmd_verify", "cmd_recover",
           "cmd_compact", "cmd_snapshot", "problem_dict"]


# ------------------------------------------------------------------ reading


def _filtered(store: Any, args: argparse.Namespace, ctx: Context,
              progress: Progress | None = None) -> Iterator[Any]:
    """Events matching --from --to --key --type --since --until, in seq order.
    Commit times never go backwards in a log, so the scan stops after --until."""
    start = max(args.from_seq or 1, 1)
    stop = args.to_seq + 1 if args.to_seq is not None else None
    if stop is not None and stop <= start:
        return
    key = log_key(store, args.key) if args.key else None
    since = parse_time(args.since) if args.since else None
    until = parse_time(args.until) if args.until else None
    types = args.types or None
    for event in ctx.events(store, start, stop, key=key, types=types):
        if progress is not None:
            progress.update(event.seq)
        if since is not None and event.ts < since:
            continue
        if until is not None and event.ts > until:
            return
        yield event


class _EventLines:
    """Prints events as aligned lines (people) or JSON Lines (--json).

    Human lines are aligned over blocks of up to ``CHUNK`` events
    (`StreamTable`), so a long log streams without being held in memory;
    column widths only grow. Keys longer than ``KEY_WIDTH`` terminal cells
    lose their middle to an ellipsis (one long key would otherwise push
    every line's CHANGE column off the screen); ``--json`` prints them whole.
    """

    CHUNK = 500
    KEY_WIDTH = 48
    HEADERS = ("SEQ", "TIME", "TYPE", "KEY", "CHANGE")

    def __init__(self, ctx: Context, *, header: bool = True) -> None:
        self.ctx = ctx
        self.table = StreamTable(ctx.out.out, self.HEADERS, right=("SEQ",), first=self.CHUNK,
                                 block=self.CHUNK, header=header)
        self.count = 0

    def show(self, event: Any) -> None:
        self.count += 1
        if self.ctx.json:
            self.ctx.out.json_line(event_dict(event))
            return
        self.table.add((str(event.seq), format_time(event.ts), event.type,
                        shorten_middle(visible(display_key(event.key)), self.KEY_WIDTH),
                        event_summary(event)))

    def flush(self) -> None:
        self.table.flush()


def cmd_log(args: argparse.Namespace, ctx: Context) -> int:
    with ctx.store_handle() as store:
        printer = _EventLines(ctx)
        for event in _filtered(store, args, ctx):
            if args.limit is not None and printer.count >= args.limit:
                break
            printer.show(event)
        printer.flush()
    if printer.count == 0 and not ctx.json:
        sys.stderr.write("(no events match)\n")
    return 0


def cmd_tail(args: argparse.Namespace, ctx: Context) -> int:
    with ctx.store_handle() as store:
        last = store.last_seq
        printer = _EventLines(ctx, header=False)
        for event in store.read(max(last - args.lines + 1, 1)) if args.lines else ():
            printer.show(event)
        printer.flush()
        if not args.follow:
            return 0
        with _interrupt_flag() as interrupted:
            try:
                _follow(store, last + 1, args.timeout, printer, interrupted)
            except KeyboardInterrupt:
                pass
    return 0


_SLICE = 0.25  # seconds a Ctrl-C that Python dropped can go unnoticed by `tail -f`


def _follow(store: Store, start: int, timeout: float | None, printer: _EventLines,
            interrupted: threading.Event) -> None:
    """Print events from ``start`` as they are committed, until ``timeout`` seconds pass
    without one (None: never) or Ctrl-C.

    Follows in short slices and looks at the flag between them: a KeyboardInterrupt
    raised while Python finalises a generator is only printed as ignored, so Ctrl-C
    alone could leave ``tail -f`` running.
    """
    next_seq, idle_since = start, time.monotonic()
    slice_ = _SLICE if timeout is None else min(_SLICE, timeout)
    while not interrupted.is_set():
        for event in store.follow(next_seq, timeout=slice_):
            printer.show(event)
            printer.flush()
            next_seq, idle_since = event.seq + 1, time.monotonic()
            if interrupted.is_set():
                return
        if timeout is not None and time.monotonic() - idle_since >= timeout:
            return


@contextlib.contextmanager
def _interrupt_flag() -> Iterator[threading.Event]:
    """Ctrl-C sets the event as well as raising KeyboardInterrupt (main thread only)."""
    flag = threading.Event()
    if threading.current_thread() is threading.main_thread():
        def handler(signum: int, frame: Any) -> None:
            flag.set()
            raise KeyboardInterrupt

        previous = signal.signal(signal.SIGINT, handler)
        try:
            yield flag
        finally:
            signal.signal(signal.SIGINT, previous)
    else:
        yield flag


def cmd_export(args: argparse.Namespace, ctx: Context) -> int:
    count = 0
    sink: TextIO
    with ctx.store_handle() as store:
        total = store.last_seq
        if args.output:
            directory = os.path.dirname(os.path.abspath(args.output))
            fd, tmp = tempfile.mkstemp(prefix=".metalog-export-", dir=directory)
            sink = os.fdopen(fd, "w", encoding="utf-8")
        else:
            tmp, sink = None, sys.stdout
            ctx.out.annotated = True    # the stream is data: damage is told on stderr only
        try:
            with Progress("exporting", total=total) as progress:
                for event in _filtered(store, args, ctx, progress):
                    sink.write(json_line(event_dict(event)))
                    count += 1
            if tmp is not None:
                sink.flush()
                os.fsync(sink.fileno())
                sink.close()
                os.replace(tmp, args.output)
                tmp = None
        finally:
            if tmp is not None:
                sink.close()
                os.unlink(tmp)
    if args.output:
        ctx.out.json({"events": count, "file": os.path.abspath(args.output)})
        ctx.out.text(f"exported {count} events to {args.output}")
    return 0


# ---------------------------------------------------------------- upkeep


def problem_dict(problem: Any, root: str) -> dict[str, Any]:
    """A verify or recovery entry as a dict: its fields plus ``message``."""
    return {**plain(problem.as_dict()), "message": describe_entry(problem, root, action=False)}


def _show_verify(ctx: Context, report: Any, extra: dict[str, Any] | None = None,
                 lost_items: dict[str, int] | None = None) -> int:
    root = str(ctx.store)
    body = {**plain(report.as_dict()), **(extra or {})}
    body["problems"] = [problem_dict(p, root) for p in report.problems]
    if lost_items is not None:
        body["lost_items"] = lost_items
    ctx.out.json(body)
    if report.ok:
        counts = ", ".join(plural(body[n], n[:-1])
                           for n in ("events", "commits", "segments", "snapshots"))
        ctx.out.text(f"ok: {ctx.store} verified ({counts})")
    else:
        ctx.out.text(f"verify found {plural(len(report.problems), 'problem')} in {ctx.store}:")
        for problem in body["problems"]:
            ctx.out.text(f"  {problem['message']}")
        items = lost_line(lost_items or {})
        if items:
            ctx.out.text(f"  {items}")
    if report.lost:
        ctx.out.text(f"note: {report.lost_line()}")
    if report.ok:
        return 0
    sys.stderr.write("hint: `metalog recover` repairs a torn tail; `metalog recover --salvage` "
                     "keeps every intact event after damage (nothing is deleted)\n")
    return 1


def _verify(store: Any) -> Any:
    """``store.verify()`` with a progress bar fed by its progress callback."""
    with Progress("verifying", total=store.last_seq or None) as bar:
        return store.verify(progress=bar.update)


def cmd_verify(args: argparse.Namespace, ctx: Context) -> int:
    """Read-only: opened with salvage to read past damage (it repairs
    nothing), so verify lists every problem; the items of lost events are
    named where a snapshot still counts them."""
    with ctx.store_handle(recovery="salvage") as store:
        report = _verify(store)
    lost = ctx.lost_keys() if any(p.lost for p in report.problems) else None
    return _show_verify(ctx, report, lost_items=lost)


def cmd_recover(args: argparse.Namespace, ctx: Context) -> int:
    mode = "salvage" if args.salvage else "strict"
    root = str(ctx.store)
    with ctx.catalog(recovery=mode, notice=False) as cat:
        store = cat.store
        report = store.recovery_report
        lines = [describe_entry(entry, root) for entry in report]
        if mode == "salvage" and any(e.action == "skipped-snapshot" for e in report):
            store.snapshot()  # salvage set an unusable snapshot aside: keep opens fast
        verified = _verify(store)
    if lines:
        ctx.out.text(f"recovery ({mode}) repaired {ctx.store}:", *(f"  {line}" for line in lines))
    else:
        ctx.out.text(f"recovery ({mode}): nothing to repair in {ctx.store}")
    return _show_verify(ctx, verified, {"recovery": mode, "repaired": bool(lines),
                                        "report": plain(report.as_dict())})


def cmd_compact(args: argparse.Namespace, ctx: Context) -> int:
    with ctx.catalog() as cat:
        before = dict(cat.store.stats())
        with Progress("compacting"):
            result = cat.compact()
        after = dict(cat.store.stats())
    ctx.out.json({"before": before, "after": after, "result": plain(result)})
    b, a = int(before.get("bytes_on_disk") or 0), int(after.get("bytes_on_disk") or 0)
    ctx.out.text(f"compacted {ctx.store}")
    ctx.out.kv([("bytes on disk", f"{b} -> {a}" + (f" ({a / b:.0%})" if b and a else "")),
                ("segments", f"{before.get('segments')} -> {after.get('segments')}"),
                ("snapshot at seq", after.get("snapshot_seq"))], indent="  ")
    return 0


def cmd_snapshot(args: argparse.Namespace, ctx: Context) -> int:
    with ctx.catalog() as cat:
        with Progress("writing snapshot"):
            cat.snapshot()
        stats = dict(cat.store.stats())
    ctx.out.json({"snapshot_seq": stats.get("snapshot_seq"), "last_seq": stats.get("last_seq")})
    ctx.out.text(f"snapshot written at seq {stats.get('snapshot_seq')}")
    return 0
