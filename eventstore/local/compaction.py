"""Compaction: seal the active segment, compress sealed segments, snapshot.

A sealed plain segment is copied into a `.zseg` ([F-19]) by streaming, the
copy is made durable ([F-02]) and re-scanned in full, and only then is the
plain file removed ([F-05], [F-20]). Retention: every event is kept — history
is the product; only snapshots beyond the newest `KEEP_SNAPSHOTS` are pruned,
and `quarantine/` is never touched. `finish_interrupted` completes a
compaction that stopped between its rename and the removal.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

import zstandard

from ..fs import FileSystem
from ..errors import CorruptionError, FormatVersionError
from .frame import Damage, Frame
from .layout import READ_CHUNK, ZSEGMENT_HEADER_SIZE
from ..report import RecoveryEntry, RecoveryReport
from .directory import quarantine_move
from .segment import SegmentRef, encode_zheader, list_segments, parse_name, segment_path
from .walk import Resync, SegmentWalk

__all__ = ["compress_sealed", "compress_segment", "finish_interrupted"]

ZSTD_LEVEL = 3


@dataclass(frozen=True)
class SegmentFacts:
    """What a strict scan of a whole segment found: what its compressed copy must hold."""

    last_seq: int
    digest: bytes  # the chain digest after its last frame
    plain_size: int


def _scan_all(fs: FileSystem, ref: SegmentRef) -> SegmentFacts:
    """Scan a whole segment strictly (the chain too); its facts, or `CorruptionError`."""
    walk = SegmentWalk.over(fs, [ref], resync=Resync.NEVER, locked=True)  # sealed: nobody appends
    for visit in walk.visits():
        for item in visit.frames(verify_chain=True):
            if isinstance(item, Damage):
                raise CorruptionError(ref.path, item.offset, item.reason)
        scanner = visit.scanner
        assert scanner is not None
        return SegmentFacts(scanner.expected_seq - 1, scanner.digest, visit.stream.end)
    raise AssertionError("a walk over one segment visits it")


def compress_segment(fs: FileSystem, ref: SegmentRef) -> str:
    """Write ``ref``'s compressed copy durably, check it, then remove the plain file."""
    facts = _scan_all(fs, ref)
    plain_size = facts.plain_size
    zpath = segment_path(os.path.dirname(ref.path), ref.first_seq, compressed=True)
    tmp = zpath + ".tmp"
    cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True)
    fd = fs.open_rw(tmp, create=True)
    try:
        fs.truncate(fd, 0)
        fs.write(fd, encode_zheader(ref.first_seq, facts.last_seq, plain_size, facts.digest))
        comp = cctx.compressobj(size=plain_size)
        with fs.open_read(ref.path) as f:
            while chunk := f.read(READ_CHUNK):
                out = comp.compress(chunk)
                if out:
                    fs.write(fd, out)
        fs.write(fd, comp.flush())
        fs.fsync(fd)
    finally:
        fs.close(fd)
    fs.rename(tmp, zpath)
    dirname = os.path.dirname(ref.path)
    fs.fsync_dir(dirname)
    zref = SegmentRef(ref.first_seq, zpath, True)
    if _scan_all(fs, zref) != facts:
        raise CorruptionError(zpath, ZSEGMENT_HEADER_SIZE, "compressed copy does not match its segment")
    fs.remove(ref.path)
    fs.fsync_dir(dirname)
    return zpath


@dataclass(frozen=True)
class _SeenFrame:
    """A CRC-valid frame as `_holds_every_commit_of` compares it."""

    offset: int
    first_seq: int
    count: int
    digest: bytes


def _frames_seen(fs: FileSystem, ref: SegmentRef) -> tuple[set[_SeenFrame], int]:
    """Every CRC-valid frame of ``ref``, and its (plain) length.

    Read leniently and resynchronised past damage ([F-15], [F-27]), so a damaged
    segment still shows every commit it holds intact.
    """
    frames: set[_SeenFrame] = set()
    size = 0
    for visit in SegmentWalk.over(fs, [ref], lenient=True, resync=Resync.ALWAYS, locked=True).visits():
        frames.update(_SeenFrame(item.offset, item.first_seq, item.count, item.digest)
                      for item in visit.frames(verify_chain=False) if isinstance(item, Frame))
        size = visit.stream.end
    return frames, size


