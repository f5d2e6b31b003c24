"""The sans-I/O codec and frame scanner: round trips and incremental feeding.

Cites docs/FORMAT.md: [F-08] frame validity, [F-09] limits, [F-10] zeros,
[F-11] one commit = one frame, [F-12] sizes, [F-17] digest chain.
"""
from __future__ import annotations

import enum
import struct

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import eventstore
from eventstore import CorruptionError, Event, ValidationError
from eventstore.codec import decode_commit, encode_commit, encode_event, join_payload
from eventstore.local.frame import (
    Damage, Frame, FrameScanner, chain_digest, check_frame, encode_frame, frame_bytes,
)

# -- strategies ------------------------------------------------------------------------
text = st.text(max_size=12)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False), text, st.binary(max_size=16),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(text, inner, max_size=4)),
    max_leaves=12,
)
data_dicts = st.dictionaries(text, values, max_size=5)
names = st.text(min_size=1, max_size=10).filter(lambda s: "\x00" not in s)
events = st.tuples(names, names, data_dicts, data_dicts)


def assert_same(a, b, path="value"):
    """Equal *and* of the same types all the way down (1 == True == 1.0 must not pass)."""
    assert type(a) is type(b), f"{path}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, dict):
        assert list(a) == list(b), path
        for k in a:
            assert_same(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and a == 0.0:
        assert struct.pack("<d", a) == struct.pack("<d", b), path  # keeps the sign of zero
    else:
        assert a == b, path


# -- codec -------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(st.lists(events, min_size=1, max_size=8), st.integers(1, 2**62), st.integers(0, 2**63))
def test_codec_round_trip(items, first_seq, ts):
    """[F-08] payload = msgpack array of [type, key, data, meta]; decode gives exactly those."""
    payload = encode_commit([tuple(i) for i in items], 1 << 20)
    # the store's one-call encoding is byte for byte the per-event form of [F-08]
    assert payload == join_payload([encode_event(*item) for item in items])
    assert msgpack.unpackb(payload, raw=False) == [list(i) for i in items]
    decoded = decode_commit(payload, first_seq, len(items), ts, "f", 7)
    assert len(decoded) == len(items)
    for i, (ev, (type_, key, data, meta)) in enumerate(zip(decoded, items)):
        assert isinstance(ev, Event)
        assert (ev.seq, ev.ts, ev.type, ev.key) == (first_seq + i, ts, type_, key)
        assert_same(ev.data, data)
        assert_same(ev.meta, meta)


class _Str(str):
    pass


class _Dict(dict):
    pass


class _Level(enum.IntEnum):
    LOW = 1


wide_scalars = st.one_of(
    scalars, st.floats(), st.text(min_size=30, max_size=300), st.binary(min_size=250, max_size=70_000),
    st.integers(-(2**63), 2**64 - 1).map(lambda i: i),
)
wide_values = st.recursive(
    wide_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.lists(inner, max_size=3).map(tuple),
                            st.dictionaries(text, inner, max_size=4)),
    max_leaves=10,
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(names, names, st.dictionaries(text, wide_values, max_size=4),
                          st.dictionaries(text, wide_values, max_size=2)), min_size=1, max_size=6))
def test_fast_encoder_writes_the_reference_bytes(items):
    """SPEC §7.7: the msgspec fast path writes exactly msgpack's bytes (str8/16/32, bin, float64,
    uint64, nested tuples) — else a store written by one would not be the store written by the other."""
    items = [tuple(i) for i in items]
    assert encode_commit(items, 1 << 30, plain=True) == msgpack.packb(items, use_bin_type=True)


class _ItemsDict(dict):
    """A dict subclass that shows msgpack other items than its entries."""

    def items(self):
        return [("shown", 1)]


def test_commits_that_are_not_plain_are_encoded_by_msgpack(store_dir):
    """Only commits of exact built-in types reach msgspec: a subclass (which msgspec would
    encode from its raw entries) is encoded by msgpack, the reference, through the store too."""
    odd = [("t", _Str("key"), _Dict(a=_Level.LOW), {"s": _Str("x")}),
           ("t", "k", _ItemsDict(hidden=2), {})]
    for items in ([odd[0]], [odd[1]]):
        assert encode_commit(items, 1 << 20) == msgpack.packb(items, use_bin_type=True)
    with eventstore.open(store_dir) as store:
        store.append_many([("t", "k", {"x": 1})] * 2)  # "t" is a known type from now on
        store.append_many([("t", "k", _ItemsDict(hidden=2))] * 2)
        store.append("t", "k", _ItemsDict(hidden=2))
        stored = [e.data for e in store.read()][2:]
    assert stored == [{"shown": 1}] * 3  # what msgpack wrote, as msgpack sees the subclass


def test_fast_encoder_refusals_fall_back_to_precise_errors():
    for items in ([("t", "k", {"a": 2**70}, {})], [("t", "\ud800", {}, {})], [("t", "k", {"a": "\udc00"}, {})]):
        with pytest.raises(ValidationError):
            encode_commit(items, 1 << 20, plain=True)
    with pytest.raises(ValidationError, match="key is not valid Unicode"):
        encode_commit([("t", "\ud800", {}, {})], 1 << 20, plain=True)


