"""The undo and redo stacks of `MediaProjection`: their layout, upkeep and queries.

A stack is one flat list of 5-slot entries ``step, order, field, old,
new`` (``field`` 0 = title, 1 = description, 2 = the item's key): one
entry per field a commit changed, so a *unit* (one commit's change to one
item) is the run of top entries sharing a ``step``. A rename is a unit of
one key entry ``(old key, new key)``; a forget is a key entry ``(key, "")``
followed by one entry per non-empty field ``(value, "")``, so undoing it
restores the values and redoing it forgets again. ``step`` is the first
seq of the commit that made the change, ``order`` the first seq of the
commit that last did or undid it, so "the last commit overall" is the unit
with the largest ``order`` on top of its stack. Flat lists keep replay
cheap: no object per edit, nothing for the garbage collector to walk.

**Undo horizon.** Only the most recently changed items keep stacks. The
undo map is in least-recently-changed-first order (a change re-inserts the
key at the end; an item with only redo left keeps an empty undo list).
When more than ``undo_horizon + undo_horizon // 8`` items have stacks, the
least recently changed are dropped down to ``undo_horizon`` in one pass
(batched: popping one key per edit from the front of a dict, or an
`OrderedDict`, cost ~0.4 µs per event when every edit evicts), and undoing
such an item then finds nothing to undo. Eviction depends only on the
event sequence and the state, so a snapshot plus replay equals a full
replay.

`UndoStacks` is the part of `MediaProjection` that keeps them (a mixin:
the projection's ``apply`` pushes a new edit inline, on its hot path, and
calls these for everything else). It never touches the item columns.
"""
from __future__ import annotations

from itertools import islice
from typing import Any, NamedTuple

from .events import UNIT_FIELDS

__all__ = ["UndoUnit", "UndoStacks", "Stack", "E", "STEP", "ORDER", "FIELD", "OLD", "NEW", "KEY"]

Stack = list[Any]
# stack entry layout (flat, E slots per entry), offsets from the entry start
E = 5
STEP, ORDER, FIELD, OLD, NEW = 0, 1, 2, 3, 4
KEY = 2                  # field of a rename (old key, new key) or forget (key, "") entry


class UndoUnit(NamedTuple):
    """One item's part of an undoable step, as the catalog sees it."""

    key: str
    step: int       # first seq of the commit that made the change
    order: int      # first seq of the commit that last did/undid it
    changes: dict[str, tuple[str, str]]   # field -> (old, new); "key": rename or forget


def top_start(stack: Stack) -> int:
    """Index of the first entry of the top unit (stack must be non-empty)."""
    step = stack[-E + STEP]
    i = len(stack) - E
    while i >= E and stack[i - E + STEP] == step:
        i -= E
    return i


def unit_view(key: str, stack: Stack, start: int) -> UndoUnit:
    changes = {}
    for i in range(start, len(stack), E):
        changes[UNIT_FIELDS[stack[i + FIELD]]] = (stack[i + OLD], stack[i + NEW])
    return UndoUnit(key, stack[start + STEP], stack[start + ORDER], changes)


