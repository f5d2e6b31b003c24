"""Undo and redo: which step to revert, and the compensating events that do it.

This module owns the decisions behind `MediaCatalog.undo` and `redo`. With
an item, they revert the top unit of that item's stack in the projection.
Without one, they revert the last user action: the most recent commit on
the stacks, or a whole legacy import when that was done (or undone) last.

An import can span many commits and many more items than the projection
keeps stacks for (its undo horizon), so it is not reverted from the
stacks. Its changes are read back from the log (the events of its step,
see `projections.events`) with the values they replaced (a replay to just
before it, `timetravel.replay_to`), and one commit sets back every field
that still holds what the import wrote. A field edited since is *kept*
and reported, never overwritten. The commit also holds the
``legacy.import.undone`` (``redone``) marker, so the projection knows the
file is no longer (again) imported. Compensating events link to the step
they revert through meta ``undo_of`` / ``redo_of``, which keeps the
per-item stacks consistent. Nothing here writes: the catalog appends the
`Plan` under its lock.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

from eventstore.event import Event

from .events import (CONT, FIELD_OF_TYPE, FORGOTTEN, FROM, LEGACY_IMPORT_REDONE,
                     LEGACY_IMPORT_UNDONE, LEGACY_KEY_PREFIX, OP, REDO_OF, RENAMED, TO,
                     TYPE_OF_FIELD, UNDO_OF, VALUE, step_of)
from .ledger import ImportOp
from .media import MediaProjection, UndoUnit
from .timetravel import replay_to

__all__ = ["UndoError", "UndoResult", "Kept", "Plan", "plan_step", "rename_items"]

Item = tuple[str, str, dict[str, Any], dict[str, Any]]
MAX_LISTED = 50          # kept fields listed by a result (the rest are counted)


class UndoError(ValueError):
    """An undo or redo that cannot be done as asked; nothing was written.

    Raised when the step on top is a rename whose target key has a live item
    again (reverting it would overwrite that item), or a forget whose key is
    live again. ``key`` is the item whose step was refused, ``step`` its id.
    """

    def __init__(self, message: str, *, key: str, step: int) -> None:
        super().__init__(message)
        self.key = key
        self.step = step


@dataclass(frozen=True)
class Kept:
    """A field an undo or redo left alone because it was edited after the step."""

    key: str
    field: str
    value: str      # what it holds now (kept)
    wanted: str     # what the undo or redo would have set


class UndoResult(list[Event]):
    """The compensating events of one undo or redo, and what they did.

    A list of the events written (as before), plus: ``verb`` (``"undo"``
    or ``"redo"``), ``step`` (the step id reverted, None if nothing was),
    ``source`` (the legacy file, when a whole import was reverted), ``items``
    (media items changed), ``changes`` (their events) and ``kept`` (fields left alone: edited since; at
    most `MAX_LISTED` listed, ``kept_count`` counts them all).
    """

    def __init__(self, events: Iterable[Event] = (), *, verb: str = "undo",
                 step: int | None = None, source: str | None = None,
                 kept: list[Kept] | None = None) -> None:
        super().__init__(events)
        self.verb = verb
        self.step = step
        self.source = source
        every = kept or []
        self.kept = every[:MAX_LISTED]
        self.kept_count = len(every)
        media = [e.key for e in self if e.type in FIELD_OF_TYPE or e.type == FORGOTTEN
                 or (e.type == RENAMED and TO in e.data)]
        self.items = len(set(media))
        self.changes = len(media)

    def info(self) -> dict[str, Any]:
        """The summary as plain values (for JSON)."""
        return {"verb": self.verb, "step": self.step, "import_of": self.source,
                "items": self.items, "changes": self.changes, "events": len(self),
                "kept": [asdict(k) for k in self.kept], "kept_count": self.kept_count}

    def summary(self) -> str | None:
        """One line for a whole import or a commit of several items; None for one item
        (a caller shows such a change event by event)."""
        past = "undid" if self.verb == "undo" else "redid"
        if self.source is None and self.items <= 1 and not self.kept_count:
            return None
        what = (f"the import of {os.path.basename(self.source)} (seq {self.step})"
                if self.source is not None else f"seq {self.step}")
        line = f"{past} {what}: {_count(self.items, 'item')} changed ({_count(self.changes, 'change')})"
        if self.kept_count:
            shown = ", ".join(f"{k.key} {k.field}" for k in self.kept[:3])
            more = "" if self.kept_count <= 3 else f" and {self.kept_count - 3} more"
            line += (f"; {_count(self.kept_count, 'field')} edited since kept as "
                     f"{'they are' if self.kept_count > 1 else 'it is'}: {shown}{more}")
        return line


def _count(n: int, what: str) -> str:
    return f"{n} {what}" if n == 1 else f"{n} {what}s"


@dataclass
class Plan:
    """What an undo or redo will append (``items``, one commit), and how to report it."""

    verb: str
    items: list[Item] = field(default_factory=list)
    step: int | None = None
    source: str | None = None
    kept: list[Kept] = field(default_factory=list)
    moved: set[str] = field(default_factory=set)     # keys a rename moved (path cache)

    def result(self, events: list[Event]) -> UndoResult:
        return UndoResult(events, verb=self.verb, step=self.step, source=self.source,
                          kept=self.kept)


def rename_items(src: str, dst: str, meta: dict[str, Any]) -> list[Item]:
    """The two events of a rename (the projection and history read this pair), each its own meta."""
    return [(RENAMED, src, {TO: dst}, meta), (RENAMED, dst, {FROM: src}, dict(meta))]


def plan_step(store: Any, proj: MediaProjection, key: str | None, meta: dict[str, Any], *,
              redo: bool) -> Plan:
    """What to append to undo (redo) the last change of ``key``, or the last action overall."""
    verb = "redo" if redo else "undo"
    if key is not None:
        top = proj.redo_top(key) if redo else proj.undo_top(key)
        return _plan_units(proj, [] if top is None else [top], meta, verb)
    units = proj.last_redo_group() if redo else proj.last_undo_group()
    order = units[0].order if units else None
    ledger = proj.imports
    op = ledger.redo_candidate() if redo else ledger.undo_candidate()
    if op is not None:
        done = op.undone if redo else op.last_done
        if order is None or order <= done:     # the import is the most recent action
            return plan_import(store, proj, op, meta, redo=redo)
    if units and len(units) >= proj.undo_horizon // 2:    # maybe more than the stacks kept
        whole = plan_commit(store, proj, units, meta, redo=redo)
        if whole is not None:
            return whole
    return _plan_units(proj, units, meta, verb)


def _plan_units(proj: MediaProjection, units: list[UndoUnit], meta: dict[str, Any],
                verb: str) -> Plan:
    plan = Plan(verb, step=units[0].step if units else None)
    for unit in units:         # every unit is checked before anything is written
        plan.items += compensate(proj, unit, meta, verb == "redo")
        plan.moved.update(k for k in unit.changes.get("key", ()) if k)
    return plan


def compensate(proj: MediaProjection, unit: UndoUnit, meta: dict[str, Any],
               redo: bool) -> list[Item]:
    """The events that undo (or redo) one unit; UndoError if it cannot be done.

    A field change sets the old (new) value back. A rename ``(old, new)``
    is undone by renaming the item back, which needs ``old`` free of a
    live item (redo: ``new``). A forget ``(key, "")`` is undone by setting
    its values back and redone by forgetting again.
    """
    verb = "redo" if redo else "undo"
    link = {REDO_OF if redo else UNDO_OF: unit.step}
    moved = unit.changes.get("key")
    if moved is not None and moved[1]:                      # a rename
        src, dst = (moved[0], moved[1]) if redo else (moved[1], moved[0])
        if dst in proj:
            raise UndoError(
                f"cannot {verb} the rename of {moved[0]} to {moved[1]} (seq {unit.step}): "
                f"{dst} has metadata again; forget or rename that item first",
                key=unit.key, step=unit.step)
        return rename_items(src, dst, {**meta, **link})
    if moved is not None:                                   # a forget
        live = unit.key in proj
        if live != redo:
            raise UndoError(
                f"cannot {verb} the forget of {unit.key} (seq {unit.step}): the item "
                f"{'is gone' if redo else 'has metadata again'}",
                key=unit.key, step=unit.step)
        if redo:
            return [(FORGOTTEN, unit.key, {}, {**meta, **link})]
    out: list[Item] = []
    for name, (old, new) in unit.changes.items():
        if name != "key":
            out.append((TYPE_OF_FIELD[name], unit.key, {VALUE: new if redo else old}, {**meta, **link}))
    return out


# ---------------------------------------------------- from the log: commits, imports

def plan_commit(store: Any, proj: MediaProjection, units: list[UndoUnit], meta: dict[str, Any], *,
                redo: bool) -> Plan | None:
    """One commit that reverts the whole commit the group ``units`` came from, when
    that commit changed more items than the stacks kept (a batch wider than the undo
    horizon); None when the stacks have all of it, or it is not sets only."""
    seq, step = units[0].order, units[0].step
    commit: list[Event] = []
    for event in store.read(seq):
        if commit and CONT not in event.meta:
            break
        commit.append(event)
    kept_by_stacks = sum(len(unit.changes) for unit in units)
    if len(commit) <= kept_by_stacks or any(e.type not in FIELD_OF_TYPE for e in commit):
        return None
    view = replay_to(store, proj, seq - 1)
    pairs: dict[tuple[str, str], list[Any]] = {}
    for event in commit:
        name = FIELD_OF_TYPE[event.type]
        before = view.title(event.key) if name == "title" else view.description(event.key)
        pairs.setdefault((event.key, name), [before, event.data.get(VALUE)])[1] = event.data.get(VALUE)
    plan = Plan("redo" if redo else "undo", step=step)
    link = {**meta, REDO_OF if redo else UNDO_OF: step}
    for (key, name), (before, after) in pairs.items():
        _revert_field(proj, plan, key, name, before, after, link)
    return plan


def _revert_field(proj: MediaProjection, plan: Plan, key: str, name: str, want: Any, was: Any,
                  meta: dict[str, Any]) -> None:
    """Set ``key``'s field back to ``want`` if it still holds ``was``; else keep it (listed)."""
    if not isinstance(want, str) or not isinstance(was, str):
        return
    now = proj.title(key) if name == "title" else proj.description(key)
    if now == want:
        return                              # already so (undone item by item, say)
    if now != was:
        plan.kept.append(Kept(key, name, now, want))
        return
    plan.items.append((TYPE_OF_FIELD[name], key, {VALUE: want}, meta))


