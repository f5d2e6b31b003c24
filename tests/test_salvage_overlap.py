"""Salvage of overlapping (stale or duplicated) segment files ([F-14], [F-15], [F-25], [F-26]).

A segment whose first seq is below the seq the log expects is a spare copy:
salvage keeps, for every seq, an intact copy that continues the digest chain
if any segment file holds one, each seq once and in order; it never removes or
shortens a file so that an intact commit the repaired log lacks is only in
quarantine/; the first frame it takes from a spare is judged against the
chain. (Found in review of 8a003ab, which dropped such copies.)
"""
from __future__ import annotations

import os
import shutil

import pytest

import eventstore
from eventstore.errors import CorruptionError
from eventstore.layout import FRAME_HEADER_SIZE, SEGMENT_HEADER_SIZE
from eventstore.recovery import Walker
from eventstore.report import RecoveryReport
from eventstore.segment import list_segments
from faultfs import FaultyFS

from _verbs import (  # noqa: F401 - fast_tmp is a fixture
    FAST, KV, fast_tmp, events_tuple, flip, frames_of, redigest, resign, resign_header, seg_files,
    write_at,
)
from test_salvage import _digest_before, _four_segments, _salvage_agrees, _segment_of_frames, make_store


def _stale_copy(root: str, into_next: bool = True) -> str:
    """A stale ``14.seg`` holding byte copies of segment 12's frames from seq 14 on (and, with
    ``into_next``, of the first two frames of segment 23): another rollover history's file."""
    segs = seg_files(root, ".seg")
    second, third = segs[1], segs[2]
    f2, f3 = frames_of(second), frames_of(third)
    parts = [(second, f) for f in f2[2:]] + ([(third, f) for f in f3[:2]] if into_next else [])
    return _segment_of_frames(root, f2[2].first_seq, _digest_before(second, f2[2]), parts)


def _edit(path: str, frame, how: str) -> None:
    """Change one payload byte of ``frame`` so that only the chain can tell: its CRC re-signed
    (its digest left as it was), or its digest recomputed from another digest (a foreign
    commit), or, as another history would have written it, its digest and every later frame's
    recomputed from the same digest before it (a valid commit no check can tell from the real)."""
    data = open(path, "rb").read()
    write_at(path, data.index(b"xxx", frame.offset), b"y")
    if how == "edited, CRC re-signed":
        resign(path, frame.offset)
    elif how == "re-chained from another digest":
        redigest(path, frame.offset, bytes(range(16)))
    else:
        frames = frames_of(path)
        prev = _digest_before(path, frame)
        for f in frames[[f.offset for f in frames].index(frame.offset):]:
            prev = redigest(path, f.offset, prev)


# -- finding 1: the first copy is damaged, a later overlapping copy is intact ----------------------
def test_seq_damaged_in_its_segment_is_restored_from_an_intact_overlapping_copy(fast_tmp) -> None:
    """[F-26], [F-25]: segment 12 has a bit flip in seq 16; a stale 14.seg holds an intact copy
    of 16 that chains from 15 and is chained by 17. Salvage puts that copy in place of a gap
    frame: nothing is lost, and 14.seg (which adds nothing) is removed only after segment 12 is
    rewritten. (8a003ab reported 16 lost and quarantined 14.seg.)"""
    root = str(fast_tmp / "s")
    events = _four_segments(root)
    second = seg_files(root, ".seg")[1]
    extra = _stale_copy(root, into_next=False)
    flip(second, frames_of(second)[4].offset + FRAME_HEADER_SIZE + 3)  # a payload byte of seq 16
    report = _salvage_agrees(root, events)
    assert report.lost_ranges == [], str(report)
    assert any(e.file == second and "restored from" in e.reason for e in report), str(report)
    assert not os.path.exists(extra)


def test_seq_damaged_in_its_segment_is_restored_from_an_earlier_overlapping_copy(fast_tmp) -> None:
    """[F-26]: the mirror case. A stale 14.seg holds intact copies of 14-24; the real segment
    23 has a bit flip in seq 23 (its first frame). Seq 23 is taken from 14.seg, which chains
    from 22 and is chained by 24: nothing is lost."""
    root = str(fast_tmp / "s")
    events = _four_segments(root)
    third = seg_files(root, ".seg")[2]
    _stale_copy(root)
    flip(third, frames_of(third)[0].offset + FRAME_HEADER_SIZE + 3)
    report = _salvage_agrees(root, events)
    assert report.lost_ranges == [], str(report)


