"""verify(): checksums, seq continuity, the digest chain, snapshots, .zseg ([F-17], [F-18], SPEC §4.6).

The hard cases re-sign every frame they touch (`resign` recomputes the CRC), so
only the digest chain can tell: a removed commit (later seqs renumbered), two
commits swapped (seqs swapped back), a commit edited in place.
"""
from __future__ import annotations

import os
import struct

import pytest

import eventstore
from eventstore.errors import CorruptionError
from eventstore.local.layout import SEGMENT_HEADER_SIZE, ZSEGMENT_HEADER_SIZE

from _verbs import (  # noqa: F401 - fast_tmp is a fixture
    FAST, KV, build_zseg, fast_tmp, flip, frames_of, read_zseg_header, resign, resign_header,
    seg_files, snap_files, write_at, zstd_stream,
)


def make(root: str, n: int = 12, **kw) -> list:
    with eventstore.open(root, [KV()], snapshot_every=0, fs=FAST, **kw) as s:
        for i in range(n):
            s.append("set", f"k{i % 3}", {"title": f"title {i:03d}"})
        return list(s.read())


def set_first_seq(path: str, frame_offset: int, seq: int) -> None:
    write_at(path, frame_offset + 16, struct.pack("<Q", seq))
    resign(path, frame_offset)


def remove_commit(path: str, k: int) -> None:
    """Cut frame ``k`` out and renumber the frames after it, re-signing each."""
    frames = frames_of(path)
    victim = frames[k]
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[:victim.offset] + data[victim.offset + victim.size:])
    for f_ in frames_of(path)[k:]:
        set_first_seq(path, f_.offset, f_.first_seq - victim.count)


def swap_commits(path: str, k: int) -> None:
    """Swap frames ``k`` and ``k+1`` (one event each) and give them back their seqs."""
    frames = frames_of(path)
    a, b = frames[k], frames[k + 1]
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[:a.offset] + data[b.offset:b.offset + b.size] + data[a.offset:a.offset + a.size]
                + data[b.offset + b.size:])
    set_first_seq(path, a.offset, a.first_seq)
    set_first_seq(path, a.offset + b.size, b.first_seq)


def edit_commit(path: str, k: int) -> None:
    """Change one character of frame ``k``'s payload ("title 00x" -> "title 10x")."""
    f_ = frames_of(path)[k]
    data = open(path, "rb").read()
    i = data.index(b"title 0", f_.offset, f_.offset + f_.size)
    write_at(path, i + 6, b"1")
    resign(path, f_.offset)


TAMPER = {"removed": remove_commit, "reordered": swap_commits, "edited": edit_commit}


@pytest.mark.parametrize("how", sorted(TAMPER))
def test_tampered_commit_with_recomputed_crc_breaks_the_chain(fast_tmp, how) -> None:
    """[F-18]: every frame still passes its CRC; the chain names the first bad one."""
    root = str(fast_tmp / "s")
    make(root)
    path = seg_files(root)[0]
    k = 4
    TAMPER[how](path, k)
    expected_offset = frames_of(path)[k].offset
    with eventstore.open(root, [KV()], readonly=True, recovery="salvage") as r:
        report = r.verify()
    assert not report.ok
    first = report.problems[0]
    assert (first.file, first.offset) == (path, expected_offset), str(report)
    assert "chain" in first.reason
    # A strict open checks CRCs and seqs but trusts stored digests ([F-18]): it opens,
    # and its own verify still names the tampered commit. A removed commit leaves the log
    # one commit shorter than the end-of-log record of its clean close: that open refuses ([F-29]).
    if how == "removed":
        with pytest.raises(CorruptionError) as info:
            eventstore.open(root, [KV()], fs=FAST)
        assert info.value.file == os.path.join(root, "END") and "12" in info.value.reason
        return
    with eventstore.open(root, [KV()], fs=FAST) as s:
        again = s.verify()
    assert (again.problems[0].file, again.problems[0].offset) == (path, expected_offset)


def test_chain_is_checked_across_segments(fast_tmp) -> None:
    """A segment header whose stored digest does not continue the previous segment."""
    root = str(fast_tmp / "s")
    make(root, n=120, segment_bytes=4096)
    second = seg_files(root)[1]
    flip(second, 20)  # inside the prev-digest field
    resign_header(second, SEGMENT_HEADER_SIZE)
    with eventstore.open(root, readonly=True, recovery="salvage") as r:
        report = r.verify()
    assert [(p.file, p.offset) for p in report.problems][:1] == [(second, 0)]


