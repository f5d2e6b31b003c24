"""What the crash harness writes and what it checks after each kill (tools/crash_harness.py).

A commit's content is a deterministic function of its id, so a reopened store
can be checked event by event without keeping what was written: `event_item`
and `commit_items` make it, `check_store` reopens the store strictly and
checks SPEC §4 guarantees 1-3 against the acknowledged commits, and
`power_cut` loses what follows the last durable commit as a power cut may.
"""
from __future__ import annotations

import hashlib
import os
import random
import struct
from dataclasses import dataclass, field

import eventstore
from eventstore.fs import DEFAULT_FS
from eventstore.local.snapshot import list_snapshots

SEGMENT_HEADER, FRAME_HEADER = 40, 48  # docs/FORMAT.md §4.1, §4.2


# -- the deterministic content of a commit ---------------------------------------------------
def pad(cid: str, i: int, size: int) -> str:
    seed = hashlib.sha256(f"{cid}/{i}".encode()).hexdigest()
    return (seed * (size // len(seed) + 1))[:size]


def event_item(cid: str, i: int, n: int, size: int) -> tuple[str, str, dict]:
    key = f"k{int(hashlib.sha256(cid.encode()).hexdigest()[:4], 16) % 37}"
    return ("many" if n > 1 else "one", key, {"cid": cid, "i": i, "n": n, "size": size,
                                              "pad": pad(cid, i, size)})


def commit_items(rng: random.Random, cid: str) -> list[tuple[str, str, dict]]:
    r = rng.random()
    if r < 0.5:
        n, sizes = 1, [rng.choice((0, 10, 100, 1000))]
    elif r < 0.96:
        n = rng.randint(2, 40)
        sizes = [rng.randint(0, 400) for _ in range(n)]
    else:  # a big commit: the kill is likelier to land inside its write
        n = rng.randint(2, 4)
        sizes = [rng.randint(20_000, 60_000) for _ in range(n)]
    return [event_item(cid, i, n, s) for i, s in enumerate(sizes)]


# -- checking ------------------------------------------------------------------------------------
class Violation(AssertionError):
    pass


@dataclass
class Stats:
    rounds: int = 0
    acked_commits: int = 0
    events: int = 0
    torn_tails: int = 0
    unacked_present: int = 0
    killed_before_ready: int = 0
    power_cuts: int = 0
    lost_unsynced: int = 0  # acknowledged but lost: allowed only with durability="none"
    kills: int = 0  # writer processes killed (with --writers, one or all per round)
    rounds_all_killed: int = 0  # rounds that killed every writer (--writers)
    seconds: float = 0.0
    per_round: list = field(default_factory=list)


def _frames(data: bytes) -> list[tuple[int, int, int, int]]:
    """(offset, end, first_seq, count) of the whole frames of a plain segment."""
    out, off = [], SEGMENT_HEADER
    while off + FRAME_HEADER <= len(data):
        n, count, first = struct.unpack_from("<IIQ", data, off + 8)
        if data[off:off + 4] != b"MLFR" or off + FRAME_HEADER + n > len(data):
            break
        out.append((off, off + FRAME_HEADER + n, first, count))
        off += FRAME_HEADER + n
    return out


def newest_snapshot_seq(path: str) -> int:
    """The seq of the newest snapshot file (named after its seq), 0 if none."""
    try:
        snapshots = list_snapshots(DEFAULT_FS, os.path.join(path, "snapshots"))
    except FileNotFoundError:
        return 0
    return snapshots[0][0] if snapshots else 0


def power_cut(path: str, last_acked_seq: int, rng: random.Random) -> bool:
    """Lose a random part of what follows the last durable (fsynced) commit."""
    seg_dir = os.path.join(path, "segments")
    if not os.path.isdir(seg_dir):  # killed before the store was created
        return False
    segs = sorted(n for n in os.listdir(seg_dir) if n.endswith(".seg"))
    if not segs:
        return False
    active = os.path.join(seg_dir, segs[-1])
    with open(active, "rb") as f:
        data = f.read()
    keep = SEGMENT_HEADER
    for off, end, first, count in _frames(data):
        if first <= last_acked_seq:
            keep = end
    if keep >= len(data):
        return False
    cut = rng.randint(keep, len(data))
    with open(active, "r+b") as f:
        f.truncate(cut)
        if rng.random() < 0.5:
            f.seek(cut)
            f.write(bytes(rng.randint(1, 8192)))  # blocks allocated but never written
    return True


def check_store(path: str, acked: dict[str, tuple[int, int]], seen_before: list,
                stats: Stats, require_acked: bool = True) -> list:
    """Reopen strictly and check every guarantee; return the events seen."""
    with eventstore.open(path) as store:
        torn = [e for e in store.recovery_report.entries if e.action == "truncated"]
        others = [e for e in store.recovery_report.entries
                  if e.action not in ("truncated", "quarantined")]
        if others:
            raise Violation(f"unexpected recovery actions: {others}")
        stats.torn_tails += len(torn)
        # With --writers, the survivors append while we read: read up to a last_seq taken first.
        last_seq = store.last_seq
        events = list(store.read(1, last_seq + 1))
    if [e.seq for e in events] != list(range(1, len(events) + 1)) or last_seq != len(events):
        raise Violation("seqs are not contiguous from 1")
    if events[:len(seen_before)] != seen_before:
        raise Violation("a reopen changed or lost events an earlier round had read")
    commits: dict[str, list] = {}
    order: list[str] = []
    for e in events:
        cid = e.data.get("cid")
        if cid not in commits:
            commits[cid] = []
            order.append(cid)
        commits[cid].append(e)
    for cid, evs in commits.items():
        n = evs[0].data["n"]
        if len(evs) != n:
            raise Violation(f"commit {cid} is partially present: {len(evs)} of {n} events")
        if [e.seq for e in evs] != list(range(evs[0].seq, evs[0].seq + n)):
            raise Violation(f"commit {cid} is not contiguous")
        if len({e.ts for e in evs}) != 1:
            raise Violation(f"commit {cid} has several timestamps")
        for i, e in enumerate(evs):
            want = event_item(cid, i, n, e.data["size"])
            if (e.type, e.key, e.data) != want:
                raise Violation(f"commit {cid} event {i} (seq {e.seq}) has the wrong content")
    lost = 0
    for cid, (first, n) in acked.items():
        evs = commits.get(cid)
        if evs is None and not require_acked:
            lost += 1  # durability="none" promises nothing after a kill but whole commits
            continue
        if evs is None:
            raise Violation(f"acknowledged commit {cid} (seq {first}, {n} events) is lost")
        if evs[0].seq != first or len(evs) != n:
            raise Violation(f"acknowledged commit {cid} moved: seq {evs[0].seq} x{len(evs)}, acked {first} x{n}")
    stats.unacked_present = sum(1 for cid in commits if cid not in acked)
    stats.lost_unsynced = lost
    return events