# ------------------------------------------------------------------ whole imports

def import_changes(store: Any, proj: MediaProjection, op: ImportOp
                   ) -> dict[tuple[str, str], tuple[str, str]]:
    """``{(key, field): (value before the import, value the import wrote)}``.

    Reads the log from the import's first event to its marker (to the end
    while it is unfinished), after a replay to just before it. Events of
    other steps in between (another writer's) are replayed, so each value
    before is the one just before the import wrote the field; the import's
    own events need not be (it writes each field once).
    """
    view = replay_to(store, proj, op.step - 1)
    changes: dict[tuple[str, str], list[str]] = {}
    step = 0
    for event in store.read(op.step, op.end + 1 if op.end else None):
        step = step_of(event.seq, event.meta, step)
        if step != op.step:
            view.apply(event)
            continue
        name = FIELD_OF_TYPE.get(event.type)
        value = event.data.get(VALUE)
        if name is None or not isinstance(value, str):
            continue
        pair = changes.get((event.key, name))
        if pair is None:
            before = view.title(event.key) if name == "title" else view.description(event.key)
            changes[(event.key, name)] = [before, value]
        else:
            pair[1] = value
    return {k: (v[0], v[1]) for k, v in changes.items()}


def plan_import(store: Any, proj: MediaProjection, op: ImportOp, meta: dict[str, Any], *,
                redo: bool) -> Plan:
    """One commit that undoes (redoes) the import ``op``: its marker, then a set for
    every field that still holds what the import (its undo) left there."""
    plan = Plan("redo" if redo else "undo", step=op.step, source=op.source)
    cont = {**meta, REDO_OF if redo else UNDO_OF: op.step, CONT: True}
    for (key, name), (before, after) in import_changes(store, proj, op).items():
        want, was = (after, before) if redo else (before, after)
        _revert_field(proj, plan, key, name, want, was, cont)
    marker = {"sha256": op.sha256, "source": op.source, OP: op.step,
              "reverted": len(plan.items), "kept": len(plan.kept)}
    kind = LEGACY_IMPORT_REDONE if redo else LEGACY_IMPORT_UNDONE
    plan.items.insert(0, (kind, LEGACY_KEY_PREFIX + op.sha256, marker, dict(meta)))
    return plan