def test_edit_inside_a_zseg_is_found_through_compression(fast_tmp) -> None:
    """Decompress a .zseg, edit a commit, re-sign it, recompress with a valid header: the
    chain still catches it ([F-17] runs across compression)."""
    import zstandard
    root = str(fast_tmp / "s")
    with eventstore.open(root, [KV()], snapshot_every=0, segment_bytes=4096, fs=FAST) as s:
        for i in range(120):
            s.append("set", f"k{i % 3}", {"title": f"title {i:03d}"})
        s.compact()
    zseg = seg_files(root, ".zseg")[1]
    head = read_zseg_header(zseg)
    plain = zstandard.ZstdDecompressor().decompress(open(zseg, "rb").read()[ZSEGMENT_HEADER_SIZE:])
    tmp = str(fast_tmp / "plain.seg")
    open(tmp, "wb").write(plain)
    edit_commit(tmp, 2)
    offset = frames_of(tmp)[2].offset
    edited = open(tmp, "rb").read()
    open(zseg, "wb").write(build_zseg(head[3], head[4], head[5], head[6], zstd_stream([edited])))
    with eventstore.open(root, [KV()], fs=FAST) as s:  # a snapshot spares the open
        report = s.verify()
        assert [(p.file, p.offset) for p in report.problems][:1] == [(zseg, offset)]


def test_damaged_snapshot_and_zseg_are_reported_with_file_and_offset(fast_tmp) -> None:
    root = str(fast_tmp / "s")
    with eventstore.open(root, [KV()], snapshot_every=0, segment_bytes=4096, fs=FAST) as s:
        for i in range(120):
            s.append("set", f"k{i % 3}", {"title": f"title {i:03d}"})
        s.compact()
        s.append("set", "k", {})
        s.snapshot()
    older, newest = snap_files(root)
    flip(newest, os.path.getsize(newest) - 3)
    zseg = seg_files(root, ".zseg")[0]
    open(zseg, "ab").write(b"trailing junk")
    with eventstore.open(root, [KV()], fs=FAST) as s:
        report = s.verify()
    problems = {p.file: p for p in report.problems}
    assert set(problems) == {newest, zseg}
    assert problems[newest].offset is not None and "checksum" in problems[newest].reason
    assert problems[zseg].offset == os.path.getsize(zseg) - len(b"trailing junk")
    assert "junk" in problems[zseg].reason


