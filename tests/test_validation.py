"""Hostile length fields on disk cost neither gigabytes nor hangs ([F-09], [F-13], [F-14]);
the column-wise check of append_many accepts only what the full check accepts; a commit
over the frame limit is refused ([F-12]). That bad input writes nothing, on every backend,
is tests/contract/test_bad_input.py (SPEC §5).
"""
from __future__ import annotations

import collections
import json
import os
import struct
import subprocess
import sys
import textwrap
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import eventstore
from eventstore import ValidationError
from eventstore.codec import encode_event, join_payload
from eventstore.event import plain_columns, validate_key, validate_mapping, validate_type
from eventstore.local.frame import encode_frame

HEADER, FRAME_HEADER = 40, 48


# -- hostile files on disk -----------------------------------------------------------------------
PROBE = textwrap.dedent("""
    import json, resource, sys, time
    import eventstore
    path = sys.argv[1]
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.monotonic()
    results = []
    for mode in sys.argv[2:]:  # "ro" then "rw": the reader first, it must change nothing
        out = {}
        try:
            with eventstore.open(path, readonly=mode == "ro", segment_bytes=4096) as s:
                out["seqs"] = [e.seq for e in s.read()]
                out["report"] = [[x.action, x.offset, x.nbytes] for x in s.recovery_report]
        except eventstore.CorruptionError as exc:
            out["corruption"] = [exc.file, exc.offset, exc.reason]
        results.append(out)
    print(json.dumps({"results": results, "seconds": time.monotonic() - t0,
                      "rss_growth_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0}))
""")


def probe(path, *modes):
    """Open the store in a fresh process in each mode; check peak-memory growth and time."""
    res = subprocess.run([sys.executable, "-c", PROBE, path, *modes],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["rss_growth_kb"] < 200 * 1024, out  # < 200 MB whatever the length fields say
    assert out["seconds"] < 10, out
    return out["results"]


def make_store(path, n_segments):
    """A store whose last segment holds 3 commits; returns (segment paths, seqs)."""
    with eventstore.open(path, segment_bytes=4096, durability="none") as s:
        while True:
            segs = sorted(os.listdir(os.path.join(path, "segments")))
            if len(segs) >= n_segments:
                break
            s.append("fill", "k", {"pad": "p" * 900})
        for i in range(3):
            s.append("t", f"k{i}", {"i": i})
        last = s.last_seq
    segs = [os.path.join(path, "segments", n) for n in sorted(os.listdir(os.path.join(path, "segments")))]
    return segs, last


def frames(data):
    out, off = [], HEADER
    while off < len(data):
        n = struct.unpack_from("<I", data, off + 8)[0]
        out.append((off, off + FRAME_HEADER + n))
        off += FRAME_HEADER + n
    return out


def hostile_header(length, count, first_seq, *, crc_of=None):
    prefix = struct.pack("<IIQQ", length, count, first_seq, 1)
    digest = b"\x11" * 16
    crc = zlib.crc32(crc_of if crc_of is not None else prefix + digest)
    return b"MLFR" + struct.pack("<I", crc) + prefix + digest


@pytest.mark.parametrize("length", [2**32 - 1, 256 << 20, 200 << 20])
def test_hostile_length_at_the_tail_is_cut_in_bounded_memory(tmp_path, length):
    """[F-09] a huge length at the end of the last segment: a torn tail ([F-13]), cut after a
    copy to quarantine, with bounded memory and time; a reader stops before it."""
    path = str(tmp_path / "s")
    segs, last = make_store(path, 1)
    size = os.path.getsize(segs[-1])
    with open(segs[-1], "ab") as f:
        f.write(hostile_header(length, 1, last + 1) + b"\xab" * 100)
    [ro] = probe(path, "ro")
    assert ro["seqs"] == list(range(1, last + 1)) and ro["report"] == []
    assert os.path.getsize(segs[-1]) == size + FRAME_HEADER + 100
    [rw] = probe(path, "rw")
    assert rw["seqs"] == list(range(1, last + 1))
    assert rw["report"] == [["truncated", size, FRAME_HEADER + 100]]
    assert os.path.getsize(segs[-1]) == size


@pytest.mark.parametrize("where", ["middle-frame-of-last-segment", "sealed-segment"])
@pytest.mark.parametrize("field", ["length", "count"])
def test_hostile_field_before_valid_data_is_corruption(tmp_path, where, field):
    """[F-14] a frame with a 4 GiB length or a 2^32-1 count followed by valid frames is
    corruption: strict opens raise CorruptionError at that frame, in bounded memory."""
    path = str(tmp_path / "s")
    segs, last = make_store(path, 3)
    seg = segs[-1] if where == "middle-frame-of-last-segment" else segs[0]
    data = bytearray(open(seg, "rb").read())
    off, end = frames(bytes(data))[1]  # the second frame: valid frames follow it
    if field == "length":
        data[off + 8:off + 12] = (2**32 - 16).to_bytes(4, "little")
    else:
        data[off + 12:off + 16] = (2**32 - 1).to_bytes(4, "little")
        # re-sign the CRC so only the count (and the chain) are wrong
        data[off + 4:off + 8] = zlib.crc32(bytes(data[off + 8:end])).to_bytes(4, "little")
    with open(seg, "wb") as f:
        f.write(data)
    for out in probe(path, "ro", "rw"):
        assert "corruption" in out, out
        file, offset, reason = out["corruption"]
        assert os.path.samefile(file, seg) and offset == off, out
    assert open(seg, "rb").read() == bytes(data)


def test_fully_resigned_frame_with_hostile_count_is_corruption(tmp_path):
    """A last frame whose CRC *and* chain digest were recomputed for a count of 2^32-1: the
    payload does not hold that many events ([F-08]), so the open raises, quickly."""
    path = str(tmp_path / "s")
    segs, last = make_store(path, 1)
    data = open(segs[-1], "rb").read()
    off, end = frames(data)[-1]
    prev_digest = data[off + 32:off + 48]
    payload = join_payload([encode_event("t", "k", {}, {})])
    frame, _ = encode_frame(last + 1, 2**32 - 1, 1, payload, prev_digest)
    with open(segs[-1], "ab") as f:
        f.write(frame)
    for out in probe(path, "ro", "rw"):
        assert "corruption" in out, out
        assert out["corruption"][1] == len(data)


# -- the column-wise fast check agrees with the item-by-item one --------------------------------
_KNOWN = frozenset({"t", "ok"})
_plain_maps = st.dictionaries(st.text(max_size=4), st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(), st.text(max_size=5),
    st.binary(max_size=5)), max_size=3)
