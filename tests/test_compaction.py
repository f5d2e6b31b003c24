"""Compaction: .zseg segments, reading across them, interrupted compactions ([F-19], [F-20])."""
from __future__ import annotations

import os
import shutil
import threading

import pytest

import eventstore
from eventstore.errors import CorruptionError

from _verbs import (  # noqa: F401 - fast_tmp is a fixture
    FAST, KV, events_tuple, fast_tmp, flip, frames_of, read_zseg_header, seg_files, snap_files,
    truncate,
)
from eventstore.local.frame import FrameScanner
from eventstore.local.layout import FRAME_HEADER_SIZE, SEGMENT_HEADER_SIZE
from eventstore.local.segment import scan


def fill(s, start: int, n: int) -> None:
    for i in range(start, start + n):
        s.append("title", f"/media/photos/2024/IMG_{i % 40:04d}.jpg",
                 {"title": f"Holiday photo {i}", "description": f"Taken on day {i % 7} at the beach"},
                 meta={"actor": "alice"})


def test_compact_compresses_sealed_segments_and_keeps_every_event(fast_tmp) -> None:
    root = str(fast_tmp / "s")
    kv = KV()
    with eventstore.open(root, [kv], segment_bytes=16384, snapshot_every=0, fs=FAST) as s:
        fill(s, 0, 600)
        events = list(s.read())
        plain = seg_files(root, ".seg")
        assert len(plain) >= 4
        sizes = sum(os.path.getsize(p) for p in plain)
        result = s.compact()
        assert result["compressed"] == len(plain)  # the active one is sealed first
        assert result["bytes_before"] == sizes
        assert 0 < result["bytes_after"] <= 0.35 * result["bytes_before"], result
        assert result["snapshot_seq"] == 600
        assert seg_files(root, ".seg") == [os.path.join(root, "segments", f"{601:020d}.seg")]
        zsegs = seg_files(root, ".zseg")
        assert len(zsegs) == len(plain)
        for z in zsegs:  # header facts ([F-19])
            magic, version, _, first, last, plain_size, _, _, _ = read_zseg_header(z)
            assert (magic, version) == (b"MLSZ", 1)
            assert z.endswith(f"{first:020d}.zseg") and last >= first and plain_size > 40
        assert events_tuple(s.read()) == events_tuple(events)  # retention keeps everything
        fill(s, 600, 50)
        events = list(s.read())
        st = s.stats()
        assert st["compressed_segments"] == len(zsegs) and st["events"] == 650
        state = kv.state()
    fresh = KV()
    with eventstore.open(root, [fresh], fs=FAST) as s:
        assert not s.recovery_report
        assert fresh.state() == state
        assert events_tuple(s.read()) == events_tuple(events)
        assert events_tuple(s.read(250, 260)) == events_tuple(events[249:259])  # from inside a .zseg
        assert [e.seq for e in s.read(590, 610)] == list(range(590, 610))  # across .zseg and .seg
        assert [e.seq for e in s.read(key="/media/photos/2024/IMG_0003.jpg")] == \
            [e.seq for e in events if e.key.endswith("IMG_0003.jpg")]
        report = s.verify()
        assert report.ok and report.events == 650, str(report)
    with eventstore.open(root, readonly=True) as r:
        assert events_tuple(r.read()) == events_tuple(events)
        follower = r.follow(start=1, timeout=0.2, poll=0.01)
        assert [e.seq for e in follower] == list(range(1, 651))


def test_compact_twice_and_full_replay_over_compressed_segments(fast_tmp) -> None:
    root = str(fast_tmp / "s")
    kv = KV()
    with eventstore.open(root, [kv], segment_bytes=8192, snapshot_every=0, fs=FAST) as s:
        fill(s, 0, 200)
        first = s.compact()
        fill(s, 200, 200)
        second = s.compact()
        assert first["compressed"] >= 1 and second["compressed"] >= 1
        again = s.compact()  # nothing new: the active segment is empty
        assert again["compressed"] == 0 and again["bytes_before"] == 0
        events = list(s.read())
        state = kv.state()
    shutil.rmtree(os.path.join(root, "snapshots"))
    os.mkdir(os.path.join(root, "snapshots"))
    fresh = KV()
    with eventstore.open(root, [fresh], fs=FAST) as s:  # full replay, all compressed
        assert fresh.count == 400 and fresh.state() == state
        assert events_tuple(s.read()) == events_tuple(events)


