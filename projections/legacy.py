"""Importing the old uploader's JSON file into a media catalog.

This module owns the migration from the legacy system: `import_legacy_json`
reads the old ``{media_key: {"title": ..., "description": ...}}`` file
(never writing to it; reading it is `projections.legacyfile`'s job) and
writes what it holds as one *import operation*, whose events are described
in `projections.events`. What a caller can rely on:

- **Once.** The file's SHA-256 is recorded; the same bytes again report
  ``already_imported`` (with what that import found) and write nothing,
  unless the import was undone since.
- **Never over newer edits.** A field is written only if it is unset, or
  still holds what the previous import of the same file (by path) wrote.
  A field edited since is a *conflict*: kept, counted and listed in the
  report; ``overwrite=True`` writes the file's value anyway. (A field that
  already held the file's value when an earlier import ran was not written
  by it, so a later change of it in the file counts as a conflict too.)
- **Finished or resumable.** Items are written ``chunk_items`` per atomic
  commit, all of one undo step (meta ``op``), the last commit holding the
  ``legacy.imported`` marker. A Ctrl-C raises `ImportInterrupted` saying how
  far it got; a crash says nothing. Either way running the same import
  again resumes the same operation and finishes it. (A KeyboardInterrupt
  inside a commit is the store's business: it may refuse writes until
  reopened, and ``done`` may miss that commit. ``progress`` raising
  KeyboardInterrupt between commits, as ``metalog import-json`` does on a
  first Ctrl-C, stops cleanly.)
- **Bad input is reported, not fatal.** A damaged file imports every entry
  that can be read (``damaged``); an entry the catalog would refuse (bad
  key or value, an event over ``max_event_bytes``) is skipped, counted and
  listed. Bytes that do not decode in the file's encoding refuse the whole
  file (`LegacyDecodeError`): no key is ever stored with U+FFFD in it.
- **Nothing of an entry is lost.** Its other fields (``last_modified``,
  tags, ...) are kept as JSON text on the item's first event (see
  `Change.legacy` in its history), and its times, when it has them, become
  the item's ``created`` / ``updated``.
- **Undone as one action.** `MediaCatalog.undo()` right after it reverts
  the whole import (see `projections.undo`).

The importer needs only a few things of a catalog, the `ImportTarget`
protocol, so this module does not import `projections.catalog` (which
imports it). Legacy keys are normalised like every media argument (a
relative one against the current directory at import time).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, ContextManager, Iterator, Protocol

import msgspec

from eventstore.codec import encode_commit
from eventstore.errors import ValidationError
from eventstore.codec import MAX_COMMIT_BYTES
from eventstore.event import Event

from .events import (ACTOR, AT, CONT, CREATED, FIELD_OF_TYPE, LEGACY, LEGACY_IMPORT_STARTED,
                     LEGACY_IMPORTED, LEGACY_KEY_PREFIX, OP, REASON, TITLE_SET, TYPE_OF_FIELD,
                     VALUE, step_of)
from .ledger import ImportOp
from .legacyfile import (Entry, LegacyDecodeError, decode_legacy, parse_legacy_json, read_entry,
                         texts_encode)
from .media import MediaProjection

__all__ = ["ImportReport", "Conflict", "ImportTarget", "ImportInterrupted", "LegacyDecodeError",
           "parse_legacy_json", "import_legacy_json", "LEGACY_ACTOR", "MAX_REPORTED_ERRORS"]

LEGACY_ACTOR = "legacy-import"
CHUNK_ITEMS = 1000          # items per commit while importing
# Upper bound of a commit's encoded bytes while importing: 1000 items of
# values near max_event_bytes would pass the store's frame limit.
CHUNK_BYTES = MAX_COMMIT_BYTES // 2
MAX_REPORTED_ERRORS = 50    # the report lists this many problems, then counts the rest
# msgpack framing of one event (array, map headers, meta keys, ints, bool) is far below this
_EVENT_OVERHEAD = 256
Item = tuple[str, str, dict[str, Any], dict[str, Any]]
Todo = tuple[Entry, tuple[tuple[str, str], ...]]   # an item to write, with its (field, value)s
_TIME_CHARS = 64            # AT and CREATED, names and ints, as characters at most


class ImportTarget(Protocol):
    """What the importer uses of a catalog (`MediaCatalog` is one)."""

    def exclusive(self, what: str) -> ContextManager[MediaProjection]:
        """Hold the catalog; yields its committed state."""

    def append_events(self, items: list[Item]) -> list[Event]:
        """One atomic commit of prepared events."""

    def read_log(self, start: int = 1, stop: int | None = None) -> Iterator[Event]:
        """The log's events in ``start <= seq < stop``."""

    @property
    def max_event_bytes(self) -> int:
        """The largest encoded event the store accepts."""


