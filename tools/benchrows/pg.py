"""The PostgreSQL backend's benchmarks (issue 15): append, durable, replay, follow, open.

Nothing else uses this module. The server is $METALOG_PG_URL (default: the
local test server); each benchmark works in a schema of its own and drops
it. Skipped without psycopg or a server. Baselines are plain psycopg on the
same server in the same run.
"""
from __future__ import annotations

import os
import threading
import time
from typing import Any, Callable

import msgpack

import eventstore
from projections.media import MediaProjection

from .common import Bench, Row, Span, cpu_row, interleaved, med, ms, now, rate
from .data import media_events


PG_URL = os.environ.get("METALOG_PG_URL") or "postgresql://postgres@127.0.0.1:5432/test"


def _pg_available(b: Bench) -> bool:
    try:
        import psycopg
        psycopg.connect(PG_URL, connect_timeout=3).close()
        return True
    except Exception as exc:  # noqa: BLE001 - reported, the benchmark is skipped
        b.info(f"skipped: PostgreSQL at {PG_URL} unavailable ({type(exc).__name__}: {exc})")
        return False


class _PgSchema:
    """A fresh schema's store URL, dropped on exit."""

    def __init__(self, name: str) -> None:
        self.schema = f"bench_{name}_{os.getpid()}"
        sep = "&" if "?" in PG_URL else "?"
        self.url = f"{PG_URL}{sep}schema={self.schema}"

    def __enter__(self) -> "_PgSchema":
        self.drop()
        return self

    def __exit__(self, *exc: object) -> None:
        self.drop()

    def drop(self) -> None:
        import psycopg
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")


def _pg_plain_insert(n: int, per: int, events: list[tuple]) -> float:
    """The baseline: executemany INSERT of the same rows, one transaction per ``per`` rows,
    into a table with a primary key on seq and an index on key (synchronous_commit on)."""
    import psycopg
    with psycopg.connect(PG_URL) as conn, _PgSchema("plain") as sch:
        conn.execute(f"CREATE SCHEMA {sch.schema}")
        conn.execute(f"CREATE TABLE {sch.schema}.events (seq bigint PRIMARY KEY, ts bigint, type text, "
                     "key text, data bytea, meta bytea)")
        conn.execute(f"CREATE INDEX ON {sch.schema}.events (key)")
        conn.commit()
        sql = f"INSERT INTO {sch.schema}.events VALUES (%s, %s, %s, %s, %s, %s)"
        t0 = now()
        with conn.cursor() as cur:
            for i in range(0, n, per):
                ts = time.time_ns()
                rows = [(i + j + 1, ts, t, k, msgpack.packb(d), msgpack.packb(m))
                        for j, (t, k, d, m) in enumerate(events[i:i + per])]
                cur.executemany(sql, rows)
                conn.commit()
        return now() - t0