def _compact_then_restore_plain(root: str) -> tuple[list, str, str]:
    with eventstore.open(root, [KV()], segment_bytes=4096, snapshot_every=0, fs=FAST) as s:
        fill(s, 0, 60)
        plain = seg_files(root, ".seg")[0]
        saved = open(plain, "rb").read()
        s.compact()
        events = list(s.read())
    zseg = plain[:-4] + ".zseg"
    assert os.path.exists(zseg) and not os.path.exists(plain)
    with open(plain, "wb") as f:
        f.write(saved)
    return events, plain, zseg


def test_interrupted_compaction_with_both_files_is_finished(fast_tmp) -> None:
    """[F-20]: N.seg and a good N.zseg: open checks N.zseg then removes N.seg."""
    root = str(fast_tmp / "s")
    events, plain, zseg = _compact_then_restore_plain(root)
    with eventstore.open(root, readonly=True) as r:  # readers use N.seg meanwhile
        assert events_tuple(r.read()) == events_tuple(events)
    with eventstore.open(root, [KV()], fs=FAST) as s:
        (entry,) = list(s.recovery_report)
        assert (entry.action, entry.file) == ("finished-compaction", plain)
        assert not os.path.exists(plain) and os.path.exists(zseg)
        assert events_tuple(s.read()) == events_tuple(events)


@pytest.mark.parametrize("damage", ["flip", "truncate", "junk"])
def test_interrupted_compaction_with_a_bad_zseg_keeps_the_plain_segment(fast_tmp, damage) -> None:
    root = str(fast_tmp / "s")
    events, plain, zseg = _compact_then_restore_plain(root)
    original = open(zseg, "rb").read()
    if damage == "flip":
        flip(zseg, len(original) - 6)
    elif damage == "truncate":
        truncate(zseg, len(original) - 10)
    else:
        open(zseg, "ab").write(b"\0junk")
    damaged = open(zseg, "rb").read()
    with eventstore.open(root, [KV()], fs=FAST) as s:
        (entry,) = list(s.recovery_report)
        assert (entry.action, entry.file) == ("quarantined", zseg)
        assert os.path.exists(plain) and not os.path.exists(zseg)
        assert events_tuple(s.read()) == events_tuple(events)
        qdir = os.path.join(root, "quarantine")
        assert [open(os.path.join(qdir, n), "rb").read() for n in os.listdir(qdir)] == [damaged]
        assert s.verify().ok


def test_half_written_zseg_tmp_is_never_read(fast_tmp) -> None:
    """[F-02]: a leftover .zseg.tmp is moved to quarantine/ and the plain segment stays."""
    root = str(fast_tmp / "s")
    with eventstore.open(root, [KV()], segment_bytes=4096, snapshot_every=0, fs=FAST) as s:
        fill(s, 0, 60)
        events = list(s.read())
    plain = seg_files(root, ".seg")[0]
    tmp = plain[:-4] + ".zseg.tmp"
    with open(tmp, "wb") as f:
        f.write(b"MLSZ\x01\x00" + bytes(30))
    with eventstore.open(root, [KV()], fs=FAST) as s:
        assert [(e.action, e.file) for e in s.recovery_report] == [("quarantined", tmp)]
        assert not os.path.exists(tmp) and os.path.exists(plain)
        assert events_tuple(s.read()) == events_tuple(events)