@dataclass
class Conflict:
    """A field the import left alone: edited in metalog since the file's last import."""

    key: str
    field: str
    kept: str       # the value in the catalog, kept
    file: str       # the file's value, not written


@dataclass
class ImportReport:
    """What `import_legacy_json` found and did (also `MediaPersistenceService.migration`).

    ``entries`` were read from the file; ``imported`` items were written
    (in this run, or in an interrupted run of the same import that this one
    finished: ``resumed``), with ``events`` sets in this run; ``unchanged``
    items already held the file's values; ``invalid`` entries were skipped
    as bad input (SPEC §5) and ``damaged`` says the file was not valid JSON
    (each listed in ``errors``, capped, then "... and N more").
    ``conflicts`` counts fields kept because they were edited since the
    file's previous import, ``conflicted`` lists them (capped). ``kept``
    maps each other field of the entries (``last_modified``, ...) to the
    number of items it was kept for; ``dated`` items took their times from
    the file; ``notes`` says which times could not be read.
    ``already_imported``: the same bytes were imported before and nothing
    was written now (``imported``, ``unchanged``, ``events`` are 0);
    ``entries``, ``invalid``, ``damaged`` and ``conflicts`` are what that
    import recorded, so a damaged file stays reported as damaged. ``interrupted``
    / ``done``: a Ctrl-C stopped it after ``done`` of ``entries`` entries.
    ``op`` is the import's step id (the seq of its first event).
    """

    source: str
    sha256: str
    encoding: str = "utf-8"
    entries: int = 0
    imported: int = 0
    unchanged: int = 0
    invalid: int = 0
    damaged: bool = False
    conflicts: int = 0
    already_imported: bool = False
    resumed: bool = False
    interrupted: bool = False
    done: int = 0
    events: int = 0
    op: int = 0
    dated: int = 0
    kept: dict[str, int] = field(default_factory=dict)
    conflicted: list[Conflict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def problems(self) -> list[str]:
        """One phrase per kind of problem (empty when there was none)."""
        out = []
        if self.damaged:
            out.append("the file is damaged (not valid JSON); every entry that could be read was imported")
        if self.invalid:
            out.append(f"{self.invalid} invalid entr{'y was' if self.invalid == 1 else 'ies were'} skipped")
        if self.conflicts:
            out.append(f"{self.conflicts} field{' was' if self.conflicts == 1 else 's were'} edited "
                       "since the file's last import and kept")
        if self.interrupted:
            out.append(f"interrupted after {self.done} of {self.entries} entries")
        return out


class ImportInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped an import between (or in) its commits; ``report`` says how far.

    Every commit is atomic, so the catalog holds ``report.done`` entries of
    the file; running the same import again resumes and finishes it.
    """

    def __init__(self, report: ImportReport) -> None:
        super().__init__(f"interrupted after {report.done} of {report.entries} entries")
        self.report = report


def import_legacy_json(catalog: ImportTarget, path: str | os.PathLike[str], *,
                       overwrite: bool = False, encoding: str | None = None,
                       reason: str | None = None, chunk_items: int = CHUNK_ITEMS,
                       chunk_bytes: int = CHUNK_BYTES,
                       progress: Callable[[int, int], None] | None = None) -> ImportReport:
    """Import an old JSON file into ``catalog`` once; the file is only read.

    See the module's docstring for what it guarantees. ``overwrite`` writes
    the file's values over fields edited since its last import (and imports
    a file again though it was imported); ``encoding`` names the file's
    encoding (default: UTF-8, or what a BOM says); ``progress(done, total)``
    (entries) is called before each commit, and may raise KeyboardInterrupt
    to stop the import there. Raises `LegacyDecodeError` (nothing written)
    and `ImportInterrupted`.
    """
    source = os.path.abspath(os.fspath(path))
    with open(source, "rb") as fh:
        raw = fh.read()
    report = ImportReport(source=source, sha256=hashlib.sha256(raw).hexdigest())
    meta = {ACTOR: LEGACY_ACTOR, REASON: reason or f"import of legacy file {os.path.basename(source)}"}
    with catalog.exclusive("import_legacy_json") as proj:
        marker_seq = proj.imports.imported(report.sha256)
        if marker_seq is not None and not overwrite:
            report.already_imported = True
            _recall(catalog, proj, marker_seq, report)
            return report
        entries, errors = _load(raw, encoding, report)
        unfinished = proj.imports.unfinished(report.sha256)
        earlier = _earlier_writes(catalog, unfinished) if unfinished else set()
        report.resumed = unfinished is not None
        plan = _plan(catalog, proj, entries, report, overwrite, earlier)
        chunks = _chunks(catalog, plan, report, meta, chunk_items, chunk_bytes, errors)
        report.errors = _capped(errors)
        _write(catalog, proj, chunks, report, meta, unfinished, progress)
    return report


def _load(raw: bytes, encoding: str | None, report: ImportReport) -> tuple[dict[str, Entry], list[str]]:
    """The file's usable entries, and its problems. (The parsed file is dropped on
    return: the rest of the import runs with a smaller heap for the GC to walk.)"""
    text, report.encoding, cut = decode_legacy(raw, encoding)
    pairs, errors, report.damaged = parse_legacy_json(text)
    if cut:
        errors.insert(0, f"the file ends inside a character ({report.encoding})")
    report.entries = len(pairs)
    return _read_entries(pairs, report, errors), errors


def _read_entries(pairs: list[tuple[str, Any]], report: ImportReport,
                  errors: list[str]) -> dict[str, Entry]:
    """Usable entries by key (a key given twice: the later values win); invalid ones reported."""
    entries: dict[str, Entry] = {}
    checked = texts_encode(pairs)
    for name, value in pairs:
        try:
            entry = read_entry(name, value, text_checked=checked)
        except ValidationError as exc:
            report.invalid += 1
            errors.append(f"entry {name[:80]!r}: {exc}")
            continue
        if entry.note is not None and len(report.notes) < MAX_REPORTED_ERRORS:
            report.notes.append(f"entry {name[:80]!r}: {entry.note}; the import time is used")
        before = entries.get(entry.key)
        if before is not None:          # "a.jpg" and "./a.jpg": one item
            entry = msgspec.structs.replace(
                entry, title=before.title if entry.title is None else entry.title,
                description=before.description if entry.description is None else entry.description)
        entries[entry.key] = entry
    return entries


def _capped(lines: list[str]) -> list[str]:
    if len(lines) <= MAX_REPORTED_ERRORS:
        return lines
    return lines[:MAX_REPORTED_ERRORS] + [f"... and {len(lines) - MAX_REPORTED_ERRORS} more"]


def _recall(catalog: ImportTarget, proj: MediaProjection, seq: int, report: ImportReport) -> None:
    """Fill ``report`` with the counts the ``legacy.imported`` marker at ``seq`` recorded."""
    for event in catalog.read_log(seq, seq + 1):
        data = event.data
        for name in ("entries", "invalid", "conflicts"):
            if isinstance(data.get(name), int):
                setattr(report, name, data[name])
        report.damaged = bool(data.get("damaged"))
        if isinstance(data.get("encoding"), str):
            report.encoding = data["encoding"]  # type: ignore[assignment]
    report.op = next((op.step for op in proj.imports.ops() if op.end == seq), 0)


def _step_events(catalog: ImportTarget, op: ImportOp) -> Iterator[Event]:
    """The set events of the import ``op``, in seq order."""
    step = 0
    for event in catalog.read_log(op.step, op.end + 1 if op.end else None):
        step = step_of(event.seq, event.meta, step)
        if step == op.step and event.type in FIELD_OF_TYPE:
            yield event


def _earlier_writes(catalog: ImportTarget, op: ImportOp) -> set[str]:
    """Keys an unfinished import wrote before it was cut short."""
    return {event.key for event in _step_events(catalog, op)}


def _base(catalog: ImportTarget, proj: MediaProjection, source: str) -> dict[tuple[str, str], str]:
    """``{(key, field): value}`` the imports in effect of the file at ``source`` wrote."""
    base: dict[tuple[str, str], str] = {}
    old = proj.imports.old_import(source)
    if old is not None:     # imported before imports were operations: its sets, by actor
        for event in catalog.read_log(1, old):
            field_ = FIELD_OF_TYPE.get(event.type)
            if (field_ is not None and event.meta.get(ACTOR) == LEGACY_ACTOR
                    and OP not in event.meta and isinstance(event.data.get(VALUE), str)):
                base[(event.key, field_)] = event.data[VALUE]  # type: ignore[assignment]
    for op in proj.imports.in_effect(source):
        for event in _step_events(catalog, op):
            value = event.data.get(VALUE)
            if isinstance(value, str):
                base[(event.key, FIELD_OF_TYPE[event.type])] = value
    return base


def _plan(catalog: ImportTarget, proj: MediaProjection, entries: dict[str, Entry],
          report: ImportReport, overwrite: bool, earlier: set[str]
          ) -> list[Todo]:
    """The items to write, each with its ``(field, value)`` list; counts the rest."""
    todo: list[Todo] = []
    contested: list[tuple[Entry, str, str, str]] = []     # (entry, field, now, file value)
    values = proj.values
    for key, entry in entries.items():
        now = values(key) or ("", "")
        wanted: tuple[tuple[str, str], ...] = ()
        for name, value, current in (("title", entry.title, now[0]),
                                     ("description", entry.description, now[1])):
            if value is None or value == current:
                continue
            if current and not overwrite:
                contested.append((entry, name, current, value))
            else:
                wanted += ((name, value),)
        if wanted:
            todo.append((entry, wanted))
    if contested:
        todo = _settle(catalog, proj, todo, contested, report)
    counted = {entry.key for entry, _ in todo} | (earlier & entries.keys())
    report.imported = len(counted)
    report.unchanged = len(entries) - len(counted) - len(
        {entry.key for entry, _, _, _ in contested} - counted)
    return todo


def _settle(catalog: ImportTarget, proj: MediaProjection,
            todo: list[Todo],
            contested: list[tuple[Entry, str, str, str]], report: ImportReport
            ) -> list[Todo]:
    """Contested fields still holding what the file's last import wrote join ``todo``;
    the others are conflicts."""
    base = _base(catalog, proj, report.source)
    extra: dict[str, tuple[tuple[str, str], ...]] = {}
    entry_of: dict[str, Entry] = {}
    for entry, name, now, value in contested:
        if base.get((entry.key, name)) == now:
            extra[entry.key] = extra.get(entry.key, ()) + ((name, value),)
            entry_of[entry.key] = entry
            continue
        report.conflicts += 1
        if len(report.conflicted) < MAX_REPORTED_ERRORS:
            report.conflicted.append(Conflict(entry.key, name, now, value))
    out = []
    for entry, wanted in todo:
        out.append((entry, wanted + extra.pop(entry.key, ())))
    out += [(entry_of[key], wanted) for key, wanted in extra.items()]
    return out


def _write(catalog: ImportTarget, proj: MediaProjection, chunks: list[list[Todo]],
           report: ImportReport, meta: dict[str, Any], unfinished: ImportOp | None,
           progress: Callable[[int, int], None] | None) -> None:
    """Commit the chunks in order, the marker with the last; ImportInterrupted on Ctrl-C
    (``progress``, called before each commit, may raise KeyboardInterrupt to stop there)."""
    op = unfinished.step if unfinished is not None else 0
    remaining, items = sum(map(len, chunks)), []
    in_flight: list[Todo] | None = None
    try:
        for n, chunk in enumerate(chunks):
            if progress is not None:
                progress(report.entries - remaining, report.entries)
            first = n == 0 and op == 0
            items = _commit_items(chunk, meta, op)
            if first and len(chunks) > 1:       # several commits: announce the step first
                items.insert(0, _started(report, meta))
            if n == len(chunks) - 1:
                items.append(_finished(report, meta, op))
            in_flight = chunk
            events = catalog.append_events(items)
            in_flight = None
            remaining -= len(chunk)
            if first:
                op = events[0].seq
            report.events += sum(1 for e in events if e.type in FIELD_OF_TYPE)
    except KeyboardInterrupt as exc:
        if in_flight is not None and _landed(proj, items):
            remaining -= len(in_flight)        # that commit got through after all
        if not op:
            begun = proj.imports.unfinished(report.sha256)
            op = begun.step if begun is not None else 0
        report.interrupted, report.done, report.op = True, report.entries - remaining, op
        raise ImportInterrupted(report) from exc
    report.op = op
    report.done = report.entries


def _landed(proj: MediaProjection, items: list[Item]) -> bool:
    """Whether the sets among ``items`` are all in the projection (their commit landed)."""
    sets = [(typ, key, data[VALUE]) for typ, key, data, _ in items if typ in FIELD_OF_TYPE]
    return bool(sets) and all((proj.title(key) if typ == TITLE_SET else proj.description(key)) == value
                              for typ, key, value in sets)


def _started(report: ImportReport, meta: dict[str, Any]) -> Item:
    data = {"sha256": report.sha256, "source": report.source, "entries": report.entries,
            "encoding": report.encoding}
    return (LEGACY_IMPORT_STARTED, LEGACY_KEY_PREFIX + report.sha256, data, dict(meta))


def _finished(report: ImportReport, meta: dict[str, Any], op: int) -> Item:
    data = {"sha256": report.sha256, "source": report.source, OP: op,
            "entries": report.entries, "imported": report.imported,
            "unchanged": report.unchanged, "invalid": report.invalid,
            "conflicts": report.conflicts, "damaged": report.damaged,
            "encoding": report.encoding, "dated": report.dated, "kept": dict(report.kept)}
    cont = {**meta, CONT: True}
    if op:
        cont[OP] = op
    return (LEGACY_IMPORTED, LEGACY_KEY_PREFIX + report.sha256, data, cont)


def _commit_items(chunk: list[Todo], meta: dict[str, Any], op: int) -> list[Item]:
    """The sets of one commit. None but the first has ``cont``; in a later commit of
    the import every one has ``op`` (so the commit is part of the import's step)."""
    first = {**meta, OP: op} if op else dict(meta)
    cont = {**first, CONT: True}
    items: list[Item] = []
    for entry, wanted in chunk:
        items += _item_events(entry, wanted, cont)
    if items:
        typ, key, data, _ = items[0]
        items[0] = (typ, key, data, first)
    return items


def _chunks(catalog: ImportTarget, todo: list[Todo], report: ImportReport, meta: dict[str, Any],
            chunk_items: int, chunk_bytes: int, errors: list[str]) -> list[list[Todo]]:
    """The plan cut into commits: at most ``chunk_items`` items and ``chunk_bytes``
    each (a bound: UTF-8 takes at most 4 bytes per character). Every event is checked
    to fit ``max_event_bytes`` first; an item with one that does not is skipped and
    reported as invalid (in ``errors``), so it can neither abort nor cut the import."""
    limit = catalog.max_event_bytes
    widest = {**meta, OP: 1 << 62, CONT: True}     # an event's meta as written, at its largest
    room = (limit - _EVENT_OVERHEAD) // 4 - sum(len(str(v)) for v in widest.values())
    per_event = 4 * sum(len(str(v)) for v in widest.values()) + _EVENT_OVERHEAD
    chunks: list[list[Todo]] = []
    chunk: list[Todo] = []
    bound, invalid = 0, []
    for entry, wanted in todo:
        extra = len(entry.extras) + _TIME_CHARS if entry.extras is not None else _TIME_CHARS
        chars = 0
        for _, value in wanted:
            chars += len(value)
        if len(entry.key) + chars + extra > room:     # could be over: encode as the store will
            try:
                for typ, key, data, _ in _item_events(entry, wanted, widest):
                    encode_commit([(typ, key, data, widest)], limit)
            except ValidationError as exc:
                invalid.append(f"entry {entry.key[:80]!r}: {exc}")
                continue
        size = 4 * (len(wanted) * len(entry.key) + chars + extra) + len(wanted) * per_event
        if chunk and (len(chunk) >= chunk_items or bound + size > chunk_bytes):
            chunks.append(chunk)
            chunk, bound = [], 0
        chunk.append((entry, wanted))
        bound += size
        if entry.names or entry.updated is not None or entry.created is not None:
            _count_kept(entry, report)
    chunks.append(chunk)
    report.invalid += len(invalid)          # found too large only now: invalid after all
    report.imported -= len(invalid)
    errors += invalid
    return chunks


def _item_events(entry: Entry, wanted: tuple[tuple[str, str], ...], meta: dict[str, Any]) -> list[Item]:
    """The sets of one item: the entry's times on each, its other fields on the first."""
    key = entry.key
    if entry.extras is None and entry.updated is None and entry.created is None:
        return [(TYPE_OF_FIELD[name], key, {VALUE: value}, meta) for name, value in wanted]
    at = entry.updated if entry.updated is not None else entry.created
    items: list[Item] = []
    for name, value in wanted:
        data: dict[str, Any] = {VALUE: value}
        if at is not None:
            data[AT] = at
            if entry.created is not None:
                data[CREATED] = entry.created
        if not items and entry.extras is not None:
            data[LEGACY] = entry.extras
        items.append((TYPE_OF_FIELD[name], key, data, meta))
    return items


def _count_kept(entry: Entry, report: ImportReport) -> None:
    if entry.updated is not None or entry.created is not None:
        report.dated += 1
    kept = report.kept
    for name in entry.names:
        kept[name] = kept.get(name, 0) + 1
