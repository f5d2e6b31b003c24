"""`MediaProjection`: the current state of every media item, and its undo stacks.

This module owns the read model the store feeds: for each live key its
title, description, created and updated times (ns) and ``version`` (the
events ever applied for the key; keys with events but no live item keep
their count in a small side map), and two bounded undo stacks (done and
undone) for each of the ``undo_horizon`` most recently changed items
(their layout and upkeep: `projections.undostack`; the queries of the
items: `projections.mediaread`). Items are stored as
columns: a ``key -> slot`` index and one column per field, a freed slot
being reused; times and versions are arrays of u64 (no int object per
value).

`snapshot` copies the columns into the packed form `projections.mediastate`
defines (a few long strings per column, arrays as bytes) and flattens the
stacks into one list: a value that later `apply` calls leave alone (it
shares no mutable container with the projection, so the store may pack it
later on another thread), and compact msgpack with few objects to decode.
`restore` takes ownership of the state it is given, checks it, and keeps
the item columns packed: queries slice values out of them, and the first
change unpacks them into lists (`apply` checks one flag, ``_locked``, as it
checked ``_frozen`` before; while packed, the list attributes do not exist,
so code that forgets to unlock fails loudly instead of changing a packed
column). A coarse time index (the time of every 1024th seq)
lets time travel find a seq by time without a search through the log.

`apply` is on the replay hot path and does a handful of dict and list
operations per event. This module never writes to the store and never
normalises keys (the catalog does).
"""
from __future__ import annotations

import bisect
from typing import Any, Sequence

from eventstore.event import Event

from .events import (AT, CONT, CREATED, DESCRIPTION_SET, FORGOTTEN, LEGACY_TYPES, MERGE, OP,
                     REDO_OF, RENAMED, TITLE_SET, TO, UNDO_OF, VALUE, step_of)
from .ledger import ImportLedger
from .mediastate import (IntColumn, KeyColumn, TextColumn, fits, int_column, pack_ints, pack_keys,
                         pack_text, unpack_ints)
from .undostack import E as _E
from .undostack import KEY as _KEY
from .mediaread import ItemReads
from .undostack import Stack, UndoStacks, UndoUnit

__all__ = ["MediaProjection", "UndoUnit", "UNDO_DEPTH", "UNDO_HORIZON", "TIME_STRIDE"]

TIME_STRIDE = 1024       # one event time remembered per this many seqs (time travel)
UNDO_DEPTH = 16          # undo (and redo) field changes kept per item: 16 to 32
UNDO_HORIZON = 10_000    # items (most recently changed) that keep undo/redo stacks
_STATE_VERSION = 4       # the item columns of projections.mediastate
_FIELD_INDEX = {TITLE_SET: 0, DESCRIPTION_SET: 1}
_PACKED = ("_index", "_keys", "_titles", "_descs", "_cols")  # absent while packed
_STACKS = ("_undo", "_redo")    # absent until a restored projection needs its stacks


def _legacy_times(data: dict[str, Any], ts: int) -> tuple[int, int]:
    """(updated, created) of a set that carries a legacy entry's times (else ``ts``)."""
    at, created = data.get(AT), data.get(CREATED)
    if at.__class__ is not int:
        at = ts
    return at, created if created.__class__ is int else at


