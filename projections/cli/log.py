"""The `metalog` commands that work on the raw event log and its upkeep.

log, tail, export (read-only, beside a live writer), verify (read-only),
recover, compact and snapshot (writers). Events are printed one line each
for people, or as JSON Lines (one object per event) with ``--json``.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from typing import Any, Iterator

from eventstore import RecoveryReport, VerifyReport

from .media import event_summary
from .output import (Progress, display_key, display_width, event_dict, format_time, json_line, pad,
                          plain, plural, shorten_middle, visible)
from .context import Context, log_key, parse_time

__all__ = ["cmd_log", "cmd_tail", "cmd_export", "cmd_verify", "cmd_recover",
           "cmd_compact", "cmd_snapshot", "problem_dict", "report_lines"]


# ------------------------------------------------------------------ reading


def _filtered(store: Any, args: argparse.Namespace, progress: Progress | None = None
              ) -> Iterator[Any]:
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
    for event in store.read(start, stop, key=key, types=types):
        if progress is not None:
            progress.update(event.seq)
        if since is not None and event.ts < since:
            continue
        if until is not None and event.ts > until:
            return
        yield event


class _EventLines:
    """Prints events as aligned lines (people) or JSON Lines (--json).

    Human lines are aligned over chunks of up to ``CHUNK`` events, so a
    long log streams without being held in memory; column widths only grow.
    Keys longer than ``KEY_WIDTH`` terminal cells lose their middle to an
    ellipsis (one long key would otherwise push every line's CHANGE column
    off the screen); ``--json`` prints them whole.
    """

    CHUNK = 500
    KEY_WIDTH = 48
    HEADERS = ("SEQ", "TIME", "TYPE", "KEY", "CHANGE")

    def __init__(self, ctx: Context, *, header: bool = True) -> None:
        self.ctx = ctx
        self.out = ctx.out.out
        self.widths = [len(h) for h in self.HEADERS]
        self.pending: list[tuple[str, ...]] = []
        self.header = header
        self.count = 0

    def show(self, event: Any) -> None:
        self.count += 1
        if self.ctx.json:
            self.ctx.out.json_line(event_dict(event))
            return
        self.pending.append((str(event.seq), format_time(event.ts), visible(event.type),
                             shorten_middle(visible(display_key(event.key)), self.KEY_WIDTH),
                             event_summary(event)))
        if len(self.pending) >= self.CHUNK:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            self.out.flush()
            return
        for row in self.pending:
            self.widths = [max(w, display_width(c)) for w, c in zip(self.widths, row)]
        rows = ([self.HEADERS] if self.header else []) + self.pending
        self.header = False
        for row in rows:
            seq, when, typ, key, change = row
            w = self.widths
            self.out.write(visible(f"{pad(seq, w[0], right=True)}  {pad(when, w[1])}  {pad(typ, w[2])}  "
                                   f"{pad(key, w[3])}  {change}".rstrip()) + "\n")
        self.pending.clear()
        self.out.flush()


def cmd_log(args: argparse.Namespace, ctx: Context) -> int:
    with ctx.store_handle() as store:
        printer = _EventLines(ctx)
        for event in _filtered(store, args):
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
        try:
            for event in store.follow(last + 1, timeout=args.timeout):
                printer.show(event)
                printer.flush()
        except KeyboardInterrupt:
            pass
    return 0


def cmd_export(args: argparse.Namespace, ctx: Context) -> int:
    count = 0
    with ctx.store_handle() as store:
        total = store.last_seq
        if args.output:
            directory = os.path.dirname(os.path.abspath(args.output))
            fd, tmp = tempfile.mkstemp(prefix=".metalog-export-", dir=directory)
            sink = os.fdopen(fd, "w", encoding="utf-8")
        else:
            tmp, sink = None, sys.stdout
        try:
            with Progress("exporting", total=total) as progress:
                for event in _filtered(store, args, progress):
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


def problem_dict(problem: Any) -> dict[str, Any]:
    """A verify or recovery entry as a dict: its fields plus ``message``."""
    return {**plain(problem.as_dict()), "message": str(problem)}


def report_lines(report: RecoveryReport) -> list[str]:
    """The entries of a recovery report, one string each (empty when none)."""
    return [str(entry) for entry in report]


def _show_verify(ctx: Context, report: VerifyReport, extra: dict[str, Any] | None = None) -> int:
    body = {**plain(report.as_dict()), **(extra or {})}
    body["problems"] = [problem_dict(p) for p in report.problems]
    ctx.out.json(body)
    if report.ok:
        counts = ", ".join(plural(body[n], n[:-1])
                           for n in ("events", "commits", "segments", "snapshots"))
        ctx.out.text(f"ok: {ctx.store} verified ({counts})")
    else:
        ctx.out.text(f"verify found {plural(len(report.problems), 'problem')} in {ctx.store}:")
        for problem in body["problems"]:
            ctx.out.text(f"  {problem['message']}")
    if report.lost:
        ctx.out.text(f"note: {report.lost_line()}")
    if report.ok:
        return 0
    sys.stderr.write("hint: `metalog recover` repairs a torn tail; `metalog recover --salvage` "
                     "keeps every intact event after damage (nothing is deleted)\n")
    return 1


def _verify(store: Any) -> VerifyReport:
    """``store.verify()`` with a progress bar fed by its progress callback."""
    with Progress("verifying", total=store.last_seq or None) as bar:
        return store.verify(progress=bar.update)


def cmd_verify(args: argparse.Namespace, ctx: Context) -> int:
    # salvage + readonly: open past damage without writing, so verify lists every problem
    with ctx.store_handle(recovery="salvage") as store:
        report = _verify(store)
    return _show_verify(ctx, report)


def cmd_recover(args: argparse.Namespace, ctx: Context) -> int:
    mode = "salvage" if args.salvage else "strict"
    with ctx.catalog(recovery=mode) as cat:
        store = cat.store
        report = store.recovery_report
        lines = report_lines(report)
        if mode == "salvage" and any(e.action == "skipped-snapshot" for e in report):
            store.snapshot()  # salvage set an unusable snapshot aside: keep opens fast (issue 13 item 5)
        verified = _verify(store)
    if lines:
        inside = str(ctx.store) + os.sep            # paths in the store, shown relative to it
        ctx.out.text(f"recovery ({mode}) repaired {ctx.store}:",
                     *(f"  {line.replace(inside, '')}" for line in lines))
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
    b, a = before.get("bytes_on_disk"), after.get("bytes_on_disk")
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