@pytest.mark.parametrize("n", [1, 15, 16, 17, 65535, 65536, 70000])
def test_join_payload_array_header_sizes(n):
    """[F-08] each array-header width (fixarray, array16, array32) decodes to n events."""
    blob = encode_event("t", "k", {}, {})
    payload = join_payload([blob] * n)
    decoded = decode_commit(payload, 10, n, 5, "f", 0)
    assert len(decoded) == n
    assert decoded[0].seq == 10 and decoded[-1].seq == 10 + n - 1
    assert all(e.type == "t" and e.key == "k" and e.data == {} for e in (decoded[0], decoded[-1]))


def test_decode_commit_rejects_wrong_count_and_shape():
    """[F-08] a payload must decode to exactly c events of the 4-field shape."""
    payload = join_payload([encode_event("t", "k", {}, {})] * 3)
    for wrong in (2, 4, 2**32 - 1):
        with pytest.raises(CorruptionError) as info:
            decode_commit(payload, 1, wrong, 0, "segfile", 123)
        assert info.value.file == "segfile" and info.value.offset == 123
    bad_shapes = [
        msgpack.packb([["t", "k", {}]]),                 # 3 fields
        msgpack.packb([["t", "k", [], {}]]),             # data not a map
        msgpack.packb([[1, "k", {}, {}]]),               # type not str
        msgpack.packb([["t", b"k", {}, {}]], use_bin_type=True),  # key is bytes
        msgpack.packb({"t": 1}),                         # a map, not an array
        b"\xc1",                                         # never-used msgpack byte
        b"\xdd\xff\xff\xff\xff",                        # array32 of 2^32-1, nothing follows
        b"\xdb\xff\xff\xff\xff",                        # str32 claiming 4 GiB
    ]
    for payload in bad_shapes:
        with pytest.raises(CorruptionError):
            decode_commit(payload, 1, 1, 0, "segfile", 0)


def test_encode_event_refuses_what_msgpack_cannot_encode():
    """[F-12]/SPEC §5: encoding failures are ValidationError (a ValueError), not TypeError."""
    for data in ({"a": object()}, {"a": 2**70}, {"a": -(2**64)}, {"a": {1, 2}}):
        with pytest.raises(ValidationError):
            encode_event("t", "k", data, {})
        with pytest.raises(ValueError):
            encode_event("t", "k", data, {})


# -- frames and the scanner ------------------------------------------------------------------
def build_frames(commits, first_seq=1, prev=bytes(16)):
    """Chain-encode commits (lists of event tuples); return (bytes, [(seq, count, ts, payload, digest)])."""
    out, meta = [], []
    seq, digest = first_seq, prev
    for i, items in enumerate(commits):
        payload = join_payload([encode_event(*it) for it in items])
        ts = 1_700_000_000_000_000_000 + i
        frame, digest2 = encode_frame(seq, len(items), ts, payload, digest)
        assert digest2 == chain_digest(digest, frame[8:32], payload)  # [F-17]
        assert frame[32:48] == digest2
        out.append(frame)
        meta.append((seq, len(items), ts, payload, digest2))
        seq += len(items)
        digest = digest2
    return b"".join(out), meta


def drain(scanner):
    got = []
    while True:
        item = scanner.next()
        if item is None:
            return got
        got.append(item)
        if isinstance(item, Damage):
            return got


def check_frames(got, meta, base):
    assert all(isinstance(g, Frame) for g in got), got
    assert len(got) == len(meta)
    offset = base
    for frame, (seq, count, ts, payload, digest) in zip(got, meta):
        assert (frame.offset, frame.first_seq, frame.count, frame.ts) == (offset, seq, count, ts)
        assert frame.payload == payload and frame.digest == digest
        offset += frame.size


small_events = st.tuples(names, names, st.dictionaries(text, scalars, max_size=3), st.just({}))
commit_lists = st.lists(st.lists(small_events, min_size=1, max_size=4), min_size=1, max_size=6)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(commit_lists, st.data())
def test_scanner_fed_in_random_chunks(commits, data):
    """[F-08] the scanner finds the same frames however the bytes are chunked."""
    blob, meta = build_frames(commits)
    base = 40
    scanner = FrameScanner(base, 1, bytes(16))
    got, pos = [], 0
    while pos < len(blob):
        n = data.draw(st.integers(1, 64), label="chunk")
        scanner.feed(blob[pos:pos + n])
        pos += n
        got += drain(scanner)
    scanner.close()
    got += drain(scanner)
    check_frames(got, meta, base)
    assert scanner.position == base + len(blob)
    assert scanner.next() is None  # clean end


