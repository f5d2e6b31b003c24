"""`MediaProjection`: the current state of every media item, and its undo stacks.

This module owns the read model the store feeds: for each live key its
title, description, created and updated times (ns) and ``version`` (the
events ever applied for the key; keys with events but no live item keep
their count in a small side map), and two bounded undo stacks (done and
undone) for each of the ``undo_horizon`` most recently changed items.
Items are stored as columns: a ``key -> slot`` index and one list per
field, a freed slot being reused.

A stack is one flat list of 5-slot entries ``step, order, field, old,
new`` (``field`` 0 = title, 1 = description, 2 = the item's key): one
entry per field a commit changed, so a *unit* (one commit's change to one
item) is the run of top entries sharing a ``step``. A rename is a unit of
one key entry ``(old key, new key)``; a forget is a key entry ``(key, "")``
followed by one entry per non-empty field ``(value, "")``, so undoing it
restores the values and redoing it forgets again. ``step`` is the first seq of the commit that
made the change, ``order`` the first seq of the commit that last did or
undid it, so "the last commit overall" is the unit with the largest
``order`` on top of its stack. Flat lists keep replay cheap: no object per
edit, nothing for the garbage collector to walk.

**Undo horizon.** Only the most recently changed items keep stacks. The
undo map is in least-recently-changed-first order (a change re-inserts the
key at the end; an item with only redo left keeps an empty undo list). When more than ``undo_horizon + undo_horizon // 8`` items
have stacks, the least recently changed are dropped down to
``undo_horizon`` in one pass (batched: popping one key per edit from the
front of a dict, or an `OrderedDict`, cost ~0.4 µs per event when every
edit evicts), and undoing such an item then finds nothing to undo.
Eviction depends only on the event sequence and the state, so a snapshot
plus replay equals a full replay.

Everything is derived from the log (see `projections.events`), so undo and
redo survive a reopen. `snapshot` copies the columns (list slices of
strings and ints) and flattens the stacks into one list: a value that
later `apply` calls leave alone (it shares no mutable container with the
projection, so the store may pack it later on another thread), ~10 ms to
take for 100k items, and compact msgpack with few objects to decode.
`restore` takes ownership of the state it is given (the store hands over
freshly decoded values) and only rebuilds the index and the stacks. A coarse time index (the time of every 1024th seq) lets
time travel find a seq by time without a search through the log.

`apply` is on the replay hot path and does a handful of dict and list
operations per event. This module never writes to the store and never
normalises keys (the catalog does).
"""
from __future__ import annotations

import bisect
from itertools import islice
from typing import Any, Iterator, NamedTuple, Sequence

from eventstore.event import Event

from .events import (AT, CONT, CREATED, DESCRIPTION_SET, FORGOTTEN, LEGACY_TYPES, MERGE, OP,
                     REDO_OF, RENAMED, TITLE_SET, TO, UNDO_OF, UNIT_FIELDS, VALUE, MediaRecord,
                     ns_to_seconds, step_of)
from .ledger import ImportLedger

__all__ = ["MediaProjection", "UndoUnit", "UNDO_DEPTH", "UNDO_HORIZON", "TIME_STRIDE"]

TIME_STRIDE = 1024       # one event time remembered per this many seqs (time travel)
UNDO_DEPTH = 16          # undo (and redo) field changes kept per item: 16 to 32
UNDO_HORIZON = 10_000    # items (most recently changed) that keep undo/redo stacks
_STATE_VERSION = 3
_FIELD_INDEX = {TITLE_SET: 0, DESCRIPTION_SET: 1}
# stack entry layout (flat, _E slots per entry), offsets from the entry start
_E = 5
_STEP, _ORDER, _FIELD, _OLD, _NEW = 0, 1, 2, 3, 4
_KEY = 2                 # field of a rename (old key, new key) or forget (key, "") entry

Stack = list[Any]


