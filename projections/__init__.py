"""metalog's read models and media domain, built on `eventstore`.

`MediaCatalog` is the API applications call (SPEC §3); `MediaProjection`
is the read model the store replays; `MediaPersistenceService` keeps the
old uploader API working. The CLI lives in `projections.cli` and is not
imported here.

The names are imported on first use (PEP 562), so a program that needs
only a part (the `metalog` command's ``--help``, `projections.events`)
does not load the store and its codecs.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .catalog import Batch, MediaCatalog, UndoError
    from .events import Change, MediaRecord
    from .legacy import ImportInterrupted, ImportReport, LegacyDecodeError, import_legacy_json
    from .media import MediaProjection
    from .service import MediaPersistenceService
    from .undo import UndoResult

__all__ = ["MediaCatalog", "MediaProjection", "MediaPersistenceService", "MediaRecord",
           "Change", "Batch", "ImportReport", "ImportInterrupted", "LegacyDecodeError",
           "import_legacy_json", "UndoError", "UndoResult"]

_HOME = {"MediaCatalog": "catalog", "Batch": "catalog", "UndoError": "catalog",
         "Change": "events", "MediaRecord": "events", "MediaProjection": "media",
         "MediaPersistenceService": "service", "ImportReport": "legacy",
         "ImportInterrupted": "legacy", "LegacyDecodeError": "legacy",
         "import_legacy_json": "legacy", "UndoResult": "undo"}


def __getattr__(name: str) -> object:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
