"""`metalog restore FILE`: an export's events written into a new store,
then read back and checked equal.

An export (`metalog export`, JSON Lines) holds each event's seq, time,
type, key, data and meta. Restore reads it three times: to check every
line before the first byte is written (STYLE habit 6), to append the
events in order, and to compare the new store's events with the export's
(type, key, data and meta, as JSON shows them) and verify the store.
Commits are rebuilt from the catalog's ``cont`` meta (an event with it
joins the one before). The store stamps its own commit times, so the
export's times are not kept. When the export's seqs have gaps (a salvage
lost events, or ``export --from``), the new seqs close them: the mapping
is reported, and the ``undo_of``/``redo_of`` step links in meta follow it.
A store that already holds events is refused; nothing is merged.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, Iterator

from .context import Context, UsageError
from .output import Progress, plain, plural
from ..events import CONT, REDO_OF, UNDO_OF

if TYPE_CHECKING:
    from eventstore import VerifyReport

__all__ = ["cmd_restore", "ExportLine", "seq_map_ranges"]

_LINKS = (UNDO_OF, REDO_OF)


@dataclass(frozen=True)
class ExportLine:
    """One event of an export, checked."""

    number: int         # line number in the file
    seq: int
    type: str
    key: str
    data: dict[str, object]
    meta: dict[str, object]


def _parse(number: int, text: str, previous: int) -> ExportLine:
    """One line as an event; UsageError naming the line when it is not one."""
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"line {number}: not JSON ({exc.args[0]})") from None
    if not isinstance(obj, dict):
        raise UsageError(f"line {number}: not an event object")
    seq, type_, key = obj.get("seq"), obj.get("type"), obj.get("key")
    data, meta = obj.get("data") or {}, obj.get("meta") or {}
    if not isinstance(seq, int) or isinstance(seq, bool) or seq <= previous:
        raise UsageError(f"line {number}: seq {seq!r} does not follow seq {previous} "
                         "(an export lists events in seq order)")
    if not isinstance(type_, str) or not isinstance(key, str):
        raise UsageError(f"line {number}: an event needs a string type and key")
    if not isinstance(data, dict) or not isinstance(meta, dict):
        raise UsageError(f"line {number}: data and meta must be objects")
    return ExportLine(number, seq, type_, key, data, meta)


def _lines(source: IO[str]) -> Iterator[ExportLine]:
    previous = 0
    for number, text in enumerate(source, 1):
        if text.strip():
            line = _parse(number, text, previous)
            previous = line.seq
            yield line


@dataclass
class _Plan:
    """What the first read learned: how many events, and the new seq of each old one."""

    events: int = 0
    seqs: dict[int, int] = field(default_factory=dict)
    gaps: bool = False

    def add(self, line: ExportLine) -> None:
        self.events += 1
        self.seqs[line.seq] = self.events
        self.gaps = self.gaps or line.seq != self.events

    def meta(self, line: ExportLine) -> tuple[dict[str, object], int]:
        """The event's meta with step links mapped to the new seqs, and how
        many links point at events the export does not hold (kept as they are)."""
        if not self.gaps or not any(name in line.meta for name in _LINKS):
            return line.meta, 0
        meta, dangling = dict(line.meta), 0
        for name in _LINKS:
            step = meta.get(name)
            if isinstance(step, int) and not isinstance(step, bool):
                if step in self.seqs:
                    meta[name] = self.seqs[step]
                else:
                    dangling += 1
        return meta, dangling


def seq_map_ranges(seqs: dict[int, int]) -> list[tuple[int, int, int]]:
    """(first old seq, last old seq, first new seq) of each run the mapping
    shifts by one amount."""
    runs: list[tuple[int, int, int]] = []
    for old, new in seqs.items():
        if runs and old == runs[-1][1] + 1 and new - old == runs[-1][2] - runs[-1][0]:
            runs[-1] = (runs[-1][0], old, runs[-1][2])
        else:
            runs.append((old, old, new))
    return runs


def _check_target(ctx: Context) -> None:
    """Refuse a store that holds events (a path that is no store: `open` refuses it)."""
    import eventstore

    if not ctx.store_exists():
        return
    with eventstore.open(str(ctx.store), readonly=True, create=False) as existing:
        held = existing.last_seq
    if held:
        raise UsageError(f"{ctx.store} already holds {plural(held, 'event')}; restore writes "
                         "only into a new or empty store (pass another --store)")


def _commits(source: IO[str], plan: _Plan) -> Iterator[tuple[list[tuple[Any, ...]], int, int]]:
    """The export's events as commits: (items for append_many, dangling links,
    line number of the commit's first event)."""
    items: list[tuple[Any, ...]] = []
    dangling = first = 0
    for line in _lines(source):
        if items and not line.meta.get(CONT):
            yield items, dangling, first
            items, dangling = [], 0
        if not items:
            first = line.number
        meta, lost = plan.meta(line)
        items.append((line.type, line.key, line.data, meta))
        dangling += lost
    if items:
        yield items, dangling, first


