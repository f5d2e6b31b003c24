"""The one segment walk gives readers a consistent view while writers roll over and compact ([F-30]).

The races between a reader and a writer that rolls over and compacts are made
deterministic here: a `FileSystem` whose
directory listing misses names (as one `getdents` pass does while compaction
renames ``N.seg`` to ``N.zseg`` and unlinks), or that lets a writer act at the
moment the walk lists the directory (after it read a segment, before it reads
again). Everything goes through the public API: `eventstore.open` with
``fs=...``, `read`, `follow`, `last_seq`.
"""
from __future__ import annotations

import os
from typing import Callable

import pytest

import eventstore
from eventstore.fs import FileSystem

from _verbs import FAST, KV, FastFS, events_tuple, fast_tmp, frames_of, seg_files, snap_files  # noqa: F401

SEGMENT_BYTES = 4096


def fill(s, start: int, n: int) -> list:
    return [s.append("set", f"k{i % 3}", {"i": i, "pad": "x" * 300}) for i in range(start, start + n)]


class Listing(FastFS):
    """A file system whose listings of ``segments/`` can hide names, or let a writer act first.

    ``hide``: segment first seqs left out of every listing (their files stay).
    ``before_list``: called once, just before the first listing of ``segments/`` taken after
    a reader reached the end of a segment file (so after the reader saw what a writer then
    changes, and before the reader looks again).
    """

    def __init__(self) -> None:
        super().__init__()
        self.hide: set[int] = set()
        self.before_list: Callable[[], None] | None = None
        self.listings = 0
        self.eof = False  # a reader reached the end of a segment file

    def listdir(self, path: str) -> list[str]:
        if os.path.basename(path) == "segments":
            self.listings += 1
            if self.eof and self.before_list is not None:
                hook, self.before_list = self.before_list, None
                hook()
            names = super().listdir(path)
            return [n for n in names if not (n[:20].isdigit() and int(n[:20]) in self.hide)]
        return super().listdir(path)

    def open_read(self, path: str):
        f = super().open_read(path)
        return _EofWatch(f, self) if os.path.basename(os.path.dirname(path)) == "segments" else f


class _EofWatch:
    """A segment file that tells its `Listing` when a read reached the end."""

    def __init__(self, f, fs: Listing) -> None:
        self._f, self._fs = f, fs

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        if n < 0 or len(data) < n:
            self._fs.eof = True
        return data

    def __getattr__(self, name: str):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._f.close()


def _compacted_store(root: str, n: int = 120) -> list:
    with eventstore.open(root, [KV()], segment_bytes=SEGMENT_BYTES, snapshot_every=0, fs=FAST) as s:
        events = fill(s, 0, n)
        s.compact()
        events += fill(s, n, 30)
    return events