@settings(max_examples=20, deadline=None)
@given(commit_lists)
def test_scanner_fed_byte_by_byte(commits):
    """[F-08] a frame is handed out exactly when its last byte arrives, never before."""
    blob, meta = build_frames(commits)
    ends = []
    off = 0
    for seq, count, ts, payload, digest in meta:
        off += 48 + len(payload)
        ends.append(off)
    scanner = FrameScanner(0, 1, bytes(16))
    got = []
    for i in range(len(blob)):
        scanner.feed(blob[i:i + 1])
        new = drain(scanner)
        if i + 1 in ends:
            assert len(new) == 1, f"frame ending at {i + 1} not returned"
        else:
            assert new == []
        got += new
    scanner.close()
    assert scanner.next() is None
    check_frames(got, meta, 0)


@settings(max_examples=25, deadline=None)
@given(commit_lists, st.data())
def test_scanner_reports_a_cut_last_frame_as_short(commits, data):
    """[F-08]/[F-13] a frame missing bytes at the end of input is damage, not a frame."""
    blob, meta = build_frames(commits)
    last_start = len(blob) - (48 + len(meta[-1][3]))
    cut = data.draw(st.integers(last_start + 1, len(blob) - 1))
    scanner = FrameScanner(0, 1, bytes(16))
    scanner.feed(blob[:cut])
    scanner.close()
    got = drain(scanner)
    check_frames(got[:-1], meta[:-1], 0)
    assert isinstance(got[-1], Damage) and got[-1].offset == last_start
    assert scanner.position == last_start


def test_zero_filled_space_never_parses_as_a_frame():
    """[F-10] zeros after valid frames are damage (bad magic), never a frame."""
    blob, meta = build_frames([[("t", "k", {"a": 1}, {})]])
    for zeros in (1, 4, 47, 48, 4096):
        scanner = FrameScanner(0, 1, bytes(16))
        scanner.feed(blob + bytes(zeros))
        scanner.close()
        got = drain(scanner)
        check_frames(got[:1], meta, 0)
        assert isinstance(got[1], Damage), got
        frame, done = scanner.resync()
        assert frame is None and done


def test_scanner_rejects_wrong_seq_and_broken_chain():
    """[F-08] expected first seq and [F-17] chain digest are both checked."""
    blob, meta = build_frames([[("t", "k", {}, {})], [("t", "k", {}, {})]])
    scanner = FrameScanner(0, 2, bytes(16))  # expects seq 2 first
    scanner.feed(blob)
    scanner.close()
    got = drain(scanner)
    assert isinstance(got[0], Damage) and got[0].kind == "seq"
    scanner = FrameScanner(0, 1, b"\x01" * 16)  # wrong previous digest
    scanner.feed(blob)
    scanner.close()
    got = drain(scanner)
    assert isinstance(got[0], Damage) and got[0].kind == "chain"


def test_hostile_length_is_damage_without_waiting_or_allocating():
    """[F-09] a 4 GiB length is rejected from the header alone (no wait for bytes)."""
    blob, _ = build_frames([[("t", "k", {}, {})]])
    hostile = bytearray(blob)
    hostile[8:12] = (2**32 - 1).to_bytes(4, "little")
    scanner = FrameScanner(0, 1, bytes(16))  # stream not closed: must not wait for 4 GiB
    scanner.feed(bytes(hostile))
    item = scanner.next()
    assert isinstance(item, Damage) and item.kind == "length"
    hostile[8:12] = (200 << 20).to_bytes(4, "little")  # under the cap, past the known end
    scanner = FrameScanner(0, 1, bytes(16), end=len(hostile))
    scanner.feed(bytes(hostile))
    item = scanner.next()
    assert isinstance(item, Damage) and item.kind == "short"


def test_frame_bytes_rebuilds_what_was_scanned():
    """Salvage copies intact frames with `frame_bytes`: the bytes are the writer's, digest kept."""
    blob, meta = build_frames([[("t", "k", {"a": 1}, {})], [("t", "k", {}, {}), ("u", "j", {}, {})]],
                              prev=b"\x07" * 16)
    scanner = FrameScanner(0, 1, b"\x07" * 16)
    scanner.feed(blob)
    scanner.close()
    frames = drain(scanner)
    check_frames(frames, meta, 0)
    assert b"".join(frame_bytes(f) for f in frames) == blob


def test_check_frame_judges_one_frame_alone():
    """[F-08] magic, length, CRC and count, whatever its seq and chain."""
    blob, meta = build_frames([[("t", "k", {"a": 1}, {})]], first_seq=9, prev=b"\x01" * 16)
    frame = check_frame(blob, 100)
    assert isinstance(frame, Frame) and (frame.offset, frame.first_seq, frame.size) == (100, 9, len(blob))
    assert frame.digest == meta[0][4]
    assert check_frame(blob + b"more", 0).size == len(blob)  # the frame, not what follows it
    flipped = bytearray(blob)
    flipped[-1] ^= 1
    assert check_frame(bytes(flipped), 0).kind == "crc"
    assert check_frame(blob[:-1], 0).kind == "short"
    assert check_frame(bytes(len(blob)), 0).kind == "magic"
