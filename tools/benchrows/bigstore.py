"""Issues 4 and 5 on a 1M-event store: open from a snapshot, stalls, compaction, history."""
from __future__ import annotations

import gc
import os
import shutil
from typing import Any, Callable

import eventstore
from projections import MediaCatalog
from projections.media import MediaProjection

from .catalog import LatestValues
from .common import Bench, Row, Span, dir_bytes, med, mib, ms, now, rate
from .data import media_events, media_path


# --------------------------------------------------------------------------- issue 4 / 5 on a 1M store

def big_store(b: Bench) -> dict[str, Any]:
    """Build (once per run) the big store: events, a full-replay open, a snapshot, a tail.

    Built with durability="none" and commits of 1000 events; every event
    carries meta ``{"actor": ...}`` as the catalog writes it. The full
    replay opens and the snapshot writes are measured here, on the way.
    """
    if b.big is not None:
        return b.big
    n, keys = (200_000, 20_000) if b.quick else (1_000_000, 100_000)
    tail = 1000
    path = b.fresh("big")
    b.out(f"  building the {n:,}-event / {keys:,}-key store (durability=none, commits of 1000) ...")
    meta = {"actor": "bench"}
    t0 = now()
    with eventstore.open(path, durability="none", snapshot_every=0) as store:
        chunk = 100_000
        for start in range(0, n, chunk):
            items = media_events(min(chunk, n - start), keys, start=start, meta=meta)
            for i in range(0, len(items), 1000):
                store.append_many(items[i:i + 1000])
    build_s = now() - t0
    raw_segments = dir_bytes(os.path.join(path, "segments"), ".seg")
    b.info(f"built in {build_s:.1f} s (incl. generating the events); {mib(raw_segments)} of segments")

    full: list[tuple[float, float]] = []
    snap: list[float] = []
    reps = 1 if b.quick else b.repeats
    for r in range(reps):
        gc.collect()
        proj = MediaProjection()
        with Span() as span:
            store = eventstore.open(path, projections=[proj], durability="none", snapshot_every=0)
        full.append((span.wall, span.cpu))
        assert store.last_seq == n and len(proj) == keys
        if r == reps - 1:
            for _ in range(b.repeats):
                t0 = now()
                store.snapshot()
                snap.append(now() - t0)
            for i in range(0, tail, 100):
                store.append_many(media_events(100, keys, start=n + i, meta=meta))
        store.close()
    snap_files = sorted(os.listdir(os.path.join(path, "snapshots")))
    snap_bytes = dir_bytes(os.path.join(path, "snapshots")) // max(len(snap_files), 1)
    b.big = {"path": path, "events": n, "keys": keys, "tail": tail, "build_s": build_s,
             "raw_segment_bytes": raw_segments, "full_replay_s": full, "snapshot_s": snap,
             "snapshot_bytes": snap_bytes}
    return b.big


def bench_open(b: Bench) -> None:
    """4: cold open with a snapshot + short tail vs full replay; snapshot write time."""
    big = big_store(b)
    n, keys, tail = big["events"], big["keys"], big["tail"]
    times = []
    for _ in range(b.repeats):
        gc.collect()
        proj = MediaProjection()
        with Span() as span:
            store = eventstore.open(big["path"], projections=[proj], durability="none")
        times.append((span.wall, span.cpu))
        assert store.last_seq == n + tail and store.stats()["snapshot_seq"] == n, store.stats()
        store.close()
    mw, m = med(t[0] for t in times), med(t[1] for t in times)
    fw, full = med(t[0] for t in big["full_replay_s"]), med(t[1] for t in big["full_replay_s"])
    label = f"{n // 1000:,}k events / {keys // 1000:,}k keys"
    b.add(Row("open", "4", f"open {label}: snapshot + {tail}-event tail",
              f"{ms(m)} CPU ({ms(mw)} wall)", f"full replay {ms(full)} CPU ({ms(fw)} wall)", full / m,
              ">= 10x", full / m >= 10, {"open_wall_cpu_s": times, "full_replay_wall_cpu_s": big["full_replay_s"]},
              note=f"eventstore.open with a MediaProjection, in this process; files in the page cache (OS "
                   f"caches not dropped: shared machine); verdict on CPU time, wall-clock ratio {fw / mw:.2f}x"))
    b.add(Row("open", "4", f"open {label}: snapshot + tail, absolute",
              f"{ms(m)} CPU ({ms(mw)} wall)", "budget 300 ms", 0.3 / m, "< 0.3 s", m < 0.3,
              {"open_wall_cpu_s": times}))
    s = med(big["snapshot_s"])
    b.add(Row("open", "4", f"snapshot write ({keys:,} keys, Store.snapshot())",
              ms(s), f"{mib(big['snapshot_bytes'])} file", None, "", None,
              {"snapshot_s": big["snapshot_s"], "snapshot_bytes": big["snapshot_bytes"]},
              note=f"building the {n:,}-event store took {big['build_s']:.1f} s "
                   f"({rate(n, big['build_s'])} incl. generating the events)", score=s))
    _lean_open(b, big)


def _lean_open(b: Bench, big: dict[str, Any]) -> None:
    """The same opens with `LatestValues` (no undo stacks): what the store costs by itself."""
    path = b.fresh("lean")
    shutil.copytree(big["path"], path, ignore=shutil.ignore_patterns("*.snap"))
    gc.collect()
    with Span() as span:
        store = eventstore.open(path, projections=[LatestValues()], durability="none", snapshot_every=0)
    full = span.cpu
    t0 = now()
    store.snapshot()
    snap = now() - t0
    store.close()
    times = []
    for _ in range(b.repeats):
        gc.collect()
        with Span() as span:
            store = eventstore.open(path, projections=[LatestValues()], durability="none")
        times.append(span.cpu)
        store.close()
    m = med(times)
    size = dir_bytes(os.path.join(path, "snapshots"))
    b.add(Row("open", "4", "same store, lean projection (current values only, no undo): snapshot + tail",
              f"{ms(m)} CPU", f"full replay {ms(full)} CPU", full / m, "", None,
              {"open_s": times, "full_replay_s": full, "snapshot_s": snap, "snapshot_bytes": size},
              note=f"for comparison, not a target: separates the store's cost from MediaProjection's "
                   f"state size; its snapshot is {mib(size)}, written in {ms(snap)}"))


