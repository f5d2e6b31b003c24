"""Hostile files: CorruptionError or a clear FormatVersionError, in bounded memory and time.

SPEC §5, §7.4, [F-06], [F-09], [F-19], [F-21]. Every case runs the store in a
fresh Python process and measures that process's peak RSS growth
(`ru_maxrss`) around the operation, so an allocation driven by a hostile
length or a zstd bomb cannot hide behind the test runner's own peak.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zlib

import pytest

import eventstore
from eventstore.local import snapshot as snap_mod
from eventstore.fs import DEFAULT_FS
from eventstore.codec import pack
from eventstore.errors import CorruptionError, FormatVersionError
from eventstore.local.frame import encode_frame
from eventstore.local.layout import (
    MARKER_SIZE, SEGMENT_HEADER_SIZE, SNAPSHOT_HEADER_SIZE, ZERO_DIGEST, ZSEGMENT_HEADER_SIZE,
)
from eventstore.local.segment import encode_header

from _verbs import (  # noqa: F401 - fast_tmp is a fixture
    KV, build_snapshot, build_zseg, fast_tmp, frames_of, nested_msgpack, read_snapshot_header,
    seg_files, set_u16, snap_files, zstd_stream,
)

GiB = 1 << 30
RSS_LIMIT_MB = 300
TIME_LIMIT = 20.0

_RUNNER = textwrap.dedent('''
    import json, resource, sys, time
    sys.path[:0] = {paths!r}
    import eventstore
    from eventstore.local import snapshot as snap_mod
    from eventstore.fs import DEFAULT_FS
    action, target = sys.argv[1], sys.argv[2]
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.monotonic()
    out = {{}}
    try:
        if action == "read_snapshot":
            snap_mod.read_snapshot(DEFAULT_FS, target)
            out["result"] = "decoded"
        elif action == "verify":
            with eventstore.open(target, readonly=True, recovery="salvage") as s:
                r = s.verify()
                out["problems"] = [[p.file, p.offset, p.reason] for p in r.problems]
        elif action == "read":
            with eventstore.open(target, readonly=True) as s:
                out["events"] = len(list(s.read()))
        else:
            with eventstore.open(target, recovery=action) as s:
                out["report"] = [[e.action, e.file, e.offset, e.reason, e.lost] for e in s.recovery_report]
                out["last_seq"] = s.last_seq
                out["events"] = [e.seq for e in s.read()]
    except eventstore.CorruptionError as exc:
        out.update(error=type(exc).__name__, file=exc.file, offset=exc.offset, reason=exc.reason)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out["growth_mb"] = (peak - base) / 1024
    out["peak_mb"] = peak / 1024
    out["seconds"] = time.monotonic() - t0
    print(json.dumps(out))
''')


def isolated(action: str, target: str) -> dict:
    """Run ``action`` on ``target`` in a fresh interpreter; its result, peak growth and time."""
    here = os.path.dirname(os.path.abspath(__file__))
    paths = [os.path.dirname(here), here]
    code = _RUNNER.format(paths=paths)
    proc = subprocess.run([sys.executable, "-c", code, action, target], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["growth_mb"] < RSS_LIMIT_MB, out
    assert out["seconds"] < TIME_LIMIT, out
    return out


def empty_store(root: str) -> None:
    eventstore.open(root, fs=DEFAULT_FS).close()


def store_with_zseg(root: str, zbody: bytes, plain_size: int, last: int = 5) -> str:
    """A store whose first segment is a hostile .zseg holding seqs 1..``last``; the active
    segment after it is empty. Returns the .zseg path."""
    empty_store(root)
    segdir = os.path.join(root, "segments")
    for n in os.listdir(segdir):
        os.unlink(os.path.join(segdir, n))
    zpath = os.path.join(segdir, f"{1:020d}.zseg")
    with open(zpath, "wb") as f:
        f.write(build_zseg(1, last, plain_size, ZERO_DIGEST, zbody))
    with open(os.path.join(segdir, f"{last + 1:020d}.seg"), "wb") as f:
        f.write(encode_header(last + 1, ZERO_DIGEST))
    return zpath


def zero_bomb(size: int, declare: bool) -> bytes:
    """A valid segment header, then zeros, ``size`` bytes in all, as one zstd frame."""
    def chunks():
        yield encode_header(1, ZERO_DIGEST)
        left = size - SEGMENT_HEADER_SIZE
        block = bytes(1 << 20)
        while left > 0:
            yield block[:left]
            left -= len(block)
    return zstd_stream(chunks(), size=size if declare else None)


# -- zstd bombs in a .zseg ------------------------------------------------------------------
@pytest.mark.parametrize("declare", [True, False], ids=["declared-size", "undeclared-size"])
def test_zseg_bomb_strict(fast_tmp, declare) -> None:
    """1 GiB of zeros behind a valid header in a 32 KiB file: strict stops at the first frame."""
    root = str(fast_tmp / "s")
    zbody = zero_bomb(GiB, declare)
    assert len(zbody) < 100_000
    zpath = store_with_zseg(root, zbody, GiB)
    out = isolated("strict", root)
    assert (out["error"], out["file"], out["offset"]) == ("CorruptionError", zpath, SEGMENT_HEADER_SIZE)


def test_zseg_bomb_salvage(fast_tmp) -> None:
    """Salvage searches all 512 MiB of zeros for a frame, in bounded memory and time, and
    reports the seqs the .zseg claimed as lost."""
    root = str(fast_tmp / "s")
    zpath = store_with_zseg(root, zero_bomb(GiB // 2, declare=False), GiB // 2)
    out = isolated("salvage", root)
    assert "error" not in out, out
    assert out["last_seq"] == 5 and out["events"] == []
    assert [r[4] for r in out["report"] if r[4]] == [[1, 5]]
    assert not os.path.exists(zpath)  # rewritten as a plain segment holding one gap frame
    assert os.listdir(os.path.join(root, "quarantine"))


def test_zseg_that_inflates_past_its_declared_plain_size(fast_tmp) -> None:
    """The header says 4 KiB; the stream holds 1 GiB. The header's length is the limit."""
    root = str(fast_tmp / "s")
    zpath = store_with_zseg(root, zero_bomb(GiB, declare=True), 4096)
    out = isolated("strict", root)
    assert out["error"] == "CorruptionError" and out["file"] == zpath
    out = isolated("verify", root)
    assert any(p[0] == zpath and "past" in p[2] for p in out["problems"]), out


