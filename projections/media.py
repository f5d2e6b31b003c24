"""`MediaProjection`: the current state of every media item, and its undo stacks.

This module owns the read model the store feeds: for each live key a
record ``[title, description, created_ns, updated_ns]``, the number of
events per key, and per key two bounded undo stacks (done and undone).

A stack is one flat list of 5-slot entries ``step, order, field, old,
new`` (``field`` 0 = title, 1 = description): one entry per field a commit
changed, so a *unit* (one commit's change to one item) is the run of top
entries sharing a ``step``. ``step`` is the first seq of the commit that
made the change, ``order`` the first seq of the commit that last did or
undid it, so "the last commit overall" is the unit with the largest
``order`` on top of its stack. Flat lists keep replay cheap: no object per
edit, nothing for the garbage collector to walk. Everything is derived
from the log (see `projections.events`), so undo and redo survive a
reopen, and the state is plain lists and dicts: `snapshot` is msgpack-able
as is. An item is live while its title or description is non-empty. A
coarse time index (the time of every 1024th seq) lets time travel find a
seq by time without a search through the log.

`apply` is on the replay hot path and does a handful of dict and list
operations per event. This module never writes to the store and never
normalises keys (the catalog does).
"""
from __future__ import annotations

import bisect
from typing import Any, Iterator, NamedTuple

from eventstore.event import Event

from .events import (CONT, DESCRIPTION_SET, FORGOTTEN, LEGACY_IMPORTED, MERGE,
                     REDO_OF, RENAMED, TITLE_SET, TO, UNDO_OF, VALUE, MediaRecord,
                     ns_to_seconds)

__all__ = ["MediaProjection", "UndoUnit", "UNDO_DEPTH", "TIME_STRIDE"]

TIME_STRIDE = 1024       # one event time remembered per this many seqs (time travel)
UNDO_DEPTH = 32          # undo (and redo) field changes kept per item: 32 to 64
_STATE_VERSION = 1
_FIELD_INDEX = {TITLE_SET: 0, DESCRIPTION_SET: 1}
_FIELD_NAMES = ("title", "description")
# record layout
_TITLE, _DESC, _CREATED, _UPDATED = 0, 1, 2, 3
# stack entry layout (flat, _E slots per entry), offsets from the entry start
_E = 5
_STEP, _ORDER, _FIELD, _OLD, _NEW = 0, 1, 2, 3, 4

Stack = list[Any]


class UndoUnit(NamedTuple):
    """One item's part of an undoable step, as the catalog sees it."""

    key: str
    step: int       # first seq of the commit that made the change
    order: int      # first seq of the commit that last did/undid it
    changes: dict[str, tuple[str, str]]   # field -> (old, new)


def _top_start(stack: Stack) -> int:
    """Index of the first entry of the top unit (stack must be non-empty)."""
    step = stack[-_E + _STEP]
    i = len(stack) - _E
    while i >= _E and stack[i - _E + _STEP] == step:
        i -= _E
    return i


def _unit_view(key: str, stack: Stack, start: int) -> UndoUnit:
    changes = {}
    for i in range(start, len(stack), _E):
        changes[_FIELD_NAMES[stack[i + _FIELD]]] = (stack[i + _OLD], stack[i + _NEW])
    return UndoUnit(key, stack[start + _STEP], stack[start + _ORDER], changes)


