"""The media domain's event vocabulary: event types, data fields, meta keys.

This module owns the names written into the log by the media catalog and
the two value types readers get back (`MediaRecord`, `Change`). Everything
that reads or writes media events imports its names from here, so the
on-disk vocabulary lives in exactly one place. It does no I/O.

Events (``key`` is always the normalised media path):

| type               | data                 | meaning                                   |
|--------------------|----------------------|-------------------------------------------|
| ``title.set``      | ``{"value": str}``   | the item's title is now ``value``          |
| ``description.set``| ``{"value": str}``   | the item's description is now ``value``    |
| ``media.forgotten``| ``{}``               | the item is gone (its history stays)       |
| ``media.renamed``  | ``{"to": new}``      | on the old key: the item moved to ``new``  |
| ``media.renamed``  | ``{"from": old}``    | on the new key, same commit: it came from ``old`` |
| ``legacy.imported``| report counts        | a legacy JSON file (by SHA-256) was imported |

Meta keys: ``actor`` and ``reason`` (audit, on every event the catalog
writes), ``cont`` (true on every event of a commit but the first, so a
projection can tell commit boundaries and undo a commit as one step),
``merge`` (this edit joins the previous undo step of the same item and
field: the catalog decided so from ``undo_merge_window``), ``undo_of`` /
``redo_of`` (the step id, i.e. the first seq of the commit being undone or
redone; on ``*.set`` events, and on the ``media.renamed`` pair of a rename
undone or redone and the ``media.forgotten`` of a forget redone). Undo and
redo state is therefore derivable from the log alone.
"""
from __future__ import annotations

from typing import Any, NamedTuple

__all__ = [
    "TITLE_SET", "DESCRIPTION_SET", "FORGOTTEN", "RENAMED", "LEGACY_IMPORTED",
    "SET_TYPES", "FIELD_OF_TYPE", "TYPE_OF_FIELD", "FIELDS", "UNIT_FIELDS",
    "MEDIA_TYPES",
    "VALUE", "TO", "FROM",
    "ACTOR", "REASON", "CONT", "MERGE", "UNDO_OF", "REDO_OF",
    "MediaRecord", "Change", "ns_to_seconds", "seconds_to_ns",
]

TITLE_SET = "title.set"
DESCRIPTION_SET = "description.set"
FORGOTTEN = "media.forgotten"
RENAMED = "media.renamed"
LEGACY_IMPORTED = "legacy.imported"

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

# meta keys
ACTOR = "actor"
REASON = "reason"
CONT = "cont"
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
    """

    seq: int
    time: float
    field: str
    old: Any
    new: Any
    actor: str | None
    reason: str | None


def ns_to_seconds(ns: int) -> float:
    return ns / 1e9


def seconds_to_ns(seconds: float) -> int:
    return int(round(seconds * 1e9))