_odd_fields = {  # one wrong value per field, each refused by the full check or (last ones) valid
    0: st.sampled_from(["new", "", 5, None, "t\x00"]),
    1: st.sampled_from(["", "a\x00b", 5, None, b"k", "x" * 1025, "é" * 1024]),
    2: st.sampled_from([{1: "int key"}, {None: 1}, {"a": object()}, {"a": {1, 2}}, {"a": bytearray(b"x")},
                        {"a": 1j}, {"a": [1]}, {"a": {"b": 1}}, None, [1], "text", {"a": (1,)}]),
}
_odd_fields[3] = _odd_fields[2]


@st.composite
def _batches(draw):
    """A plain batch, then (usually) one field of one item swapped for an odd value."""
    width = draw(st.sampled_from([3, 4]))
    items = draw(st.lists(st.tuples(st.sampled_from(sorted(_KNOWN)), st.text(min_size=1, max_size=8)
                                    .filter(lambda k: "\x00" not in k), _plain_maps, _plain_maps)
                          .map(lambda i: i[:width]), min_size=1, max_size=4))
    if draw(st.integers(0, 5)):
        at = draw(st.integers(0, len(items) - 1))
        field = draw(st.integers(0, width - 1))
        item = list(items[at])
        item[field] = draw(_odd_fields[field])
        items[at] = tuple(item) if draw(st.booleans()) else item
    if draw(st.integers(0, 9)) == 0:  # a ragged batch
        items.append(("t", "k", {}, {})[:7 - width])
    if draw(st.integers(0, 9)) == 0:  # an item that is an iterable but not a tuple or list
        at = draw(st.integers(0, len(items) - 1))
        items[at] = draw(st.sampled_from([collections.deque, iter, _Row]))(items[at])
    return items


def _full_check_item(item):
    """What the item-by-item path makes of an `append_many` item."""
    from eventstore.commit import split_item as _split_item
    type_, key, data, meta = _split_item(item)
    return validate_type(type_), validate_key(key), validate_mapping("data", data), meta


class _Row(tuple):
    pass


class _Liar(str):
    """Hashes and compares like a known type name, holds NULs: the fast check must not trust it."""

    def __hash__(self):
        return hash("t")

    def __eq__(self, other):
        return other == "t"


def test_fast_check_does_not_trust_str_subclasses_or_odd_items():
    liar = _Liar("\x00" * 300)
    for items in ([(liar, "k", {})], [("t", liar, {})]):
        assert plain_columns(items, _KNOWN) is None
    # map keys may be str subclasses (the full check takes them, both encoders write their text)
    assert plain_columns([("t", "k", {liar: 1})], _KNOWN) is not None
    # an item is any iterable of 3 or 4 values, on both paths
    for item in (collections.deque(("t", "k", {})), _Row(("t", "k", {})), iter(("t", "k", {}, {}))):
        assert _full_check_item(item)[:3] == ("t", "k", {})
    assert plain_columns([collections.deque(("t", "k", {})), ("t", "k", {})], _KNOWN) is None
    assert plain_columns([_Row(("t", "k", {}))], _KNOWN) is None


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_batches())
def test_fast_check_accepts_only_what_the_full_check_accepts(items):
    """SPEC §5: `plain_columns` may send a valid batch to the full check, but whatever it
    accepts the full, item-by-item check (the one that raises precisely) accepts too, with
    the same values column by column."""
    items = [i if isinstance(i, (tuple, list)) or not hasattr(i, "__next__") else tuple(i) for i in items]
    columns = plain_columns(items, _KNOWN)
    if columns is None:
        return
    types, keys, datas, metas = columns
    for i, item in enumerate(items):
        item = tuple(item)
        _full_check_item(item)
        type_, key, data = item[:3]
        meta = item[3] if len(item) == 4 else None
        assert validate_type(type_) == type_ and validate_key(key) == key
        assert validate_mapping("data", data) is data and validate_mapping("meta", meta) is not None
        assert (types[i], keys[i], datas[i]) == (type_, key, data)
        assert (metas is None) == (len(item) == 3) and (metas is None or metas[i] is meta)
    # (lone surrogates and ints over 64 bits pass both checks: the encoder refuses them,
    # on either path, before anything is written; test_bad_input_raises_and_writes_nothing)


def test_a_commit_over_the_frame_limit_is_refused_whatever_max_event_bytes(store_dir, monkeypatch):
    """[F-12]: a commit whose payload passes MAX_COMMIT_BYTES is refused even when
    max_event_bytes is larger: a frame over the limit would reach the disk and read back
    as damage."""
    monkeypatch.setattr("eventstore.codec.MAX_COMMIT_BYTES", 200)
    with eventstore.open(store_dir, max_event_bytes=10_000) as s:
        with pytest.raises(ValidationError, match="the limit is 200"):
            s.append_many([("t", f"k{i}", {"v": "x" * 20}) for i in range(10)])
        assert s.last_seq == 0