class MediaProjection(ItemReads, UndoStacks):
    """Current media metadata, replayed from the log.

    Query methods take already-normalised keys. ``undo_depth`` bounds each
    item's stacks (``undo_depth`` to ``2 * undo_depth`` field changes),
    ``undo_horizon`` the number of items that have stacks at all; a log
    replays to the same state only with the same two values. With
    ``track_undo=False`` only items, versions and the time index are kept
    (cheaper replay, no undo stacks): that is what `MediaCatalog.state_at`
    returns, frozen, so `apply` and `restore` raise on it.

    A projection restored from a snapshot answers queries from its packed
    columns, and builds its undo stacks from the snapshot's flat lists when
    a query first needs them. Whatever changes items (`apply`, and any batch
    variant of it) starts with ``if self._locked: self._unlock()``: that
    raises on a frozen projection and unpacks a restored one.
    """

    name = "media"
    # 3: renames and forgets are undo units. A version-2 snapshot has stacks
    # without them, so it is ignored and the state rebuilt by replay (SPEC §4.8).
    # 4: steps of multi-commit imports (meta ``op``), legacy times, the import ledger.
    # 5: the item columns packed (projections.mediastate).
    version = 5
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
        self._locked = False            # frozen, or packed: `apply` must `_unlock` first
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
        self._created: IntColumn = int_column()
        self._updated: IntColumn = int_column()
        self._vers: IntColumn = int_column()
        self._packed: tuple[KeyColumn, TextColumn, TextColumn] | None = None
        self._flat: tuple[list[str], list[int], Stack, bool] | None = None  # stacks not yet built
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
        if self._locked:
            self._unlock()
        apply = self.apply
        for event in events:
            apply(event)

    def apply(self, event: Event) -> None:
        if self._locked:
            self._unlock()
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
            if not fits(ts, born):
                self._widen()
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

    def _apply_other(self, seq: int, ts: int, typ: str, key: str, data: dict[str, Any],
                     meta: dict[str, Any], step: int) -> None:
        # the event is already counted in the key's version
        if typ == FORGOTTEN:
            self._apply_forget(key, meta, step)
        elif typ == RENAMED:
            self._apply_rename(ts, key, data, meta, step)
        elif typ in LEGACY_TYPES:
            self.imports.apply(seq, step, typ, data)

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

    def _widen(self) -> None:
        """Keep times in lists from now on: a legacy entry dated them outside a u64."""
        self._created, self._updated = list(self._created), list(self._updated)

    # ---------------------------------------------------------------- snapshot

    def snapshot(self, *, stacks: bool = True) -> dict[str, Any]:
        """The whole state as msgpack-able values: str, int, bin, and lists and
        dicts of them (the item columns as `projections.mediastate` lays them out).

        ``stacks=False`` leaves the undo/redo stacks out (empty), for a copy
        that a ``track_undo=False`` view restores (time travel to the head).

        Nothing in it is shared with a container that a later `apply`
        mutates, so it may be serialised later, on another thread. Stacks
        are ``stack_keys`` in horizon order (least recently changed first),
        ``stack_sizes`` (undo and redo slot counts per key) and
        ``stack_slots`` (every stack's slots one after the other).
        """
        packed = self._packed
        if packed is None:
            keys = pack_keys(self._keys, bool(self._free))
            (titles, title_lens), (descs, desc_lens) = pack_text(self._titles), pack_text(self._descs)
        else:               # still as restored: the same chunks again
            keys = packed[0].chunks[:]
            (titles, title_lens), (descs, desc_lens) = packed[1].packed(), packed[2].packed()
        stack_keys, sizes, slots = self._stack_state() if stacks else ([], [], [])
        return {"v": _STATE_VERSION, "seq": self.last_seq, "step": self._step,
                "depth": self.undo_depth, "horizon": self.undo_horizon, "n": len(self._vers),
                "keys": keys, "titles": titles, "title_lens": title_lens, "descs": descs,
                "desc_lens": desc_lens, "created": pack_ints(self._created),
                "updated": pack_ints(self._updated), "versions": pack_ints(self._vers),
                "free": self._free[:], "gone": self._gone.copy(),
                "stack_keys": stack_keys, "stack_sizes": sizes, "stack_slots": slots,
                "imports": self.imports.state(), "times": self._times[:]}

    def restore(self, state: Any) -> None:
        """Load a `snapshot` state, taking ownership of its containers; ValueError
        when it is not one (its shapes are all checked before anything changes)."""
        if self._frozen:
            raise RuntimeError("this MediaProjection is read-only")
        if not isinstance(state, dict) or state.get("v") != _STATE_VERSION:
            raise ValueError("not a MediaProjection snapshot of a known version")
        try:
            n = state["n"]
            if type(n) is not int or n < 0:
                raise ValueError("n is not a slot count")
            columns = (KeyColumn.from_state(state["keys"], n),
                       TextColumn.from_state(state["titles"], state["title_lens"], n, "titles"),
                       TextColumn.from_state(state["descs"], state["desc_lens"], n, "descriptions"))
            ints = [unpack_ints(state[name], n, name) for name in ("created", "updated", "versions")]
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a MediaProjection snapshot: {exc}") from None
        self._clear()
        self.last_seq = int(state["seq"])
        self._step = int(state["step"])
        for name in _PACKED:                # unpacked from `columns` when first needed
            delattr(self, name)
        self._packed = columns
        self._created, self._updated, self._vers = ints
        self._free, self._gone = state["free"], state["gone"]
        if self.track_undo:                 # built when first needed
            self._flat = (state["stack_keys"], state["stack_sizes"], state["stack_slots"],
                          state["depth"] > self.undo_depth)
            for name in _STACKS:
                delattr(self, name)
        self.imports.restore(state["imports"])
        self._times = state["times"]
        self._locked = True

    def _unlock(self) -> None:
        """Make the projection changeable: unpack its columns and build its stacks
        (RuntimeError when it is frozen)."""
        if self._frozen:
            raise RuntimeError("this MediaProjection is read-only")
        if self._packed is not None:
            self._unpack()
        self._need_stacks()
        self._locked = False

    def _need_stacks(self) -> None:
        flat = self._flat
        if flat is not None:
            self._flat = None
            self._undo, self._redo = {}, {}
            self._restore_stacks(*flat)

    def _unpack(self) -> None:
        """The packed columns as the lists and the index `apply` works on."""
        packed = self._packed
        assert packed is not None
        keys_col, titles, descs = packed
        index = keys_col.index()
        keys: list[str | None] = keys_col.slot_list()  # type: ignore[assignment]
        for i in self._free:
            keys[i] = None
        self._titles, self._descs = titles.to_list(), descs.to_list()
        self._cols = (self._titles, self._descs)
        self._keys, self._index = keys, index
        self._packed = None

    # ------------------------------------------------------------------ queries
    # (the items' are `ItemReads`', the stacks' `UndoStacks`')

    def freeze(self) -> "MediaProjection":
        """Make this projection read-only (used for `state_at` views)."""
        self._frozen = self._locked = True
        return self

    @property
    def frozen(self) -> bool:
        return self._frozen

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
