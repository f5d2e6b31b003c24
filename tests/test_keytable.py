"""The key-version table of a version 2 snapshot ([F-34]): checked when read, a dict
only when first needed, built on shared key strings; and version 1 snapshots (a
msgpack map) still read the same."""
from __future__ import annotations

import os

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import eventstore
from eventstore.codec import pack
from eventstore.errors import CorruptionError
from eventstore.keytable import KeyTable, decode_table, encode_table, versions_builder
from eventstore.local import snapshot as snap_mod
from eventstore.publish import KeyVersions

from _verbs import KV, FAST, fast_tmp, snap_files  # noqa: F401 - fast_tmp is a fixture

# keys as the store accepts them: non-empty, no NUL, no lone surrogate; odd ones included
KEY_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
                   min_size=1, max_size=12)
VERSIONS = st.dictionaries(KEY_TEXT, st.integers(1, 2**63), max_size=40)


@settings(max_examples=300, deadline=None)
@given(versions=VERSIONS)
def test_table_round_trip_equals_the_map(versions: dict[str, int]) -> None:
    table = decode_table(encode_table(versions), "f", 72)
    assert table.to_dict() == versions
    assert list(table.to_dict()) == list(versions)      # order kept
    assert len(table) == len(versions)
    assert KeyTable.from_dict(dict(versions)).to_dict() == versions


@settings(max_examples=200, deadline=None)
@given(versions=VERSIONS, data=st.data())
def test_shared_keys_give_the_same_dict_on_those_very_strings(versions: dict[str, int],
                                                              data: st.DataObject) -> None:
    table = decode_table(encode_table(versions), "f", 72)
    # shared strings: some of the table's keys (as new objects) and some keys it lacks
    some = data.draw(st.lists(st.sampled_from(sorted(versions)), max_size=10)) if versions else []
    held = [(k + "x")[:-1] for k in some]         # equal strings, other objects
    held += data.draw(st.lists(KEY_TEXT.filter(lambda k: k not in versions), max_size=3))
    built = table.to_dict(held)
    assert built == versions
    by_value = {k: k for k in built}
    first: dict[str, str] = {}
    for key in held:
        first.setdefault(key, key)
    for key in first:
        if key in versions:
            assert by_value[key] is first[key]
    built_v1 = KeyTable.from_dict(dict(versions)).to_dict(held)
    assert built_v1 == versions
    by_value_v1 = {k: k for k in built_v1}
    for key in first:
        if key in versions:
            assert by_value_v1[key] is first[key]


@pytest.mark.parametrize("raw, why", [
    (pack({"k": 1}), "wrong shape"),                       # a version 1 map in a version 2 file
    (pack(["k"]), "wrong shape"),
    (pack(["k", b"\1" + bytes(6)]), "wrong shape"),        # 7 bytes: not whole counts
    (pack([b"k", (1).to_bytes(8, "little")]), "wrong shape"),
    (pack(["a\0b", (1).to_bytes(8, "little")]), "do not match"),
    (pack(["", (1).to_bytes(8, "little") * 2]), "do not match"),
    (pack(["k", b""]), "do not match"),
    (pack(["a\0b", (1).to_bytes(8, "little") + bytes(8)]), "count of 0"),
    (b"\xc1", "does not decode"),
])
def test_bad_tables_are_corruption(raw: bytes, why: str) -> None:
    with pytest.raises(CorruptionError) as info:
        decode_table(raw, "f.snap", 72)
    assert (info.value.file, info.value.offset) == ("f.snap", 72) and why in info.value.reason


def test_empty_table_and_a_key_holding_nul() -> None:
    assert decode_table(encode_table({}), "f", 72).to_dict() == {}
    with pytest.raises(ValueError):
        encode_table({"a\0b": 1})


def test_key_versions_build_the_base_only_when_a_version_is_needed() -> None:
    built: list[int] = []

    def base() -> dict[str, int]:
        built.append(1)
        return {"a": 2, "b": 1}
    versions = KeyVersions(base=base)
    versions.note(["a", "c"])
    assert not built
    assert versions.get("a") == 3 and versions.get("c") == 1 and versions.get("b") == 1
    assert len(versions) == 3 and built == [1]


class Keyed(KV):
    """A projection that offers its key strings."""

    def key_strings(self) -> list[str]:
        return list(self.last)


def test_versions_builder_uses_the_first_projection_offering_key_strings() -> None:
    table = decode_table(encode_table({"k1": 3, "k2": 1}), "f", 72)
    holder = Keyed()
    holder.restore({"last": {"".join(["k", "1"]): {}}, "count": 1, "fold": 0})
    built = versions_builder(table, [KV(), holder])()
    assert built == {"k1": 3, "k2": 1}
    (shared,) = list(holder.last)
    assert [k for k in built if k == "k1"][0] is shared


def _as_version_1(path: str) -> None:
    """Rewrite a version 2 snapshot file as version 1 wrote it: its key versions a map."""
    snap = snap_mod.read_snapshot(FAST, path)
    states = [(name, ver, pack(state)) for name, (ver, state) in snap.states.items()]
    data = bytearray(snap_mod.encode_snapshot(snap.seq, snap.ts, (snap.seg_first, snap.offset),
                                              snap.digest, pack(snap.versions.to_dict()), states))
    data[4:6] = (1).to_bytes(2, "little")
    import zlib
    data[68:72] = zlib.crc32(bytes(data[:68])).to_bytes(4, "little")
    open(path, "wb").write(bytes(data))


def test_a_version_1_snapshot_still_reads_the_same(fast_tmp) -> None:  # noqa: F811
    root = str(fast_tmp / "s")
    with eventstore.open(root, [KV()], fs=FAST, snapshot_every=0) as s:
        for i in range(30):
            s.append("set", f"k{i % 4}", {"i": i})
        s.snapshot()
        s.append("set", "k9", {})
        expected = {k: s.version(k) for k in ("k0", "k1", "k2", "k3", "k9", "none")}
    (path,) = snap_files(root)
    _as_version_1(path)
    assert snap_mod.read_snapshot(FAST, path).versions.to_dict() == {f"k{i}": [8, 8, 7, 7][i]
                                                                      for i in range(4)}
    with eventstore.open(root, [KV()], fs=FAST) as s:
        assert s.stats()["snapshot_seq"] == 30 and not s.recovery_report
        assert {k: s.version(k) for k in expected} == expected
        assert s.verify().ok
    assert os.path.exists(path)


def test_a_store_open_builds_no_key_versions_until_asked(fast_tmp) -> None:  # noqa: F811
    root = str(fast_tmp / "s")
    with eventstore.open(root, [KV()], fs=FAST, snapshot_every=0) as s:
        for i in range(10):
            s.append("set", f"k{i % 3}", {"i": i})
        s.snapshot()
    with eventstore.open(root, [Keyed()], fs=FAST, readonly=True) as s:
        assert s._current_versions()._base is not None           # type: ignore[attr-defined]
        assert s.version("k0") == 4
        assert s._current_versions()._base is None               # type: ignore[attr-defined]
    assert msgpack.unpackb(encode_table({"a": 1})) == ["a", (1).to_bytes(8, "little")]