# -- finding 2: damage in the stale copy costs nothing the real segment holds ---------------------
def test_damaged_copy_in_an_overlapping_segment_costs_no_seq_the_next_segment_holds(fast_tmp) -> None:
    """[F-26], [F-15]: a stale 14.seg holds copies of 14-24 and its copy of 23 is damaged; the
    real 23.seg holds 23 intact. A spare is searched only up to the next segment's name, so
    23.seg keeps 23 and nothing is lost. (8a003ab took 23-24 from 14.seg and lost 23.)"""
    root = str(fast_tmp / "s")
    events = _four_segments(root)
    extra = _stale_copy(root)
    flip(extra, frames_of(extra)[-2].offset + FRAME_HEADER_SIZE + 3)  # 14.seg's copy of seq 23
    report = _salvage_agrees(root, events)
    assert report.lost_ranges == [], str(report)
    assert not os.path.exists(extra)


def test_divergent_overlapping_copy_never_replaces_the_next_segments_commits(fast_tmp) -> None:
    """[F-26]: 14.seg holds copies of 14-22 and its own, well-chained but different 23 and 24
    (another history). The next segment's name says who holds 23: the real 23 and 24 are kept,
    and nothing is lost."""
    root = str(fast_tmp / "s")
    events = _four_segments(root)
    extra = _stale_copy(root)
    _edit(extra, frames_of(extra)[-2], "another history, well chained")
    report = _salvage_agrees(root, events)
    assert report.lost_ranges == [], str(report)


# -- finding 3: the first frame taken from a spare is judged against the chain -------------------
@pytest.mark.parametrize("snapshot", [False, True])
@pytest.mark.parametrize("how", ["edited, CRC re-signed", "re-chained from another digest",
                                 "another history, well chained"])
def test_overlapping_copy_that_differs_is_not_kept_over_the_real_one(fast_tmp, snapshot, how) -> None:
    """[F-26]: 14.seg holds copies of 14-22 and an edited copy of 23 (and 24); the real,
    intact 23 in 23.seg is the one kept, and a strict open and verify are clean."""
    root = str(fast_tmp / "s")
    events = _four_segments(root)
    if snapshot:
        with eventstore.open(root, [KV()], snapshot_every=0, fs=FAST) as s:
            s.snapshot()
    extra = _stale_copy(root)
    _edit(extra, frames_of(extra)[-2], how)
    report = _salvage_agrees(root, events)  # nothing lost: the snapshot holds nothing more
    assert report.lost_ranges == [], str(report)


@pytest.mark.parametrize("how", ["edited, CRC re-signed", "re-chained from another digest"])
@pytest.mark.parametrize("header", ["lowered", "left as it was"])
def test_first_frame_an_overlapping_segment_adds_is_judged_against_the_chain(fast_tmp, how, header) -> None:
    """[F-26], [F-15]: segment 23 renamed to 14.seg (its header lowered to match, or left as it
    was and so unreadable, [F-03]); it is the only holder of 23-33, and its first frame (23)
    was edited (a well-chained edit is a valid commit, which no check can tell). The walk and
    the rewrite search it from seq 23 and judge that first frame
    against the chain's digest: 23 is lost behind a gap frame where the chain restarts, and
    the frames after it are kept. (8a003ab kept the edited 23 and reported nothing lost.)"""
    root = str(fast_tmp / "s")
    events = _four_segments(root)
    segs = seg_files(root, ".seg")
    third = segs[2]
    victim = frames_of(third)[0]
    _edit(third, victim, how)
    extra = os.path.join(root, "segments", f"{frames_of(segs[1])[2].first_seq:020d}.seg")
    os.rename(third, extra)
    if header == "lowered":
        write_at(extra, 8, frames_of(segs[1])[2].first_seq.to_bytes(8, "little"))
        resign_header(extra, SEGMENT_HEADER_SIZE)
    report = _salvage_agrees(root, events)
    assert report.lost_ranges == [(victim.first_seq, victim.last_seq)], str(report)


