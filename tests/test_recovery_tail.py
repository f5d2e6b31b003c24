"""The tail rule: every truncation of the active segment opens to a prefix of
whole commits ([F-11], [F-13]); the cut bytes go to quarantine/ first ([F-05]);
readonly opens never modify a file ([F-16]); damage in a sealed segment is
corruption ([F-14]).
"""
from __future__ import annotations

import os
import shutil
import struct

import pytest

import eventstore
from eventstore import CorruptionError

HEADER = 40  # segment header size, docs/FORMAT.md §4.1
FRAME_HEADER = 48  # §4.2


def frame_bounds(data: bytes, start: int = HEADER) -> list[int]:
    """Offsets where each frame ends, read from the length fields ([F-08])."""
    ends, off = [], start
    while off < len(data):
        (n,) = struct.unpack_from("<I", data, off + 8)
        off += FRAME_HEADER + n
        ends.append(off)
    assert off == len(data)
    return ends


def build(path, commits, **kw):
    """Append ``commits`` (lists of (type, key, data)); return the events per commit."""
    out = []
    with eventstore.open(path, durability="none", snapshot_every=0, **kw) as store:
        for items in commits:
            if len(items) == 1:
                out.append([store.append(*items[0])])
            else:
                out.append(store.append_many(items))
    return out


COMMITS = [
    [("created", "a", {"title": "first"})],
    [("title", "b", {"title": "x" * 90, "n": 2**40}), ("title", "c", {"l": [1, 2.5, None]}), ("desc", "a", {})],
    [("desc", "b", {"b": b"\x00\xff" * 30})],
    [("title", "a", {"nested": {"d": {"e": True}}})],
    [("t", "k", {})] * 2,
]


def tree_state(root, skip=()):
    """Every file's bytes and mtime, every directory's entries (minus names in ``skip``)."""
    out = {}
    for dirpath, dirnames, names in os.walk(root):
        out[dirpath] = sorted(dirnames + names)
        for n in names:
            if n in skip:
                continue
            p = os.path.join(dirpath, n)
            with open(p, "rb") as f:
                out[p] = (f.read(), os.stat(p).st_mtime_ns)
    return out


def quarantine_files(root):
    q = os.path.join(root, "quarantine")
    return sorted(os.path.join(q, n) for n in os.listdir(q)) if os.path.isdir(q) else []


