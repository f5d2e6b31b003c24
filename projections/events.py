"""The media domain's event vocabulary: event types, data fields, meta keys.

This module owns the names written into the log by the media catalog and
the two value types readers get back (`MediaRecord`, `Change`). Everything
that reads or writes media events imports its names from here, so the
on-disk vocabulary lives in exactly one place. It does no I/O.

Events (``key`` is the normalised media path; for ``legacy.*`` it is
``legacy-json:<sha256 of the file>``):

| type                   | data                 | meaning                                   |
|------------------------|----------------------|-------------------------------------------|
| ``title.set``          | ``{"value": str}``   | the item's title is now ``value``          |
| ``description.set``    | ``{"value": str}``   | the item's description is now ``value``    |
| ``media.forgotten``    | ``{}``               | the item is gone (its history stays)       |
| ``media.renamed``      | ``{"to": new}``      | on the old key: the item moved to ``new``  |
| ``media.renamed``      | ``{"from": old}``    | on the new key, same commit: it came from ``old`` |
| ``legacy.import.started`` | ``sha256, source, entries, encoding`` | an import that needs several commits begins; its seq is the import's step id |
| ``legacy.imported``    | ``sha256, source, op,`` counts | the import is complete (last event of its last commit) |
| ``legacy.import.undone`` | ``sha256, source, op, reverted, kept`` | the import ``op`` was undone as a whole |
| ``legacy.import.redone`` | ``sha256, source, op, reverted, kept`` | ...and redone as a whole |

A set written by a legacy import may carry more data: ``at`` and
``created`` (int, ns since the epoch: the times the legacy entry gave; the
projection uses them for the item's ``updated`` and, for a new item,
``created``, instead of the commit time) and, on the item's first event
of the commit, ``legacy`` (str: the JSON text of the entry's fields other
than title and description, kept verbatim). Readers that know only
``value`` see an ordinary set.

**Operations and step ids.** An undo *step* is identified by the first
seq of the commit that made it (the commit of events linked by ``cont``).
An import too large for one commit is one step across commits: its first
commit starts with ``legacy.import.started`` (whose seq is the step id)
and every event of its later commits carries meta ``op`` = that seq. So a
projection takes a commit's step from the ``op`` of its first event, else
the commit's first seq. ``legacy.imported``'s data ``op`` is the step id
too, or 0 when the import was the single commit that holds the marker; a
marker without ``op`` comes from a log written before imports were
operations (such an import is not undone as a whole). ``legacy.import.undone``
/ ``redone`` share the commit of the compensating sets (which carry
``undo_of`` / ``redo_of`` = the import's step id); ``reverted`` and ``kept``
count the fields set back and the fields left alone because they were
edited after the import.

Meta keys: ``actor`` and ``reason`` (audit, on every event the catalog
writes), ``cont`` (true on every event of a commit but the first, so a
projection can tell commit boundaries and undo a commit as one step),
``op`` (above), ``merge`` (this edit joins the previous undo step of the
same item and field: the catalog decided so from ``undo_merge_window``),
``undo_of`` / ``redo_of`` (the step id being undone or redone; on
``*.set`` events, and on the ``media.renamed`` pair of a rename undone or
redone and the ``media.forgotten`` of a forget redone). Undo and redo
state is therefore derivable from the log alone. Logs written before
``op`` and the import markers other than ``legacy.imported`` existed
replay as before.
"""
from __future__ import annotations

from typing import Any, NamedTuple

__all__ = [
    "TITLE_SET", "DESCRIPTION_SET", "FORGOTTEN", "RENAMED", "LEGACY_IMPORTED",
    "LEGACY_IMPORT_STARTED", "LEGACY_IMPORT_UNDONE", "LEGACY_IMPORT_REDONE", "LEGACY_TYPES",
    "LEGACY_KEY_PREFIX", "AT", "CREATED", "LEGACY", "OP",
    "SET_TYPES", "FIELD_OF_TYPE", "TYPE_OF_FIELD", "FIELDS", "UNIT_FIELDS",
    "MEDIA_TYPES",
    "VALUE", "TO", "FROM",
    "ACTOR", "REASON", "CONT", "MERGE", "UNDO_OF", "REDO_OF",
    "MediaRecord", "Change", "ns_to_seconds", "seconds_to_ns", "step_of",
]

TITLE_SET = "title.set"
DESCRIPTION_SET = "description.set"
FORGOTTEN = "media.forgotten"
RENAMED = "media.renamed"
LEGACY_IMPORTED = "legacy.imported"
LEGACY_IMPORT_STARTED = "legacy.import.started"
LEGACY_IMPORT_UNDONE = "legacy.import.undone"
LEGACY_IMPORT_REDONE = "legacy.import.redone"
LEGACY_TYPES = frozenset((LEGACY_IMPORT_STARTED, LEGACY_IMPORTED, LEGACY_IMPORT_UNDONE,
                          LEGACY_IMPORT_REDONE))
LEGACY_KEY_PREFIX = "legacy-json:"   # + the file's SHA-256: the key of the legacy.* events

FIELDS = ("title", "description")
UNIT_FIELDS = FIELDS + ("key",)   # what an undo step changes: a field, or the key (rename, forget)
TYPE_OF_FIELD = {"title": TITLE_SET, "description": DESCRIPTION_SET}
FIELD_OF_TYPE = {TITLE_SET: "title", DESCRIPTION_SET: "description"}
SET_TYPES = frozenset(FIELD_OF_TYPE)
MEDIA_TYPES = frozenset((TITLE_SET, DESCRIPTION_SET, FORGOTTEN, RENAMED))

# data fields
VALUE = "value"
TO = "to"
FROM = "from"
AT = "at"              # legacy import: the value's time (ns), the item's updated
CREATED = "created"    # legacy import: the item's creation time (ns)
LEGACY = "legacy"      # legacy import: JSON text of the entry's other fields

# meta keys
ACTOR = "actor"
REASON = "reason"
CONT = "cont"
OP = "op"              # later commits of a multi-commit operation: its step id
MERGE = "merge"
UNDO_OF = "undo_of"
REDO_OF = "redo_of"


class MediaRecord(NamedTuple):
    """The current metadata of one media item.

    ``version`` is the number of events ever appended for the item's key
    (the store's ``version(key)``, usable as ``expected_version``);
    ``created`` and ``updated`` are seconds since the epoch (UTC).
    """

    title: str
    description: str
    version: int
    created: float
    updated: float


class Change(NamedTuple):
    """One entry of an item's history.

    ``field`` is ``"title"`` or ``"description"`` for edits, and ``"key"``
    for lifecycle events: a rename (``old`` and ``new`` are the keys) or a
    forget (``new`` is None). ``time`` is seconds since the epoch (UTC).
    ``legacy`` is set on a change a legacy import made from an entry with
    fields besides title and description: those fields, as the file had them.
    """

    seq: int
    time: float
    field: str
    old: Any
    new: Any
    actor: str | None
    reason: str | None
    legacy: dict[str, Any] | None = None


def ns_to_seconds(ns: int) -> float:
    return ns / 1e9


def seconds_to_ns(seconds: float) -> int:
    return int(round(seconds * 1e9))


def step_of(seq: int, meta: dict[str, Any], current: int) -> int:
    """The step id of the event at ``seq`` with ``meta``, read in seq order.

    ``current`` (the step of the event before) inside a commit (``cont``);
    else the commit's ``op``, if it names an earlier seq; else ``seq``.
    `MediaProjection.apply` inlines its common case.
    """
    if CONT in meta:
        return current
    op = meta.get(OP)
    return op if op.__class__ is int and 0 < op < seq else seq
