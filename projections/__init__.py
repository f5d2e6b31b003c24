"""metalog's read models and media domain, built on `eventstore`.

`MediaCatalog` is the API applications call (SPEC §3); `MediaProjection`
is the read model the store replays; `MediaPersistenceService` keeps the
old uploader API working. The CLI lives in `projections.cli` and is not
imported here.
"""
from __future__ import annotations

from .catalog import Batch, MediaCatalog, UndoError
from .events import Change, MediaRecord
from .legacy import ImportInterrupted, ImportReport, LegacyDecodeError, import_legacy_json
from .media import MediaProjection
from .service import MediaPersistenceService
from .undo import UndoResult

__all__ = ["MediaCatalog", "MediaProjection", "MediaPersistenceService", "MediaRecord",
           "Change", "Batch", "ImportReport", "ImportInterrupted", "LegacyDecodeError",
           "import_legacy_json", "UndoError", "UndoResult"]
