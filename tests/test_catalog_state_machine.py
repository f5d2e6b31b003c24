"""A hypothesis state machine: MediaCatalog against a plain dict model.

The model keeps, per key, the (title, description) state and two stacks of
undo units ``[order, before, after, kind, keys]``; ``order`` grows with
every commit. Undo of one item pops its top unit; undo of "the last commit
overall" pops every top unit carrying the largest order; redo mirrors it; a
new change (edit, rename, forget) clears the item's redo stack. A rename
carries the stacks along and is itself a unit (undo renames back, refused
with `UndoError` while the old key is live); a forget is a unit whose undo
sets the values back. Sets, batches, undo, redo, rename, forget, snapshots
and reopen are interleaved, every read is compared after each step,
`state_at` of earlier seqs must give the model's state then, and a full
replay of the log must give exactly the live projection's state (which
came from a snapshot plus replay after a reopen).
"""
from __future__ import annotations

import shutil
import tempfile

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from projections import MediaCatalog, MediaProjection, UndoError
from projections.media import UNDO_DEPTH

KEYS = ["/media/a.mp4", "/media/b.jpg", "/media/c d.png"]
VALUES = ["", "x", "y", "Ünïcødé title", "a much longer description text"]
EMPTY = ("", "")
FIELDS = ("title", "description")

keys = st.sampled_from(KEYS)
values = st.sampled_from(VALUES)
fields = st.sampled_from(FIELDS)


def _with(state: tuple[str, str], field: str, value: str) -> tuple[str, str]:
    return (value, state[1]) if field == "title" else (state[0], value)


class CatalogMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="metalog-sm-")
        self.cat = MediaCatalog.open(self.dir, actor="model", durability="none",
                                     snapshot_every=5)
        self.state: dict[str, tuple[str, str]] = {}
        self.checkpoints: dict[int, dict[str, tuple[str, str]]] = {0: {}}
        self.done: dict[str, list[list]] = {}
        self.undone: dict[str, list[list]] = {}
        self.clock = 0

    def teardown(self) -> None:
        self.cat.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # ------------------------------------------------------------ model helpers

    def _get(self, key: str) -> tuple[str, str]:
        return self.state.get(key, EMPTY)

    def _put(self, key: str, value: tuple[str, str]) -> None:
        if value == EMPTY:
            self.state.pop(key, None)
        else:
            self.state[key] = value

    @staticmethod
    def _push(stacks: dict[str, list[list]], key: str, unit: list) -> None:
        """Push; past 2 * UNDO_DEPTH field changes keep at most UNDO_DEPTH."""
        stack = stacks.setdefault(key, [])
        stack.append(unit)

        def changes(u: list) -> int:          # field-change entries of a unit
            if u[3] == "rename":
                return 1
            if u[3] == "forget":
                return 1 + sum(map(bool, u[1]))
            return sum(a != b for a, b in zip(u[1], u[2]))
        if sum(map(changes, stack)) > 2 * UNDO_DEPTH:
            while sum(map(changes, stack)) > UNDO_DEPTH:
                del stack[0]

    def _commit(self, after: dict[str, tuple[str, str]]) -> None:
        """A new edit commit: one unit per changed key, all with one order."""
        changed = {k: v for k, v in after.items() if v != self._get(k)}
        if not changed:
            return
        self.clock += 1
        for key, value in changed.items():
            self.undone.pop(key, None)
            self._push(self.done, key, [self.clock, self._get(key), value, "set", None])
            self._put(key, value)

    def _move_stacks(self, old: str, new: str) -> None:
        """A rename: ``new`` gets exactly ``old``'s stacks."""
        for stacks in (self.done, self.undone):
            if old in stacks:
                stacks[new] = stacks.pop(old)
            else:
                stacks.pop(new, None)

    def _refused(self, src: dict, keys: list[str], undo: bool) -> bool:
        """Whether reverting (undo) or re-applying the top units would hit a live item."""
        for key in keys:
            unit = src[key][-1]
            if unit[3] == "rename":
                if (unit[4][0] if undo else unit[4][1]) in self.state:
                    return True
            elif unit[3] == "forget" and (key in self.state) == undo:
                return True
        return False

    def _move(self, src: dict, dst: dict, keys: list[str], restore: int) -> None:
        self.clock += 1
        for key in keys:
            unit = src[key].pop()
            if not src[key]:
                del src[key]
            if unit[3] == "rename":
                old, new = unit[4]
                frm, to = (new, old) if restore == 1 else (old, new)
                self.state[to] = self.state.pop(frm)
                self._move_stacks(frm, to)
                key = to
            else:
                self._put(key, unit[restore])
            unit[0] = self.clock
            self._push(dst, key, unit)

    def _last_group(self, stacks: dict[str, list[list]]) -> list[str]:
        tops = {k: s[-1][0] for k, s in stacks.items() if s}
        if not tops:
            return []
        best = max(tops.values())
        return [k for k, order in tops.items() if order == best]

    # -------------------------------------------------------------------- rules

    @rule(key=keys, field=fields, value=values)
    def set_value(self, key: str, field: str, value: str) -> None:
        setter = self.cat.set_title if field == "title" else self.cat.set_description
        event = setter(key, value)
        unchanged = _with(self._get(key), field, value) == self._get(key)
        assert (event is None) == unchanged
        self._commit({key: _with(self._get(key), field, value)})

    @rule(ops=st.lists(st.tuples(keys, fields, values), min_size=1, max_size=6),
          fail=st.booleans())
    def batch(self, ops: list[tuple[str, str, str]], fail: bool) -> None:
        after: dict[str, tuple[str, str]] = {}
        try:
            with self.cat.batch():
                for key, field, value in ops:
                    setter = self.cat.set_title if field == "title" else self.cat.set_description
                    assert setter(key, value) is None
                    after[key] = _with(after.get(key, self._get(key)), field, value)
                    # reads inside the batch see its pending changes
                    assert (self.cat.title(key), self.cat.description(key)) == after[key]
                if fail:
                    raise KeyError("abort")
        except KeyError:
            assert fail
            return
        self._commit(after)

    @rule(key=st.one_of(st.none(), keys))
    def undo(self, key: str | None) -> None:
        self._undo_redo(self.cat.undo, key, self.done, self.undone, restore=1)

    @rule(key=st.one_of(st.none(), keys))
    def redo(self, key: str | None) -> None:
        self._undo_redo(self.cat.redo, key, self.undone, self.done, restore=2)

    def _undo_redo(self, call, key: str | None, src: dict, dst: dict, restore: int) -> None:
        """Check what undo (src done) or redo (src undone) wrote against the model."""
        if key is None:
            group = self._last_group(src)
        else:
            group = [key] if src.get(key) else []
        seq = self.cat.store.last_seq
        if group and self._refused(src, group, undo=restore == 1):
            try:
                call(key)
            except UndoError:
                assert self.cat.store.last_seq == seq      # nothing written
                return
            raise AssertionError("undo/redo onto a live item must raise UndoError")
        events = call(key)
        assert bool(events) == bool(group)
        if group:
            self._move(src, dst, group, restore=restore)

    @rule(old=keys, new=keys)
    def rename(self, old: str, new: str) -> None:
        if old == new:
            assert self.cat.rename(old, new) == []
            return
        if old not in self.state:
            try:
                self.cat.rename(old, new)
            except KeyError:
                return
            raise AssertionError("rename of an absent item must raise KeyError")
        if new in self.state:
            try:
                self.cat.rename(old, new)
            except ValueError:
                return
            raise AssertionError("rename onto a live item must raise ValueError")
        assert len(self.cat.rename(old, new)) == 2
        self.clock += 1
        self.state[new] = self.state.pop(old)
        self._move_stacks(old, new)
        self.undone.pop(new, None)          # a new change: nothing left to redo
        self._push(self.done, new, [self.clock, None, None, "rename", (old, new)])

    @rule(key=keys)
    def forget(self, key: str) -> None:
        event = self.cat.forget(key, reason="test")
        assert (event is None) == (key not in self.state)
        if event is not None:
            self.clock += 1
            before = self.state.pop(key)
            self.undone.pop(key, None)
            self._push(self.done, key, [self.clock, before, EMPTY, "forget", None])

    @rule()
    def reopen(self) -> None:
        self.cat.close()
        self.cat = MediaCatalog.open(self.dir, actor="model", durability="none",
                                     snapshot_every=5)

    @rule()
    def snapshot(self) -> None:
        self.cat.snapshot()

    @rule()
    def full_replay_gives_the_live_state(self) -> None:
        fresh = MediaProjection()
        for event in self.cat.store.read():
            fresh.apply(event)
        assert fresh.snapshot() == self.cat.projection.snapshot()

    @rule(data=st.data())
    def time_travel(self, data: st.DataObject) -> None:
        seq = data.draw(st.sampled_from(sorted(self.checkpoints)))
        assert self.cat.state_at(seq=seq).as_dict() == self.checkpoints[seq]

    # --------------------------------------------------------------- invariants

    @invariant()
    def reads_match_the_model(self) -> None:
        assert len(self.cat) == len(self.state)
        assert {k: (r.title, r.description) for k, r in self.cat.items()} == self.state
        for key in KEYS:
            assert (key in self.cat) == (key in self.state)
            assert (self.cat.title(key), self.cat.description(key)) == self._get(key)
        self.checkpoints[self.cat.store.last_seq] = dict(self.state)


CatalogMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
TestCatalogStateMachine = CatalogMachine.TestCase