def test_zseg_with_trailing_junk_after_the_zstd_frame(fast_tmp) -> None:
    """[F-19]: any byte after the zstd frame is corruption, at its offset."""
    root = str(fast_tmp / "s")
    with eventstore.open(root, [KV()], segment_bytes=4096, snapshot_every=0) as s:
        for i in range(60):
            s.append("set", f"k{i % 3}", {"i": i})
        s.compact()
    for p in snap_files(root):
        os.unlink(p)
    zpath = seg_files(root, ".zseg")[0]
    size = os.path.getsize(zpath)
    with open(zpath, "ab") as f:
        f.write(b"\x28\xb5\x2f\xfd junk that looks like another zstd frame")
    out = isolated("strict", root)
    assert (out["error"], out["file"], out["offset"]) == ("CorruptionError", zpath, size)
    assert "trailing" in out["reason"]


def test_zseg_lengths_near_2_pow_32(fast_tmp) -> None:
    """A frame length of 2^32-1 inside a .zseg whose header claims 4 GiB of plain bytes."""
    root = str(fast_tmp / "s")
    frame = bytearray(encode_frame(1, 1, 0, pack([["t", "k", {}, {}]]), ZERO_DIGEST)[0])
    frame[8:12] = (2**32 - 1).to_bytes(4, "little")
    plain = encode_header(1, ZERO_DIGEST) + bytes(frame)
    zpath = store_with_zseg(root, zstd_stream([plain]), 4 * GiB, last=1)
    out = isolated("strict", root)
    assert (out["error"], out["file"], out["offset"]) == ("CorruptionError", zpath, SEGMENT_HEADER_SIZE)
    assert "out of bounds" in out["reason"]


# -- snapshots --------------------------------------------------------------------------------
def _store_with_snapshot(root: str) -> tuple[str, tuple]:
    with eventstore.open(root, [KV()], snapshot_every=0) as s:
        for i in range(10):
            s.append("set", f"k{i % 3}", {"i": i})
        s.snapshot()
        s.append("set", "tail", {})
    (path,) = snap_files(root)
    return path, read_snapshot_header(path)