class MediaProjection:
    """Current media metadata, replayed from the log.

    Query methods take already-normalised keys. With ``track_undo=False``
    only items, versions and the time index are kept (cheaper replay, no
    undo stacks): that is what `MediaCatalog.state_at` returns, frozen, so
    `apply` and `restore` raise on it.
    """

    name = "media"
    version = 1

    def __init__(self, undo_depth: int = UNDO_DEPTH, *, track_undo: bool = True) -> None:
        if undo_depth < 1:
            raise ValueError("undo_depth must be at least 1")
        self.undo_depth = undo_depth
        self._max_slots = 2 * undo_depth * _E    # trim when a stack grows past this...
        self._keep_slots = undo_depth * _E       # ...down to at most this (amortised O(1))
        self.track_undo = track_undo    # False: items only (time-travel views)
        self.last_seq = 0
        self._frozen = False
        self._clear()

    def _clear(self) -> None:
        self._step = 0
        self._items: dict[str, list[Any]] = {}
        self._versions: dict[str, int] = {}
        self._undo: dict[str, Stack] = {}
        self._redo: dict[str, Stack] = {}
        self._imports: dict[str, int] = {}
        self._times: list[int] = []     # ts of seq TIME_STRIDE, 2*TIME_STRIDE, ...

    # ---------------------------------------------------------------- protocol

    def apply(self, event: Event) -> None:
        if self._frozen:
            raise RuntimeError("this MediaProjection is read-only")
        seq, ts, typ, key, data, meta = event
        self.last_seq = seq
        if not seq % TIME_STRIDE:
            self._times.append(ts)
        versions = self._versions
        versions[key] = versions.get(key, 0) + 1
        if CONT in meta:
            step = self._step
        else:
            self._step = step = seq
        fi = _FIELD_INDEX.get(typ)
        if fi is None:
            self._apply_other(seq, ts, typ, key, data)
            return
        # A title/description set: the hot path, kept inline.
        value = data.get(VALUE)
        if value.__class__ is not str:
            return                      # not ours to interpret; counted in version only
        items = self._items
        rec = items.get(key)
        if rec is None:
            if not value:
                return
            old = ""
            rec = items[key] = ["", "", ts, ts]
        else:
            old = rec[fi]
            if old == value:
                return
            if not value and not rec[1 - fi]:
                del items[key]          # no metadata left: not a live item
        rec[fi] = value
        rec[_UPDATED] = ts
        if not self.track_undo:
            return
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
        if redo and key in redo:        # usually empty: skip the hash lookup
            del redo[key]
        stack = self._undo.get(key)
        if stack is None:
            self._undo[key] = [step, step, fi, old, value]
            return
        if stack and (stack[-_E] == step or MERGE in meta):
            if self._extend_top(stack, step, fi, old, value, MERGE in meta):
                return
        stack += (step, step, fi, old, value)
        if len(stack) > self._max_slots:
            self._trim(stack)

    def _extend_top(self, stack: Stack, step: int, fi: int, old: str, value: str,
                    merge: bool) -> bool:
        """Fold an edit into the top unit if it belongs there."""
        start = _top_start(stack)
        if stack[start + _STEP] == step:                # same commit touched it again
            for i in range(start, len(stack), _E):
                if stack[i + _FIELD] == fi:
                    stack[i + _NEW] = value
                    return True
            stack += (step, stack[start + _ORDER], fi, old, value)
            return True
        if merge and start == len(stack) - _E and stack[start + _FIELD] == fi:
            stack[start + _NEW] = value                 # same single field: merge
            stack[start + _ORDER] = step
            return True
        return False

    def _trim(self, stack: Stack) -> None:
        """Drop the oldest whole units until at most ``undo_depth`` entries remain.

        Called only when a stack holds more than twice that, so the cost is
        amortised over ``undo_depth`` edits: an item keeps between
        ``undo_depth`` and ``2 * undo_depth`` field changes of undo.
        """
        cut, excess = 0, len(stack) - self._keep_slots
        while cut < excess:
            first = stack[cut + _STEP]
            while cut < len(stack) and stack[cut + _STEP] == first:
                cut += _E
        del stack[:cut]

    def _apply_other(self, seq: int, ts: int, typ: str, key: str, data: dict[str, Any]) -> None:
        if typ == FORGOTTEN:
            self._items.pop(key, None)
            self._undo.pop(key, None)
            self._redo.pop(key, None)
        elif typ == RENAMED:
            self._apply_rename(ts, key, data)
        elif typ == LEGACY_IMPORTED:
            digest = data.get("sha256")
            if isinstance(digest, str):
                self._imports[digest] = seq

    def _move(self, key: str, ref: Any, step: int,
              src: dict[str, Stack], dst: dict[str, Stack]) -> None:
        """Move the entries made by step ``ref`` from one stack to the other."""
        stack = src.get(key)
        if not stack:
            return
        moved: Stack = []
        kept: Stack = []
        for i in range(0, len(stack), _E):
            entry = stack[i:i + _E]
            (moved if entry[_STEP] == ref else kept).extend(entry)
        if not moved:
            return                      # already moved by an earlier event of this commit
        if kept:
            stack[:] = kept
        else:
            del src[key]
        for i in range(_ORDER, len(moved), _E):
            moved[i] = step
        target = dst.get(key)
        if target is None:
            dst[key] = moved
        else:
            target += moved
            if len(target) > self._max_slots:
                self._trim(target)

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
                "undo": self._undo, "redo": self._redo, "imports": self._imports, "times": self._times}

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
        if self.track_undo:
            self._undo = {k: list(v) for k, v in state["undo"].items()}
            self._redo = {k: list(v) for k, v in state["redo"].items()}
        self._imports = dict(state["imports"])
        self._times = list(state["times"])

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

    def key_version(self, key: str) -> int:
        """Events ever applied for ``key`` (the store's ``version(key)``)."""
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

    def seq_window(self, ts: int) -> tuple[int, int | None]:
        """Seqs ``(lo, hi)`` such that the last event stamped at or before
        ``ts`` is in ``lo..hi`` (0: none; hi None: up to the end of the log),
        from the coarse time index."""
        times = self._times
        i = bisect.bisect_right(times, ts)      # times[:i] <= ts
        hi = None if i == len(times) else (i + 1) * TIME_STRIDE - 1
        return i * TIME_STRIDE, hi

    def imported(self, digest: str) -> int | None:
        """The seq of the commit that imported the legacy file with this SHA-256."""
        return self._imports.get(digest)

    # ------------------------------------------------------------- undo stacks

    def undo_top(self, key: str) -> UndoUnit | None:
        stack = self._undo.get(key)
        return _unit_view(key, stack, _top_start(stack)) if stack else None

    def redo_top(self, key: str) -> UndoUnit | None:
        stack = self._redo.get(key)
        return _unit_view(key, stack, _top_start(stack)) if stack else None

    def last_undo_group(self) -> list[UndoUnit]:
        """The units of the most recent step that can be undone (one commit)."""
        return self._last_group(self._undo)

    def last_redo_group(self) -> list[UndoUnit]:
        """The units of the most recent undo that can be redone."""
        return self._last_group(self._redo)

    @staticmethod
    def _last_group(stacks: dict[str, Stack]) -> list[UndoUnit]:
        best = max((s[-_E + _ORDER] for s in stacks.values() if s), default=None)
        if best is None:
            return []
        keys = sorted(k for k, s in stacks.items() if s and s[-_E + _ORDER] == best)
        return [_unit_view(k, stacks[k], _top_start(stacks[k])) for k in keys]

    def undo_depths(self) -> tuple[int, int]:
        """Entries (field changes) on the done and undone stacks, for stats."""
        return (sum(map(len, self._undo.values())) // _E,
                sum(map(len, self._redo.values())) // _E)
