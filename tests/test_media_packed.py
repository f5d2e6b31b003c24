"""MediaProjection restored from a snapshot keeps its item columns packed
(projections.mediastate): every query gives exactly what the projection it was
taken from gives, and what it gives once unpacked, with odd keys and values
(wide, combining, emoji, control characters, NUL, empty), chunk boundaries,
freed slots, and legacy times that do not fit a u64 (negative ones); malformed states are refused."""
from __future__ import annotations

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventstore.event import Event
from projections import MediaProjection
from projections import mediastate
from projections.events import AT, CREATED, DESCRIPTION_SET, FORGOTTEN, RENAMED, TITLE_SET

ODD = "aé映画e\u0301\U0001F600\x1b\x00\t\n\u200b\u00ad/ "
KEYS = st.text(st.sampled_from(ODD.replace("\x00", "") + "kz"), min_size=1, max_size=6)
VALUES = st.one_of(st.just(""), st.text(st.sampled_from(ODD + "xy"), max_size=8),
                   st.text(max_size=5).filter(lambda t: not any(0xD800 <= ord(c) < 0xE000 for c in t)))
# what msgpack (so the log) holds: -2**63 .. 2**64 - 1; a u64 column takes no negative one
TIMES = st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([-1, -2**63, 2**64 - 1]))


@st.composite
def logs(draw: st.DrawFn) -> list[Event]:
    keys = draw(st.lists(KEYS, min_size=1, max_size=12, unique=True))
    out: list[Event] = []
    for _ in range(draw(st.integers(1, 60))):
        seq = len(out) + 1
        key = draw(st.sampled_from(keys))
        choice = draw(st.integers(0, 9))
        if choice <= 5:
            data = {"value": draw(VALUES)}
            if choice == 5:                     # a legacy import dates it, maybe oddly
                data.update({AT: draw(TIMES), CREATED: draw(TIMES)})
            out.append(Event(seq, 10**9 * seq, TITLE_SET if choice % 2 else DESCRIPTION_SET, key,
                             data, {"actor": "a"}))
        elif choice == 6:
            out.append(Event(seq, 10**9 * seq, FORGOTTEN, key, {}, {"actor": "a"}))
        elif choice == 7:
            new = draw(st.sampled_from(keys))
            out.append(Event(seq, 10**9 * seq, RENAMED, key, {"to": new}, {"actor": "a"}))
        else:
            out.append(Event(seq, 10**9 * seq, "other.type", key, {"x": 1}, {"actor": "a"}))
    return out


def queries(p: MediaProjection, probes: list[str]) -> dict[str, object]:
    return {"items": p.items(), "dict": p.as_dict(), "len": len(p), "keys": sorted(p.keys()),
            "iter": sorted(p), "strings": sorted(p.key_strings()),
            "per key": [(p.get(k), p.title(k), p.description(k), p.values(k), p.key_version(k),
                         k in p) for k in probes]}


def through_msgpack(state: object) -> object:
    return msgpack.unpackb(msgpack.packb(state), strict_map_key=False)


