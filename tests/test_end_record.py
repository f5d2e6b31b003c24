"""The end-of-log record ``END`` and what an open makes of commits lost at the end ([F-28], [F-29]).

A log cut to a frame boundary, or missing its last segments, reads cleanly;
only evidence kept elsewhere says commits were lost: ``END`` (written at
roll-over and clean close), a snapshot positioned past the end, a log that
ends in a ``.zseg``. A strict open refuses such a log (naming the evidence)
and appends nothing; a salvage keeps the proven seqs behind gap frames, so no
later commit reuses them, and restores the state a snapshot holds. Tests work
on real files through the public API; ``END`` is read with its byte table.
"""
from __future__ import annotations

import os
import struct

import pytest

import eventstore
from eventstore import CorruptionError
from eventstore.errors import FormatVersionError

from _verbs import (  # noqa: F401 - fast_tmp is a fixture
    FAST, KV, events_tuple, fast_tmp, flip, frames_of, resign_header, seg_files, snap_files, write_at,
)

SEGMENT_BYTES = 4096
END_SIZE = 48  # docs/FORMAT.md §9


def fill(s, start: int, n: int) -> list:
    return [s.append("set", f"k{i % 3}", {"i": i, "pad": "x" * 300}) for i in range(start, start + n)]


def end_record(root: str) -> tuple[int, int] | None:
    """(seq, segment) from ``END`` ([F-28]), or None when there is none."""
    path = os.path.join(root, "END")
    if not os.path.exists(path):
        return None
    data = open(path, "rb").read()
    assert len(data) == END_SIZE and data[:4] == b"MLEN"
    seq, segment = struct.unpack_from("<QQ", data, 8)
    return seq, segment


def first_seq_of(path: str) -> int:
    return int(os.path.basename(path)[:20])


def tree(root: str) -> dict[str, bytes]:
    return {os.path.join(d, n): open(os.path.join(d, n), "rb").read()
            for d, _, names in os.walk(root) for n in names if not n.startswith("LOCK")}


def quarantined(root: str) -> list[bytes]:
    q = os.path.join(root, "quarantine")
    return [open(os.path.join(q, n), "rb").read() for n in os.listdir(q)] if os.path.isdir(q) else []


# -- [F-28] when END is written ------------------------------------------------------------------
def test_end_follows_roll_overs_and_clean_closes(fast_tmp) -> None:
    """[F-28]: at each roll-over END says the log reached the seq before the new segment and goes
    on there; a clean close (fsync or flush) says the last seq; with durability none a close
    leaves the roll-over's record; a writer never moves it back."""
    root = str(fast_tmp / "s")
    with eventstore.open(root, segment_bytes=SEGMENT_BYTES, snapshot_every=0, fs=FAST) as s:
        fill(s, 0, 30)
        active = first_seq_of(seg_files(root)[-1])
        assert active > 1
        assert end_record(root) == (active - 1, active)
    assert end_record(root) == (30, active)
    with eventstore.open(root, segment_bytes=SEGMENT_BYTES, snapshot_every=0, durability="none", fs=FAST) as s:
        fill(s, 30, 3)
    assert end_record(root) == (30, active)  # no roll-over, and none does not record its close
    a = eventstore.open(root, segment_bytes=SEGMENT_BYTES, snapshot_every=0, fs=FAST)
    with eventstore.open(root, segment_bytes=SEGMENT_BYTES, snapshot_every=0, fs=FAST) as b:
        fill(b, 33, 2)
    reached = end_record(root)
    assert reached is not None and reached[0] == 35
    a.close()  # a saw less than b committed: it keeps b's record
    assert end_record(root) == reached


# -- [F-29] strict refuses, salvage keeps the seqs -------------------------------------------------
def _closed_store(root: str, n: int = 100, **kw) -> list:
    with eventstore.open(root, [KV()], segment_bytes=SEGMENT_BYTES, snapshot_every=0, fs=FAST, **kw) as s:
        return fill(s, 0, n)


