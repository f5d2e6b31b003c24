"""Issue 3c/3d: durable single appends against raw write+fdatasync, and group commit."""
from __future__ import annotations

import gc
import os
import threading
from typing import Any

import eventstore
from eventstore.fs import FileSystem

from .common import Bench, Row, dir_bytes, interleaved, med, ms, now, rate
from .data import media_events


class CountingFS(FileSystem):
    """The store's file-system layer, counting data syncs (commits per fsync)."""

    syncs = 0

    def fdatasync(self, fd: int) -> None:
        self.syncs += 1
        super().fdatasync(fd)


def bench_durable(b: Bench) -> None:
    """3c: durable single-event appends vs a raw write + fdatasync loop."""
    n = 300 if b.quick else 800
    items = media_events(n + 1, n + 1)
    path = b.fresh("durable")
    store = eventstore.open(path, durability="fsync", snapshot_every=0)
    seg = os.path.join(path, "segments")
    store.append("bench.start", "/warm", {})
    before = dir_bytes(seg)
    store.append(*items[0])
    size = dir_bytes(seg) - before
    raw_path = b.fresh("durable.raw")
    fd = os.open(raw_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    record = b"\x5a" * size
    for _ in range(3):
        os.write(fd, record)
        os.fdatasync(fd)
    # One op of each, alternating: fsync latency on a shared disk drifts by 10x within
    # seconds, so both sides must sample the same moments.
    ours, theirs = [], []
    append, write, sync = store.append, os.write, os.fdatasync
    gc.collect()
    for t, k, d in items[1:]:
        t0 = now()
        append(t, k, d)
        t1 = now()
        write(fd, record)
        sync(fd)
        t2 = now()
        ours.append(t1 - t0)
        theirs.append(t2 - t1)
    store.close()
    os.close(fd)
    m, s = med(ours), med(theirs)
    mean_ratio = sum(theirs) / sum(ours)
    b.add(Row("durable", "3c", f"durable single-event append ({n} appends, durability=fsync)",
              rate(1, m), f"raw write+fdatasync {rate(1, s)}", s / m, ">= 0.9x", s / m >= 0.9,
              {"appends": n, "record_bytes": size, "metalog_median_s": m, "raw_median_s": s,
               "metalog_total_s": sum(ours), "raw_total_s": sum(theirs)},
              note=f"record size {size} bytes (one frame); both call os.fdatasync on an appending file; "
                   f"appends alternate one by one with the raw loop; rates from the median latency "
                   f"(metalog {ms(m)}, raw {ms(s)}); from the totals the ratio is {mean_ratio:.2f}x"))

    # What preallocating segment space would buy (docs/decisions/0014 says why the log does not):
    # the raw loop into a file whose size is already set, so fdatasync has no size or
    # extent change to journal, alternating op by op with the appending raw loop.
    fd = os.open(raw_path, os.O_WRONLY | os.O_APPEND)
    pre_path = b.fresh("durable.prealloc")
    pre = os.open(pre_path, os.O_WRONLY | os.O_CREAT, 0o644)
    os.posix_fallocate(pre, 0, (n + 1) * size)
    os.fsync(pre)
    appending, preallocated = [], []
    for i in range(n):
        t0 = now()
        write(fd, record)
        sync(fd)
        t1 = now()
        os.pwrite(pre, record, i * size)
        sync(pre)
        t2 = now()
        appending.append(t1 - t0)
        preallocated.append(t2 - t1)
    os.close(fd)
    os.close(pre)
    a, p = med(appending), med(preallocated)
    b.add(Row("durable", "3c", "raw write+fdatasync into a preallocated file (not used by metalog)",
              rate(1, p), f"appending raw loop {rate(1, a)}", a / p, "", None,
              {"appending_median_s": a, "preallocated_median_s": p},
              note=f"{n} records of {size} bytes written in place into a posix_fallocate'd file "
                   f"({ms(p)}) vs appended ({ms(a)}), one by one alternating; why the log "
                   f"still appends: docs/decisions/0014-no-preallocation.md"))

    # The store's own CPU cost per durable append: the same path with a no-op sync.
    class NoSyncFS(FileSystem):
        def fdatasync(self, fd: int) -> None:
            pass

    path = b.fresh("durable.nosync")
    store = eventstore.open(path, durability="fsync", snapshot_every=0, fs=NoSyncFS())
    for t, k, d in media_events(500, 500, start=10**7):   # warm-up
        store.append(t, k, d)
    cpu = []
    for r in range(b.repeats):
        chunk = media_events(2000, 2000, start=r * 2000)
        t0 = now()
        for t, k, d in chunk:
            store.append(t, k, d)
        cpu.append((now() - t0) / len(chunk))
    store.close()
    c = med(cpu)
    b.add(Row("durable", "3c", "store CPU per durable append (fs layer with a no-op fdatasync)",
              f"{c * 1e6:.0f} us/append", f"raw fdatasync {s * 1e6:.0f} us", None, "", None,
              {"cpu_s_per_append": cpu},
              note=f"0.9x of the raw loop needs this overhead <= {s / 9 * 1e6:.0f} us at the measured "
                   f"fdatasync latency", score=c))


def bench_group(b: Bench) -> None:
    """3d: 8 threads appending durably vs one thread (group commit)."""
    # Appends per thread per round (8 threads; 1 thread does 2x). A round's start (8 threads
    # let go at once, arriving one by one) and its end (8 exits) cost a fixed ~0.5 ms that is
    # not group commit: 4% of an 8-thread round at 25 appends per thread, 1% at 100.
    per = 15 if b.quick else 100
    rounds = b.repeats * 4            # alternating rounds (~60 ms a pair): fsync latency here drifts
    stores: dict[int, tuple[Any, CountingFS]] = {}
    for threads in (1, 8):
        fs = CountingFS()
        store = eventstore.open(b.fresh(f"group{threads}"), durability="fsync", snapshot_every=0, fs=fs)
        store.append("bench.start", "/warm", {})
        stores[threads] = (store, fs)
    batches: list[float] = []
    counter = [0]

    def run(threads: int, each: int) -> float:
        store, fs = stores[threads]
        counter[0] += 1
        items = [media_events(each, each, start=counter[0] * 1000 + j * 100) for j in range(threads)]
        gate = threading.Barrier(threads + 1)

        def worker(j: int) -> None:
            append = store.append
            gate.wait()
            for t, k, d in items[j]:
                append(t, k, d)

        workers = [threading.Thread(target=worker, args=(j,)) for j in range(threads)]
        for w in workers:
            w.start()
        syncs = fs.syncs
        gate.wait()
        t0 = now()
        for w in workers:
            w.join()
        t1 = now()
        if threads > 1:
            batches.append((threads * each) / max(fs.syncs - syncs, 1))
        return (threads * each) / (t1 - t0)

    one, eight = interleaved(rounds, lambda: run(1, per * 2), lambda: run(8, per), warmup=True)
    for store, _ in stores.values():
        store.close()
    pairs = sorted(e / o for o, e in zip(one, eight))
    r1, r8 = med(one), med(eight)
    ratio = med(pairs)
    b.add(Row("group", "3d", "8 threads appending durably (group commit)",
              f"{r8:,.0f} ev/s", f"1 thread {r1:,.0f} ev/s", ratio, ">= 3x", ratio >= 3,
              {"one_thread_rate": one, "eight_thread_rate": eight, "pair_ratios": pairs,
               "events_per_fsync": batches},
              note=f"{rounds} alternating rounds of 8 x {per} vs 1 x {per * 2} appends; ratio = median of "
                   f"the rounds' ratios (min {pairs[0]:.2f}, max {pairs[-1]:.2f}); median "
                   f"{med(batches):.1f} commits shared one write+fdatasync (counted through the fs layer)"))
    trip = thread_round_trip(2000 if b.quick else 10_000)
    b.add(Row("group", "3d", "thread switch: two threads passing a lock back and forth",
              f"{trip * 1e6:.1f} us per round trip", "", None, "", None, {"round_trip_s": trip},
              note="what waking a parked committer costs on this machine (two switches per round "
                   "trip); why group commit wakes committers one by one (docs/decisions/0013)", score=trip))


def thread_round_trip(n: int) -> float:
    """Seconds for one round trip of a lock ping-pong between two threads."""
    ping, pong = threading.Lock(), threading.Lock()
    ping.acquire()
    pong.acquire()

    def other() -> None:
        for _ in range(n):
            ping.acquire()
            pong.release()

    t = threading.Thread(target=other)
    t.start()
    t0 = now()
    for _ in range(n):
        ping.release()
        pong.acquire()
    elapsed = now() - t0
    t.join()
    return elapsed / n
