"""`MediaPersistenceService`: the old uploader's persistence API on a catalog.

This module owns the drop-in replacement for the legacy service (SPEC §3):
the same method names and answers, backed by a `MediaCatalog`. Given the
path of an old JSON file it keeps the store beside it (``media.json`` ->
``media.metalog/``) and imports the file on every start: once per content
(`projections.legacy`), resuming an import a crash or Ctrl-C cut short, and
never over fields edited in metalog since. ``migration`` is the import's
`ImportReport`; when it found problems (a damaged file, invalid entries,
conflicts) they are also logged as a warning on the ``projections.service``
logger, at every start, so an app's log shows a migration that is not clean.
"""
from __future__ import annotations

import logging
import os
from typing import Any

from .catalog import MediaCatalog
from .keys import media_key
from .legacy import ImportReport

__all__ = ["MediaPersistenceService", "STORE_SUFFIX"]

STORE_SUFFIX = ".metalog"
log = logging.getLogger(__name__)


class MediaPersistenceService:
    """The old persistence API, kept working on a `MediaCatalog`.

    ``path`` is either a store directory, or the old JSON file: then the
    store lives beside it (``media.json`` -> ``media.metalog/``) and the
    file is imported on every start (once per content; the JSON file is
    never modified). A file that is not UTF-8 raises `LegacyDecodeError`
    (nothing imported; no key is stored with a replacement character):
    ``legacy_encoding`` names its encoding. ``store_options`` go to
    `MediaCatalog.open`.
    """

    def __init__(self, path: str | os.PathLike[str], *, actor: str | None = None,
                 legacy_encoding: str | None = None, **store_options: Any) -> None:
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
                self.migration = self.catalog.import_legacy_json(self.legacy_path,
                                                                 encoding=legacy_encoding)
                _log_problems(self.migration)
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
        with cat.lock:
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


def _log_problems(report: ImportReport) -> None:
    problems = report.problems()
    if not problems:
        return
    when = "was imported earlier" if report.already_imported else "imported"
    log.warning("legacy file %s %s with problems: %s", report.source, when, "; ".join(problems))
    for conflict in report.conflicted[:10]:
        log.warning("  kept %s %s = %r (the file has %r)", conflict.key, conflict.field,
                    conflict.kept, conflict.file)
    for error in report.errors[:10]:
        log.warning("  %s", error)
