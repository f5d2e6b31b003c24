"""`ImportLedger`: which legacy imports the log holds, and where each stands.

This module owns the media projection's record of legacy JSON imports,
built from the ``legacy.*`` marker events (see `projections.events`): for
each file (by SHA-256) whether a complete import of it is in effect, and
for each import *operation* (identified by its step id) its file, the seq
that completed it, and whether it was undone or redone as a whole. The
importer asks it whether a file was imported, or has an unfinished import
to resume; undo and redo ask it whether the last user action was an
import. It is fed by `MediaProjection` (off the replay hot path: only
marker events reach it), is part of the projection's snapshot, and does
no I/O.
"""
from __future__ import annotations

from typing import Any, NamedTuple

from .events import (LEGACY_IMPORT_REDONE, LEGACY_IMPORT_STARTED, LEGACY_IMPORT_UNDONE,
                     LEGACY_IMPORTED, OP)

__all__ = ["ImportLedger", "ImportOp"]

# an operation's record: [sha256, source, end, undone, redone, redoable]
_SHA, _SOURCE, _END, _UNDONE, _REDONE, _REDOABLE = range(6)


class ImportOp(NamedTuple):
    """One import operation, as the log tells it."""

    step: int       # its step id: the seq of its first event
    sha256: str     # the imported file's SHA-256
    source: str     # the file's absolute path at import time
    end: int        # seq of its ``legacy.imported`` marker; 0 while unfinished
    undone: int     # step of the commit that undid it as a whole; 0 while in effect
    redone: int     # step of the commit that last redid it; 0 if never
    redoable: bool  # undone, and the same file was not imported again since

    @property
    def last_done(self) -> int:
        """The step that last put this import in effect (its own, or its redo)."""
        return self.redone or self.step


class ImportLedger:
    """The imports of a log; `apply` takes the ``legacy.*`` events in seq order."""

    def __init__(self) -> None:
        self._imports: dict[str, int] = {}       # sha256 -> marker seq of the import in effect
        self._ops: dict[int, list[Any]] = {}     # step -> record (see _SHA ...)
        self._old: dict[str, int] = {}           # source -> marker seq, for markers without op

    def apply(self, seq: int, step: int, typ: str, data: dict[str, Any]) -> None:
        sha, source = data.get("sha256"), data.get("source")
        if not isinstance(sha, str):
            return
        source = source if isinstance(source, str) else ""
        if typ == LEGACY_IMPORT_STARTED:
            self._supersede(sha)
            self._ops[step] = [sha, source, 0, 0, 0, False]
        elif typ == LEGACY_IMPORTED:
            self._finished(seq, step, sha, source, data)
        elif typ in (LEGACY_IMPORT_UNDONE, LEGACY_IMPORT_REDONE):
            op = data.get(OP)
            record = self._ops.get(op) if op.__class__ is int else None
            if record is None or record[_SHA] != sha:
                return
            if typ == LEGACY_IMPORT_UNDONE:
                record[_UNDONE], record[_REDOABLE] = step, True
                if record[_END] and self._imports.get(sha) == record[_END]:
                    del self._imports[sha]
            else:
                record[_UNDONE], record[_REDONE], record[_REDOABLE] = 0, step, False
                if record[_END]:
                    self._imports[sha] = record[_END]

    def _finished(self, seq: int, step: int, sha: str, source: str, data: dict[str, Any]) -> None:
        self._imports[sha] = seq
        if OP not in data:              # written before imports were operations
            if source:
                self._old[source] = seq
            return
        record = self._ops.get(step)
        if record is None or record[_SHA] != sha:   # a one-commit import: no start marker
            self._supersede(sha)
            record = self._ops[step] = [sha, source, 0, 0, 0, False]
        record[_END] = seq

    def _supersede(self, sha: str) -> None:
        """A new import of ``sha``: an earlier undone import of it is no longer redone."""
        for record in self._ops.values():
            if record[_SHA] == sha:
                record[_REDOABLE] = False

    # ------------------------------------------------------------------ queries

    def imported(self, sha256: str) -> int | None:
        """The seq of the marker of the complete import of this file in effect, if any."""
        return self._imports.get(sha256)

    def op(self, step: int) -> ImportOp | None:
        record = self._ops.get(step)
        return None if record is None else ImportOp(step, *record)

    def ops(self) -> list[ImportOp]:
        """Every import operation, oldest first."""
        return [ImportOp(step, *record) for step, record in sorted(self._ops.items())]

    def unfinished(self, sha256: str) -> ImportOp | None:
        """The import of this file that began, is in effect, and has no marker yet."""
        found = [op for op in self.ops() if op.sha256 == sha256 and not op.end and not op.undone]
        return found[-1] if found else None

    def in_effect(self, source: str) -> list[ImportOp]:
        """The imports of the file at ``source`` that are in effect, oldest first."""
        return [op for op in self.ops() if op.source == source and not op.undone]

    def old_import(self, source: str) -> int | None:
        """The marker seq of an import of ``source`` written before imports were operations."""
        return self._old.get(source)

    def undo_candidate(self) -> ImportOp | None:
        """The import in effect that was done (or redone) last."""
        live = [op for op in self.ops() if not op.undone]
        return max(live, key=lambda op: op.last_done, default=None)

    def redo_candidate(self) -> ImportOp | None:
        """The import undone last, if it can still be redone."""
        undone = [op for op in self.ops() if op.redoable]
        return max(undone, key=lambda op: op.undone, default=None)

    # ----------------------------------------------------------------- snapshot

    def state(self) -> dict[str, Any]:
        """msgpack-able and shared with nothing later calls change."""
        return {"imports": self._imports.copy(), "old": self._old.copy(),
                "ops": [[step, *record] for step, record in self._ops.items()]}

    def restore(self, state: dict[str, Any]) -> None:
        self._imports = dict(state["imports"])
        self._old = dict(state["old"])
        self._ops = {row[0]: list(row[1:]) for row in state["ops"]}