# -- the fallback: a spare copy that cannot be restored is never dropped ----------------------------
def test_overlapping_segment_holding_a_seq_the_log_lacks_is_left_in_place(fast_tmp) -> None:
    """[F-26]: segment 12's seq 16 is damaged, and the stale 14.seg's copy of 16 was edited and
    re-signed, so it does not chain and cannot fill the hole. Salvage loses 16 behind a gap
    frame but leaves 14.seg exactly as it was (reported ``kept``): a copy the log lacks is
    never only in quarantine/. Strict opens keep refusing the store at 14.seg."""
    root = str(fast_tmp / "s")
    _four_segments(root)
    second = seg_files(root, ".seg")[1]
    extra = _stale_copy(root, into_next=False)
    flip(second, frames_of(second)[4].offset + FRAME_HEADER_SIZE + 3)
    _edit(extra, frames_of(extra)[2], "edited, CRC re-signed")  # its copy of 16
    before = open(extra, "rb").read()
    with eventstore.open(root, [KV()], recovery="salvage", fs=FAST) as s:
        report = s.recovery_report
    assert (16, 16) in report.lost_ranges, str(report)
    assert any(e.action == "kept" and e.file == extra for e in report), str(report)
    assert open(extra, "rb").read() == before
    with pytest.raises(CorruptionError) as info:
        eventstore.open(root, [KV()], fs=FAST).close()
    assert (info.value.file, info.value.offset) == (extra, 0)


# -- finding 4: a walk from a snapshot's position rewrites the segment under its own name ------------
def test_rewrite_after_a_walk_from_a_snapshot_position_keeps_the_segment_whole(fast_tmp) -> None:
    """[F-25], [F-21]: a salvage walk that starts at a snapshot's position inside segment 12
    and meets damage after it rewrites segment 12 from its first frame under its own name: the
    frames before the position stay, and only the damaged commit is lost. (The snapshot seq + 1
    was read as an overlap, and the segment was renamed and lost its first frames.)"""
    root = str(fast_tmp / "s")
    _four_segments(root)
    second = seg_files(root, ".seg")[1]
    frames = frames_of(second)
    k = 4
    digest = _digest_before(second, frames[k])
    flip(second, frames[k + 2].offset + FRAME_HEADER_SIZE + 3)
    refs = list_segments(FAST, os.path.join(root, "segments"))
    walker = Walker(FAST, root, policy="salvage", writer=True, report=RecoveryReport())
    walker.walk(refs, 1, frames[k].offset, frames[k].first_seq, digest, 0, None, check_snapshot=True)
    walker.rewrite_damaged(refs)
    assert walker.report.lost_ranges == [(frames[k + 2].first_seq, frames[k + 2].last_seq)]
    assert os.path.exists(second)
    assert [f.first_seq for f in frames_of(second)] == [f.first_seq for f in frames]


# -- what 8a003ab fixed still holds ------------------------------------------------------------------
def test_overlap_with_a_snapshot_positioned_in_the_next_segment(fast_tmp) -> None:
    """[F-26], [F-25]: a stale 14.seg running into segment 23, and a snapshot positioned in
    segment 23: nothing is lost, and the snapshot stays usable or is set aside."""
    root = str(fast_tmp / "s")
    make_store(root, n=27, segment_bytes=4096, pad=300)
    with eventstore.open(root, [KV()], segment_bytes=4096, snapshot_every=0, fs=FAST) as s:
        s.snapshot()
        for i in range(27, 40):
            s.append("set", f"k{i % 3}", {"i": i, "pad": "x" * (300 + i % 5)})
        events = list(s.read())
    _stale_copy(root)
    report = _salvage_agrees(root, events)
    assert report.lost_ranges == [], str(report)


def test_stale_copy_of_the_torn_last_segment_is_removed_and_nothing_is_lost(fast_tmp) -> None:
    """[F-13], [F-26]: the last segment has a torn tail and a stale copy of its frames from its
    second on follows it: the tail is cut, the copy adds nothing and goes, nothing is lost."""
    root = str(fast_tmp / "s")
    events = _four_segments(root)
    last = seg_files(root, ".seg")[-1]
    f4 = frames_of(last)
    _segment_of_frames(root, f4[1].first_seq, _digest_before(last, f4[1]), [(last, f) for f in f4[1:]])
    with open(last, "ab") as f:
        f.write(b"MLFR half a frame")
    report = _salvage_agrees(root, events)
    assert report.lost_ranges == [], str(report)
    with eventstore.open(root, [KV()], fs=FAST) as s:
        assert s.append("set", "k0", {"i": -1}).seq == len(events) + 1


