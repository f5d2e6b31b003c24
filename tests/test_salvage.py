"""Salvage recovery and the single-bit-flip guarantee ([F-13]–[F-15], [F-25], SPEC §4.4–4.5).

Every single-bit flip of a segment is either detected (strict raises
CorruptionError naming the file and the damaged frame's offset, or, for the
last frame of the last segment, truncates it as a torn tail with a report) or
salvaged with nothing lost but the damaged commit.
"""
from __future__ import annotations

import os
import random
import shutil

import pytest

import eventstore
from eventstore.errors import CorruptionError
from eventstore.local.layout import FRAME_HEADER_SIZE, SEGMENT_HEADER_SIZE, ZSEGMENT_HEADER_SIZE

from _verbs import (  # noqa: F401 - fast_tmp is a fixture
    FAST, KV, fast_tmp, events_tuple, flip, frames_of, read_zseg_header, rechain, redigest, resign,
    resign_header, seg_files, snap_files, truncate, write_at, zero,
)




def make_store(root, n: int = 12, segment_bytes: int = 4096, per_commit: int = 1, fs=FAST,
               pad: int = 0, **kw):
    """``n`` commits of ``per_commit`` events; returns every event in order."""
    with eventstore.open(root, [KV()], segment_bytes=segment_bytes, snapshot_every=0, fs=fs, **kw) as s:
        for i in range(n):
            if per_commit == 1:
                s.append("set", f"k{i % 3}", {"i": i, "pad": "x" * (pad + i % 5)})
            else:
                s.append_many([("set", f"k{j % 3}", {"i": i, "j": j, "pad": "y" * pad})
                               for j in range(per_commit)])
        return list(s.read())


def replay(events) -> tuple:
    kv = KV()
    for e in events:
        kv.apply(e)
    return kv.state()


def open_read(root, **kw):
    kv = KV()
    with eventstore.open(root, [kv], fs=FAST, snapshot_every=0, **kw) as s:
        return s, list(s.read()), kv.state(), s.recovery_report


def _reset(root: str, path: str, original: bytes) -> None:
    with open(path, "wb") as f:
        f.write(original)
    shutil.rmtree(os.path.join(root, "quarantine"), ignore_errors=True)


def _check_flip(root: str, path: str, original: bytes, offset: int, bit: int, events: list,
                is_last_segment: bool) -> None:
    frames = frames_of_bytes(original)
    hit = next((f for f in frames if f.offset <= offset < f.offset + f.size), None)
    last_frame = frames[-1]
    lost_seqs = set() if hit is None else set(range(hit.first_seq, hit.last_seq + 1))
    if hit is None:  # segment header: every frame survives salvage
        lost_seqs = set()
    survivors = [e for e in events if e.seq not in lost_seqs]

    # strict
    _reset(root, path, original)
    flip(path, offset, bit)
    torn_tail = is_last_segment and hit is not None and hit == last_frame
    if torn_tail:
        s, got, state, report = open_read(root)
        assert events_tuple(got) == events_tuple(survivors)
        assert [(e.action, e.file, e.offset) for e in report] == [("truncated", path, hit.offset)]
        assert state == replay(survivors)
    else:
        with pytest.raises(CorruptionError) as info:
            open_read(root)
        assert info.value.file == path
        assert info.value.offset == (0 if hit is None else hit.offset), (offset, bit, info.value)

    # salvage
    _reset(root, path, original)
    flip(path, offset, bit)
    s, got, state, report = open_read(root, recovery="salvage")
    assert events_tuple(got) == events_tuple(survivors), (offset, bit)
    assert state == replay(survivors)
    if hit is not None and not torn_tail:
        assert report.lost_ranges == [(hit.first_seq, hit.last_seq)]
    else:
        assert report.lost_ranges == []
    assert report, "salvage must report what it did"
    qdir = os.path.join(root, "quarantine")
    copies = [open(os.path.join(qdir, n), "rb").read() for n in os.listdir(qdir)]
    damaged = bytearray(original)
    damaged[offset] ^= 1 << bit
    if torn_tail:  # the cut tail alone is copied
        assert any(c and bytes(damaged).endswith(c) for c in copies), "the cut tail must be kept"
    else:  # the whole damaged segment is copied before it is rewritten
        assert bytes(damaged) in copies, "the damaged bytes must be kept in quarantine"


def frames_of_bytes(data: bytes):
    import tempfile
    with tempfile.NamedTemporaryFile() as f:
        f.write(data)
        f.flush()
        return frames_of(f.name)


