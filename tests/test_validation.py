"""Bad input writes nothing (SPEC §5, docs/FORMAT.md [F-12]) and hostile
length fields on disk cost neither gigabytes nor hangs ([F-09], [F-13], [F-14]).
"""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
import zlib

import pytest

import eventstore
from eventstore import ValidationError
from eventstore.codec import encode_event, join_payload
from eventstore.frame import encode_frame

HEADER, FRAME_HEADER = 40, 48


def disk_state(root):
    out = {}
    for dirpath, dirnames, names in os.walk(root):
        out[dirpath] = sorted(n for n in dirnames + names if n != "LOCK")
        for n in names:
            if n != "LOCK":
                with open(os.path.join(dirpath, n), "rb") as f:
                    out[os.path.join(dirpath, n)] = f.read()
    return out


BAD_KEYS = [123, None, b"bytes", "", "a\x00b", "x" * 4097, "é" * 2049, "\ud800", "ok\udfffok"]
BAD_TYPES = [5, None, "", "t\x00", "\udfff"]
BAD_DATA = [
    {"a": object()}, {"a": {1, 2}}, {"a": 2**70}, {"a": -(2**63) - 1}, {1: "int key"},
    {"a": {2: "nested int key"}}, {"a": "\ud800"}, {"\ud800": 1}, {"a": ["ok", "\udc00"]},
    [1, 2], "a string", {"a": bytearray(b"x")}, {"a": 1j},
]


def _nested(depth):
    d = {}
    for _ in range(depth):
        d = {"d": d}
    return d


@pytest.fixture
def store(store_dir):
    s = eventstore.open(store_dir, max_event_bytes=4096, durability="flush")
    s.append("seed", "k", {"v": 1})
    yield s
    s.close()


def assert_nothing_written(store, before, last_seq):
    assert disk_state(store.root) == before
    assert store.last_seq == last_seq


def attempts(store, type_, key, data, meta=None):
    """Every way of writing the bad item; each must raise ValidationError."""
    good = ("ok", "good-key", {"fine": True})
    yield lambda: store.append(type_, key, data, meta=meta)
    yield lambda: store.append_many([good, (type_, key, data, meta), good])
    yield lambda: store.append_many([good, good, (type_, key, data, meta)])

    def tx():
        with store.transaction() as t:
            t.append(*good)
            t.append(type_, key, data, meta=meta)
    yield tx


@pytest.mark.parametrize("case", [("key", k) for k in BAD_KEYS] + [("type", t) for t in BAD_TYPES]
                         + [("data", d) for d in BAD_DATA] + [("meta", d) for d in BAD_DATA]
                         + [("data", _nested(100))], ids=repr)
def test_bad_input_raises_and_writes_nothing(store, case):
    """SPEC §5: a bad key/type/value raises ValidationError (a ValueError) before a byte is
    written, and a bad item aborts its whole batch."""
    what, bad = case
    item = {"type": "t", "key": "k", "data": {"x": 1}, "meta": None}
    item[what] = bad
    before, last = disk_state(store.root), store.last_seq
    versions = (store.version("k"), store.version("good-key"))
    for attempt in attempts(store, item["type"], item["key"], item["data"], item["meta"]):
        with pytest.raises(ValidationError) as info:
            attempt()
        assert isinstance(info.value, ValueError)
        assert_nothing_written(store, before, last)
    assert (store.version("k"), store.version("good-key")) == versions
    # the store is not broken: the next good append gets the next seq
    assert store.append("t", "k", {"after": True}).seq == last + 1


def test_key_limit_is_inclusive(store_dir):
    """A key of exactly 4096 UTF-8 bytes is accepted (and read back)."""
    with eventstore.open(store_dir) as s:
        assert s.append("t", "x" * 4096).key == "x" * 4096
        assert s.append("t", "é" * 2048).key == "é" * 2048
        assert [e.key for e in s.read()] == ["x" * 4096, "é" * 2048]


def test_event_limit_is_inclusive(store):
    """An event of exactly max_event_bytes is accepted; one more byte is refused ([F-12])."""
    base = len(encode_event("t", "k", {"p": ""}, {}))
    # str headers grow at 32 and 256 bytes; find a pad whose event is exactly 4096 bytes
    pad = next(n for n in range(4096) if len(encode_event("t", "k", {"p": "x" * n}, {})) == 4096)
    assert base < 4096
    ok = store.append("t", "k", {"p": "x" * pad})
    assert len(encode_event("t", "k", {"p": "x" * pad}, {})) == 4096 and ok.data["p"] == "x" * pad
    before, last = disk_state(store.root), store.last_seq
    with pytest.raises(ValidationError, match="max_event_bytes"):
        store.append("t", "k", {"p": "x" * (pad + 1)})
    with pytest.raises(ValidationError):
        store.append_many([("t", "k", {})] * 5 + [("t", "k", {"p": "x" * (pad + 1)})])
    with pytest.raises(ValidationError):
        store.append("t", "k", {}, meta={"p": "x" * 5000})
    assert_nothing_written(store, before, last)


def test_default_max_event_bytes_is_one_mib(store_dir):
    with eventstore.open(store_dir) as s:
        with pytest.raises(ValidationError):
            s.append("t", "k", {"p": b"\x00" * (1 << 20)})
        assert s.last_seq == 0
        s.append("t", "k", {"p": b"\x00" * ((1 << 20) - 100)})  # just under: fine
        assert s.last_seq == 1


@pytest.mark.parametrize("bad", [["t", "k"], ("t",), ("t", "k", {}, {}, {}), {"type": "t"}, "tkd", None])
def test_bad_append_many_item_shapes(store, bad):
    before, last = disk_state(store.root), store.last_seq
    with pytest.raises(ValidationError):
        store.append_many([("t", "k", {}), bad])
    assert_nothing_written(store, before, last)


@pytest.mark.parametrize("bad", ["1", -1, True, 1.0])
def test_bad_expected_version(store, bad):
    before, last = disk_state(store.root), store.last_seq
    with pytest.raises(ValidationError):
        store.append("t", "k", {}, expected_version=bad)
    assert_nothing_written(store, before, last)


def test_exception_inside_transaction_writes_nothing(store):
    before, last = disk_state(store.root), store.last_seq
    with pytest.raises(RuntimeError, match="boom"):
        with store.transaction() as tx:
            for i in range(10):
                tx.append("t", f"k{i}", {"i": i})
            raise RuntimeError("boom")
    assert_nothing_written(store, before, last)
    assert store.version("k0") == 0
    with store.transaction() as tx:
        tx.append("t", "k0", {"i": 0})
    assert tx.events[0].seq == last + 1


def test_bad_read_arguments(store):
    for kwargs in ({"start": -1}, {"start": "1"}, {"stop": 1.5}, {"key": ""}, {"key": 5}):
        with pytest.raises(ValidationError):
            list(store.read(**kwargs))


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
