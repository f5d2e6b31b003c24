"""`MediaProjection`: the current state of every media item, and its undo stacks.

This module owns the read model the store feeds: for each live key a
record ``[title, description, created_ns, updated_ns]``, the number of
events per key, and per key two bounded stacks of undo units (done and
undone). A unit is one commit's change to one item:
``[step, order, title_old, title_new, desc_old, desc_new]`` (None where
the commit did not touch that field); ``step`` is the first seq of the
commit that made it, ``order`` the first seq of the commit that last did
or undid it, so "the last commit overall" is the unit with the largest
``order`` on top of its stack. Everything is derived from the log (see
`projections.events`), so undo and redo survive a reopen, and the state is
plain lists and dicts: `snapshot` is msgpack-able as is. An item is live
while its title or its description is non-empty (or until forgotten).

`apply` is on the replay hot path: it does a handful of dict operations
per event and allocates one small list per edit. This module never
writes to the store and never normalises keys (the catalog does).
"""
from __future__ import annotations

from typing import Any, Iterator, NamedTuple

from eventstore.event import Event

from .events import (CONT, DESCRIPTION_SET, FORGOTTEN, FROM, LEGACY_IMPORTED, MERGE,
                     REDO_OF, RENAMED, TITLE_SET, TO, UNDO_OF, VALUE, MediaRecord,
                     ns_to_seconds)

__all__ = ["MediaProjection", "UndoUnit", "UNDO_DEPTH"]

UNDO_DEPTH = 32          # undo (and redo) steps remembered per item
_STATE_VERSION = 1
_FIELD_INDEX = {TITLE_SET: 0, DESCRIPTION_SET: 1}
_FIELD_NAMES = ("title", "description")
# record layout
_TITLE, _DESC, _CREATED, _UPDATED = 0, 1, 2, 3
# unit layout: [step, order, old0, new0, old1, new1]
_STEP, _ORDER = 0, 1


class UndoUnit(NamedTuple):
    """One item's part of an undoable step, as the catalog sees it."""

    key: str
    step: int       # first seq of the commit that made the change
    order: int      # first seq of the commit that last did/undid it
    changes: dict[str, tuple[str, str]]   # field -> (old, new)


def _unit_view(key: str, unit: list[Any]) -> UndoUnit:
    changes = {}
    for fi, name in enumerate(_FIELD_NAMES):
        if unit[2 + 2 * fi] is not None:
            changes[name] = (unit[2 + 2 * fi], unit[3 + 2 * fi])
    return UndoUnit(key, unit[_STEP], unit[_ORDER], changes)