@pytest.mark.parametrize("readonly", [False, True], ids=["writer", "readonly"])
def test_strict_refuses_a_log_shorter_than_end_and_appends_nothing(fast_tmp, readonly: bool) -> None:
    """[F-29]: the last segment deleted after a clean close: a strict open raises
    `CorruptionError` naming END and the missing seqs, and changes no file."""
    root = str(fast_tmp / "s")
    events = _closed_store(root)
    last = seg_files(root)[-1]
    first_lost = first_seq_of(last)
    os.remove(last)
    before = tree(root)
    with pytest.raises(CorruptionError) as info:
        eventstore.open(root, readonly=readonly, fs=FAST)
    assert info.value.file == os.path.join(root, "END")
    assert f"seqs {first_lost}-{events[-1].seq} are missing" in info.value.reason
    assert tree(root) == before


def test_salvage_keeps_the_seqs_end_proves_and_the_store_goes_on(fast_tmp) -> None:
    """[F-29], [F-25]: no snapshot covers the lost commits, END does: salvage reports the range,
    keeps it behind a gap frame, the next commit gets the seq after it, strict opens are content
    and verify is clean (the gap is listed as lost)."""
    root = str(fast_tmp / "s")
    events = _closed_store(root)
    last = seg_files(root)[-1]
    first_lost = first_seq_of(last)
    os.remove(last)
    kept = [e for e in events if e.seq < first_lost]
    with eventstore.open(root, [KV()], recovery="salvage", fs=FAST) as s:
        assert s.recovery_report.lost_ranges == [(first_lost, events[-1].seq)], s.recovery_report
        assert events_tuple(s.read()) == events_tuple(kept)
        assert s.append("set", "new", {}).seq == events[-1].seq + 1
    with eventstore.open(root, [KV()], fs=FAST) as s:
        assert not s.recovery_report
        report = s.verify()
        assert report.ok and report.lost == [(first_lost, events[-1].seq)], str(report)
    with eventstore.open(root, [KV()], recovery="salvage", fs=FAST) as s:
        assert not s.recovery_report  # nothing left to repair


def test_a_lost_active_segment_end_names_is_refused_then_recreated(fast_tmp) -> None:
    """[F-28], [F-29]: durability none records roll-overs only; the active segment it rolled
    into (with commits in it) is deleted. The log ends where END's seq says, but the segment END
    names is gone: strict refuses; salvage creates it empty, reports that its commits (how many
    is unknown) are lost, and strict opens afterwards."""
    root = str(fast_tmp / "s")
    events = _closed_store(root, durability="none")
    last = seg_files(root)[-1]
    name = first_seq_of(last)
    assert end_record(root) == (name - 1, name) and events[-1].seq >= name
    os.remove(last)
    with pytest.raises(CorruptionError) as info:
        eventstore.open(root, fs=FAST)
    assert info.value.file == os.path.join(root, "END") and f"segment {name}" in info.value.reason
    with eventstore.open(root, [KV()], recovery="salvage", fs=FAST) as s:
        assert any(e.action == "damaged" and f"segment {name}" in e.reason for e in s.recovery_report)
        assert s.last_seq == name - 1
    assert os.path.getsize(last) == 40  # a header: where the log goes on
    with eventstore.open(root, [KV()], fs=FAST) as s:
        assert not s.recovery_report and s.append("set", "k", {}).seq == name


def test_a_log_ending_in_a_compressed_segment_is_refused(fast_tmp) -> None:
    """[F-29]: compaction seals before it compresses, so a plain segment always follows the last
    `.zseg`. With no END and no snapshot (a store from before END existed), the active segment
    deleted after a compaction leaves a log ending in a `.zseg`: strict refuses naming it;
    salvage creates the plain segment and reports the loss."""
    root = str(fast_tmp / "s")
    with eventstore.open(root, [KV()], segment_bytes=SEGMENT_BYTES, snapshot_every=0, fs=FAST) as s:
        fill(s, 0, 60)
        s.compact()
        fill(s, 60, 5)
    os.remove(os.path.join(root, "END"))
    for snap in snap_files(root):
        os.remove(snap)
    active = seg_files(root)[-1]
    os.remove(active)
    zseg = seg_files(root)[-1]
    assert zseg.endswith(".zseg")
    with pytest.raises(CorruptionError) as info:
        eventstore.open(root, fs=FAST)
    assert info.value.file == zseg
    with eventstore.open(root, [KV()], recovery="salvage", fs=FAST) as s:
        assert any(e.action == "damaged" and e.file == zseg for e in s.recovery_report), s.recovery_report
        assert s.append("set", "k", {}).seq == 61
    with eventstore.open(root, [KV()], fs=FAST) as s:
        assert not s.recovery_report and s.last_seq == 61