def test_damaged_zseg_is_corruption_with_file_and_offset(fast_tmp) -> None:
    root = str(fast_tmp / "s")
    with eventstore.open(root, [KV()], segment_bytes=4096, snapshot_every=0, fs=FAST) as s:
        fill(s, 0, 60)
        s.compact()
    zseg = seg_files(root, ".zseg")[0]
    flip(zseg, 60)
    with eventstore.open(root, [KV()], fs=FAST) as s:  # the snapshot spares reading it
        with pytest.raises(CorruptionError) as info:
            list(s.read())
        assert info.value.file == zseg and info.value.offset is not None
        report = s.verify()
        assert not report.ok
        assert report.problems[0].file == zseg and report.problems[0].offset is not None
        assert all(p.offset is not None for p in report.problems)
        assert any(p.lost == (1, read_zseg_header(zseg)[4]) for p in report.problems)
        # nothing decompresses: the zstd damage is the segment's one problem, said once
        (own,) = [p for p in report.problems if p.file == zseg]
        assert own.reason == "bad zstd block header"
    shutil.rmtree(os.path.join(root, "snapshots"))
    with pytest.raises(CorruptionError) as info:
        eventstore.open(root, [KV()], fs=FAST)
    assert info.value.file == zseg


def test_snapshots_survive_compaction_and_retention_never_drops_events(fast_tmp) -> None:
    root = str(fast_tmp / "s")
    with eventstore.open(root, [KV()], segment_bytes=4096, snapshot_every=0, fs=FAST) as s:
        for round_ in range(5):
            fill(s, round_ * 40, 40)
            s.compact()
        assert len(snap_files(root)) == 3
        assert [e.seq for e in s.read()] == list(range(1, 201))


def test_readers_of_another_handle_while_plain_segments_are_removed(fast_tmp) -> None:
    """A readonly reader in the middle of a plain segment that compaction removes keeps
    reading it (the file is held open), and never sees a missing file."""
    root = str(fast_tmp / "s")
    errors: list[str] = []
    counts: list[int] = []
    with eventstore.open(root, [], segment_bytes=4096, snapshot_every=0, fs=FAST) as s:
        stop = threading.Event()

        def reader() -> None:
            with eventstore.open(root, readonly=True) as r:
                while not stop.is_set():
                    try:
                        seqs = [e.seq for e in r.read()]
                        assert seqs == list(range(1, len(seqs) + 1))
                        counts.append(len(seqs))
                    except Exception as exc:  # noqa: BLE001 - collected for the assert
                        errors.append(repr(exc))

        threads = [threading.Thread(target=reader) for _ in range(2)]
        for t in threads:
            t.start()
        for k in range(80):
            fill(s, k * 20, 20)
            s.compact()
        stop.set()
        for t in threads:
            t.join()
    assert errors == []
    assert counts and max(counts) > 0


def test_appends_snapshots_compaction_and_follow_at_once(fast_tmp) -> None:
    """Writers, automatic background snapshots, compaction and a live follower together:
    the follower sees every seq once in order, and a reopen (from the newest snapshot)
    gives exactly the state of a full replay."""
    root = str(fast_tmp / "s")
    kv = KV()
    with eventstore.open(root, [kv], segment_bytes=4096, snapshot_every=13, fs=FAST) as s:
        seen: list[int] = []
        stop = threading.Event()

        def follower() -> None:
            for e in s.follow(start=1, poll=0.001, timeout=2.0):
                seen.append(e.seq)
                if e.seq == 800:
                    return

        errors: list[BaseException] = []

        def writer(t: int) -> None:
            try:
                for i in range(200):
                    s.append("set", f"w{t}-{i % 7}", {"i": i})
            except BaseException as exc:  # noqa: BLE001 - asserted below
                errors.append(exc)

        def compactor() -> None:
            try:
                while not stop.is_set():
                    s.compact()
            except BaseException as exc:  # noqa: BLE001 - asserted below
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
        side = [threading.Thread(target=follower), threading.Thread(target=compactor)]
        for t in side + threads:
            t.start()
        for t in threads:
            t.join()
        stop.set()
        for t in side:
            t.join(20)
        assert errors == []
        assert seen == list(range(1, 801))
        events = list(s.read())
        state = kv.state()
    full = KV()
    for e in events:
        full.apply(e)
    assert full.state() == state
    fresh = KV()
    with eventstore.open(root, [fresh], fs=FAST) as s:
        assert not s.recovery_report
        assert fresh.state() == state
        report = s.verify()
        assert report.ok, str(report)