def bench_stall(b: Bench) -> None:
    """4: commit latency around automatic snapshots (snapshot_every=100k, MediaProjection)."""
    n, keys = (200_000, 20_000) if b.quick else (400_000, 40_000)
    every = 100_000
    path = b.fresh("stall")
    meta = {"actor": "bench"}
    lat: list[float] = []
    store = eventstore.open(path, projections=[MediaProjection()], durability="none", snapshot_every=every)
    for start in range(0, n, every):
        items = media_events(every, keys, start=start, meta=meta)
        for i in range(0, len(items), 1000):
            t0 = now()
            store.append_many(items[i:i + 1000])
            lat.append(now() - t0)
    store.close()
    triggers = [lat[i] for i in range(len(lat)) if ((i + 1) * 1000) % every == 0]
    others = sorted(lat[i] for i in range(len(lat)) if ((i + 1) * 1000) % every != 0)
    m = med(others)
    b.add(Row("stall", "4", f"commit of 1000 events that triggers an automatic snapshot "
                            f"({n:,} events, {keys:,} keys, snapshot_every={every:,})",
              f"max {ms(max(triggers))}", f"other commits median {ms(m)}", None, "", None,
              {"trigger_s": triggers, "median_other_s": m, "p99_other_s": others[int(len(others) * 0.99)],
               "max_other_s": others[-1]},
              note=f"the {len(triggers)} triggering commits took {', '.join(ms(t) for t in triggers)}; "
                   f"the others: median {ms(m)}, p99 {ms(others[int(len(others) * 0.99)])}, "
                   f"max {ms(others[-1])}", score=max(triggers)))


def bench_compact(b: Bench) -> None:
    """4: bytes on disk after compact() vs the raw segments (on a copy of the big store)."""
    big = big_store(b)
    path = b.fresh("compact")
    shutil.copytree(big["path"], path)
    raw = dir_bytes(os.path.join(path, "segments"), ".seg")
    proj = MediaProjection()
    store = eventstore.open(path, projections=[proj], durability="none")
    t0 = now()
    store.compact()
    took = now() - t0
    stats = store.stats()
    store.close()
    total = stats["bytes_on_disk"]
    segs = dir_bytes(os.path.join(path, "segments"))
    snaps = dir_bytes(os.path.join(path, "snapshots"))
    b.add(Row("compact", "4", "bytes on disk after compact() vs raw segments",
              mib(total), f"raw segments {mib(raw)}", total / raw, "<= 0.35", total / raw <= 0.35,
              {"raw_segment_bytes": raw, "bytes_on_disk": total, "segment_bytes": segs,
               "snapshot_bytes": snaps, "compact_s": took},
              note=f"after: segments {mib(segs)} ({segs / raw:.1%} of raw), snapshots {mib(snaps)} "
                   f"({stats.get('snapshots', '?')} kept); compact() took {took:.2f} s"))
    gc.collect()
    t0 = now()
    store = eventstore.open(path, projections=[MediaProjection()], durability="none")
    reopen = now() - t0
    t0 = now()
    count = sum(1 for _ in store.read())
    read_s = now() - t0
    store.close()
    b.add(Row("compact", "4", "after compact(): open (snapshot + tail), full read of the log",
              f"open {ms(reopen)}, read {rate(count, read_s)}", "", None, "", None,
              {"open_s": reopen, "read_s": read_s, "events": count}, score=reopen))


def bench_history(b: Bench) -> None:
    """5: history() and state_at() latency on the big store."""
    big = big_store(b)
    n, keys, tail = big["events"], big["keys"], big["tail"]
    cat = MediaCatalog.open(big["path"], actor="bench", readonly=True)
    last = cat.store.last_seq
    key = media_path(keys // 2)

    def timed(fn: Callable[[], Any], reps: int) -> tuple[float, Any]:
        out, ts = None, []
        for _ in range(reps):
            gc.collect()
            t0 = now()
            out = fn()
            ts.append(now() - t0)
        return med(ts), out

    h_s, changes = timed(lambda: cat.history(key), b.repeats)
    b.add(Row("history", "5", f"history() of one item ({len(changes)} changes) in {last:,} events",
              ms(h_s), "", None, "", None, {"history_s": h_s, "changes": len(changes)}, score=h_s))
    mid_ts = next(iter(cat.store.read(n // 2, n // 2 + 1))).ts / 1e9
    cases = [
        ("state_at(seq=last)", lambda: cat.state_at(seq=last)),
        (f"state_at(seq=snapshot+{tail // 2})", lambda: cat.state_at(seq=n + tail // 2)),
        (f"state_at(seq={n // 2:,}), no snapshot before it", lambda: cat.state_at(seq=n // 2)),
        ("state_at(time=<middle of the log>)", lambda: cat.state_at(time=mid_ts)),
    ]
    for label, fn in cases:
        reps = 1 if "no snapshot" in label or "time" in label else b.repeats
        s, view = timed(fn, reps)
        b.add(Row("history", "5", f"{label} on {last:,} events ({len(view):,} items)",
                  ms(s), "", None, "", None, {"seconds": s}, score=s))
    cat.close()