# -- [F-29] a torn tail accounts for END only when it can be the commit END recorded ---------------
def test_a_torn_last_commit_is_the_tail_rules_and_end_follows(fast_tmp) -> None:
    """[F-13], [F-29]: the last frame cut short after a clean close. The tail rule cuts it (bytes
    in quarantine, reported) as before, and END now says where the log ends, so the next strict
    open is clean and that seq is given again."""
    root = str(fast_tmp / "s")
    events = _closed_store(root, n=20)
    path = seg_files(root)[-1]
    last = frames_of(path)[-1]
    os.truncate(path, last.offset + last.size - 5)
    with eventstore.open(root, fs=FAST) as s:
        assert [e.action for e in s.recovery_report] == ["truncated"]
        assert s.last_seq == events[-1].seq - 1
    assert end_record(root)[0] == events[-1].seq - 1  # type: ignore[index]
    with eventstore.open(root, fs=FAST) as s:
        assert not s.recovery_report
        assert s.append("set", "k", {}).seq == events[-1].seq


def test_a_torn_frame_claiming_other_seqs_is_not_the_commit_end_recorded(fast_tmp) -> None:
    """[F-29]: the last frame's first-seq field damaged after a clean close: its header claims
    seqs that are not the ones END recorded, so the damage does not account for them. Strict
    refuses naming END; salvage keeps the seq behind a gap frame (not reused)."""
    root = str(fast_tmp / "s")
    events = _closed_store(root, n=20)
    path = seg_files(root)[-1]
    last = frames_of(path)[-1]
    flip(path, last.offset + 16, 3)  # first seq + 8: the CRC fails, nothing valid follows
    with pytest.raises(CorruptionError) as info:
        eventstore.open(root, fs=FAST)
    assert info.value.file == os.path.join(root, "END")
    with eventstore.open(root, [KV()], recovery="salvage", fs=FAST) as s:
        assert s.recovery_report.lost_ranges == [(events[-1].seq, events[-1].seq)], s.recovery_report
        assert s.append("set", "k", {}).seq == events[-1].seq + 1


# -- [F-29] snapshots past the end ------------------------------------------------------------------
def test_each_snapshot_past_the_end_keeps_its_state_behind_its_own_gap_frame(fast_tmp) -> None:
    """[F-29], [F-21], [F-25]: three snapshots (60, 80, 100) and END (100) all lie past a log that
    now ends at 50 (its later segments deleted). Salvage writes a gap frame ending at each
    snapshot's seq, rewrites each snapshot to point after its gap frame (the originals are in
    quarantine/), and the open restores the newest: the projection and key versions are those of
    seq 100. Strict opens and verify are content afterwards."""
    root = str(fast_tmp / "s")
    kv = KV()
    with eventstore.open(root, [kv], segment_bytes=SEGMENT_BYTES, snapshot_every=0, fs=FAST) as s:
        fill(s, 0, 60)
        s.snapshot()
        fill(s, 60, 20)
        s.snapshot()
        fill(s, 80, 20)
        s.snapshot()
        state = kv.state()
        versions = {k: s.version(k) for k in ("k0", "k1", "k2")}
    snaps = snap_files(root)
    assert [first_seq_of(p) for p in snaps] == [60, 80, 100]
    originals = [open(p, "rb").read() for p in snaps]
    for path in seg_files(root):
        if first_seq_of(path) > 50:
            os.remove(path)
    end = max(f.last_seq for f in frames_of(seg_files(root)[-1]))
    with pytest.raises(CorruptionError):
        eventstore.open(root, [KV()], fs=FAST)
    fresh = KV()
    with eventstore.open(root, [fresh], recovery="salvage", fs=FAST) as s:
        assert s.recovery_report.lost_ranges == [(end + 1, 100)], s.recovery_report
        assert fresh.state() == state
        assert {k: s.version(k) for k in versions} == versions
        assert s.append("set", "k0", {}).seq == 101
    assert all(o in quarantined(root) for o in originals)
    again = KV()
    with eventstore.open(root, [again], fs=FAST) as s:
        assert not s.recovery_report
        assert s.verify().ok, s.verify()
        assert again.state()[1] == state[1] + 1  # restored from 100, then seq 101