def _write(ctx: Context, source: IO[str], plan: _Plan) -> int:
    """Append every commit; returns the step links left pointing at lost events."""
    import eventstore
    from ..media import MediaProjection

    dangling = 0
    with eventstore.open(str(ctx.store), projections=(MediaProjection(),), durability="none") as store, \
            Progress("restoring", total=plan.events) as bar:
        for items, lost, number in _commits(source, plan):
            try:
                store.append_many(items)
            except eventstore.ValidationError as exc:
                raise UsageError(f"line {number}: the store refused this commit ({exc}); "
                                 f"{ctx.store} holds the {plural(store.last_seq, 'event')} "
                                 "before it") from None
            dangling += lost
            bar.update(store.last_seq)
        store.flush()
        store.snapshot()            # as an application's store has one: the next open is fast
    return dangling


def _compare(ctx: Context, source: IO[str], plan: _Plan) -> tuple[str | None, "VerifyReport | None"]:
    """The first difference between the new store and the export (None: equal), and verify's report."""
    import eventstore

    with eventstore.open(str(ctx.store), readonly=True, create=False) as store:
        restored = store.read()
        for line in _lines(source):
            event = next(restored, None)
            want = (line.type, line.key, line.data, plan.meta(line)[0])
            if event is None:
                return f"export seq {line.seq}: missing from the new store", None
            got = (event.type, event.key, plain(event.data), plain(event.meta))
            if got != want:
                return f"export seq {line.seq} (new seq {event.seq}) differs", None
        extra = next(restored, None)
        if extra is not None:
            return f"the new store has an event the export lacks (seq {extra.seq})", None
        return None, store.verify()


def _spooled(path: str) -> IO[str]:
    """The export, readable three times (stdin is copied to a temporary file)."""
    if path != "-":
        if os.path.isdir(path):
            raise UsageError(f"{path}: is a directory, not an export file")
        return open(path, encoding="utf-8")
    spool = tempfile.TemporaryFile("w+", encoding="utf-8")
    for text in sys.stdin:
        spool.write(text)
    return spool


def cmd_restore(args: argparse.Namespace, ctx: Context) -> int:
    """Exit 2 for a bad export or a store holding events (nothing written), 1 when the
    new store does not read back equal to the export."""
    _check_target(ctx)
    with _spooled(args.file) as source:
        plan = _Plan()
        for line in _lines(source):
            plan.add(line)
        source.seek(0)
        dangling = _write(ctx, source, plan)
        source.seek(0)
        difference, verified = _compare(ctx, source, plan)
    runs = seq_map_ranges(plan.seqs) if plan.gaps else []
    return _report(ctx, plan, runs, dangling, difference, verified)


def _report(ctx: Context, plan: _Plan, runs: list[tuple[int, int, int]], dangling: int,
            difference: str | None, verified: "VerifyReport | None") -> int:
    equal = difference is None and verified is not None and verified.ok
    ctx.out.json({"store": str(ctx.store), "events": plan.events, "equal": equal,
                  "difference": difference, "verify_ok": bool(verified and verified.ok),
                  "seq_map": [list(run) for run in runs], "dangling_links": dangling})
    if difference is not None:
        return ctx.fail(1, "restore-differs", f"restored {ctx.store}, but it does not read back "
                                              f"as the export: {difference}")
    ctx.out.text(f"restored {plural(plan.events, 'event')} into {ctx.store}: "
                 + ("read back equal to the export, verify ok" if equal else "VERIFY FAILED"))
    for first, last, new in runs:
        span = f"{first}" if first == last else f"{first}-{last}"
        target = f"{new}" if first == last else f"{new}-{new + last - first}"
        ctx.out.text(f"  export seq {span} is now seq {target}")
    if dangling:
        ctx.out.text(f"  {plural(dangling, 'undo/redo link')} point at events the export "
                     "does not hold; left as they were")
    ctx.out.text("  (event times are the restore's: a store stamps its own commits)")
    return 0 if equal else 1