class UndoUnit(NamedTuple):
    """One item's part of an undoable step, as the catalog sees it."""

    key: str
    step: int       # first seq of the commit that made the change
    order: int      # first seq of the commit that last did/undid it
    changes: dict[str, tuple[str, str]]   # field -> (old, new); "key": rename or forget


def _legacy_times(data: dict[str, Any], ts: int) -> tuple[int, int]:
    """(updated, created) of a set that carries a legacy entry's times (else ``ts``)."""
    at, created = data.get(AT), data.get(CREATED)
    if at.__class__ is not int:
        at = ts
    return at, created if created.__class__ is int else at


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
        changes[UNIT_FIELDS[stack[i + _FIELD]]] = (stack[i + _OLD], stack[i + _NEW])
    return UndoUnit(key, stack[start + _STEP], stack[start + _ORDER], changes)


class MediaProjection:
    """Current media metadata, replayed from the log.

    Query methods take already-normalised keys. ``undo_depth`` bounds each
    item's stacks (``undo_depth`` to ``2 * undo_depth`` field changes),
    ``undo_horizon`` the number of items that have stacks at all; a log
    replays to the same state only with the same two values. With
    ``track_undo=False`` only items, versions and the time index are kept
    (cheaper replay, no undo stacks): that is what `MediaCatalog.state_at`
    returns, frozen, so `apply` and `restore` raise on it.
    """

    name = "media"
    # 3: renames and forgets are undo units. A version-2 snapshot has stacks
    # without them, so it is ignored and the state rebuilt by replay (SPEC §4.8).
    # 4: steps of multi-commit imports (meta ``op``), legacy times, the import ledger.
    version = 4
    snapshot_detached = True  # snapshot() shares nothing with later applies: packed off the commit path

    def __init__(self, undo_depth: int = UNDO_DEPTH, *, undo_horizon: int = UNDO_HORIZON,
                 track_undo: bool = True) -> None:
        if undo_depth < 1:
            raise ValueError("undo_depth must be at least 1")
        if undo_horizon < 1:
            raise ValueError("undo_horizon must be at least 1")
        self.undo_depth = undo_depth
        self.undo_horizon = undo_horizon
        self._evict_at = undo_horizon + undo_horizon // 8    # evict in batches past this
        self._max_slots = 2 * undo_depth * _E    # trim when a stack grows past this...
        self._keep_slots = undo_depth * _E       # ...down to at most this (amortised O(1))
        self.track_undo = track_undo    # False: items only (time-travel views)
        self.last_seq = 0
        self._frozen = False
        self._clear()

    def _clear(self) -> None:
        self._step = 0
        # Items are columns: key -> slot in _index, and per slot the key,
        # title, description, created, updated and version (a freed slot holds
        # None, "", "", 0, 0, 0 and is reused LIFO from _free).
        self._index: dict[str, int] = {}
        self._keys: list[str | None] = []
        self._titles: list[str] = []
        self._descs: list[str] = []
        self._cols = (self._titles, self._descs)
        self._created: list[int] = []
        self._updated: list[int] = []
        self._vers: list[int] = []
        self._free: list[int] = []
        self._gone: dict[str, int] = {}     # event counts of keys without a live record
        # Every key with stacks is in _undo (its list is empty when only redo
        # is left), least recently changed first: that order is the horizon.
        self._undo: dict[str, Stack] = {}
        self._redo: dict[str, Stack] = {}
        self._spare: list[Stack] = []   # emptied lists of evicted stacks, for reuse
        self.imports = ImportLedger()   # legacy imports (fed the legacy.* events)
        self._times: list[int] = []     # ts of seq TIME_STRIDE, 2*TIME_STRIDE, ...

    # ---------------------------------------------------------------- protocol

    def apply_batch(self, events: Sequence[Event]) -> None:
        """The events of one commit, in seq order (`eventstore.BatchProjection`): ``apply`` on each."""
        apply = self.apply
        for event in events:
            apply(event)

    def apply(self, event: Event) -> None:
        if self._frozen:
            raise RuntimeError("this MediaProjection is read-only")
        seq, ts, typ, key, data, meta = event.seq, event.ts, event.type, event.key, event.data, event.meta
        self.last_seq = seq
        if not seq % TIME_STRIDE:
            self._times.append(ts)
        if CONT in meta:
            step = self._step
        elif OP not in meta:
            self._step = step = seq
        else:                           # a later commit of an import is still its step
            self._step = step = step_of(seq, meta, seq)
        index = self._index
        i = index.get(key)
        fi = _FIELD_INDEX.get(typ)
        value = None if fi is None else data.get(VALUE)
        if value.__class__ is not str:
            # not a set we interpret: it only counts in the key's version
            if i is None:
                gone = self._gone
                gone[key] = gone.get(key, 0) + 1
            else:
                self._vers[i] += 1
            if fi is None:
                self._apply_other(seq, ts, typ, key, data, meta, step)
            return
        # A title/description set: the hot path, kept inline.
        if len(data) == 1:
            born = ts
        else:                           # a legacy import dates the value (events.AT, CREATED)
            ts, born = _legacy_times(data, ts)
        if i is None:
            gone = self._gone
            version = gone.pop(key, 0) + 1 if gone else 1
            if not value:
                gone[key] = version
                return
            old = ""
            title, desc = (value, "") if fi == 0 else ("", value)
            free = self._free
            if free:
                index[key] = i = free.pop()
                self._keys[i] = key
                self._titles[i] = title
                self._descs[i] = desc
                self._created[i] = born
                self._updated[i] = ts
                self._vers[i] = version
            else:
                index[key] = len(self._keys)
                self._keys.append(key)
                self._titles.append(title)
                self._descs.append(desc)
                self._created.append(born)
                self._updated.append(ts)
                self._vers.append(version)
        else:
            self._vers[i] += 1
            cols = self._cols
            col = cols[fi]  # type: ignore[index]
            old = col[i]
            if old == value:
                return
            if value or cols[1 - fi][i]:  # type: ignore[operator]
                col[i] = value
                self._updated[i] = ts
            else:
                self._drop(key, i)      # no metadata left: not a live item
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
        undo = self._undo
        stack = undo.pop(key, None)     # (re-)inserted below: the most recently changed
        if stack is None:
            spare = self._spare
            if spare:                   # reuse an evicted list: see _evict
                stack = undo[key] = spare.pop()
                stack += (step, step, fi, old, value)
            else:
                undo[key] = [step, step, fi, old, value]
            if len(undo) > self._evict_at:
                self._evict()
            return
        undo[key] = stack
        if stack and (stack[-_E] == step or MERGE in meta):
            if self._extend_top(stack, step, fi, old, value, MERGE in meta):  # type: ignore[arg-type]
                return
        stack += (step, step, fi, old, value)
        if len(stack) > self._max_slots:
            self._trim(stack)

    def _drop(self, key: str, i: int) -> None:
        """Free item ``key``'s slot ``i``; its event count moves to ``_gone``."""
        del self._index[key]
        self._gone[key] = self._vers[i]
        self._keys[i] = None
        self._titles[i] = self._descs[i] = ""
        self._created[i] = self._updated[i] = self._vers[i] = 0
        self._free.append(i)

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

    def _apply_other(self, seq: int, ts: int, typ: str, key: str, data: dict[str, Any],
                     meta: dict[str, Any], step: int) -> None:
        # the event is already counted in the key's version
        if typ == FORGOTTEN:
            self._apply_forget(key, meta, step)
        elif typ == RENAMED:
            self._apply_rename(ts, key, data, meta, step)
        elif typ in LEGACY_TYPES:
            self.imports.apply(seq, step, typ, data)

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

    def _apply_forget(self, key: str, meta: dict[str, Any], step: int) -> None:
        i = self._index.get(key)
        if i is None:
            return                      # nothing live to forget (the catalog never writes this)
        title, desc = self._titles[i], self._descs[i]
        self._drop(key, i)
        if not self.track_undo:
            return
        redo_of = meta.get(REDO_OF)
        if redo_of is not None:         # a redone forget: the unit goes back to the undo stack
            self._move(key, redo_of, step, self._redo, self._undo)
            return
        entries: Stack = [step, step, _KEY, key, ""]
        if title:
            entries += (step, step, 0, title, "")
        if desc:
            entries += (step, step, 1, desc, "")
        self._push(key, entries)

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
        undo = self._undo
        if kept:
            stack[:] = kept
        elif src is undo:
            stack.clear()               # an empty undo list keeps the key in the horizon
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
        undo[key] = undo.pop(key)       # now the most recently changed

    def _apply_rename(self, ts: int, key: str, data: dict[str, Any],
                      meta: dict[str, Any], step: int) -> None:
        new = data.get(TO)
        if not isinstance(new, str) or new == key:
            return                      # the {"from": old} half is a marker only
        index = self._index
        i = index.pop(key, None)
        if i is None:
            return
        gone = self._gone
        gone[key] = self._vers[i]
        j = index.get(new)
        if j is None:
            self._vers[i] = gone.pop(new, 0)
        else:                           # (the catalog refuses this) the item replaces it
            self._vers[i] = self._vers[j]
            self._drop(new, j)
            gone.pop(new, None)
        index[new] = i
        self._keys[i] = new
        self._updated[i] = ts
        if not self.track_undo:
            return
        # the new key gets exactly the old key's stacks (none if it had none),
        # as the most recently changed item
        undo, redo = self._undo, self._redo
        for stacks in (undo, redo):
            moved = stacks.pop(key, None)
            stacks.pop(new, None)
            if moved is not None:
                stacks[new] = moved
        undo_of = meta.get(UNDO_OF)
        if undo_of is not None:         # renamed back: the rename's unit moves to redo
            self._move(new, undo_of, step, undo, redo)
            return
        redo_of = meta.get(REDO_OF)
        if redo_of is not None:
            self._move(new, redo_of, step, redo, undo)
            return
        self._push(new, [step, step, _KEY, key, new])

    def snapshot(self, *, stacks: bool = True) -> dict[str, Any]:
        """The whole state as msgpack-able lists and dicts of str and int.

        ``stacks=False`` leaves the undo/redo stacks out (empty), for a copy
        that a ``track_undo=False`` view restores (time travel to the head).

        Nothing in it is shared with a container that a later `apply`
        mutates, so it may be serialised later, on another thread. Items
        are the columns ``keys`` (None for a free slot), ``titles``,
        ``descs``, ``created``, ``updated``, ``versions`` and the free-slot
        stack ``free``; stacks are ``stack_keys`` in horizon order (least
        recently changed first), ``stack_sizes`` (undo and redo slot counts
        per key) and ``stack_slots`` (every stack's slots one after the
        other).
        """
        undo, redo = self._undo, self._redo
        keys = list(undo) if stacks else []
        sizes: list[int] = []
        slots: list[Any] = []           # one list for all stacks: no object per stack
        empty: Stack = []
        for key in keys:
            u = undo[key]
            r = redo.get(key, empty)
            sizes += (len(u), len(r))
            slots += u
            slots += r
        return {"v": _STATE_VERSION, "seq": self.last_seq, "step": self._step,
                "depth": self.undo_depth, "horizon": self.undo_horizon,
                "keys": self._keys[:], "titles": self._titles[:], "descs": self._descs[:],
                "created": self._created[:], "updated": self._updated[:],
                "versions": self._vers[:], "free": self._free[:], "gone": self._gone.copy(),
                "stack_keys": keys, "stack_sizes": sizes, "stack_slots": slots,
                "imports": self.imports.state(), "times": self._times[:]}

    def restore(self, state: Any) -> None:
        """Load a `snapshot` state, taking ownership of its containers."""
        if self._frozen:
            raise RuntimeError("this MediaProjection is read-only")
        if not isinstance(state, dict) or state.get("v") != _STATE_VERSION:
            raise ValueError("not a MediaProjection snapshot of a known version")
        self._clear()
        self.last_seq = int(state["seq"])
        self._step = int(state["step"])
        keys = self._keys = state["keys"]
        self._titles, self._descs = state["titles"], state["descs"]
        self._cols = (self._titles, self._descs)
        self._created, self._updated = state["created"], state["updated"]
        self._vers, self._free = state["versions"], state["free"]
        index = self._index = dict(zip(keys, range(len(keys))))
        index.pop(None, None)  # type: ignore[call-overload]  # freed slots
        self._gone = state["gone"]
        if self.track_undo:
            keys, sizes, slots = state["stack_keys"], state["stack_sizes"], state["stack_slots"]
            undo, redo = self._undo, self._redo
            it = iter(slots)
            # Taken with a larger undo_depth: cut to ours. With the same depth a stack may
            # hold a little more than the trim point (one commit changing both fields),
            # and a replay would keep it as it is.
            deeper, longest = state["depth"] > self.undo_depth, self._max_slots
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
        self.imports.restore(state["imports"])
        self._times = state["times"]

    # ------------------------------------------------------------------ queries

    def freeze(self) -> "MediaProjection":
        """Make this projection read-only (used for `state_at` views)."""
        self._frozen = True
        return self

    @property
    def frozen(self) -> bool:
        return self._frozen

    def get(self, key: str) -> MediaRecord | None:
        i = self._index.get(key)
        if i is None:
            return None
        return MediaRecord(self._titles[i], self._descs[i], self._vers[i],
                           ns_to_seconds(self._created[i]), ns_to_seconds(self._updated[i]))

    def title(self, key: str) -> str:
        i = self._index.get(key)
        return "" if i is None else self._titles[i]

    def description(self, key: str) -> str:
        i = self._index.get(key)
        return "" if i is None else self._descs[i]

    def values(self, key: str) -> tuple[str, str] | None:
        """(title, description) of a live item, else None."""
        i = self._index.get(key)
        return None if i is None else (self._titles[i], self._descs[i])

    def key_version(self, key: str) -> int:
        """Events ever applied for ``key`` (the store's ``version(key)``)."""
        i = self._index.get(key)
        return self._gone.get(key, 0) if i is None else self._vers[i]

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def __len__(self) -> int:
        return len(self._index)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._index))

    def keys(self) -> list[str]:
        """Keys of the live items, in no particular order."""
        return list(self._index)

    def items(self) -> list[tuple[str, MediaRecord]]:
        """(key, record) for every live item, sorted by key."""
        return [(k, self.get(k)) for k in sorted(self._index)]  # type: ignore[misc]

    def as_dict(self) -> dict[str, tuple[str, str]]:
        """{key: (title, description)}: handy for comparisons and diffs."""
        t, d = self._titles, self._descs
        return {k: (t[i], d[i]) for k, i in self._index.items()}

    def seq_window(self, ts: int) -> tuple[int, int | None]:
        """Seqs ``(lo, hi)`` such that the last event stamped at or before
        ``ts`` is in ``lo..hi`` (0: none; hi None: up to the end of the log),
        from the coarse time index."""
        times = self._times
        i = bisect.bisect_right(times, ts)      # times[:i] <= ts
        hi = None if i == len(times) else (i + 1) * TIME_STRIDE - 1
        return i * TIME_STRIDE, hi

    def imported(self, digest: str) -> int | None:
        """The seq of the marker of the import in effect of the legacy file with this SHA-256."""
        return self.imports.imported(digest)

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