@pytest.mark.parametrize("which", ["first", "middle", "active"])
def test_a_segment_missing_from_a_listing_is_found_by_name(fast_tmp, which: str) -> None:
    """[F-30], [F-20]: a listing taken while compaction renamed a segment misses it (and only
    it), or was taken while a writer created the active segment. Readers that open, read from
    seq 1 or from the middle, and follow, see every event and no `CorruptionError`: the next
    segment is taken by name, not from the listing."""
    root = str(fast_tmp / "s")
    events = _compacted_store(root)
    segs = seg_files(root)
    assert len(segs) >= 5 and segs[0].endswith(".zseg") and segs[-1].endswith(".seg")
    victim = {"first": segs[0], "middle": segs[len(segs) // 2], "active": segs[-1]}[which]
    first_seq = int(os.path.basename(victim)[:20])
    fs = Listing()
    fs.hide = {first_seq}
    with eventstore.open(root, [KV()], readonly=True, fs=fs) as s:
        assert not s.recovery_report, s.recovery_report
        assert events_tuple(s.read()) == events_tuple(events)
        middle = first_seq + 1
        assert [e.seq for e in s.read(start=middle)] == [e.seq for e in events if e.seq >= middle]
        assert [e.seq for e in s.follow(start=1, timeout=0)] == [e.seq for e in events]
    assert fs.listings > 0


def test_a_snapshot_into_a_segment_the_listing_missed_is_used(fast_tmp) -> None:
    """[F-30], [F-21]: a writer rolled over, compacted and wrote a snapshot into its new
    segment after the reader listed the segments. The reader checks the snapshot's segment by
    name: no "claims seqs past the log", and the state is the log's."""
    root = str(fast_tmp / "s")
    kv = KV()
    with eventstore.open(root, [kv], segment_bytes=SEGMENT_BYTES, snapshot_every=0, fs=FAST) as s:
        events = fill(s, 0, 80)
        s.compact()  # seals, compresses, snapshots into the new (empty) active segment
        state = kv.state()
    active = seg_files(root)[-1]
    fs = Listing()
    fs.hide = {int(os.path.basename(active)[:20])}
    fresh = KV()
    with eventstore.open(root, [fresh], readonly=True, fs=fs) as s:
        assert not s.recovery_report, s.recovery_report
        assert s.last_seq == events[-1].seq
        assert fresh.state() == state
        assert s.stats()["snapshot_seq"] == events[-1].seq  # restored from it, not replayed
    assert snap_files(root)


def test_a_segment_that_grew_before_the_writer_rolled_over_is_read_again(fast_tmp) -> None:
    """[F-30]: a follower read the active segment to its end; before it looks for the next
    segment, a writer appends to that segment and rolls over. The follower reads the new
    frames of the old segment first instead of calling their seqs missing."""
    root = str(fast_tmp / "s")
    with eventstore.open(root, segment_bytes=SEGMENT_BYTES, snapshot_every=0, fs=FAST) as w:
        events = fill(w, 0, 3)
        fs = Listing()
        with eventstore.open(root, readonly=True, fs=fs) as r:
            assert r.last_seq == 3
            before = len(seg_files(root))
            events += fill(w, 3, 1)  # the reader's cursor segment grows ...
            fs.eof = False
            fs.before_list = lambda: events.extend(fill(w, 4, 20))  # ... and grows and rolls over
            got = [e.seq for e in r.follow(start=4, timeout=0)]
            assert fs.before_list is None, "the walk never listed the segments"
        assert len(seg_files(root)) > before
    assert got == [e.seq for e in events if e.seq >= 4]


def test_damage_a_writer_is_repairing_is_read_again_before_it_is_believed(fast_tmp) -> None:
    """[F-30], [F-16], [F-13]: a dead writer left a torn tail; a reader meets it just as a live
    writer takes the lock, cuts it and appends new commits over it. The reader lists the
    segments and reads the segment again from its last good frame before it believes the
    damage, so it sees the new commits: no `CorruptionError`, no stop at a tail that is gone."""
    root = str(fast_tmp / "s")
    with eventstore.open(root, segment_bytes=1 << 20, snapshot_every=0, fs=FAST) as s:
        events = fill(s, 0, 5)
    active = seg_files(root)[-1]
    with open(active, "ab") as f:
        f.write(b"MLFR" + bytes(30))  # a torn frame header: the dead writer's
    later: list = []

    def writer_repairs() -> None:
        with eventstore.open(root, segment_bytes=1 << 20, snapshot_every=0, fs=FAST) as w:
            assert [e.action for e in w.recovery_report] == ["truncated"]
            later.extend(fill(w, 5, 3))

    fs = Listing()
    fs.before_list = writer_repairs
    with eventstore.open(root, readonly=True, fs=fs) as r:
        assert later, "the walk never listed the segments before reading the damage again"
        assert r.last_seq == 8
        assert events_tuple(r.read()) == events_tuple(events + later)


def test_real_damage_is_still_reported_after_the_re_read(fast_tmp) -> None:
    """[F-14], [F-30]: the re-read changes nothing when the damage is real: a readonly reader
    still raises `CorruptionError` with the file and the frame's offset."""
    root = str(fast_tmp / "s")
    with eventstore.open(root, segment_bytes=1 << 20, snapshot_every=0, fs=FAST) as s:
        fill(s, 0, 6)
    path = seg_files(root)[-1]
    data = bytearray(open(path, "rb").read())
    victim = frames_of(path)[2]
    data[victim.offset + 60] ^= 1
    open(path, "wb").write(bytes(data))
    fs = Listing()
    with pytest.raises(eventstore.CorruptionError) as info:
        eventstore.open(root, readonly=True, fs=fs)
    assert (info.value.file, info.value.offset) == (path, victim.offset)
    assert fs.listings >= 1  # it looked again before it believed it


def test_a_snapshot_pruned_after_the_listing_is_not_damage(fast_tmp) -> None:
    """[F-30], [F-23]: a writer prunes the newest listed snapshot before the reader reads it
    (here: it is gone right after the listing). The open takes the next one, reports nothing,
    and the state is the log's."""
    root = str(fast_tmp / "s")
    kv = KV()
    with eventstore.open(root, [kv], segment_bytes=SEGMENT_BYTES, snapshot_every=0, fs=FAST) as s:
        fill(s, 0, 30)
        s.snapshot()
        fill(s, 30, 30)
        s.snapshot()
        state = kv.state()
    newest = snap_files(root)[-1]

    class Pruning(FastFS):
        def listdir(self, path: str) -> list[str]:
            names = super().listdir(path)
            if os.path.basename(path) == "snapshots" and os.path.exists(newest):
                os.remove(newest)
            return names

    fresh = KV()
    with eventstore.open(root, [fresh], readonly=True, fs=Pruning()) as s:
        assert not s.recovery_report, s.recovery_report
        assert fresh.state() == state and s.last_seq == 60