def test_a_segment_listed_before_compaction_removed_it_is_read_from_its_zseg(fast_tmp) -> None:
    """[F-20]: a reader (or a readonly open) that listed N.seg just before compaction
    replaced it by N.zseg reads the same frames from N.zseg, instead of failing."""
    from eventstore.fs import DEFAULT_FS
    from eventstore.local.segment import SegmentStream, list_segments
    root = str(fast_tmp / "s")
    with eventstore.open(root, [], segment_bytes=4096, snapshot_every=0, fs=FAST) as s:
        fill(s, 0, 60)
        listed = list_segments(DEFAULT_FS, os.path.join(root, "segments"))
        plain = [r for r in listed if not r.compressed][0]
        before = frames_of(plain.path)
        raw = open(plain.path, "rb").read()
        s.compact()
        assert not os.path.exists(plain.path)
        stream = SegmentStream(DEFAULT_FS, plain)
        assert stream.ref.compressed and stream.ref.first_seq == plain.first_seq
        scanner = FrameScanner(SEGMENT_HEADER_SIZE, plain.first_seq, stream.prev_digest, end=stream.end)
        got = [f for f in scan(stream, scanner, SEGMENT_HEADER_SIZE)]
        assert [(f.offset, f.first_seq, f.count) for f in got] == \
            [(f.offset, f.first_seq, f.count) for f in before]
        assert all(f.payload == raw[f.offset + FRAME_HEADER_SIZE:f.offset + f.size] for f in got)


def test_compact_stops_at_a_damaged_sealed_segment_with_file_and_offset(fast_tmp) -> None:
    """[F-14], [F-05], [F-20]: a damaged frame in a sealed plain segment that the open did not
    read (a snapshot spared it). `compact` raises `CorruptionError` naming the segment and the
    frame's offset, as strict reading does; what it did before the damage is whole (the
    segment before it is compressed, checked, and its plain copy removed), the damaged segment
    and those after it are untouched byte for byte, no `.tmp` is left and no snapshot is taken.
    The store keeps working, and a salvage open then repairs it so compaction completes."""
    root = str(fast_tmp / "s")
    with eventstore.open(root, [KV()], segment_bytes=4096, snapshot_every=0, fs=FAST) as s:
        fill(s, 0, 120)
        s.snapshot()
        events = list(s.read())
    plain = seg_files(root, ".seg")
    assert len(plain) >= 4
    damaged = plain[1]
    victim = frames_of(damaged)[2]
    flip(damaged, victim.offset + FRAME_HEADER_SIZE + 5)
    untouched = {p: open(p, "rb").read() for p in plain[1:]}
    with eventstore.open(root, [KV()], segment_bytes=4096, snapshot_every=0, fs=FAST) as s:
        with pytest.raises(CorruptionError) as info:
            s.compact()
        assert (info.value.file, info.value.offset) == (damaged, victim.offset)
        assert seg_files(root, ".zseg") == [plain[0][:-len(".seg")] + ".zseg"]
        assert not os.path.exists(plain[0])
        assert {p: open(p, "rb").read() for p in plain[1:]} == untouched
        assert not [n for n in os.listdir(os.path.join(root, "segments")) if n.endswith(".tmp")]
        assert [os.path.basename(p) for p in snap_files(root)] == [f"{120:020d}.snap"]
        assert s.append("title", "after", {}).seq == 121  # the store still works
    with eventstore.open(root, [KV()], recovery="salvage", fs=FAST) as s:
        assert s.recovery_report.lost_ranges == [(victim.first_seq, victim.last_seq)]
        s.compact()
        assert not seg_files(root, ".seg")[:-1]
        assert [e.seq for e in s.read()] == [e.seq for e in events if e.seq != victim.first_seq] + [121]