def _zseg_overlap(root: str) -> list:
    """Compacted segments, and a stale plain 14.seg holding copies of seqs 14-24."""
    events = _four_segments(root)
    segs = seg_files(root, ".seg")
    saved = {p: open(p, "rb").read() for p in segs[1:3]}
    with eventstore.open(root, [KV()], fs=FAST) as s:
        s.compact()
    tmpd = root + "-plain"
    os.makedirs(tmpd)
    copies = []
    for p, d in saved.items():
        copies.append(os.path.join(tmpd, os.path.basename(p)))
        open(copies[-1], "wb").write(d)
    f2, f3 = frames_of(copies[0]), frames_of(copies[1])
    _segment_of_frames(root, f2[2].first_seq, _digest_before(copies[0], f2[2]),
                       [(copies[0], f) for f in f2[2:]] + [(copies[1], f) for f in f3[:2]])
    return events


def test_overlap_running_into_a_compressed_segment_loses_nothing(fast_tmp) -> None:
    """[F-26], [F-27]: the stale plain 14.seg runs into the compressed 23.zseg: nothing lost."""
    root = str(fast_tmp / "s")
    events = _zseg_overlap(root)
    report = _salvage_agrees(root, events)
    assert report.lost_ranges == [], str(report)


# -- power cuts during an overlap salvage -----------------------------------------------------------
def _overlap_store(root: str, damage: str) -> list:
    events = _four_segments(root)
    second = seg_files(root, ".seg")[1]
    extra = _stale_copy(root)
    if damage == "a seq only segment 12 holds":
        flip(second, frames_of(second)[1].offset + FRAME_HEADER_SIZE + 3)
    elif damage == "a seq the stale copy restores":
        flip(second, frames_of(second)[4].offset + FRAME_HEADER_SIZE + 3)
    elif damage == "the stale copy's copy of 23":
        flip(extra, frames_of(extra)[-2].offset + FRAME_HEADER_SIZE + 3)
    return events


def _crash_everywhere(tmp, make) -> None:
    """Salvage cut by a power loss at every file-system call, then salvaged again: the result
    always equals an uninterrupted salvage's, and a strict open agrees ([F-05], [F-26])."""
    template = str(tmp / "template")
    make(template)
    pristine = str(tmp / "pristine")
    shutil.copytree(template, pristine)
    clean = str(tmp / "clean")
    shutil.copytree(template, clean)
    with eventstore.open(clean, [KV()], recovery="salvage") as s:
        expected = events_tuple(s.read())
    fs = FaultyFS()
    fs.track(template)
    before = sum(fs.calls.values())
    eventstore.open(template, [KV()], recovery="salvage", fs=fs).close()
    total = sum(fs.calls.values()) - before
    fs.close_held()
    bad = []
    for n in range(1, total + 1):
        root = str(tmp / f"c{n}")
        shutil.copytree(pristine, root)
        fs = FaultyFS()
        fs.track(root)
        fs.crash_at(n)
        try:
            eventstore.open(root, [KV()], recovery="salvage", fs=fs).close()
        except OSError:
            pass
        fs.close_held()
        try:
            with eventstore.open(root, [KV()], recovery="salvage") as s:
                got = events_tuple(s.read())
            with eventstore.open(root, [KV()]) as s:
                got2 = events_tuple(s.read())
            if got != expected or got2 != expected:
                bad.append((n, fs.log[-1] if fs.log else None, len(got), len(expected)))
        except Exception as exc:  # noqa: BLE001 - every failure is collected
            bad.append((n, fs.log[-1] if fs.log else None, repr(exc)))
    assert not bad, "\n".join(map(str, bad))


@pytest.mark.parametrize("damage", ["none", "a seq only segment 12 holds", "a seq the stale copy restores",
                                    "the stale copy's copy of 23"])
def test_power_loss_at_every_call_of_an_overlap_salvage_loses_nothing_more(fast_tmp, damage) -> None:
    """[F-05], [F-26]: a power cut anywhere in an overlap salvage, then salvage again, gives
    what one uninterrupted salvage gives: a spare is removed only after the rewrites that took
    frames from it are written."""
    _crash_everywhere(fast_tmp, lambda root: _overlap_store(root, damage))


def test_power_loss_at_every_call_of_an_overlap_into_a_compressed_segment(fast_tmp) -> None:
    """[F-05], [F-26], [F-27]: as above, with the stale copy running into a compressed segment."""
    _crash_everywhere(fast_tmp, _zseg_overlap)