def _sweep(fast_tmp, which: str, every_bit: bool, per_commit: int = 1) -> int:
    """Flip bits of one segment. With ``every_bit`` all of them; otherwise one bit
    (offset % 8) of header bytes (all of the segment header and of the first and last
    two frame headers, each field of the others) and of every 41st byte."""
    root = str(fast_tmp / "s")
    events = make_store(root, n=40 if per_commit == 1 else 20, segment_bytes=4096,
                        per_commit=per_commit, pad=300 // per_commit)
    segs = seg_files(root, ".seg")
    assert len(segs) >= 2
    path = segs[0] if which == "sealed" else segs[-1]
    original = open(path, "rb").read()
    frames = frames_of_bytes(original)
    assert len(frames) >= 2
    headers = set(range(SEGMENT_HEADER_SIZE))
    for i, f in enumerate(frames):
        if i < 2 or i >= len(frames) - 2:  # every header byte of the first and last two frames
            headers.update(range(f.offset, f.offset + FRAME_HEADER_SIZE))
        else:  # the first byte of each header field of the others
            headers.update(f.offset + k for k in (0, 3, 4, 8, 12, 16, 24, 32, 47))
    checked = 0
    for offset in range(len(original)):
        if every_bit:
            bits: range | tuple = range(8)
        elif offset in headers or offset % 41 == 0:
            bits = (offset % 8,)
        else:
            continue
        for bit in bits:
            _check_flip(root, path, original, offset, bit, events, which == "last")
            checked += 1
    return checked


@pytest.mark.parametrize("which", ["sealed", "last"])
def test_bit_flips_are_detected_or_salvaged(fast_tmp, which) -> None:
    """Header bytes and every 41st byte of a sealed and of the last segment; [F-13]–[F-15]."""
    assert _sweep(fast_tmp, which, every_bit=False) > 200


def test_flips_in_multi_event_commits_lose_the_whole_commit_only(fast_tmp) -> None:
    """[F-11]: a damaged commit of 4 events is lost as a whole, its neighbours survive."""
    assert _sweep(fast_tmp, "sealed", every_bit=False, per_commit=4) > 100


@pytest.mark.slow
@pytest.mark.parametrize("which", ["sealed", "last"])
def test_every_single_bit_flip_is_detected_or_salvaged(fast_tmp, which) -> None:
    assert _sweep(fast_tmp, which, every_bit=True) > 8 * 2000


def test_salvage_then_strict_reopen_and_append(fast_tmp) -> None:
    root = str(fast_tmp / "s")
    events = make_store(root, n=14, segment_bytes=4096)
    path = seg_files(root, ".seg")[0]
    frames = frames_of(path)
    victim = frames[1]
    flip(path, victim.offset + 60)
    with eventstore.open(root, [KV()], recovery="salvage", fs=FAST) as s:
        assert s.recovery_report.lost_ranges == [(victim.first_seq, victim.last_seq)]
        assert s.stats()["events"] == len(events) - victim.count
        e = s.append("set", "new", {"after": True})
        assert e.seq == events[-1].seq + 1  # seq stays contiguous on disk ([F-25])
    kv = KV()
    with eventstore.open(root, [kv], fs=FAST) as s:  # strict is happy with gap frames
        assert not s.recovery_report
        got = list(s.read())
        assert [x.seq for x in got] == [x.seq for x in events if x.seq != victim.first_seq] + [e.seq]
        report = s.verify()
        assert report.ok, str(report)
    assert kv.state() == replay(got)


def _sets_around_a_snapshot(s, snapshot_after: int, total: int) -> None:
    """``total`` sets of keys k0..k2, with a snapshot after the first ``snapshot_after``.

    Each commit's frame is longer than the smallest gap frame, so a gap frame
    can take its exact place ([F-25]).
    """
    for i in range(total):
        s.append("set", f"k{i % 3}", {"i": i, "note": "x" * 8})
        if i == snapshot_after - 1:
            s.snapshot()


def test_salvage_keeps_frame_offsets_so_later_snapshots_stay_usable(fast_tmp) -> None:
    """The gap frame is padded to the damaged bytes' length: a snapshot taken after the
    damage still matches its position, and it restores the state the lost commit held."""
    root = str(fast_tmp / "s")
    kv = KV()
    with eventstore.open(root, [kv], segment_bytes=4096, snapshot_every=0, fs=FAST) as s:
        _sets_around_a_snapshot(s, 20, 25)
        full = kv.state()
        events = list(s.read())
    path = seg_files(root, ".seg")[0]
    before = [(f.first_seq, f.offset) for f in frames_of(path)]
    victim = frames_of(path)[2]
    assert victim.size >= FRAME_HEADER_SIZE + 21
    flip(path, victim.offset + victim.size - 1)
    kv2 = KV()
    with eventstore.open(root, [kv2], recovery="salvage", fs=FAST) as s:
        report = s.recovery_report
        assert report.lost_ranges == [(victim.first_seq, victim.last_seq)]
        assert not [e for e in report if e.action == "skipped-snapshot"], str(report)
        assert s.stats()["snapshot_seq"] == 20
        # the state holds the lost commit's effect: it came from the snapshot
        assert kv2.state() == full
        assert [e.seq for e in s.read()] == [e.seq for e in events if e.seq != victim.first_seq]
    after = [(f.first_seq, f.offset) for f in frames_of(seg_files(root, ".seg")[0])]
    assert after == before  # the gap frame stands where the lost commit stood, with its seq


def test_salvage_after_the_snapshot_loses_only_that_commit(fast_tmp) -> None:
    root = str(fast_tmp / "s")
    with eventstore.open(root, [KV()], segment_bytes=100_000, snapshot_every=0, fs=FAST) as s:
        for i in range(10):
            s.append("set", f"k{i % 3}", {"i": i})
        s.snapshot()
        for i in range(10, 20):
            s.append("set", f"k{i % 3}", {"i": i})
        events = list(s.read())
    path = seg_files(root, ".seg")[0]
    victim = next(f for f in frames_of(path) if f.first_seq == 14)
    zero(path, victim.offset, 8)  # magic and CRC gone
    with pytest.raises(CorruptionError) as info:
        eventstore.open(root, [KV()], fs=FAST)
    assert (info.value.file, info.value.offset) == (path, victim.offset)
    kv = KV()
    with eventstore.open(root, [kv], recovery="salvage", fs=FAST) as s:
        assert s.recovery_report.lost_ranges == [(14, 14)]
        survivors = [e for e in events if e.seq != 14]
        assert events_tuple(s.read()) == events_tuple(survivors)
        assert kv.state() == replay(survivors)


def test_missing_middle_segment_is_a_lost_range(fast_tmp) -> None:
    root = str(fast_tmp / "s")
    events = make_store(root, n=50, segment_bytes=4096, pad=200)
    segs = seg_files(root, ".seg")
    assert len(segs) >= 3
    gone = frames_of(segs[1])
    moved = str(fast_tmp / "elsewhere.seg")
    os.rename(segs[1], moved)
    with pytest.raises(CorruptionError) as info:
        eventstore.open(root, [KV()], fs=FAST)
    assert info.value.file == segs[2]
    with eventstore.open(root, [KV()], recovery="salvage", fs=FAST) as s:
        assert s.recovery_report.lost_ranges == [(gone[0].first_seq, gone[-1].last_seq)]
        lost = set(range(gone[0].first_seq, gone[-1].last_seq + 1))
        assert events_tuple(s.read()) == events_tuple([e for e in events if e.seq not in lost])
    with eventstore.open(root, [KV()], fs=FAST) as s:
        assert s.verify().ok


def test_damaged_zseg_salvages_every_frame_it_can_decompress(fast_tmp) -> None:
    """A flip late in a .zseg's zstd stream: frames in the zstd blocks before it are kept,
    and the lost seqs are one contiguous range to the end of that segment."""
    root = str(fast_tmp / "s")
    rng = random.Random(4)
    with eventstore.open(root, [KV()], segment_bytes=1 << 20, snapshot_every=0, fs=FAST) as s:
        for i in range(2500):
            s.append("set", f"k{i % 5}", {"i": i, "text": rng.randbytes(100).hex()})
        s.compact()
        events = list(s.read())
    (path,) = seg_files(root, ".zseg")
    size = os.path.getsize(path)
    flip(path, size - 2000)  # inside the zstd stream, in one of its last blocks
    with pytest.raises(CorruptionError) as info:
        with eventstore.open(root, [KV()], fs=FAST) as s:
            list(s.read())
    assert info.value.file == path
    with eventstore.open(root, [KV()], recovery="salvage", fs=FAST) as s:
        lost = s.recovery_report.lost_ranges
        assert len(lost) == 1
        lo, hi = lost[0]
        assert lo > 1000, "frames in the zstd blocks before the damage are kept"
        assert hi == 2500
        survivors = [e for e in events if not lo <= e.seq <= hi]
        assert events_tuple(s.read()) == events_tuple(survivors)
        qdir = os.path.join(root, "quarantine")
        assert any(n.endswith(os.path.basename(path)) for n in os.listdir(qdir))
        assert not os.path.exists(path)  # replaced by a plain rewrite, original in quarantine
        e = s.append("set", "after", {})
        assert e.seq == 2501
    with eventstore.open(root, [KV()], fs=FAST) as s:
        assert s.verify().ok
        assert [x.seq for x in s.read(lo - 1, hi + 3)] == [lo - 1, 2501]


def _compacted_store(root: str, n: int, segment_bytes: int) -> list:
    """``n`` commits with 100 random bytes each, compacted into .zseg files; no snapshot."""
    rng = random.Random(4)
    with eventstore.open(root, [KV()], segment_bytes=segment_bytes, snapshot_every=0, fs=FAST) as s:
        for i in range(n):
            s.append("set", f"k{i % 5}", {"i": i, "text": rng.randbytes(100).hex()})
        s.compact()
        events = list(s.read())
    for p in snap_files(root):
        os.unlink(p)
    return events


def test_truncated_zseg_keeps_the_frames_decompressed_before_the_cut(fast_tmp) -> None:
    """[F-19], [F-27]: a cut .zseg is corruption at the cut for strict; verify reports it at
    its file offset and salvage keeps every commit decompressed before it."""
    root = str(fast_tmp / "s")
    events = _compacted_store(root, 2500, 1 << 20)
    (path,) = seg_files(root, ".zseg")
    size = os.path.getsize(path)
    truncate(path, size * 6 // 10)
    with pytest.raises(CorruptionError) as info:
        with eventstore.open(root, [KV()], fs=FAST) as s:
            list(s.read())
    assert info.value.file == path and "truncated" in info.value.reason
    with eventstore.open(root, [KV()], readonly=True, recovery="salvage", fs=FAST) as r:
        report = r.verify()
    cut = [(p.file, p.offset) for p in report.problems if "truncated" in p.reason]
    assert cut == [(path, info.value.offset)]
    assert 1000 < report.events < 2500
    with eventstore.open(root, [KV()], recovery="salvage", fs=FAST) as s:
        (lost,) = s.recovery_report.lost_ranges
        assert lost == (report.events + 1, 2500)
        assert events_tuple(s.read()) == events_tuple(events[:report.events])
    with eventstore.open(root, [KV()], fs=FAST) as s:
        assert s.verify().ok


def test_zseg_inflating_past_its_declared_size_loses_exactly_what_salvage_reports(fast_tmp) -> None:
    """[F-19], [F-26]: output past a .zseg's declared plain length is corruption, for the rewrite as
    for the walk that reported the loss: the rewrite does not read on to MAX_SEGMENT_BYTES and
    keep commits past the declared length that the report calls lost."""
    root = str(fast_tmp / "s")
    events = make_store(root, n=120, segment_bytes=4096, pad=40)
    with eventstore.open(root, [KV()], fs=FAST) as s:
        s.compact()
    for p in snap_files(root):
        os.unlink(p)
    path = seg_files(root, ".zseg")[1]
    head = read_zseg_header(path)
    declared = head[5] - 500  # the header's plain length, 500 bytes short of the stream's
    write_at(path, 24, declared.to_bytes(8, "little"))
    resign_header(path, ZSEGMENT_HEADER_SIZE)
    with eventstore.open(root, [KV()], recovery="salvage", fs=FAST) as s:
        lost = s.recovery_report.lost_ranges
        kept = {e.seq for e in s.read()}
    assert lost and lost[0][1] == head[4]  # the commits past the declared length, to the segment's end
    reported = {seq for lo, hi in lost for seq in range(lo, hi + 1)}
    assert {e.seq for e in events} - kept == reported


def test_torn_tail_is_cut_after_a_copy_to_quarantine(fast_tmp) -> None:
    """[F-13], [F-05]: the bytes cut are in quarantine/, byte for byte."""
    root = str(fast_tmp / "s")
    events = make_store(root, n=5)
    path = seg_files(root, ".seg")[-1]
    data = open(path, "rb").read()
    last = frames_of(path)[-1]
    truncate(path, last.offset + 30)
    with eventstore.open(root, [KV()], fs=FAST) as s:
        (entry,) = list(s.recovery_report)
        assert (entry.action, entry.file, entry.offset, entry.nbytes) == ("truncated", path, last.offset, 30)
        assert events_tuple(s.read()) == events_tuple(events[:-1])
    qdir = os.path.join(root, "quarantine")
    (name,) = os.listdir(qdir)
    assert open(os.path.join(qdir, name), "rb").read() == data[last.offset:last.offset + 30]
    assert os.path.getsize(path) == last.offset


def test_salvage_of_a_clean_store_changes_nothing(fast_tmp) -> None:
    root = str(fast_tmp / "s")
    events = make_store(root, n=20, segment_bytes=4096)
    before = {p: open(p, "rb").read() for p in seg_files(root)}
    with eventstore.open(root, [KV()], recovery="salvage", fs=FAST) as s:
        assert not s.recovery_report
        assert events_tuple(s.read()) == events_tuple(events)
    assert {p: open(p, "rb").read() for p in seg_files(root)} == before
    assert not os.path.exists(os.path.join(root, "quarantine")) or not os.listdir(os.path.join(root, "quarantine"))
    assert snap_files(root) == []


def test_recovery_destroys_no_bytes_without_a_copy_in_quarantine(fast_tmp) -> None:
    """[F-05], SPEC §4.5: every file recovery removes or replaces, and every tail it cuts,
    is in quarantine/ first, byte for byte."""
    from faultfs import FaultyFS
    root = str(fast_tmp / "s")
    with eventstore.open(root, [KV()], segment_bytes=4096, snapshot_every=0, fs=FAST) as s:
        for i in range(120):
            s.append("set", f"k{i % 3}", {"i": i, "pad": "q" * 40})
        s.compact()
        for i in range(120, 140):
            s.append("set", f"k{i % 3}", {"i": i})
    zseg = seg_files(root, ".zseg")[1]
    flip(zseg, os.path.getsize(zseg) - 30)
    sealed = seg_files(root, ".seg")[-1]
    flip(sealed, frames_of(sealed)[3].offset + 50)  # damage in the middle of the active segment
    with open(sealed, "ab") as f:
        f.write(b"MLFR torn")  # and a torn tail after it
    open(os.path.join(root, "segments", "junk.seg.tmp"), "wb").write(b"half")

    destroyed: list[bytes] = []
    fs = FaultyFS()

    def before(op: str, path: str) -> None:
        if op == "remove":
            destroyed.append(open(path, "rb").read())
        elif op == "rename":
            dst = path.split(" -> ")[1]
            if os.path.exists(dst):
                destroyed.append(open(dst, "rb").read())
        elif op == "truncate":
            path, size = path.rsplit(" @", 1)
            if os.path.exists(path) and not path.endswith("LOCK"):
                destroyed.append(b"TAIL:" + open(path, "rb").read()[int(size):])

    fs.on_call = before
    with eventstore.open(root, [KV()], recovery="salvage", fs=fs) as s:
        assert len(s.recovery_report.lost_ranges) == 2
    fs.on_call = None
    qdir = os.path.join(root, "quarantine")
    kept = [open(os.path.join(qdir, n), "rb").read() for n in os.listdir(qdir)]
    assert destroyed, "this recovery had to replace files"
    for data in destroyed:
        if data.startswith(b"TAIL:"):  # a truncation: exactly the bytes cut must be kept
            assert data[5:] in kept, data[5:45]
        elif data:  # the LOCK file is rewritten on open; it is not store data
            assert data in kept or data.isdigit(), data[:40]


def test_missing_first_segment_gets_a_new_segment_holding_its_gap(fast_tmp) -> None:
    root = str(fast_tmp / "s")
    events = make_store(root, n=50, segment_bytes=4096, pad=200)
    first, second = seg_files(root, ".seg")[:2]
    gone = frames_of(first)
    os.unlink(first)
    with pytest.raises(CorruptionError) as info:
        eventstore.open(root, [KV()], fs=FAST)
    assert info.value.file == second and info.value.offset == 0
    with eventstore.open(root, [KV()], recovery="salvage", fs=FAST) as s:
        lost = (1, gone[-1].last_seq)
        assert [(e.action, e.lost) for e in s.recovery_report if e.action == "lost"] == [("lost", lost)]
        assert events_tuple(s.read()) == events_tuple(events[lost[1]:])
    assert os.path.exists(first)  # the new segment with the gap frame
    with eventstore.open(root, [KV()], fs=FAST) as s:
        assert s.last_seq == len(events) and s.verify().ok


def test_losing_the_snapshots_own_commit_keeps_the_snapshot_usable(fast_tmp) -> None:
    """The commit at the snapshot's seq is the damaged one: the padded gap frame keeps the
    next frame at the snapshot's position, so the snapshot (which holds that commit's
    effect) is still used."""
    root = str(fast_tmp / "s")
    kv = KV()
    with eventstore.open(root, [kv], snapshot_every=0, fs=FAST) as s:
        _sets_around_a_snapshot(s, 8, 12)
        full = kv.state()
    path = seg_files(root, ".seg")[0]
    victim = next(f for f in frames_of(path) if f.first_seq == 8)
    flip(path, victim.offset + 50, 6)
    fresh = KV()
    with eventstore.open(root, [fresh], recovery="salvage", fs=FAST) as s:
        assert s.recovery_report.lost_ranges == [(8, 8)]
        assert not [e for e in s.recovery_report if e.action == "skipped-snapshot"]
        assert fresh.state() == full
        assert [e.seq for e in s.read()] == [1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12]


def test_gap_frame_fills_every_room_from_the_smallest_gap_frame_up() -> None:
    """[F-25]: damaged bytes at least as long as the smallest gap frame are replaced by a
    gap frame of exactly their length (rooms of 70-74 bytes once got a longer one)."""
    from eventstore.local.salvage import gap_frame
    smallest = len(gap_frame(5, 1, bytes(16), 0)[0])
    rooms = [*range(smallest, 1200), *range(65_400, 65_700), 300_000]
    wrong = [room for room in rooms if len(gap_frame(5, 1, bytes(16), room)[0]) != room]
    assert smallest == FRAME_HEADER_SIZE + 21 and wrong == []


def test_lost_commit_shorter_than_a_gap_frame_sets_aside_snapshots_past_it(fast_tmp) -> None:
    """A lost commit shorter than the smallest gap frame moves the frames after it: the
    snapshots positioned past it are quarantined (not read as damage at their old
    position), the one before it is kept, and a strict open works afterwards."""
    root = str(fast_tmp / "s")
    with eventstore.open(root, [KV()], snapshot_every=0, fs=FAST) as s:
        for _ in range(49):
            s.append("x", "k", {})
        s.snapshot()                       # seq 49: before the lost commit
        s.append("x", "k", {})
        s.snapshot()                       # seq 50: the lost commit's own
        for _ in range(20):
            s.append("x", "k", {})
        s.snapshot()                       # seq 70: past it
        events = list(s.read())
    (path,) = seg_files(root, ".seg")
    victim = frames_of(path)[49]
    assert victim.first_seq == 50 and victim.size < FRAME_HEADER_SIZE + 21
    flip(path, victim.offset + victim.size - 1)
    with eventstore.open(root, [KV()], recovery="salvage", fs=FAST) as s:
        report = s.recovery_report
        assert report.lost_ranges == [(50, 50)]
        set_aside = sorted(os.path.basename(e.file) for e in report if e.action == "skipped-snapshot")
        assert set_aside == ["00000000000000000050.snap", "00000000000000000070.snap"]
        assert s.stats()["snapshot_seq"] == 49
        assert events_tuple(s.read()) == events_tuple([e for e in events if e.seq != 50])
        assert s.version("k") == 69
    assert [os.path.basename(p) for p in snap_files(root)] == ["00000000000000000049.snap"]
    quarantined = sorted(os.listdir(os.path.join(root, "quarantine")))
    assert sum(name.endswith(".snap") for name in quarantined) == 2
    with eventstore.open(root, [KV()], fs=FAST) as s:   # strict, and clean
        assert s.last_seq == 70 and s.verify().ok


@pytest.mark.parametrize("snap_at, lost", [
    (8, (8, 9)),     # the snapshot's own commit and the next: its position is inside the gap frame
    (8, (8, 10)),
    (9, (8, 9)),     # the last lost seq's: its position is the frame after the gap, still valid
    (7, (8, 9)),     # before the loss: its position is the gap frame's start, still valid
])
def test_snapshot_positioned_inside_a_gap_frame_is_set_aside(fast_tmp, snap_at, lost) -> None:
    """[F-25]: when the commits on both sides of a snapshot's position are lost, the padded
    gap frame covers the position, so no frame starts there any more. Salvage sets that
    snapshot aside, like one whose frames moved, and reports every lost seq once; snapshots
    whose position still starts a frame with the next seq are kept. (An open walking from the
    stale position would report the second lost seq twice, and every later strict open would
    raise CorruptionError there.)"""
    root = str(fast_tmp / "s")
    events = make_store(root, n=snap_at)
    with eventstore.open(root, [KV()], snapshot_every=0, fs=FAST) as s:
        s.snapshot()
        for i in range(snap_at, 20):
            s.append("set", f"k{i % 3}", {"i": i, "pad": "x" * (i % 5)})
        events = list(s.read())
    (seg,) = seg_files(root, ".seg")
    for f in frames_of(seg)[lost[0] - 1:lost[1]]:
        flip(seg, f.offset + f.size - 1)
    report = _salvage_agrees(root, events, snapshot_holds_lost=snap_at >= lost[1])
    assert report.lost_ranges == [lost]
    set_aside = [os.path.basename(e.file) for e in report if e.action == "skipped-snapshot"]
    inside = lost[0] <= snap_at < lost[1]
    assert set_aside == ([f"{snap_at:020d}.snap"] if inside else [])
    assert len(snap_files(root)) == (0 if inside else 1)


def _salvage_agrees(root: str, events: list, *, snapshot_holds_lost: bool = False):
    """Salvage, then check the promise of [F-26] and return the salvage's report.

    The seqs the report calls lost are exactly the seqs missing from ``read()``,
    every event kept is unchanged, every segment the salvage changed is in
    quarantine/ as it was ([F-05]), and afterwards a strict open succeeds and
    ``verify`` is clean, listing the lost seqs as gaps ([F-25]). The projection
    equals a replay of what was read, unless ``snapshot_holds_lost``: a snapshot
    taken after the lost seqs restores their state too ([F-26]).
    """
    before = {p: open(p, "rb").read() for p in seg_files(root)}
    with eventstore.open(root, [KV()], recovery="salvage", fs=FAST) as s:
        report = s.recovery_report
        got = list(s.read())
    lost = {seq for lo, hi in report.lost_ranges for seq in range(lo, hi + 1)}
    assert events_tuple(got) == events_tuple([e for e in events if e.seq not in lost]), str(report)
    qdir = os.path.join(root, "quarantine")
    kept = [open(os.path.join(qdir, n), "rb").read() for n in os.listdir(qdir)] if os.path.isdir(qdir) else []
    changed = [p for p, data in before.items() if not os.path.exists(p) or open(p, "rb").read() != data]
    assert all(before[p] in kept for p in changed), changed
    kv = KV()
    with eventstore.open(root, [kv], fs=FAST) as s:
        assert not s.recovery_report, str(s.recovery_report)
        assert events_tuple(s.read()) == events_tuple(got)
        check = s.verify()
    assert check.ok, str(check)
    assert {seq for lo, hi in check.lost for seq in range(lo, hi + 1)} == lost
    assert (kv.state() != replay(got)) if snapshot_holds_lost else (kv.state() == replay(got))
    return report


def _four_segments(root: str) -> list:
    events = make_store(root, n=40, segment_bytes=4096, pad=300)
    assert len(seg_files(root, ".seg")) >= 4
    return events


def test_resigned_segment_header_is_rewritten_with_the_chains_digest(fast_tmp) -> None:
    """[F-26]: the digest in segment 2's header edited and its CRC recomputed, so the header
    reads but does not continue the chain. Salvage rewrites it with the chain's digest (the
    original goes to quarantine/) and loses nothing, as its first frame chains from that
    digest; a strict open and verify are clean afterwards, not only the report."""
    root = str(fast_tmp / "s")
    events = _four_segments(root)
    second = seg_files(root, ".seg")[1]
    flip(second, 20)  # inside the header's digest
    resign_header(second, SEGMENT_HEADER_SIZE)
    frames = open(second, "rb").read()[SEGMENT_HEADER_SIZE:]
    with pytest.raises(CorruptionError) as info:
        eventstore.open(root, [KV()], fs=FAST)
    assert (info.value.file, info.value.offset) == (second, 0)
    report = _salvage_agrees(root, events)
    assert [(e.action, e.file, e.offset, e.lost) for e in report] == [
        ("damaged", second, 0, None), ("rewrote", second, None, None)], str(report)
    assert open(second, "rb").read()[SEGMENT_HEADER_SIZE:] == frames  # only the header changed


def test_segment_resigned_from_another_chain_loses_only_its_first_commit(fast_tmp) -> None:
    """[F-26]: the last segment re-signed whole as if the chain entered it with another digest
    (its header and every frame's digest and CRC). Its header is rewritten with the chain's
    digest; its first commit does not chain from that digest and is lost, like any re-signed
    commit, and the frames after it resynchronise ([F-15]): the report and the rewrite agree."""
    root = str(fast_tmp / "s")
    events = _four_segments(root)
    last = seg_files(root, ".seg")[-1]
    first, *rest = frames_of(last)
    assert rest
    rechain(last, bytes(range(16)))
    report = _salvage_agrees(root, events)
    assert report.lost_ranges == [(first.first_seq, first.last_seq)], str(report)


def _edit_and_resign(path: str, victim, digest: str) -> bytes:
    """Change one payload byte of ``victim`` and recompute its CRC, leaving its stored digest
    as is or recomputing it from a wrong prev: only the chain can tell. Returns the bytes
    of the segment before the edit."""
    data = open(path, "rb").read()
    write_at(path, data.index(b"xxx", victim.offset, victim.offset + victim.size), b"y")
    if digest == "left as is":
        resign(path, victim.offset)
    else:
        redigest(path, victim.offset, bytes(range(16)))
    return data


@pytest.mark.parametrize("digest", ["left as is", "from another prev"])
@pytest.mark.parametrize("segment", [0, 2])
def test_resigned_first_commit_of_a_segment_is_lost_as_reported(fast_tmp, segment, digest) -> None:
    """[F-26]: a segment's first commit edited and its CRC recomputed (its stored digest left
    as is, or recomputed from a wrong prev) fails only the chain check. The report calls it
    lost and the rewrite leaves it out: restarting the chain at every segment would keep a
    modified event that the salvage called lost."""
    root = str(fast_tmp / "s")
    events = _four_segments(root)
    path = seg_files(root, ".seg")[segment]
    victim = frames_of(path)[0]
    _edit_and_resign(path, victim, digest)
    report = _salvage_agrees(root, events)
    assert report.lost_ranges == [(victim.first_seq, victim.last_seq)], str(report)


@pytest.mark.parametrize("after", ["nothing", "a torn frame"])
@pytest.mark.parametrize("digest", ["left as is", "from another prev"])
def test_resigned_last_commit_is_lost_not_cut_as_a_torn_tail(fast_tmp, digest, after) -> None:
    """[F-13], [F-14]: the last commit of the log edited and its CRC recomputed is whole and
    signed, so it is not a torn write: only the chain says it was changed. Salvage reports it
    lost and keeps its seq behind a gap frame, so the next append does not reuse that seq
    (a follower that saw the original would skip the new event). Torn bytes after it are
    dropped with it; it is never truncated as a torn tail."""
    root = str(fast_tmp / "s")
    events = _four_segments(root)
    path = seg_files(root, ".seg")[-1]
    victim = frames_of(path)[-1]
    data = _edit_and_resign(path, victim, digest)
    if after == "a torn frame":
        with open(path, "ab") as f:
            f.write(data[victim.offset:victim.offset + FRAME_HEADER_SIZE + 3])
    report = _salvage_agrees(root, events)
    assert report.lost_ranges == [(victim.first_seq, victim.last_seq)], str(report)
    assert not [e for e in report if e.action == "truncated"], str(report)
    with eventstore.open(root, [KV()], fs=FAST) as s:
        assert s.append("set", "k0", {"i": -1}).seq == victim.last_seq + 1


# -- segments that overlap seqs already held, gaps before an unreadable header ([F-26]) --------
def _digest_before(path: str, frame) -> bytes:
    """The chain digest before ``frame`` of the plain segment at ``path`` (read before damage)."""
    data = open(path, "rb").read()
    before = [f for f in frames_of(path) if f.offset < frame.offset]
    if not before:
        return data[16:32]  # the header's
    return data[before[-1].offset + 32:before[-1].offset + FRAME_HEADER_SIZE]


def _segment_of_frames(root: str, first_seq: int, prev: bytes, parts: list) -> str:
    """Write a plain segment named ``first_seq`` whose header chains from ``prev`` and whose
    frames are byte-for-byte copies of ``parts`` (``(path, FrameInfo)`` pairs): a stale or
    duplicated segment file, as another rollover history would have left it."""
    path = os.path.join(root, "segments", f"{first_seq:020d}.seg")
    header = bytearray(open(seg_files(root, ".seg")[0], "rb").read(SEGMENT_HEADER_SIZE))
    header[8:16] = first_seq.to_bytes(8, "little")
    header[16:32] = prev
    body = b"".join(open(p, "rb").read()[f.offset:f.offset + f.size] for p, f in parts)
    with open(path, "wb") as f:
        f.write(bytes(header) + body)
    resign_header(path, SEGMENT_HEADER_SIZE)
    return path


@pytest.mark.parametrize("case", ["stale copy", "stale copy running into the next segment",
                                  "renamed, header lowered", "renamed, header left as it was",
                                  "stale copy of the last segment's tail"])
def test_segment_starting_below_the_expected_seq_is_set_aside_and_nothing_is_lost(fast_tmp, case) -> None:
    """[F-14], [F-26]: a segment named below the seq the log expects (its header agreeing, or
    unreadable) overlaps seqs the segment before already holds: a spare. Salvage keeps one intact
    copy of every seq (a renamed segment's frames are written under the right name), loses
    nothing intact, reads every seq once, moves the spare to quarantine/, and leaves a store that
    strict opens accept."""
    root = str(fast_tmp / "s")
    events = _four_segments(root)
    segs = seg_files(root, ".seg")
    second, third, last = segs[1], segs[2], segs[-1]
    f2, f3, f4 = frames_of(second), frames_of(third), frames_of(last)
    if case == "stale copy":
        extra = _segment_of_frames(root, f2[2].first_seq, _digest_before(second, f2[2]),
                                   [(second, f) for f in f2[2:]])
    elif case == "stale copy running into the next segment":
        extra = _segment_of_frames(root, f2[2].first_seq, _digest_before(second, f2[2]),
                                   [(second, f) for f in f2[2:]] + [(third, f) for f in f3[:2]])
    elif case.startswith("renamed"):
        extra = os.path.join(root, "segments", f"{f2[2].first_seq:020d}.seg")
        os.rename(third, extra)
        if case == "renamed, header lowered":
            write_at(extra, 8, f2[2].first_seq.to_bytes(8, "little"))
            resign_header(extra, SEGMENT_HEADER_SIZE)
        # else its header no longer matches its name ([F-07]): unreadable, searched from byte 0
    else:
        extra = _segment_of_frames(root, f4[1].first_seq, _digest_before(last, f4[1]),
                                   [(last, f) for f in f4[1:]])
    with pytest.raises(CorruptionError) as info:
        with eventstore.open(root, [KV()], fs=FAST) as s:
            list(s.read())
    assert (info.value.file, info.value.offset) == (extra, 0)
    report = _salvage_agrees(root, events)
    assert report.lost_ranges == [], str(report)
    assert any(e.file == extra and e.offset == 0 for e in report if e.action == "damaged"), str(report)
    assert [e.action for e in report if e.file == extra][-1] == "quarantined", str(report)
    assert not os.path.exists(extra)
    with eventstore.open(root, [KV()], fs=FAST) as s:
        assert s.append("set", "k0", {"i": -1}).seq == len(events) + 1


@pytest.mark.parametrize("snapshot", [False, True])
@pytest.mark.parametrize("missing", ["the last commits of the segment before", "the whole segment before"])
def test_unreadable_header_after_missing_seqs_gets_a_gap_frame(fast_tmp, missing, snapshot) -> None:
    """[F-25], [F-26]: seqs are missing just before a segment whose header is unreadable (the
    segment before lost its last commits, or is gone). Salvage reports them lost once and puts
    them behind a gap frame at the end of the segment before, so strict opens, ``read`` and
    ``verify`` see contiguous seqs. With a snapshot after the damage the open that follows the
    salvage pass starts there and never looks back."""
    root = str(fast_tmp / "s")
    events = _four_segments(root)
    if snapshot:
        with eventstore.open(root, [KV()], snapshot_every=0, fs=FAST) as s:
            s.snapshot()
    first, before, damaged = seg_files(root, ".seg")[:3]
    frames = frames_of(before)
    if missing == "the whole segment before":
        gone = (frames[0].first_seq, frames[-1].last_seq)
        os.rename(before, str(fast_tmp / "elsewhere.seg"))
    else:
        gone = (frames[-2].first_seq, frames[-1].last_seq)
        truncate(before, frames[-2].offset)  # at a frame boundary: the segment itself reads cleanly
    flip(damaged, 1)  # its magic
    report = _salvage_agrees(root, events, snapshot_holds_lost=snapshot)
    assert report.lost_ranges == [gone], str(report)
    holder = first if missing == "the whole segment before" else before
    assert frames_of(holder)[-1].last_seq == gone[1]  # the gap frame ends the segment before


def _stale_copy(root: str, seg: str, frames: list, more: tuple[str, list] | None = None) -> str:
    """A spare: copies of ``frames`` of ``seg`` (and then ``more``'s) in a file named after the first."""
    parts = [(seg, f) for f in frames] + ([(more[0], f) for f in more[1]] if more else [])
    return _segment_of_frames(root, frames[0].first_seq, _digest_before(seg, frames[0]), parts)


@pytest.mark.parametrize("where", ["in the segment before the spare", "in the segment after the spare"])
def test_a_seq_damaged_in_its_segment_is_restored_from_a_spare_copy(fast_tmp, where) -> None:
    """[F-26]: a commit damaged in its own segment, of which a spare holds an intact copy that
    continues the digest chain on both sides, is restored from it instead of lost behind a gap
    frame, whichever side of the spare its segment is; the report says where it came from."""
    root = str(fast_tmp / "s")
    events = _four_segments(root)
    second, third = seg_files(root, ".seg")[1:3]
    f2, f3 = frames_of(second), frames_of(third)
    _stale_copy(root, second, f2[2:], (third, f3[:4]))
    path, victim = (second, f2[3]) if where == "in the segment before the spare" else (third, f3[1])
    flip(path, victim.offset + FRAME_HEADER_SIZE + 5)
    report = _salvage_agrees(root, events)
    assert report.lost_ranges == [], str(report)
    assert any("restored from an intact copy" in e.reason and e.file == path for e in report), str(report)


def test_a_spare_copy_that_does_not_chain_is_never_taken_for_the_logs_commit(fast_tmp) -> None:
    """[F-26]: where the log lost a commit and a spare's copy of it was edited and re-signed (its
    CRC recomputed, so only the chain can tell), the copy is not taken: the seq stays lost behind
    a gap frame, and the spare goes to quarantine/ as it is, reported as holding copies that
    differ from the log's."""
    root = str(fast_tmp / "s")
    events = _four_segments(root)
    second = seg_files(root, ".seg")[1]
    f2 = frames_of(second)
    spare = _stale_copy(root, second, f2[2:])
    _edit_and_resign(spare, frames_of(spare)[1], "left as is")
    flip(second, f2[3].offset + FRAME_HEADER_SIZE + 5)
    report = _salvage_agrees(root, events)
    assert report.lost_ranges == [(f2[3].first_seq, f2[3].last_seq)], str(report)
    moved = [e for e in report if e.file == spare and e.action == "quarantined"]
    assert moved and "differ" in moved[0].reason, str(report)


def test_damage_in_a_spare_never_costs_a_seq_the_next_segment_holds(fast_tmp) -> None:
    """[F-26]: a spare running into the next segment is searched only up to that segment's
    name, so its own damaged copy of a seq the next segment holds intact costs nothing."""
    root = str(fast_tmp / "s")
    events = _four_segments(root)
    second, third = seg_files(root, ".seg")[1:3]
    f2, f3 = frames_of(second), frames_of(third)
    spare = _stale_copy(root, second, f2[2:], (third, f3[:3]))
    flip(spare, frames_of(spare)[-2].offset + FRAME_HEADER_SIZE + 5)
    report = _salvage_agrees(root, events)
    assert report.lost_ranges == [], str(report)


@pytest.mark.parametrize("case", ["a spare restores a damaged commit", "a renamed segment"])
def test_power_cut_during_a_spare_salvage_then_salvage_again_loses_nothing(fast_tmp, case) -> None:
    """[F-05], [F-26]: a power cut at any mutating call of a salvage that takes commits from a
    spare: the next salvage still loses nothing, since the spare leaves the log only after
    every rewrite that took from it is durable."""
    from faultfs import FaultyFS
    template = str(fast_tmp / "template")
    events = _four_segments(template)
    second, third = seg_files(template, ".seg")[1:3]
    f2, f3 = frames_of(second), frames_of(third)
    if case == "a renamed segment":
        os.rename(third, os.path.join(template, "segments", f"{f2[2].first_seq:020d}.seg"))
    else:
        _stale_copy(template, second, f2[2:], (third, f3[:4]))
        flip(third, f3[1].offset + FRAME_HEADER_SIZE + 5)
    counting = FaultyFS()
    probe = str(fast_tmp / "probe")
    shutil.copytree(template, probe)
    counting.track(probe)
    eventstore.open(probe, [KV()], recovery="salvage", fs=counting, snapshot_every=0).close()
    total = sum(counting.calls.values())
    counting.close_held()
    assert total > 5
    for n in range(1, total + 1):
        root = str(fast_tmp / f"c{n}")
        shutil.copytree(template, root)
        fs = FaultyFS()
        fs.track(root)
        fs.crash_at(n)
        try:
            eventstore.open(root, [KV()], recovery="salvage", fs=fs, snapshot_every=0).close()
        except OSError:
            pass
        fs.close_held()
        with eventstore.open(root, [KV()], recovery="salvage", fs=FAST, snapshot_every=0) as s:
            assert s.recovery_report.lost_ranges == [], (n, str(s.recovery_report))
            assert events_tuple(s.read()) == events_tuple(events), n
        with eventstore.open(root, [KV()], fs=FAST, snapshot_every=0) as s:
            assert s.verify().ok, n


def test_only_a_salvage_that_repaired_says_it_lost_events_a_reader_reports_damage(fast_tmp, caplog) -> None:
    """SPEC §4.4, [F-16], [F-26]: a readonly open with ``recovery="salvage"`` repairs nothing, so
    it never logs that a salvage lost events: it says the store is damaged and which seqs it
    cannot read. The writer's salvage open that repairs it says what it lost, once."""
    import logging
    root = str(fast_tmp / "s")
    make_store(root, n=12)
    path = seg_files(root, ".seg")[0]
    victim = frames_of(path)[3]
    flip(path, victim.offset + FRAME_HEADER_SIZE + 2)
    with caplog.at_level(logging.WARNING, logger="eventstore"):
        eventstore.open(root, [KV()], readonly=True, recovery="salvage", fs=FAST).close()
    said = [r.getMessage() for r in caplog.records]
    assert not any("salvage recovery" in m for m in said), said
    assert any("is damaged" in m and f"seqs {victim.first_seq}" in m and "nothing was repaired" in m
               for m in said), said
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="eventstore"):
        open_read(root, recovery="salvage")
    said = [r.getMessage() for r in caplog.records]
    assert [m for m in said if "salvage recovery" in m and "lost 1 event " in m], said
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="eventstore"):
        open_read(root, recovery="salvage")  # repaired already: nothing more is lost
    assert not caplog.records, [r.getMessage() for r in caplog.records]