def _replace_snapshot(path: str, head: tuple, zbody: bytes, body_len: int) -> None:
    _, _, _, seq, ts, seg_first, offset, digest, *_ = head
    with open(path, "wb") as f:
        f.write(build_snapshot(seq, ts, seg_first, offset, digest, zbody, body_len))


def _zeros_stream(size: int, declare: bool) -> bytes:
    def chunks():
        left, block = size, bytes(1 << 20)
        while left > 0:
            yield block[:left]
            left -= len(block)
    return zstd_stream(chunks(), size=size if declare else None)


@pytest.mark.parametrize("declare", [True, False], ids=["declared-size", "undeclared-size"])
@pytest.mark.parametrize("claimed", ["GiB", "small"])
def test_snapshot_bomb(fast_tmp, declare, claimed) -> None:
    """A 1 GiB zstd bomb as a snapshot body, its header claiming 1 GiB (refused: a 32 KiB
    file may not claim that much) or 1 KiB (decompression stops past 1 KiB). The open
    skips it with a report and replays the log."""
    root = str(fast_tmp / "s")
    path, head = _store_with_snapshot(root)
    body_len = GiB if claimed == "GiB" else 1024
    _replace_snapshot(path, head, _zeros_stream(GiB, declare), body_len)
    out = isolated("read_snapshot", path)
    assert (out["error"], out["file"]) == ("CorruptionError", path)
    out = isolated("strict", root)
    assert "error" not in out, out
    assert [r[:2] for r in out["report"]] == [["skipped-snapshot", path]]
    assert out["last_seq"] == 11 and out["events"] == list(range(1, 12))


def test_snapshot_with_trailing_junk_after_its_zstd_frame(fast_tmp) -> None:
    root = str(fast_tmp / "s")
    path, head = _store_with_snapshot(root)
    data = open(path, "rb").read()
    body = data[SNAPSHOT_HEADER_SIZE:] + b"junk"
    _replace_snapshot(path, head, body, head[8])  # body CRC re-signed over the junk too
    with pytest.raises(CorruptionError) as info:
        snap_mod.read_snapshot(DEFAULT_FS, path)
    assert info.value.file == path and "trailing" in info.value.reason
    assert info.value.offset == len(data)


@pytest.mark.parametrize("where", ["body", "state", "versions"])
def test_snapshot_msgpack_nested_100k_deep(fast_tmp, where) -> None:
    root = str(fast_tmp / "s")
    path, head = _store_with_snapshot(root)
    deep = nested_msgpack(100_000)
    if where == "body":
        body = deep
    elif where == "state":
        body = pack({"versions": pack({"k0": 1}), "projections": [["kv", 1, deep]]})
    else:
        body = pack({"versions": deep, "projections": []})
    _replace_snapshot(path, head, zstd_stream([body]), len(body))
    out = isolated("read_snapshot", path)
    assert (out["error"], out["file"]) == ("CorruptionError", path)
    assert "does not decode" in out["reason"]
    out = isolated("strict", root)
    assert [r[:2] for r in out["report"]] == [["skipped-snapshot", path]]
    assert out["events"] == list(range(1, 12))


def test_snapshot_lengths_near_2_pow_32(fast_tmp) -> None:
    root = str(fast_tmp / "s")
    path, head = _store_with_snapshot(root)
    body = b"\xdd\xff\xff\xff\xff"  # an array header claiming 2^32-1 elements
    _replace_snapshot(path, head, zstd_stream([body]), len(body))
    with pytest.raises(CorruptionError):
        snap_mod.read_snapshot(DEFAULT_FS, path)
    _replace_snapshot(path, head, zstd_stream([b"\x80"]), 2**32 - 1)
    out = isolated("read_snapshot", path)
    assert out["error"] == "CorruptionError" and "exceeds" in out["reason"]


# -- frame payloads ------------------------------------------------------------------------------
def _append_raw_frame(root: str, payload: bytes, count: int = 1) -> tuple[str, int]:
    """Append a frame with a valid CRC and chain digest but a hostile payload."""
    path = seg_files(root, ".seg")[-1]
    frames = frames_of(path)
    data = open(path, "rb").read()
    last = frames[-1]
    prev = data[last.offset + 32:last.offset + 48]
    frame, _ = encode_frame(last.last_seq + 1, count, 1, payload, prev)
    with open(path, "ab") as f:
        f.write(frame)
    return path, len(data)