@pytest.fixture(params=[4096, 2], ids=["chunk4096", "chunk2"])
def chunk(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """Small chunks too, so chunk boundaries are crossed by a few items."""
    monkeypatch.setattr(mediastate, "CHUNK", request.param)
    monkeypatch.setattr(mediastate, "_SHIFT", request.param.bit_length() - 1)
    return int(request.param)


@settings(max_examples=250, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # it only sets a constant
@given(log=logs(), data=st.data())
def test_packed_queries_equal_the_live_and_the_unpacked_projection(chunk: int, log: list[Event],
                                                                    data: st.DataObject) -> None:
    live = MediaProjection(undo_depth=3, undo_horizon=4)
    for e in log:
        live.apply(e)
    state = through_msgpack(live.snapshot())
    packed = MediaProjection(undo_depth=3, undo_horizon=4)
    packed.restore(state)
    assert packed._packed is not None
    probes = sorted({e.key for e in log}) + ["", "never", "a\0b", data.draw(KEYS)]
    expected = queries(live, probes)
    assert queries(packed, probes) == expected
    # a packed projection's snapshot is the same bytes as the live one's
    assert msgpack.packb(packed.snapshot()) == msgpack.packb(live.snapshot())
    assert packed._packed is not None                   # queries and snapshots never unpack
    # the stacks, built from the snapshot's flat lists when first asked for
    fresh = MediaProjection(undo_depth=3, undo_horizon=4)
    fresh.restore(through_msgpack(live.snapshot()))
    assert fresh._flat is not None and "_undo" not in vars(fresh)
    assert [(fresh.undo_top(k), fresh.redo_top(k)) for k in probes] == \
        [(live.undo_top(k), live.redo_top(k)) for k in probes]
    assert (fresh.last_undo_group(), fresh.last_redo_group(), fresh.undo_depths()) == \
        (live.last_undo_group(), live.last_redo_group(), live.undo_depths())
    assert fresh._flat is None and fresh._packed is not None
    unpacked = MediaProjection(undo_depth=3, undo_horizon=4)
    unpacked.restore(through_msgpack(live.snapshot()))
    unpacked._unpack()
    assert queries(unpacked, probes) == expected
    # and a change after the restore unpacks and goes on as the live projection does
    more = Event(len(log) + 1, 10**9 * (len(log) + 1), TITLE_SET, probes[0], {"value": "é\0"}, {})
    live.apply(more)
    packed.apply(more)
    assert packed._packed is None
    assert queries(packed, probes) == queries(live, probes)
    assert msgpack.packb(packed.snapshot()) == msgpack.packb(live.snapshot())


def test_lookups_scan_then_build_the_index_and_keep_the_last_duplicate() -> None:
    keys = mediastate.KeyColumn.from_state(["/a\0/b\0\0/a\0/c"], 5)
    assert [keys.slot(k) for k in ("/a", "/b", "/c", "", "/d", "/a\0/b")] == [3, 1, 4, None, None, None]
    index = dict(zip(["/a", "/b", "", "/a", "/c"], range(5)))
    index.pop("")
    for _ in range(20):                               # past the scans: the index answers
        assert keys.slot("/a") == index["/a"] == 3
    assert keys.index() == index and list(keys) == list(index)


def _state(**changes: object) -> dict:
    p = MediaProjection()
    for i, (key, value) in enumerate([("/a", "x"), ("/b", "yz"), ("/c", "")], 1):
        p.apply(Event(i, i, TITLE_SET, key, {"value": value or "v"}, {}))
    state = through_msgpack(p.snapshot())
    assert isinstance(state, dict)
    state.update(changes)
    return state


@pytest.mark.parametrize("changes", [
    {"n": 4}, {"n": -1}, {"n": "3"},
    {"keys": ["/a\0/b"]}, {"keys": "/a\0/b\0/c"}, {"keys": [b"/a\0/b\0/c"]},
    {"titles": ["xyzv!"]}, {"titles": ["xyz"]}, {"title_lens": b"\1\0\0\0"},
    {"desc_lens": None}, {"created": b"\0" * 8}, {"updated": [1, 2]}, {"versions": [1, 2, "3"]},
    {"v": 3},
])
def test_malformed_states_are_refused_before_anything_changes(changes: dict) -> None:
    p = MediaProjection()
    p.apply(Event(1, 1, TITLE_SET, "/keep", {"value": "kept"}, {}))
    with pytest.raises(ValueError):
        p.restore(_state(**changes))
    assert p.as_dict() == {"/keep": ("kept", "")}
    p.restore(_state())                                # the untouched state is fine
    assert p.as_dict() == {"/a": ("x", ""), "/b": ("yz", ""), "/c": ("v", "")}


def test_times_outside_a_u64_keep_the_columns_as_lists() -> None:
    p = MediaProjection()
    p.apply(Event(1, 5, TITLE_SET, "/a", {"value": "x", AT: -3, CREATED: 2**64 - 1}, {}))
    p.apply(Event(2, 6, TITLE_SET, "/b", {"value": "y"}, {}))
    assert isinstance(p._created, list)
    record = p.get("/a")
    assert record is not None and (record.created, record.updated) == ((2**64 - 1) / 1e9, -3 / 1e9)
    q = MediaProjection()
    q.restore(through_msgpack(p.snapshot()))
    assert q.items() == p.items() and isinstance(q._updated, list)