@pytest.mark.parametrize("layout", ["one-segment", "several-segments"])
def test_every_truncation_of_the_active_segment(tmp_path, segment_files, layout):
    """[F-13] every cut opens to exactly the commits wholly before it; [F-05] the cut bytes
    are in quarantine/ and recovery_report names segment, offset and byte count; [F-16]
    a readonly open of the same damage changes nothing and sees the same prefix."""
    root = str(tmp_path / "s")
    kw = {}
    commits = COMMITS
    if layout == "several-segments":
        kw = {"segment_bytes": 4096}
        commits = [[("fill", f"f{i}", {"pad": "p" * 700})] for i in range(12)] + COMMITS
    built = build(root, commits, **kw)
    segs = segment_files(root)
    assert (len(segs) == 1) == (layout == "one-segment")
    active = segs[-1]
    original = open(active, "rb").read()
    ends = frame_bounds(original)
    # the commits held by the active segment, and those before it
    n_active = len(ends)
    before = [e for c in built[:-n_active] for e in c]
    in_active = built[-n_active:]
    assert len(in_active) == len(COMMITS)
    # [F-28]: the end-of-log record belongs to the state being cut: a reopen below writes one at
    # its clean close (durability fsync), which a later cut would contradict. Each cut starts from
    # the store `build` left (durability none records roll-overs only).
    end_record = os.path.join(root, "END")
    end_before = open(end_record, "rb").read() if os.path.exists(end_record) else None
    checked_cuts = 0
    for cut in range(HEADER, len(original) + 1):
        with open(active, "wb") as f:
            f.write(original[:cut])
        if end_before is None:
            if os.path.exists(end_record):
                os.remove(end_record)
        else:
            with open(end_record, "wb") as f:
                f.write(end_before)
        shutil.rmtree(os.path.join(root, "quarantine"), ignore_errors=True)
        whole = [c for c, end in zip(in_active, ends) if end <= cut]
        good_end = max([HEADER] + [e for e in ends if e <= cut])
        expect = before + [e for c in whole for e in c]

        full = layout == "one-segment"  # the other layout checks the writer's side only
        if full:
            snapshot_of_tree = tree_state(root)
            with eventstore.open(root, readonly=True) as ro:
                assert list(ro.read()) == expect, cut
                assert ro.last_seq == len(expect)
            assert tree_state(root) == snapshot_of_tree, f"readonly open modified files (cut {cut})"

        with eventstore.open(root, durability="none", **kw) as store:
            assert list(store.read()) == expect, cut
            report = store.recovery_report
            if cut == good_end:
                assert not report and report.entries == []
                assert quarantine_files(root) == []
            else:
                [entry] = report.entries
                assert entry.action == "truncated"
                assert os.path.samefile(entry.file, active)
                assert (entry.offset, entry.nbytes) == (good_end, cut - good_end)
                [q] = quarantine_files(root)
                assert open(q, "rb").read() == original[good_end:cut]
            assert os.path.getsize(active) == good_end
            assert open(active, "rb").read() == original[:good_end]
            if full:  # the log goes on from the truncation point and chains correctly
                nxt = store.append("after", "cut", {"cut": cut})
                assert nxt.seq == len(expect) + 1
        if full:
            with eventstore.open(root, **kw) as store:
                assert not store.recovery_report
                assert list(store.read()) == expect + [nxt]
                assert store.verify().ok
        checked_cuts += 1
    assert checked_cuts == len(original) - HEADER + 1


def test_truncated_segment_header_is_corruption_and_untouched(tmp_path, segment_files):
    """[F-07] a segment header is created atomically ([F-02]); a short one is not a torn
    write: strict open raises naming the file, and nothing is cut."""
    root = str(tmp_path / "s")
    build(root, COMMITS)
    [seg] = segment_files(root)
    original = open(seg, "rb").read()
    for cut in (0, 1, 4, 39):
        with open(seg, "wb") as f:
            f.write(original[:cut])
        state = tree_state(root, skip={"LOCK"})  # a writer's open records its pid there
        with pytest.raises(CorruptionError) as info:
            eventstore.open(root)
        assert os.path.samefile(info.value.file, seg) and info.value.offset == 0
        assert tree_state(root, skip={"LOCK"}) == state


@pytest.mark.parametrize("tail", [b"\x00" * 4096, b"\x00" * 3, b"MLFR" + b"\x00" * 60, os.urandom(200)],
                         ids=["zeros-4096", "zeros-3", "magic-then-zeros", "random"])
def test_garbage_or_zeros_after_the_last_frame_are_a_torn_tail(tmp_path, segment_files, tail):
    """[F-10] zero-filled space (e.g. after a power cut) never parses; [F-13] it is cut."""
    root = str(tmp_path / "s")
    built = build(root, COMMITS)
    [seg] = segment_files(root)
    original = open(seg, "rb").read()
    with open(seg, "ab") as f:
        f.write(tail)
    with eventstore.open(root) as store:
        assert list(store.read()) == [e for c in built for e in c]
        [entry] = store.recovery_report.entries
        assert (entry.action, entry.offset, entry.nbytes) == ("truncated", len(original), len(tail))
    assert open(seg, "rb").read() == original
    [q] = quarantine_files(root)
    assert open(q, "rb").read() == tail