def test_a_writer_catching_up_never_cuts_a_whole_frame_after_damage_as_a_torn_tail(fast_tmp) -> None:
    """[F-13], [F-14]: bytes another writer left at the end of the log are junk followed by a
    whole, signed frame carrying the next seq that does not continue the chain (edited and
    re-signed). A writer catching up with them checks the chain: that frame is damage after
    damage, so the log is corrupt there, not torn; nothing is cut, nothing is acknowledged."""
    import fcntl
    import struct
    root = str(fast_tmp / "s")
    with eventstore.open(root, [KV()], fs=FAST, snapshot_every=0) as s:
        for i in range(3):
            s.append("set", "k", {"i": i, "pad": "xxxx"})
        path = seg_files(root, ".seg")[-1]
        last = frames_of(path)[-1]
        forged = bytearray(open(path, "rb").read()[last.offset:last.offset + last.size])
        struct.pack_into("<Q", forged, 16, last.first_seq + 1)  # the next seq...
        with open(os.path.join(root, "LOCK"), "rb") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # the other writer holds the commit lock to append
            with open(path, "ab") as f:
                f.write(b"\x00junk\x00")
                at = f.tell()
                f.write(bytes(forged))
            resign(path, at)  # ...signed, but chained from nowhere
        size = os.path.getsize(path)
        with pytest.raises(eventstore.EventStoreError):
            s.append("set", "k", {"i": 9})
    assert os.path.getsize(path) == size
    assert not os.path.exists(os.path.join(root, "quarantine"))