def bench_pg_append(b: Bench) -> None:
    """15: bulk append to PostgreSQL in commits of 100 vs executemany INSERT of the same rows."""
    if not _pg_available(b):
        return
    n, per = (20_000, 100) if b.quick else (200_000, 100)
    events = media_events(n, n // 10, meta={"actor": "bench"})
    with _PgSchema("append") as sch:
        with eventstore.open(sch.url, snapshot_every=0) as store:
            t0 = now()
            for i in range(0, n, per):
                store.append_many(events[i:i + per])
            ours = now() - t0
            assert store.last_seq == n
        theirs = _pg_plain_insert(n, per, events)
    b.add(Row("pg_append", "15", f"PostgreSQL bulk append, {n:,} events in commits of {per} (fsync)",
              rate(n, ours), f"executemany INSERT {rate(n, theirs)}", theirs / ours, ">= 0.7x",
              theirs / ours >= 0.7, {"events": n, "metalog_s": ours, "baseline_s": theirs},
              note="both durable per commit (synchronous_commit on); ours also checks versions, "
                   "chains digests and keeps a per-key version index"))


def _pg_durable_worker(url: str, n: int, tag: str, ready: Any = None, go: Any = None, out: Any = None) -> None:
    with eventstore.open(url, snapshot_every=0) as store:
        if ready is not None:
            ready.put(tag)
            go.wait()
        t0 = time.time()
        for i in range(n):
            store.append("t", f"{tag}-{i % 10}", {"i": i})
        if out is not None:
            out.put((t0, time.time()))


def _pg_processes(url: str, per: int, procs: int) -> float:
    """Seconds for ``procs`` processes (stores opened, then started together) to append ``per`` each."""
    import multiprocessing
    ctx = multiprocessing.get_context("fork")
    ready, out, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    workers = [ctx.Process(target=_pg_durable_worker, args=(url, per, f"p{w}", ready, go, out))
               for w in range(procs)]
    for p in workers:
        p.start()
    for _ in workers:
        ready.get(timeout=60)
    go.set()
    spans = [out.get(timeout=300) for _ in workers]
    for p in workers:
        p.join()
    return max(t1 for _, t1 in spans) - min(t0 for t0, _ in spans)


def bench_pg_durable(b: Bench) -> None:
    """15: durable single appends to PostgreSQL: 1 thread, 8 threads, 4 processes."""
    if not _pg_available(b):
        return
    per = 100 if b.quick else 300
    with _PgSchema("durable") as sch:
        eventstore.open(sch.url).close()
        t0 = now()
        _pg_durable_worker(sch.url, per, "solo")
        solo = now() - t0
        with eventstore.open(sch.url, snapshot_every=0) as store:
            def work(w: int) -> None:
                for i in range(per):
                    store.append("t", f"t{w}-{i % 10}", {"i": i})
            threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
            t0 = now()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            eight = now() - t0
        four = _pg_processes(sch.url, per, 4)
    for what, count, secs in (("8 threads, one store", 8 * per, eight), ("4 processes", 4 * per, four)):
        ratio = (count / secs) / (per / solo)
        b.add(Row("pg_durable", "15", f"PostgreSQL durable appends, {what}", rate(count, secs),
                  f"1 thread {rate(per, solo)}", ratio, "", None,
                  {"appends": count, "seconds": secs, "solo_seconds": solo},
                  note="synchronous_commit on; the ratio is the throughput against one thread"))


def bench_pg_replay(b: Bench) -> None:
    """15: read back every event of a PostgreSQL store vs SELECT payload + msgpack unpack."""
    if not _pg_available(b):
        return
    import psycopg
    n = 20_000 if b.quick else 200_000
    with _PgSchema("replay") as sch:
        with eventstore.open(sch.url, durability="none", snapshot_every=0) as store:
            events = media_events(n, n // 10, meta={"actor": "bench"})
            for i in range(0, n, 100):
                store.append_many(events[i:i + 100])

        def ours() -> tuple[float, float]:
            with eventstore.open(sch.url, readonly=True) as ro, Span() as span:
                count = sum(1 for _ in ro.read())
            assert count == n
            return span.wall, span.cpu

        def theirs() -> tuple[float, float]:
            with psycopg.connect(PG_URL) as conn, Span() as span:
                with conn.cursor(binary=True) as cur:
                    cur.execute(f"SELECT payload FROM {sch.schema}.commits ORDER BY first_seq")
                    count = sum(len(msgpack.unpackb(row[0])) for row in cur)
            assert count == n
            return span.wall, span.cpu

        mine, base = interleaved(b.repeats, ours, theirs, warmup=True)
        opens = []
        for _ in range(b.repeats):
            with Span() as span:
                eventstore.open(sch.url, projections=[MediaProjection()], readonly=True).close()
            opens.append(span.wall)
    cpu_row(b, "pg_replay", "15", f"PostgreSQL read of {n:,} events (Store.read)", n, mine, base,
            "SELECT + unpack", None, "ours pages by seq, checks each payload's shape and builds Event objects")
    b.info(f"open with a MediaProjection (full replay of {n:,} events): {ms(med(opens))} wall")


def _pg_follower(url: str, n: int, ready: Any, out: Any) -> None:
    got: dict[int, int] = {}
    with eventstore.open(url, readonly=True) as store:
        stream = store.follow(timeout=30)
        ready.put(True)
        for e in stream:
            got[e.seq] = time.time_ns()
            if len(got) >= n:
                break
    out.put(got)


def bench_pg_follow(b: Bench) -> None:
    """15: follow latency on PostgreSQL, from a commit to a follower in another process."""
    if not _pg_available(b):
        return
    import multiprocessing
    n = 50 if b.quick else 200
    ctx = multiprocessing.get_context("fork")
    with _PgSchema("follow") as sch:
        eventstore.open(sch.url).close()
        ready, out = ctx.Queue(), ctx.Queue()
        proc = ctx.Process(target=_pg_follower, args=(sch.url, n, ready, out))
        proc.start()
        ready.get(timeout=30)
        time.sleep(0.3)  # the follower's listener connects
        acked: dict[int, int] = {}
        with eventstore.open(sch.url, snapshot_every=0) as store:
            for i in range(n):
                acked[store.append("t", "k", {"i": i}).seq] = time.time_ns()
                time.sleep(0.01)
        got = out.get(timeout=60)
        proc.join(10)
    lat = sorted((got[s] - acked[s]) / 1e9 for s in acked)
    m = med(lat)
    b.add(Row("pg_follow", "15", f"PostgreSQL follow latency, commit to follower process ({n} commits)",
              f"median {ms(m)}, p90 {ms(lat[int(len(lat) * 0.9)])}", "target 50 ms", 0.05 / m, "< 50 ms",
              m < 0.05, {"latencies_s": lat},
              note="from the append's return in the writer to the event's arrival in the follower "
                   "(woken by LISTEN/NOTIFY); can be negative when the follower wins the race"))


def bench_pg_open(b: Bench) -> None:
    """15: open a big PostgreSQL store from a snapshot + tail vs a full replay."""
    if not _pg_available(b):
        return
    n, keys = (200_000, 20_000) if b.quick else (1_000_000, 100_000)
    meta = {"actor": "bench"}
    with _PgSchema("open") as sch:
        t0 = now()
        with eventstore.open(sch.url, durability="none", snapshot_every=0) as store:
            for start in range(0, n, 100_000):
                items = media_events(min(100_000, n - start), keys, start=start, meta=meta)
                for i in range(0, len(items), 1000):
                    store.append_many(items[i:i + 1000])
        b.info(f"built {n:,} events / {keys:,} keys in {now() - t0:.1f} s")

        def opened() -> tuple[float, float]:
            proj = MediaProjection()
            with Span() as span:
                store = eventstore.open(sch.url, projections=[proj], readonly=True)
            assert len(proj) == keys
            store.close()
            return span.wall, span.cpu

        full = [opened() for _ in range(1 if not b.quick else b.repeats)]
        with eventstore.open(sch.url, projections=[MediaProjection()], snapshot_every=0) as store:
            store.snapshot()
            store.append_many(media_events(1000, keys, start=n, meta=meta))
        snap = [opened() for _ in range(b.repeats)]
    fw, fc = med(t[0] for t in full), med(t[1] for t in full)
    sw, sc = med(t[0] for t in snap), med(t[1] for t in snap)
    b.add(Row("pg_open", "15", f"PostgreSQL open {n // 1000:,}k events / {keys // 1000:,}k items: "
              "snapshot + 1000-event tail", f"{ms(sw)} wall ({ms(sc)} CPU)",
              f"full replay {ms(fw)} wall ({ms(fc)} CPU)", fw / sw, ">= 10x", fw / sw >= 10,
              {"snapshot_open": snap, "full_open": full},
              note="a new process's view: eventstore.open with a MediaProjection, readonly; verdict on wall "
                   f"time (the server's work counts), CPU ratio {fc / sc:.2f}x"))


PG_BENCHES: dict[str, Callable[[Bench], None]] = {
    "pg_append": bench_pg_append,
    "pg_durable": bench_pg_durable,
    "pg_replay": bench_pg_replay,
    "pg_follow": bench_pg_follow,
    "pg_open": bench_pg_open,
}