def test_damage_in_a_sealed_segment_is_corruption(tmp_path, segment_files):
    """[F-14] a short frame in a sealed segment is not a torn tail: strict raises, nothing cut."""
    root = str(tmp_path / "s")
    build(root, [[("fill", f"f{i}", {"pad": "p" * 700})] for i in range(12)], segment_bytes=4096)
    segs = segment_files(root)
    assert len(segs) >= 2
    sealed = segs[0]
    data = open(sealed, "rb").read()
    with open(sealed, "wb") as f:
        f.write(data[:-10])
    state = tree_state(root, skip={"LOCK"})  # a writer's open records its pid there
    for kwargs in ({}, {"readonly": True}):
        with pytest.raises(CorruptionError) as info:
            eventstore.open(root, segment_bytes=4096, **kwargs)
        assert os.path.samefile(info.value.file, sealed)
        assert info.value.offset == frame_bounds(data)[-2]
        assert tree_state(root, skip={"LOCK"}) == state


def test_a_missing_middle_segment_is_corruption(tmp_path, segment_files):
    """[F-03]/[F-14] a segment whose first seq does not follow its predecessor."""
    root = str(tmp_path / "s")
    build(root, [[("fill", f"f{i}", {"pad": "p" * 700})] for i in range(20)], segment_bytes=4096)
    segs = segment_files(root)
    assert len(segs) >= 3
    os.rename(segs[1], str(tmp_path / "moved-away"))
    with pytest.raises(CorruptionError) as info:
        eventstore.open(root, segment_bytes=4096)
    assert os.path.basename(info.value.file) == os.path.basename(segs[2])


def test_leftover_tmp_files_are_quarantined_by_a_writer_only(tmp_path, segment_files):
    """[F-02] a .tmp file is never read; a writer's open moves it to quarantine/ (and reports
    it); a readonly open changes nothing, not even with a torn tail present ([F-16])."""
    root = str(tmp_path / "s")
    built = build(root, COMMITS)
    [seg] = segment_files(root)
    size = os.path.getsize(seg)
    tmp_seg = os.path.join(root, "segments", f"{99:020d}.seg.tmp")
    with open(tmp_seg, "wb") as f:
        f.write(b"MLSG half a segment header")
    with open(seg, "ab") as f:
        f.write(b"MLFR\x00\x01")  # and a torn tail
    state = tree_state(root)
    with eventstore.open(root, readonly=True) as ro:
        assert list(ro.read()) == [e for c in built for e in c]
    assert tree_state(root) == state
    with eventstore.open(root) as store:
        assert list(store.read()) == [e for c in built for e in c]
        actions = sorted(e.action for e in store.recovery_report)
        assert actions == ["quarantined", "truncated"]
    assert not os.path.exists(tmp_seg) and os.path.getsize(seg) == size
    moved = [q for q in quarantine_files(root) if q.endswith(".seg.tmp")]
    assert len(moved) == 1 and open(moved[0], "rb").read() == b"MLSG half a segment header"


@pytest.mark.parametrize("leftovers", [["segments"], ["segments", "snapshots"],
                                       ["METALOG.tmp", "segments", "snapshots"], ["METALOG.tmp"]])
def test_a_crash_while_creating_a_store_does_not_brick_the_directory(tmp_path, leftovers):
    """[F-01]/[F-02] what a kill during the first open leaves (our empty directories, an
    unfinished marker) is not a foreign directory: the next open completes the store."""
    root = tmp_path / "s"
    root.mkdir()
    for name in leftovers:
        if name.endswith(".tmp"):
            (root / name).write_bytes(b"METAL")  # a marker cut short
        else:
            (root / name).mkdir()
    before = tree_state(str(root))
    with pytest.raises(eventstore.NotAStoreError):
        eventstore.open(root, readonly=True)  # a reader creates nothing
    assert tree_state(str(root)) == before
    with eventstore.open(root) as store:
        assert store.append("t", "k").seq == 1
    with eventstore.open(root) as store:
        assert [e.key for e in store.read()] == ["k"]


def test_our_directory_names_holding_foreign_files_are_still_refused(tmp_path):
    root = tmp_path / "s"
    (root / "segments").mkdir(parents=True)
    (root / "segments" / "notes.txt").write_text("not ours")
    before = tree_state(str(root))
    with pytest.raises(eventstore.NotAStoreError):
        eventstore.open(root)
    assert tree_state(str(root)) == before