def _holds_every_commit_of(fs: FileSystem, zref: SegmentRef, plain: SegmentRef) -> bool:
    """Whether the checked ``zref`` holds every commit of the damaged ``plain`` copy.

    A `.zseg` holds its plain segment byte for byte ([F-19]), so each intact frame
    of the plain copy must sit at the same offset in it with the same seqs and
    digest, and the plain copy must not be longer (its damaged bytes then lie where
    the `.zseg` has intact frames, not past its last seq).
    """
    zframes, zsize = _frames_seen(fs, zref)
    pframes, psize = _frames_seen(fs, plain)
    return psize <= zsize and pframes <= zframes


def finish_interrupted(fs: FileSystem, seg_dir: str, report: RecoveryReport) -> None:
    """[F-20]: where N.seg and N.zseg both exist, keep N.zseg only if it checks out.

    N.zseg must scan cleanly and hold exactly N.seg's frames (same last seq,
    final digest and plain length); then N.seg is removed. Otherwise N.zseg is
    moved to quarantine/ and N.seg stays. A future format version is never
    treated as damage ([F-06]): it raises.

    A damaged N.seg is never simply removed ([F-05]): it is
    moved to quarantine/ only when the checked N.zseg provably holds every
    commit it has (`_holds_every_commit_of`). Otherwise (N.zseg holds fewer
    frames) both stay: reading uses N.seg, so a strict open reports the damage
    and a salvage open keeps every intact commit of it.
    """
    try:
        names = set(fs.listdir(seg_dir))
    except FileNotFoundError:
        return
    root = os.path.dirname(seg_dir)
    for name in sorted(names):
        parsed = parse_name(name)
        if parsed is None or not parsed[1]:
            continue
        plain = segment_path(seg_dir, parsed[0])
        if os.path.basename(plain) not in names:
            continue
        zref = SegmentRef(parsed[0], os.path.join(seg_dir, name), True)
        pref = SegmentRef(parsed[0], plain, False)
        if _finish_one(fs, root, zref, pref, report):
            fs.fsync_dir(seg_dir)


def _finish_one(fs: FileSystem, root: str, zref: SegmentRef, pref: SegmentRef, report: RecoveryReport) -> bool:
    """One interrupted compaction (see `finish_interrupted`); True when a file was moved or removed."""
    damage = None  # the plain copy's, when the compressed one checks out
    try:
        zfacts = _scan_all(fs, zref)
        pfacts: SegmentFacts | None = None
        try:
            pfacts = _scan_all(fs, pref)
        except FormatVersionError:
            raise
        except CorruptionError as exc:
            damage = exc
        if pfacts is not None and pfacts != zfacts:
            raise CorruptionError(zref.path, ZSEGMENT_HEADER_SIZE,
                                  f"holds seqs to {zfacts.last_seq}, {pref.path} to {pfacts.last_seq}")
    except FormatVersionError:
        raise
    except CorruptionError as exc:
        qpath = quarantine_move(fs, root, zref.path)
        report.add(RecoveryEntry("quarantined", zref.path, exc.offset,
                                 f"unfinished compressed copy ({exc.reason}); plain segment kept; "
                                 f"moved to {qpath}"))
        return False
    if damage is None:
        fs.remove(pref.path)  # an intact copy of it is checked: nothing is lost
        report.add(RecoveryEntry("finished-compaction", pref.path, None,
                                 "compressed copy was complete; plain segment removed"))
    elif _holds_every_commit_of(fs, zref, pref):
        qpath = quarantine_move(fs, root, pref.path)
        report.add(RecoveryEntry("quarantined", pref.path, damage.offset,
                                 f"damaged ({damage.reason}); its compressed copy holds every commit "
                                 f"of it; moved to {qpath}"))
    else:
        report.add(RecoveryEntry("damaged", pref.path, damage.offset,
                                 f"{damage.reason}; its unfinished compressed copy {os.path.basename(zref.path)} "
                                 f"holds fewer commits, so both are kept (salvage recovers the intact ones)"))
        return False
    return True


def compress_sealed(fs: FileSystem, seg_dir: str) -> dict[str, int | float]:
    """Compress every sealed plain segment (every segment but the last, [F-04]).

    The caller holds the maintenance lock (so no other compaction or salvage
    runs); writers go on appending to the active segment meanwhile.
    """
    start = time.perf_counter()
    refs = list_segments(fs, seg_dir)
    compressed = before = after = 0
    for ref in refs[:-1]:  # the last one is the active segment
        if ref.compressed:
            continue
        size = fs.size(ref.path)
        zpath = compress_segment(fs, ref)
        before += size
        after += fs.size(zpath)
        compressed += 1
    return {"compressed": compressed, "bytes_before": before, "bytes_after": after,
            "compress_seconds": time.perf_counter() - start}