@pytest.mark.parametrize("damage", ["a flipped byte", "cut short"])
def test_damaged_zseg_under_a_snapshot_is_damage_not_a_snapshot_problem(fast_tmp, damage) -> None:
    """[F-27]: a damaged `.zseg` whose last commits are the seq a snapshot was taken at loses
    those commits to the lenient read. ``verify`` reports the zstd damage and the seqs lost,
    and not the snapshot as "not on a commit": the snapshot is sound, the log is damaged."""
    root = str(fast_tmp / "s")
    with eventstore.open(root, [KV()], snapshot_every=0, segment_bytes=4096, fs=FAST) as s:
        for i in range(60):
            s.append("set", f"k{i % 3}", {"title": f"title {i:03d}", "pad": "x" * 300})
        at = s.compact()["snapshot_seq"]
        for i in range(5):
            s.append("set", f"k{i % 3}", {"title": f"after {i}"})
        s.snapshot()
    zseg = seg_files(root, ".zseg")[-1]
    if damage == "a flipped byte":
        flip(zseg, os.path.getsize(zseg) // 2)
    else:
        os.truncate(zseg, os.path.getsize(zseg) - 20)
    with eventstore.open(root, [KV()], readonly=True, recovery="salvage", fs=FAST) as s:
        report = s.verify()
    assert not report.ok
    assert [p.file for p in report.problems if "snap" in os.path.basename(p.file)] == [], str(report)
    assert report.problems[0].file == zseg, str(report)
    assert any(p.lost is not None and p.lost[0] <= at <= p.lost[1] for p in report.problems), str(report)


def test_verify_never_writes(fast_tmp) -> None:
    root = str(fast_tmp / "s")
    make(root, n=20)
    path = seg_files(root)[0]
    edit_commit(path, 3)

    def tree():
        out = {}
        for d, _, names in os.walk(root):
            for n in names:
                p = os.path.join(d, n)
                if n != "LOCK":
                    out[p] = open(p, "rb").read()
        return out

    before = tree()
    with eventstore.open(root, readonly=True, recovery="salvage") as r:
        assert not r.verify().ok
    assert tree() == before


def test_verify_reports_a_torn_tail_seen_by_a_reader(fast_tmp) -> None:
    """A reader cannot tell a torn tail from a commit being written: it is reported, with
    the byte count, and not repaired."""
    root = str(fast_tmp / "s")
    make(root, n=5)
    path = seg_files(root)[0]
    open(path, "ab").write(b"MLFR" + bytes(10))
    with eventstore.open(root, readonly=True, recovery="salvage") as r:
        report = r.verify()
    (p,) = report.problems
    assert (p.file, p.nbytes) == (path, 14) and "torn" in p.reason
    assert report.events == 5


def forge_snapshot(path: str, versions: dict[str, int] | None = None, digest: bytes | None = None) -> None:
    """Rewrite the snapshot at ``path``, correctly signed, with some key versions or its
    chain digest changed."""
    from eventstore.local import snapshot as snap_mod
    from eventstore.codec import pack
    from eventstore.keytable import encode_table
    snap = snap_mod.read_snapshot(FAST, path)
    forged = dict(snap.versions.to_dict(), **(versions or {}))
    states = [(name, ver, pack(state)) for name, (ver, state) in snap.states.items()]
    data = snap_mod.encode_snapshot(snap.seq, snap.ts, (snap.seg_first, snap.offset),
                                    snap.digest if digest is None else digest, encode_table(forged), states)
    open(path, "wb").write(data)


def test_snapshot_whose_key_versions_disagree_with_the_log(fast_tmp) -> None:
    """A well-formed, correctly signed snapshot at the right position whose key versions
    are not the log's: verify names it (the open would trust it)."""
    root = str(fast_tmp / "s")
    make(root, n=9)
    with eventstore.open(root, [KV()], fs=FAST) as s:
        s.snapshot()
    (path,) = snap_files(root)
    forge_snapshot(path, {"k0": 99})
    with eventstore.open(root, [KV()], fs=FAST) as s:
        assert s.version("k0") == 99  # trusted on open: only verify can tell
        report = s.verify()
    assert [(p.file, p.offset) for p in report.problems] == [(path, 72)]
    assert "key versions" in report.problems[0].reason


def lose_a_commit_before_a_snapshot(root: str) -> str:
    """120 commits over 3 keys in 4 KiB segments, a snapshot at seq 120, then a flipped
    payload byte in seq 3 (key k2), which a salvage open loses. Returns the snapshot."""
    make(root, n=120, segment_bytes=4096)
    with eventstore.open(root, [KV()], fs=FAST) as s:
        s.snapshot()
    first = seg_files(root)[0]
    victim = frames_of(first)[2]
    assert victim.first_seq == 3 and len(seg_files(root)) > 1
    flip(first, victim.offset + victim.size - 1)
    with eventstore.open(root, [KV()], fs=FAST, recovery="salvage") as s:
        assert s.recovery_report.lost_ranges == [(3, 3)]
    (path,) = snap_files(root)
    return path


def test_snapshot_after_events_lost_to_salvage_verifies(fast_tmp) -> None:
    """[F-26]: salvage keeps a snapshot taken after the lost seqs, and it still counts
    their events; verify cannot tell which keys they changed, so it accepts up to that
    many extra events, and nothing else."""
    root = str(fast_tmp / "s")
    lose_a_commit_before_a_snapshot(root)
    with eventstore.open(root, [KV()], fs=FAST) as s:
        assert [s.version(k) for k in ("k0", "k1", "k2")] == [40, 40, 40]  # the snapshot's count
        report = s.verify()
        assert report.ok and report.lost == [(3, 3)]
        assert "1 event lost to an earlier salvage (seqs 3)" in str(report)
    from pathlib import Path

    from test_cli_helpers import ok, run_json
    assert run_json("verify", store=Path(root))["lost"] == [[3, 3]]
    assert "note: 1 event lost to an earlier salvage (seqs 3)" in ok("verify", store=Path(root))
    with eventstore.open(root, [KV()], fs=FAST) as s:
        s.append("set", "k0", {"title": "after"})
        s.snapshot()    # counts the lost event too (restored from the old snapshot)
        assert len(snap_files(root)) == 2 and s.verify().ok
    for name in snap_files(root):   # without snapshots the replay does not count it...
        os.remove(name)
    with eventstore.open(root, [KV()], fs=FAST) as s:
        assert [s.version(k) for k in ("k0", "k1", "k2")] == [41, 40, 39]
        s.snapshot()    # ...and neither does a snapshot taken now
        assert s.verify().ok


@pytest.mark.parametrize("changes, reason", [
    ({"k0": 41}, "count 2 more events (1 lost to salvage) than"),   # k2 +1 and k0 +1: one too many
    ({"k2": 39, "k1": 41}, None),  # k1 gains the lost event instead of k2: cannot tell, allowed
    ({"k1": 39}, "count fewer events than"),
    ({"k9": 1}, "count 2 more events (1 lost to salvage) than"),
])
def test_snapshot_versions_after_a_salvage_are_still_checked(fast_tmp, changes, reason) -> None:
    root = str(fast_tmp / "s")
    path = lose_a_commit_before_a_snapshot(root)
    forge_snapshot(path, changes)
    with eventstore.open(root, [KV()], fs=FAST) as s:
        report = s.verify()
    if reason is None:
        assert report.ok
        return
    assert [(p.file, p.offset) for p in report.problems] == [(path, 72)]
    assert report.problems[0].reason == f"snapshot key versions {reason} a replay to seq 120"


def test_a_bad_snapshot_does_not_hide_the_next_ones_versions(fast_tmp) -> None:
    """A snapshot problem found during the walk is not damage of the log: the key versions
    of the snapshots after it are still compared."""
    root = str(fast_tmp / "s")
    make(root, n=9)
    with eventstore.open(root, [KV()], fs=FAST) as s:
        s.snapshot()
        for i in range(3):
            s.append("set", f"k{i}", {"title": "more"})
        s.snapshot()
    first, second = sorted(snap_files(root))
    forge_snapshot(first, digest=bytes(16))
    forge_snapshot(second, {"k0": 99})
    with eventstore.open(root, [KV()], readonly=True, fs=FAST) as s:
        report = s.verify()
    assert [(p.file, p.offset) for p in report.problems] == [(first, 40), (second, 72)]
