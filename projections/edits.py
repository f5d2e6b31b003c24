"""How a `MediaCatalog` writes: who acts, which edits merge into one undo step, planned commits.

`default_actor` is who a catalog records when it is not told. `MergeWindow`
remembers the catalog's last single edit, so an edit of the same field of the
same item by the same catalog within ``undo_merge_window`` seconds joins its
undo unit (SPEC §3: as editors merge typing). `append_planned` commits what a
plan decides from the projection, only on the state it planned on (each key
at the version planned on, ``expected_version``), planning again after
another writer's commit. No locking here: the catalog holds its lock.
"""
from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from typing import Callable

from eventstore.api import Store
from eventstore.errors import ConcurrencyError, ValidationError
from eventstore.event import Event

from .batch import Item
from .events import CONT
from .media import MediaProjection, UndoUnit

__all__ = ["default_actor", "check_window", "MergeWindow", "append_planned", "mark_cont"]

PLAN_ATTEMPTS = 5  # a plan is made again after another writer's commit, at most this often


def default_actor() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user database entry, no $USER: still audit something
        return f"uid-{os.getuid()}" if hasattr(os, "getuid") else "unknown"


def check_window(value: object) -> float:
    """``undo_merge_window``: seconds, a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(f"undo_merge_window must be a number of seconds, not {type(value).__name__}")
    if not 0 <= value < float("inf"):
        raise ValidationError(f"undo_merge_window must be a finite number >= 0, not {value}")
    return float(value)


@dataclass(frozen=True)
class _LastEdit:
    """The catalog's last single edit: what a following edit within the merge window joins."""

    key: str
    field: str
    step: int  # the undo unit's step (first seq of the commit that made it)
    order: int  # the seq of the edit
    at: float  # time.monotonic() when it was made


class MergeWindow:
    """The last single edit of one catalog, and whether the next one merges into its undo step."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._last: _LastEdit | None = None

    def candidate(self, proj: MediaProjection, key: str, field: str, now: float) -> UndoUnit | None:
        """The undo unit an edit of ``field`` of ``key`` at ``now`` joins, or None."""
        last = self._last
        if (self.seconds <= 0 or last is None or last.key != key
                or last.field != field or now - last.at >= self.seconds):
            return None
        top = proj.undo_top(key)
        if top is None or top.step != last.step or top.order != last.order or list(top.changes) != [field]:
            return None
        return top

    def made(self, key: str, field: str, event: Event, joined: UndoUnit | None, now: float) -> None:
        """An edit was appended as ``event`` (joining ``joined``, or a step of its own)."""
        step = joined.step if joined is not None else event.seq
        self._last = _LastEdit(key, field, step, event.seq, now)

    def forget(self) -> None:
        """Nothing after this merges into an earlier edit (a rename, undo, bulk write...)."""
        self._last = None


def mark_cont(items: list[Item]) -> list[Item]:
    """Every event after the first carries ``cont``: one commit, one user action."""
    for item in items[1:]:
        item[3][CONT] = True
    return items


def append_planned(store: Store, proj: MediaProjection, fresh: Callable[[], None],
                   plan: Callable[[], list[Item]]) -> list[Event]:
    """Append what ``plan`` decides from the current state, and only on that state.

    Another writer may commit between our look at the projection and our
    append. Each key the commit touches must still be at the version we
    planned on (``expected_version``); if not, we take in the new commits
    (``fresh``) and plan again, a few times, before the `ConcurrencyError`
    goes to the caller.
    """
    for attempt in range(PLAN_ATTEMPTS):
        fresh()
        items = plan()
        if not items:
            return []
        mark_cont(items)
        seen: set[str] = set()
        try:
            with store.transaction() as tx:
                for type_, key, data, meta in items:
                    expected = None if key in seen else proj.key_version(key)
                    seen.add(key)
                    tx.append(type_, key, data, meta=meta, expected_version=expected)
        except ConcurrencyError:
            if attempt == PLAN_ATTEMPTS - 1:
                raise
            continue
        return list(tx.events)
    raise AssertionError("unreachable")  # pragma: no cover