class MediaProjection:
    """Current media metadata, replayed from the log.

    Query methods take already-normalised keys. A projection returned by
    `MediaCatalog.state_at` is frozen: `apply` and `restore` raise.
    """

    name = "media"
    version = 1

    def __init__(self, undo_depth: int = UNDO_DEPTH) -> None:
        self.undo_depth = undo_depth
        self.last_seq = 0
        self._frozen = False
        self._clear()

    def _clear(self) -> None:
        self._step = 0
        self._items: dict[str, list[Any]] = {}
        self._versions: dict[str, int] = {}
        self._undo: dict[str, list[list[Any]]] = {}
        self._redo: dict[str, list[list[Any]]] = {}
        self._imports: dict[str, int] = {}

    # ---------------------------------------------------------------- protocol

    def apply(self, event: Event) -> None:
        if self._frozen:
            raise RuntimeError("this MediaProjection is read-only")
        seq, ts, typ, key, data, meta = event
        self.last_seq = seq
        versions = self._versions
        versions[key] = versions.get(key, 0) + 1
        if meta.get(CONT):
            step = self._step
        else:
            self._step = step = seq
        fi = _FIELD_INDEX.get(typ)
        if fi is not None:
            self._apply_set(fi, step, ts, key, data, meta)
        elif typ == FORGOTTEN:
            self._items.pop(key, None)
            self._undo.pop(key, None)
            self._redo.pop(key, None)
        elif typ == RENAMED:
            self._apply_rename(ts, key, data)
        elif typ == LEGACY_IMPORTED:
            digest = data.get("sha256")
            if isinstance(digest, str):
                self._imports[digest] = seq

    def _apply_set(self, fi: int, step: int, ts: int, key: str,
                   data: dict[str, Any], meta: dict[str, Any]) -> None:
        value = data.get(VALUE)
        if type(value) is not str:
            return                      # not ours to interpret; counted in version only
        rec = self._items.get(key)
        old = "" if rec is None else rec[fi]
        if old == value:
            return
        if rec is None:
            rec = self._items[key] = ["", "", ts, ts]
        rec[fi] = value
        rec[_UPDATED] = ts
        if not value and not rec[1 - fi]:
            del self._items[key]        # no metadata left: not a live item
        undo_of = meta.get(UNDO_OF)
        if undo_of is not None:
            self._move(key, undo_of, step, self._undo, self._redo)
            return
        redo_of = meta.get(REDO_OF)
        if redo_of is not None:
            self._move(key, redo_of, step, self._redo, self._undo)
            return
        # A new edit: it clears the item's redo and starts or extends a unit.
        redo = self._redo
        if key in redo:
            del redo[key]
        stack = self._undo.get(key)
        if stack is None:
            stack = self._undo[key] = []
        elif stack:
            top = stack[-1]
            if top[_STEP] == step:                  # same commit touched it again
                if top[2 + 2 * fi] is None:
                    top[2 + 2 * fi] = old
                top[3 + 2 * fi] = value
                return
            if (meta.get(MERGE) and top[2 + 2 * fi] is not None
                    and top[4 - 2 * fi] is None):   # same single field: merge
                top[3 + 2 * fi] = value
                top[_ORDER] = step
                return
        unit = [step, step, None, None, None, None]
        unit[2 + 2 * fi] = old
        unit[3 + 2 * fi] = value
        stack.append(unit)
        if len(stack) > self.undo_depth:
            del stack[0]

    def _move(self, key: str, ref: Any, step: int,
              src: dict[str, list[list[Any]]], dst: dict[str, list[list[Any]]]) -> None:
        """Move the unit made by step ``ref`` from one stack to the other."""
        stack = src.get(key)
        if not stack:
            return
        for i in range(len(stack) - 1, -1, -1):
            if stack[i][_STEP] == ref:
                unit = stack.pop(i)
                break
        else:
            return                      # already moved by an earlier event of this commit
        if not stack:
            del src[key]
        unit[_ORDER] = step
        target = dst.get(key)
        if target is None:
            target = dst[key] = []
        target.append(unit)
        if len(target) > self.undo_depth:
            del target[0]

    def _apply_rename(self, ts: int, key: str, data: dict[str, Any]) -> None:
        new = data.get(TO)
        if not isinstance(new, str) or new == key:
            return                      # the {"from": old} half is a marker only
        rec = self._items.pop(key, None)
        if rec is None:
            return
        rec[_UPDATED] = ts
        self._items[new] = rec
        for stacks in (self._undo, self._redo):
            moved = stacks.pop(key, None)
            if moved is None:
                stacks.pop(new, None)
            else:
                stacks[new] = moved

    def snapshot(self) -> dict[str, Any]:
        """The whole state as msgpack-able lists and dicts.

        It shares the live containers: serialise it before the next `apply`.
        """
        return {"v": _STATE_VERSION, "seq": self.last_seq, "step": self._step,
                "items": self._items, "versions": self._versions,
                "undo": self._undo, "redo": self._redo, "imports": self._imports}

    def restore(self, state: Any) -> None:
        if self._frozen:
            raise RuntimeError("this MediaProjection is read-only")
        if not isinstance(state, dict) or state.get("v") != _STATE_VERSION:
            raise ValueError("not a MediaProjection snapshot of a known version")
        self._clear()
        self.last_seq = int(state["seq"])
        self._step = int(state["step"])
        self._items = {k: list(v) for k, v in state["items"].items()}
        self._versions = dict(state["versions"])
        self._undo = {k: [list(u) for u in v] for k, v in state["undo"].items()}
        self._redo = {k: [list(u) for u in v] for k, v in state["redo"].items()}
        self._imports = dict(state["imports"])

    # ------------------------------------------------------------------ queries

    def freeze(self) -> "MediaProjection":
        """Make this projection read-only (used for `state_at` views)."""
        self._frozen = True
        return self

    @property
    def frozen(self) -> bool:
        return self._frozen

    def get(self, key: str) -> MediaRecord | None:
        rec = self._items.get(key)
        if rec is None:
            return None
        return MediaRecord(rec[_TITLE], rec[_DESC], self._versions.get(key, 0),
                           ns_to_seconds(rec[_CREATED]), ns_to_seconds(rec[_UPDATED]))

    def title(self, key: str) -> str:
        rec = self._items.get(key)
        return "" if rec is None else rec[_TITLE]

    def description(self, key: str) -> str:
        rec = self._items.get(key)
        return "" if rec is None else rec[_DESC]

    def values(self, key: str) -> tuple[str, str] | None:
        """(title, description) of a live item, else None."""
        rec = self._items.get(key)
        return None if rec is None else (rec[_TITLE], rec[_DESC])

    def version(self, key: str) -> int:
        return self._versions.get(key, 0)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._items))

    def keys(self) -> list[str]:
        return list(self._items)

    def items(self) -> list[tuple[str, MediaRecord]]:
        """(key, record) for every live item, sorted by key."""
        return [(k, self.get(k)) for k in sorted(self._items)]  # type: ignore[misc]

    def as_dict(self) -> dict[str, tuple[str, str]]:
        """{key: (title, description)}: handy for comparisons and diffs."""
        return {k: (r[_TITLE], r[_DESC]) for k, r in self._items.items()}

    def imported(self, digest: str) -> int | None:
        """The seq of the commit that imported the legacy file with this SHA-256."""
        return self._imports.get(digest)

    # ------------------------------------------------------------- undo stacks

    def undo_top(self, key: str) -> UndoUnit | None:
        stack = self._undo.get(key)
        return _unit_view(key, stack[-1]) if stack else None

    def redo_top(self, key: str) -> UndoUnit | None:
        stack = self._redo.get(key)
        return _unit_view(key, stack[-1]) if stack else None

    def last_undo_group(self) -> list[UndoUnit]:
        """The units of the most recent step that can be undone (one commit)."""
        return self._last_group(self._undo)

    def last_redo_group(self) -> list[UndoUnit]:
        """The units of the most recent undo that can be redone."""
        return self._last_group(self._redo)

    @staticmethod
    def _last_group(stacks: dict[str, list[list[Any]]]) -> list[UndoUnit]:
        best = -1
        for stack in stacks.values():
            if stack and stack[-1][_ORDER] > best:
                best = stack[-1][_ORDER]
        return sorted(_unit_view(k, s[-1]) for k, s in stacks.items()
                      if s and s[-1][_ORDER] == best)

    def undo_depths(self) -> tuple[int, int]:
        """Total units on the done and undone stacks (for stats)."""
        return (sum(map(len, self._undo.values())), sum(map(len, self._redo.values())))