def test_a_readonly_salvage_reports_the_lost_range_and_writes_nothing(fast_tmp) -> None:
    """[F-29], [F-26]: readonly salvage repairs nothing and only reports."""
    root = str(fast_tmp / "s")
    events = _closed_store(root)
    os.truncate(seg_files(root)[-1], 40)
    first_lost = first_seq_of(seg_files(root)[-1])
    before = tree(root)
    with eventstore.open(root, readonly=True, recovery="salvage", fs=FAST) as s:
        assert (first_lost, events[-1].seq) in s.recovery_report.lost_ranges, s.recovery_report
    assert tree(root) == before


def test_verify_names_a_log_that_ends_before_end(fast_tmp) -> None:
    """[F-29]: `verify` in a readonly store reports the missing seqs against END."""
    root = str(fast_tmp / "s")
    _closed_store(root)
    os.truncate(seg_files(root)[-1], 40)
    with eventstore.open(root, readonly=True, recovery="salvage", fs=FAST) as s:
        report = s.verify()
    assert any(p.file == os.path.join(root, "END") and "100" in p.reason for p in report.problems), str(report)


# -- END itself is a hostile file like any other -----------------------------------------------
@pytest.mark.parametrize("opener", ["writer", "salvage"])
def test_a_damaged_end_is_skipped_and_set_aside(fast_tmp, opener: str) -> None:
    """[F-28], [F-05]: an END that does not read is no evidence: a readonly open reports it and
    changes nothing; salvage moves it to quarantine/ at once, a strict writer before its clean
    close writes a new one; it is never simply overwritten."""
    root = str(fast_tmp / "s")
    events = _closed_store(root, n=20)
    end = os.path.join(root, "END")
    flip(end, 9)
    damaged = open(end, "rb").read()
    with eventstore.open(root, readonly=True, fs=FAST) as s:
        assert [e.action for e in s.recovery_report] == ["skipped-end-record"]
        assert s.last_seq == events[-1].seq
    assert open(end, "rb").read() == damaged
    with eventstore.open(root, fs=FAST, recovery="salvage" if opener == "salvage" else "strict") as s:
        assert [e.action for e in s.recovery_report] == ["skipped-end-record"]
    assert damaged in quarantined(root)
    assert end_record(root) == (events[-1].seq, first_seq_of(seg_files(root)[-1]))


def test_a_newer_end_version_is_a_version_error(fast_tmp) -> None:
    """[F-06]: never treated as damage to repair."""
    root = str(fast_tmp / "s")
    _closed_store(root, n=5)
    end = os.path.join(root, "END")
    write_at(end, 4, (2).to_bytes(2, "little"))
    resign_header(end, END_SIZE)
    with pytest.raises(FormatVersionError):
        eventstore.open(root, fs=FAST)


def test_a_store_whose_segments_are_all_gone_is_not_a_new_store(fast_tmp) -> None:
    """[F-29], [F-03]: every segment deleted; END proves 100 commits. A strict open refuses and
    creates nothing (no fresh segment 1 that would start the log again); salvage keeps seqs
    1-100 behind gap frames, and the next commit is 101."""
    root = str(fast_tmp / "s")
    _closed_store(root)
    for path in seg_files(root):
        os.remove(path)
    with pytest.raises(CorruptionError) as info:
        eventstore.open(root, fs=FAST)
    assert info.value.file == os.path.join(root, "END") and "1-100" in info.value.reason
    assert seg_files(root) == []
    with eventstore.open(root, [KV()], recovery="salvage", fs=FAST) as s:
        assert s.recovery_report.lost_ranges == [(1, 100)], s.recovery_report
        assert list(s.read()) == [] and s.append("set", "k", {}).seq == 101
    with eventstore.open(root, [KV()], fs=FAST) as s:
        assert not s.recovery_report and s.verify().ok
