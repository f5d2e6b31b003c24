"""The old uploader's world: its JSON file and its persistence API.

This module owns the bridge from the legacy system. `import_legacy_json`
reads the old ``{media_key: {"title": ..., "description": ...}}`` file
(never writing to it), tolerates a truncated or damaged file by importing
every entry it can still read and reporting the rest, skips and reports
each entry the store would refuse (bad key or value, too large), and records the
file's SHA-256 in the log so a second import of the same bytes writes
nothing. `MediaPersistenceService` keeps the old application API working
on a `MediaCatalog`; given the path of an old JSON file it migrates it on
first use into a store beside it (``media.json`` -> ``media.metalog/``).
Legacy keys are normalised like every media argument (a relative one
against the current directory at import time).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from eventstore.codec import encode_commit
from eventstore.errors import ValidationError
from eventstore.codec import MAX_COMMIT_BYTES

from .catalog import MediaCatalog, _check_text
from .events import ACTOR, CONT, LEGACY_IMPORTED, REASON, TYPE_OF_FIELD, VALUE
from .keys import media_key

__all__ = ["ImportReport", "parse_legacy_json", "import_legacy_json",
           "MediaPersistenceService", "LEGACY_ACTOR", "STORE_SUFFIX"]

LEGACY_ACTOR = "legacy-import"
STORE_SUFFIX = ".metalog"
CHUNK_ITEMS = 1000          # items per commit while importing
# Upper bound of a commit's encoded bytes while importing: 1000 items of
# values near max_event_bytes would pass the store's frame limit.
CHUNK_BYTES = MAX_COMMIT_BYTES // 2
MAX_REPORTED_ERRORS = 50    # the report lists this many problems, then counts the rest
# msgpack framing of one event (array, map headers, meta keys, bool) is far below this
_EVENT_OVERHEAD = 256
_WS = re.compile(r"\s*")
# Resynchronise on the next top-level entry: `, "key": {`
_NEXT_ENTRY = re.compile(r',\s*(?="(?:[^"\\]|\\.)*"\s*:\s*\{)')


@dataclass
class ImportReport:
    """What `import_legacy_json` found and did."""

    source: str
    sha256: str
    entries: int = 0            # entries read from the file
    imported: int = 0           # items whose metadata changed
    unchanged: int = 0          # items already holding the same values
    invalid: int = 0            # entries skipped as bad input (SPEC §5), each listed in errors
    damaged: bool = False       # the file was not valid JSON (truncated or corrupted)
    already_imported: bool = False
    events: int = 0
    errors: list[str] = field(default_factory=list)   # why: damage, then each invalid entry;
                                                      # capped, then "... and N more"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_legacy_json(text: str) -> tuple[list[tuple[str, Any]], list[str], bool]:
    """Entries of an old JSON file, read as far as possible.

    Returns ``(entries, errors, damaged)``. A valid file parses with
    ``json``. A damaged one is walked entry by entry: an unreadable entry is
    reported and skipped up to the next ``, "key": {``; a truncated tail
    loses only the entry it cut.
    """
    try:
        whole = json.loads(text)
    except (ValueError, RecursionError):   # RecursionError: hostile nesting
        pass
    else:
        if isinstance(whole, dict):
            return list(whole.items()), [], False
        return [], [f"top level is a {type(whole).__name__}, not an object"], True
    decoder = json.JSONDecoder()
    entries: list[tuple[str, Any]] = []
    errors: list[str] = []
    n = len(text)
    pos = _WS.match(text, 0).end()   # type: ignore[union-attr]
    if pos >= n or text[pos] != "{":
        return [], ["not a JSON object"], True
    pos += 1
    while True:
        pos = _WS.match(text, pos).end()   # type: ignore[union-attr]
        if pos >= n:
            errors.append(f"truncated at offset {n} (no closing brace)")
            break
        if text[pos] == "}":
            break
        if text[pos] == ",":
            pos += 1
            continue
        start = pos
        try:
            key, pos = decoder.raw_decode(text, pos)
            if not isinstance(key, str):
                raise ValueError("entry key is not a string")
            pos = _WS.match(text, pos).end()   # type: ignore[union-attr]
            if pos >= n or text[pos] != ":":
                raise ValueError("expected ':'")
            pos = _WS.match(text, pos + 1).end()   # type: ignore[union-attr]
            value, pos = decoder.raw_decode(text, pos)
        except (ValueError, RecursionError) as exc:
            errors.append(f"unreadable entry at offset {start}: {exc}")
            found = _NEXT_ENTRY.search(text, start + 1)
            if found is None:
                break
            pos = found.end()
            continue
        entries.append((key, value))
    return entries, errors, True


def import_legacy_json(catalog: MediaCatalog, path: str | os.PathLike[str], *,
                       reason: str | None = None,
                       chunk_items: int = CHUNK_ITEMS,
                       chunk_bytes: int = CHUNK_BYTES) -> ImportReport:
    """Import an old JSON file into ``catalog`` once; the file is only read.

    Every entry is validated before the first commit, as `MediaCatalog`
    validates a set: a key or value it would refuse, or an event over the
    store's ``max_event_bytes``, makes the entry invalid; it is skipped,
    counted and listed in ``errors`` with its key and the reason, and the
    rest is imported. Items are then written ``chunk_items`` per atomic
    commit, fewer when their values are large (a commit stays within
    ``chunk_bytes``, so within the store's frame limit); the last commit also records the file's SHA-256, so importing
    the same bytes again reports ``already_imported`` and writes nothing.
    An import cut short by a crash is simply run again (values already
    there are not rewritten).
    """
    source = os.path.abspath(os.fspath(path))
    with open(source, "rb") as fh:
        raw = fh.read()
    digest = hashlib.sha256(raw).hexdigest()
    report = ImportReport(source=source, sha256=digest)
    why = reason or f"import of legacy file {os.path.basename(source)}"
    with catalog._lock:
        catalog._check_open()
        catalog._no_batch("import_legacy_json")
        if catalog.projection.imported(digest) is not None:
            report.already_imported = True
            return report
        text = raw.decode("utf-8", errors="replace")
        entries, errors, report.damaged = parse_legacy_json(text)
        report.entries = len(entries)
        meta = {ACTOR: LEGACY_ACTOR, REASON: why}
        # Every entry is checked here, before the first commit: an entry that
        # cannot be written (including one over max_event_bytes) is skipped and
        # reported, so it can neither abort the import nor leave it half done.
        limit = catalog.store.max_event_bytes
        widest_meta = {**meta, CONT: True}     # an event's meta as written, at its largest
        # UTF-8 takes at most 4 bytes per character: an event with no more characters
        # in its type, key and value than this fits whatever they are, unencoded.
        room = (limit - _EVENT_OVERHEAD) // 4 - sum(len(str(v)) for v in widest_meta.values())
        changes: dict[str, dict[str, str]] = {}
        for name, value in entries:
            try:
                key = media_key(name)
                fields = _legacy_fields(value)
                for f, v in fields.items():
                    if len(key) + len(v) + len(TYPE_OF_FIELD[f]) > room:  # encode it as the store will
                        encode_commit([(TYPE_OF_FIELD[f], key, {VALUE: v}, widest_meta)], limit)
            except ValidationError as exc:
                report.invalid += 1
                errors.append(f"entry {name[:80]!r}: {exc}")
                continue
            changes.setdefault(key, {}).update(fields)
        pending: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = []
        in_chunk = chunk_bound = 0
        per_event = 4 * sum(len(v) for v in meta.values()) + _EVENT_OVERHEAD
        for key, fields in changes.items():
            wanted = [(f, v) for f, v in fields.items() if v != catalog._committed(key, f)]
            if not wanted:
                report.unchanged += 1
                continue
            # an upper bound of the item's encoded bytes (UTF-8: <= 4 per character)
            bound = sum(4 * (len(key) + len(v)) + per_event for _, v in wanted)
            if in_chunk and chunk_bound + bound > chunk_bytes:
                report.events += len(catalog._append(pending))
                pending, in_chunk, chunk_bound = [], 0, 0
            report.imported += 1
            pending.extend((TYPE_OF_FIELD[f], key, {VALUE: v}, dict(meta)) for f, v in wanted)
            in_chunk += 1
            chunk_bound += bound
            if in_chunk >= chunk_items:
                report.events += len(catalog._append(pending))
                pending, in_chunk, chunk_bound = [], 0, 0
        report.errors = errors[:MAX_REPORTED_ERRORS]
        if len(errors) > MAX_REPORTED_ERRORS:
            report.errors.append(f"... and {len(errors) - MAX_REPORTED_ERRORS} more")
        marker = {"sha256": digest, "source": source, "entries": report.entries,
                  "imported": report.imported, "invalid": report.invalid,
                  "damaged": report.damaged}
        pending.append((LEGACY_IMPORTED, f"legacy-json:{digest}", marker, dict(meta)))
        report.events += len(catalog._append(pending)) - 1
    return report


def _legacy_fields(value: Any) -> dict[str, str]:
    """The title/description of one legacy entry; ValidationError says why it is unusable."""
    if not isinstance(value, dict):
        raise ValidationError(f"entry is a {type(value).__name__}, not an object")
    out = {}
    for name in ("title", "description"):
        text = value.get(name)
        if text is None:
            continue
        out[name] = _check_text(name, text)
    return out


class MediaPersistenceService:
    """The old persistence API, kept working on a `MediaCatalog`.

    ``path`` is either a store directory, or the old JSON file: then the
    store lives beside it (``media.json`` -> ``media.metalog/``) and the
    file is imported on first use (once; the JSON file is never modified).
    ``store_options`` go to `MediaCatalog.open`.
    """

    def __init__(self, path: str | os.PathLike[str], *, actor: str | None = None,
                 **store_options: Any) -> None:
        raw = os.path.abspath(os.fspath(path))
        self.legacy_path: str | None = None
        if os.path.isfile(raw) or raw.endswith(".json"):
            self.legacy_path = raw
            self.store_path = os.path.splitext(raw)[0] + STORE_SUFFIX
        else:
            self.store_path = raw
        self.catalog = MediaCatalog.open(self.store_path, actor=actor, **store_options)
        self.migration: ImportReport | None = None
        try:
            if self.legacy_path is not None and os.path.isfile(self.legacy_path):
                self.migration = self.catalog.import_legacy_json(self.legacy_path)
        except BaseException:
            self.catalog.close()
            raise

    # The old API --------------------------------------------------------

    def save_title(self, media_key: Any, title: str) -> bool:
        """Store a title; True if it changed (in batch mode: was queued).

        Bad input raises ValidationError (a ValueError) and, in batch mode,
        aborts the batch (see `commit_batch`).
        """
        return self._save("title", media_key, title)

    def save_description(self, media_key: Any, description: str) -> bool:
        """Store a description; True if it changed (in batch mode: was queued)."""
        return self._save("description", media_key, description)

    def _save(self, field: str, media: Any, value: str) -> bool:
        cat = self.catalog
        with cat._lock:
            before = cat.title(media) if field == "title" else cat.description(media)
            if field == "title":
                cat.set_title(media, value)
            else:
                cat.set_description(media, value)
            return before != value

    def get_title(self, media_key: Any) -> str:
        return self.catalog.title(media_key)

    def get_description(self, media_key: Any) -> str:
        return self.catalog.description(media_key)

    def get_metadata(self, media_key: Any) -> dict[str, str]:
        record = self.catalog.get(media_key)
        if record is None:
            return {"title": "", "description": ""}
        return {"title": record.title, "description": record.description}

    def start_batch_mode(self) -> None:
        self.catalog.start_batch_mode()

    def commit_batch(self) -> int:
        """Write the pending changes as one atomic commit; returns the event count.

        If a save was refused (ValueError) since `start_batch_mode`, the
        batch is aborted: nothing of it is written, batch mode ends, and this
        raises ValidationError (a ValueError) naming the refused item. An
        app that never passes bad input sees no difference.
        """
        return len(self.catalog.commit_batch())

    def cancel_batch(self) -> int:
        """Drop the pending changes; returns how many were dropped."""
        return self.catalog.cancel_batch()

    @property
    def batch_mode(self) -> bool:
        return self.catalog.in_batch

    def validate_path(self, media: Any) -> bool:
        """Whether the media file exists (answers cached, bounded, expiring)."""
        return self.catalog.path_checker.exists(media_key(media))

    def get_statistics(self) -> dict[str, Any]:
        stats = self.catalog.stats()
        return {
            "total_entries": stats["items"],
            "file_size_mb": stats.get("bytes_on_disk", 0) / (1 << 20),
            "batch_mode": self.catalog.in_batch,
            "pending_changes": stats["pending"],
            "events": stats.get("events", stats.get("last_seq", 0)),
            "store_path": self.store_path,
            "legacy_path": self.legacy_path,
            "path_cache": stats["path_cache"],
        }

    def shutdown(self) -> None:
        """Commit any pending batch and close the store; idempotent.

        A batch aborted by a refused save is not written: the store is
        closed, then ValidationError says so (as `commit_batch` does).
        """
        self.catalog.close()

    def __enter__(self) -> "MediaPersistenceService":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.catalog.__exit__(*exc)