class UndoStacks:
    """Undo/redo stacks per key, bounded in depth and in the number of keys."""

    undo_horizon: int
    _undo: dict[str, Stack]     # every key with stacks, least recently changed first
    _redo: dict[str, Stack]
    _spare: list[Stack]         # emptied lists of evicted stacks, for reuse
    _max_slots: int             # trim a stack when it grows past this...
    _keep_slots: int            # ...down to at most this (amortised O(1))
    _evict_at: int              # evict in batches past this many keys

    def _need_stacks(self) -> None:
        """Build stacks kept in a flat form until now (the projection's hook;
        queries and snapshots call it first)."""

    def _evict(self) -> None:
        """Drop the stacks of the least recently changed items, down to the horizon.

        The dropped undo lists are emptied and kept for reuse by the next
        new stacks: freeing hundreds of lists at once and then allocating
        one per edit makes the cyclic GC run 3x as often (its allocation
        count only drops to zero), which cost a full collection (~0.5 s
        with a big heap) per million events of round-robin edits.
        """
        undo, redo, spare = self._undo, self._redo, self._spare
        for key in list(islice(undo, len(undo) - self.undo_horizon)):
            stack = undo.pop(key)
            stack.clear()
            spare.append(stack)
            redo.pop(key, None)

    def _extend_top(self, stack: Stack, step: int, fi: int, old: str, value: str,
                    merge: bool) -> bool:
        """Fold an edit into the top unit if it belongs there."""
        start = top_start(stack)
        if stack[start + STEP] == step:                 # same commit touched it again
            for i in range(start, len(stack), E):
                if stack[i + FIELD] == fi:
                    stack[i + NEW] = value
                    return True
            stack += (step, stack[start + ORDER], fi, old, value)
            return True
        if merge and start == len(stack) - E and stack[start + FIELD] == fi:
            stack[start + NEW] = value                  # same single field: merge
            stack[start + ORDER] = step
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
            first = stack[cut + STEP]
            while cut < len(stack) and stack[cut + STEP] == first:
                cut += E
        del stack[:cut]

    def _push(self, key: str, entries: Stack) -> None:
        """A new change that is not a set (rename, forget): push its unit.

        Like a new edit it clears the item's redo stack and makes the item
        the most recently changed. Off the hot path, so not inlined.
        """
        self._redo.pop(key, None)
        undo = self._undo
        stack = undo.pop(key, None)
        if stack is None:
            spare = self._spare
            stack = spare.pop() if spare else []
        undo[key] = stack
        stack += entries
        if len(stack) > self._max_slots:
            self._trim(stack)
        if len(undo) > self._evict_at:
            self._evict()

    def _move(self, key: str, ref: Any, step: int,
              src: dict[str, Stack], dst: dict[str, Stack]) -> None:
        """Move the entries made by step ``ref`` from one stack to the other."""
        stack = src.get(key)
        if not stack:
            return
        moved: Stack = []
        kept: Stack = []
        for i in range(0, len(stack), E):
            entry = stack[i:i + E]
            (moved if entry[STEP] == ref else kept).extend(entry)
        if not moved:
            return                      # already moved by an earlier event of this commit
        undo = self._undo
        if kept:
            stack[:] = kept
        elif src is undo:
            stack.clear()               # an empty undo list keeps the key in the horizon
        else:
            del src[key]
        for i in range(ORDER, len(moved), E):
            moved[i] = step
        target = dst.get(key)
        if target is None:
            dst[key] = moved
        else:
            target += moved
            if len(target) > self._max_slots:
                self._trim(target)
        undo[key] = undo.pop(key)       # now the most recently changed

    # --------------------------------------------------------------- snapshot

    def _stack_state(self) -> tuple[list[str], list[int], Stack]:
        """(keys in horizon order, undo and redo slot counts per key, every slot)."""
        self._need_stacks()
        undo, redo = self._undo, self._redo
        keys = list(undo)
        sizes: list[int] = []
        slots: Stack = []               # one list for all stacks: no object per stack
        empty: Stack = []
        for key in keys:
            u = undo[key]
            r = redo.get(key, empty)
            sizes += (len(u), len(r))
            slots += u
            slots += r
        return keys, sizes, slots

    def _restore_stacks(self, keys: list[str], sizes: list[int], slots: Stack, deeper: bool) -> None:
        """Load `_stack_state`'s lists. ``deeper``: taken with a larger undo_depth
        (its stacks are cut to ours). With the same depth a stack may hold a
        little more than the trim point (one commit changing both fields), and
        a replay would keep it as it is."""
        undo, redo = self._undo, self._redo
        it = iter(slots)
        longest = self._max_slots
        for key, nu, nr in zip(keys, sizes[0::2], sizes[1::2]):
            undo[key] = stack = list(islice(it, nu))
            if deeper and nu > longest:
                self._trim(stack)
            if nr:
                redo[key] = stack = list(islice(it, nr))
                if deeper and nr > longest:
                    self._trim(stack)
        if len(undo) > self._evict_at:      # taken with a larger horizon
            self._evict()

    # ---------------------------------------------------------------- queries

    def undo_top(self, key: str) -> UndoUnit | None:
        self._need_stacks()
        stack = self._undo.get(key)
        return unit_view(key, stack, top_start(stack)) if stack else None

    def redo_top(self, key: str) -> UndoUnit | None:
        self._need_stacks()
        stack = self._redo.get(key)
        return unit_view(key, stack, top_start(stack)) if stack else None

    def last_undo_group(self) -> list[UndoUnit]:
        """The units of the most recent step that can be undone (one commit)."""
        self._need_stacks()
        return _last_group(self._undo)

    def last_redo_group(self) -> list[UndoUnit]:
        """The units of the most recent undo that can be redone."""
        self._need_stacks()
        return _last_group(self._redo)

    def undo_depths(self) -> tuple[int, int]:
        """Entries (field changes) on the done and undone stacks, for stats."""
        self._need_stacks()
        return (sum(map(len, self._undo.values())) // E,
                sum(map(len, self._redo.values())) // E)


def _last_group(stacks: dict[str, Stack]) -> list[UndoUnit]:
    best = max((s[-E + ORDER] for s in stacks.values() if s), default=None)
    if best is None:
        return []
    keys = sorted(k for k, s in stacks.items() if s and s[-E + ORDER] == best)
    return [unit_view(k, stacks[k], top_start(stacks[k])) for k in keys]