@pytest.mark.parametrize("payload", ["nested-100k", "array-2^32", "str-2^32", "wrong-shape"])
def test_hostile_payload_with_valid_crc_and_chain(fast_tmp, payload) -> None:
    """[F-08], [F-09]: a signed frame whose payload does not decode to its events."""
    root = str(fast_tmp / "s")
    with eventstore.open(root, [KV()], snapshot_every=0) as s:
        for i in range(5):
            s.append("set", "k", {"i": i})
    body = {
        "nested-100k": b"\x91" + nested_msgpack(100_000),
        "array-2^32": b"\xdd\xff\xff\xff\xff\x00",
        "str-2^32": b"\x91\x94\xdb\xff\xff\xff\xffabc",
        "wrong-shape": pack([["t", 5, {}, {}]]),
    }[payload]
    path, offset = _append_raw_frame(root, body)
    out = isolated("strict", root)
    assert (out["error"], out["file"], out["offset"]) == ("CorruptionError", path, offset)
    out = isolated("read", root)
    assert out.get("error") == "CorruptionError" and out["offset"] == offset
    kv = KV()
    with eventstore.open(root, [kv], recovery="salvage") as s:
        assert s.recovery_report.lost_ranges == [(6, 6)]
        assert [e.seq for e in s.read()] == [1, 2, 3, 4, 5]
        assert kv.count == 5
        e = s.append("set", "k", {"after": 1})
        assert e.seq == 7
    with eventstore.open(root, [KV()]) as s:
        assert s.verify().ok


# -- format versions from the future ---------------------------------------------------------------
def test_future_marker_version(fast_tmp) -> None:
    root = str(fast_tmp / "s")
    empty_store(root)
    set_u16(os.path.join(root, "METALOG"), 8, 2, MARKER_SIZE)
    for recovery in ("strict", "salvage"):
        with pytest.raises(FormatVersionError) as info:
            eventstore.open(root, recovery=recovery)
        assert (info.value.found, info.value.supported) == (2, 1)
        assert "version 2" in str(info.value) and "version 1" in str(info.value)


@pytest.mark.parametrize("kind", ["seg", "zseg-header", "seg-inside-zseg"])
def test_future_segment_version_is_never_repaired(fast_tmp, kind) -> None:
    """[F-06]: a newer version is a clear error, in salvage too, and the file is untouched."""
    root = str(fast_tmp / "s")
    with eventstore.open(root, [KV()], segment_bytes=4096, snapshot_every=0) as s:
        for i in range(60):
            s.append("set", f"k{i % 3}", {"i": i})
        if kind != "seg":
            s.compact()
    for p in snap_files(root):
        os.unlink(p)
    if kind == "seg":
        path = seg_files(root, ".seg")[0]
        set_u16(path, 4, 7, SEGMENT_HEADER_SIZE)
    elif kind == "zseg-header":
        path = seg_files(root, ".zseg")[0]
        set_u16(path, 4, 7, ZSEGMENT_HEADER_SIZE)
    else:
        import zstandard
        path = seg_files(root, ".zseg")[0]
        raw = open(path, "rb").read()
        plain = bytearray(zstandard.ZstdDecompressor().decompress(raw[ZSEGMENT_HEADER_SIZE:]))
        plain[4:6] = (7).to_bytes(2, "little")
        plain[36:40] = zlib.crc32(bytes(plain[:36])).to_bytes(4, "little")
        open(path, "wb").write(raw[:ZSEGMENT_HEADER_SIZE] + zstd_stream([bytes(plain)]))
    before = open(path, "rb").read()
    for recovery in ("strict", "salvage"):
        with pytest.raises(FormatVersionError) as info:
            eventstore.open(root, [KV()], recovery=recovery)
        assert (info.value.file, info.value.found, info.value.supported) == (path, 7, 1)
    assert open(path, "rb").read() == before
    assert not os.path.exists(os.path.join(root, "quarantine")) or not os.listdir(os.path.join(root, "quarantine"))
