#!/usr/bin/env python3
"""metalog benchmarks: every figure against a baseline measured in the same run.

Run from a checkout (``pip install -e .`` done)::

    python tools/bench.py                 # everything, a few minutes on 2 cores
    python tools/bench.py --quick         # smaller data, fewer rounds
    python tools/bench.py --only replay   # one benchmark (repeatable flag)
    python tools/bench.py --json          # machine output on stdout
    python tools/bench.py --dir /some/fs  # where the temporary data lives

Each benchmark prints its figure, the baseline it measured itself, and the
ratio against the target of issues 3, 4, 5 and 14 (SPEC §7.8: scripts, not
timed tests). Short measurements are repeated (``--repeats``, default 3)
with metalog and baseline rounds interleaved, so a noisy neighbour hurts
both sides alike; the median of each side is reported. The baselines:

- SQLite in WAL mode, ``synchronous=NORMAL``, table (seq, ts, type, key,
  data msgpack blob), inserted with ``executemany`` in one transaction;
- a raw ``os.write`` + ``os.fdatasync`` loop (the sync call the store uses);
- ``OldJsonStore`` below: the old uploader's DataManager, one dict
  ``{media_key: {"title", "description"}}`` rewritten to disk on every
  change (json.dump to a temp file, fsync, rename), with its batch mode.

This script only reads the public API of ``eventstore`` and
``projections``; it never changes the code it measures.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable

import msgpack
import zstandard

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

import eventstore  # noqa: E402
from eventstore import Event  # noqa: E402
from eventstore.fs import FileSystem  # noqa: E402  (the documented fault-injection hook)
from eventstore.codec import encode_commit  # noqa: E402
from projections import MediaCatalog  # noqa: E402
from projections import MediaPersistenceService  # noqa: E402
from projections.media import MediaProjection  # noqa: E402

now = time.perf_counter


# --------------------------------------------------------------------------- results

@dataclass
class Row:
    """One line of the results table."""

    bench: str            # benchmark name (--only)
    issue: str            # "3a", "4", ...
    what: str             # what was measured
    metalog: str          # metalog's figure, human
    baseline: str         # the baseline's figure, human
    ratio: float | None   # metalog vs baseline, oriented so the target reads naturally
    target: str           # e.g. ">= 3x"; "" when the issue sets none
    ok: bool | None       # None: no target (information)
    values: dict[str, Any] = field(default_factory=dict)  # raw numbers for --json
    note: str = ""
    score: float | None = None  # metalog's figure in seconds, to pick a median row without a ratio

    @property
    def verdict(self) -> str:
        return "info" if self.ok is None else ("PASS" if self.ok else "FAIL")

    def line(self) -> str:
        ratio = "" if self.ratio is None else f" = {self.ratio:.2f}x"
        target = f" (target {self.target})" if self.target else ""
        vs = f" vs {self.baseline}" if self.baseline else ""
        return f"{self.what}: {self.metalog}{vs}{ratio}{target} {self.verdict}"


class Bench:
    """Shared state of one run: where data goes, sizes, cached stores, rows."""

    def __init__(self, root: str, quick: bool, repeats: int, out: Callable[[str], None]) -> None:
        self.root = root
        self.quick = quick
        self.repeats = repeats
        self.out = out
        self.rows: list[Row] = []
        self._n = 0
        self.big: dict[str, Any] | None = None   # the cached 1M-event store

    def fresh(self, name: str) -> str:
        """A new, not yet existing path under the bench dir."""
        self._n += 1
        return os.path.join(self.root, f"{self._n:03d}-{name}")

    def add(self, row: Row) -> None:
        self.rows.append(row)
        self.out("  " + row.line())
        if row.note:
            self.out("    " + row.note)

    def info(self, text: str) -> None:
        self.out("    " + text)


def med(xs: Iterable[float]) -> float:
    return statistics.median(list(xs))


def rate(n: float, seconds: float) -> str:
    r = n / seconds
    if r >= 1e6:
        return f"{r / 1e6:.2f}M ev/s"
    if r >= 1e4:
        return f"{r / 1e3:.0f}k ev/s"
    return f"{r:,.0f}/s"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3g} ms" if seconds < 1 else f"{seconds:.2f} s"


def mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def dir_bytes(path: str, suffix: str | None = None) -> int:
    total = 0
    for dirpath, _, names in os.walk(path):
        for name in names:
            if suffix is None or name.endswith(suffix):
                total += os.path.getsize(os.path.join(dirpath, name))
    return total


class Span:
    """Wall-clock and CPU seconds of a block (CPU: this process, all its threads).

    On this shared 2-core machine (load average 3-6 while others run their
    tests) wall time of a CPU-bound loop mostly measures the scheduler; the
    CPU-bound benchmarks judge their target on CPU time and print both.
    """

    def __enter__(self) -> "Span":
        self._w, self._c = now(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = now() - self._w, time.process_time() - self._c


def cpu_row(b: Bench, bench: str, issue: str, what: str, n: int, ours: list, theirs: list,
            base: str, target: float | None, note: str, **values: Any) -> None:
    """A row for a CPU-bound comparison of event rates: verdict on CPU time, wall shown too."""
    mw, mc = med(x[0] for x in ours), med(x[1] for x in ours)
    sw, sc = med(x[0] for x in theirs), med(x[1] for x in theirs)
    ratio = sc / mc
    b.add(Row(bench, issue, what, f"{rate(n, mc)} CPU ({rate(n, mw)} wall)",
              f"{base} {rate(n, sc)} CPU ({rate(n, sw)} wall)", ratio,
              "" if target is None else f">= {target:g}x", None if target is None else ratio >= target,
              {"events": n, "metalog_wall_s": [x[0] for x in ours], "metalog_cpu_s": [x[1] for x in ours],
               "baseline_wall_s": [x[0] for x in theirs], "baseline_cpu_s": [x[1] for x in theirs],
               "wall_ratio": sw / mw, **values},
              note=f"{note}; wall-clock ratio {sw / mw:.2f}x"))


def interleaved(repeats: int, *sides: Callable[[], Any], warmup: bool = False) -> list[list[Any]]:
    """Run the sides in turn ``repeats`` times; the list of results per side.

    With ``warmup`` one extra first round is run and thrown away.
    """
    results: list[list[Any]] = [[] for _ in sides]
    if warmup:
        for side in sides:
            side()
    for _ in range(repeats):
        for i, side in enumerate(sides):
            gc.collect()
            results[i].append(side())
    return results


# --------------------------------------------------------------------------- data

_WORDS = ("sunset beach family holiday birthday party mountain lake forest city night "
          "portrait garden snow winter summer spring autumn river bridge harbour boat "
          "train station market street festival concert wedding graduation dog cat "
          "grandma grandpa kids school trip museum castle island sea storm rainbow clouds "
          "morning evening road bike hike camp fire dinner friends picnic park rain "
          "sky desert canyon valley village church tower lights fireworks old new first "
          "last big small red blue green yellow white black golden silver quiet busy "
          "happy funny lovely cold warm windy sunny foggy early late long short tall "
          "with and the of in at on by from near under over after before during our "
          "my their his her team club class office home kitchen garden balcony roof "
          "window door table cake gift balloon candle tree flower rose tulip leaf "
          "stone sand wave shell fish bird horse cow sheep goat duck swan bear fox "
          "deer owl eagle bee butterfly Anna Ben Clara David Emma Felix Greta Hugo "
          "Ines Jonas Karl Lena Max Nora Oskar Paula Quentin Rosa Sam Tina Udo Vera "
          "Paris Berlin Rome Lisbon Oslo Vienna Prague Madrid Athens Dublin London "
          "Zurich Geneva Munich Hamburg Lyon Porto Naples Venice Milan Krakow Tallinn "
          "Riga Bergen Seville Bruges Ghent Bordeaux Nice Split Malaga Palermo Dresden "
          "Leipzig Bremen Salzburg Innsbruck Graz Basel Bern Lucerne Turin Verona "
          "Bologna Pisa Florence Siena Granada Valencia Bilbao Cadiz Toledo Avila "
          "one two three four five six seven eight nine ten 2019 2020 2021 2022 2023 "
          "2024 2025 photo video clip scan copy edit final draft raw best").split()
_WORDS = (_WORDS * 2)[:256]


def _caption(rnd: bytes, at: int, words: int) -> str:
    w = _WORDS
    return " ".join([w[c] for c in rnd[at:at + words]]).capitalize()


def media_path(k: int) -> str:
    return f"/srv/media/library/{k % 1000:03d}/IMG_{k:07d}.jpg"


def media_events(n: int, keys: int, *, start: int = 0, meta: dict | None = None) -> list[tuple]:
    """``n`` title/description sets spread round-robin over ``keys`` items.

    Values are random words (a 256-word vocabulary: 8 bits of entropy per
    word, so text compresses roughly like real captions, not like repeated
    bytes) ending with the event number, so no set is a no-op. With
    ``meta`` the items are 4-tuples (as the catalog writes them, with an
    actor); without, 3-tuples. Deterministic for a given ``start``.
    """
    rnd = random.Random(start).randbytes(n * 12)
    out = []
    paths = [media_path(k) for k in range(keys)]
    for j in range(n):
        i = start + j
        k = i % keys
        if (i // keys) % 2 == 0:
            item = ("title.set", paths[k], {"value": f"{_caption(rnd, j * 12, 3)} #{i}"})
        else:
            item = ("description.set", paths[k], {"value": f"{_caption(rnd, j * 12, 12)} #{i}"})
        out.append(item if meta is None else (*item, meta))
    return out


def legacy_dict(items: int) -> dict[str, dict[str, str]]:
    rnd = random.Random(items).randbytes(items * 15)
    return {media_path(k): {"title": _caption(rnd, k * 15, 3), "description": _caption(rnd, k * 15 + 3, 12)}
            for k in range(items)}


# --------------------------------------------------------------------------- baselines

class OldJsonStore:
    """The old uploader's DataManager, as the baseline: one JSON dict,
    rewritten atomically (temp file, fsync, rename) on every change, or once
    per batch in batch mode."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.data: dict[str, dict[str, str]] = {}
        self.batch = False
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                self.data = json.load(f)

    def _save(self) -> None:
        tmp = self.path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.data, f, ensure_ascii=False, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def _set(self, key: str, field_: str, value: str) -> bool:
        entry = self.data.setdefault(key, {"title": "", "description": ""})
        if entry.get(field_) == value:
            return False
        entry[field_] = value
        if not self.batch:
            self._save()
        return True

    def save_title(self, key: str, title: str) -> bool:
        return self._set(key, "title", title)

    def save_description(self, key: str, text: str) -> bool:
        return self._set(key, "description", text)

    def start_batch_mode(self) -> None:
        self.batch = True

    def commit_batch(self) -> None:
        self.batch = False
        self._save()


def sqlite_open(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, ts INTEGER NOT NULL, "
               "type TEXT NOT NULL, key TEXT NOT NULL, data BLOB NOT NULL)")
    return db


def sqlite_insert(db: sqlite3.Connection, items: list[tuple], first_seq: int = 1) -> None:
    """One transaction inserting ``items`` (type, key, data) as msgpack rows."""
    pack = msgpack.packb
    ts = time.time_ns
    db.execute("BEGIN")
    db.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?)",
                   ((first_seq + i, ts(), t, k, pack(d, use_bin_type=True))
                    for i, (t, k, d) in enumerate(items)))
    db.execute("COMMIT")


# --------------------------------------------------------------------------- issue 3

def bench_append(b: Bench) -> None:
    """3a: bulk buffered append, commits of 100 events, vs one SQLite transaction."""
    n = 50_000 if b.quick else 200_000
    items = media_events(n, n // 10)
    flushes: list[float] = []

    def metalog() -> tuple[float, float]:
        path = b.fresh("append")
        store = eventstore.open(path, durability="none", snapshot_every=0)
        with Span() as span:
            for i in range(0, n, 100):
                store.append_many(items[i:i + 100])
            t1 = now()
            store.flush()                      # write + fdatasync of what is buffered
            flushes.append(now() - t1)
        store.close()
        return span.wall, span.cpu

    def sqlite() -> tuple[float, float]:
        path = b.fresh("append.sqlite")
        db = sqlite_open(path)
        with Span() as span:
            sqlite_insert(db, items)
        db.close()
        return span.wall, span.cpu

    ours, theirs = interleaved(b.repeats + 2, metalog, sqlite)
    cpu_row(b, "append", "3a", f"bulk append ({n:,} events, append_many of 100, durability=none)", n,
            ours, theirs, "SQLite", 3,
            f"metalog includes the final flush() (write + fdatasync, median {ms(med(flushes))} wall); "
            f"SQLite: executemany in one transaction, WAL, synchronous=NORMAL, commit without fsync")

    # Why msgspec encodes plain commits (docs/decisions/0010): the same commits, both encoders.
    commits = [[(*item, {}) for item in items[i:i + 100]] for i in range(0, n, 100)]
    fast, ref = interleaved(b.repeats + 2, lambda: _encode_cpu(commits, True), lambda: _encode_cpu(commits, False))
    assert all(encode_commit(c, 1 << 20, plain=True) == msgpack.packb(c, use_bin_type=True) for c in commits[:50])
    b.add(Row("append", "3a", "encode the same commits: msgspec (plain commits) vs msgpack",
              f"{med(fast) / n * 1e6:.3f} us/event", f"msgpack {med(ref) / n * 1e6:.3f} us/event",
              med(ref) / med(fast), "", None, {"msgspec_cpu_s": fast, "msgpack_cpu_s": ref},
              note="eventstore.codec.encode_commit(plain=True) vs msgpack.packb(use_bin_type=True), "
                   "CPU time; the bytes are checked equal"))


def _encode_cpu(commits: list, plain: bool) -> float:
    with Span() as span:
        if plain:
            for c in commits:
                encode_commit(c, 1 << 20, plain=True)
        else:
            for c in commits:
                msgpack.packb(c, use_bin_type=True)
    return span.cpu


def _replay_fixture(b: Bench, n: int) -> tuple[str, str]:
    items = media_events(n, n // 10)
    path = b.fresh("replay")
    with eventstore.open(path, durability="none", snapshot_every=0) as store:
        for i in range(0, n, 100):
            store.append_many(items[i:i + 100])
    db_path = b.fresh("replay.sqlite")
    db = sqlite_open(db_path)
    sqlite_insert(db, items)
    db.close()
    return path, db_path


def bench_replay(b: Bench) -> None:
    """3b: reopen replaying 200k events into MediaProjection vs SQLite SELECT + unpack."""
    n = 50_000 if b.quick else 200_000
    path, db_path = _replay_fixture(b, n)
    states: list[int] = []

    def metalog() -> tuple[float, float]:
        proj = MediaProjection()
        with Span() as span:
            store = eventstore.open(path, projections=[proj], durability="none", snapshot_every=0)
        assert store.last_seq == n and store.stats()["snapshot_seq"] == 0
        store.close()
        states.append(len(proj))
        return span.wall, span.cpu

    def sqlite() -> tuple[float, float]:
        proj = MediaProjection()
        apply, unpack = proj.apply, msgpack.unpackb
        with Span() as span:
            db = sqlite3.connect(db_path)
            for seq, ts, typ, key, data in db.execute("SELECT seq, ts, type, key, data FROM events ORDER BY seq"):
                apply(Event(seq, ts, typ, key, unpack(data, raw=False), {}))
        db.close()
        states.append(len(proj))
        return span.wall, span.cpu

    def metalog_read() -> tuple[float, float]:
        store = eventstore.open(path, durability="none", snapshot_every=0)
        with Span() as span:
            count = sum(1 for _ in store.read())
        store.close()
        assert count == n
        return span.wall, span.cpu

    def sqlite_read() -> tuple[float, float]:
        unpack = msgpack.unpackb
        with Span() as span:
            db = sqlite3.connect(db_path)
            count = sum(1 for row in db.execute("SELECT seq, ts, type, key, data FROM events ORDER BY seq")
                        if unpack(row[4], raw=False) is not None)
        db.close()
        assert count == n
        return span.wall, span.cpu

    ours, theirs = interleaved(b.repeats + 2, metalog, sqlite)
    assert len(set(states)) == 1, f"projections differ: {set(states)}"
    cpu_row(b, "replay", "3b", f"replay {n:,} events into MediaProjection on open", n, ours, theirs,
            "SQLite", 1.3,
            "both sides feed the same MediaProjection.apply with the same Event tuples; metalog also "
            "checks CRC-32 and the BLAKE2b chain of every frame; snapshot_every=0, no snapshot on disk")
    ours, theirs = interleaved(b.repeats + 2, metalog_read, sqlite_read)
    cpu_row(b, "replay", "3b", f"read {n:,} events, no projection (Store.read())", n, ours, theirs,
            "SQLite", None, "the decoding cost alone: Store.read() vs SELECT + msgpack.unpackb per row")


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
              rate(1, m), f"raw write+fdatasync {rate(1, s)}", s / m, ">= 0.8x", s / m >= 0.8,
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
              note=f"0.8x of the raw loop needs this overhead <= {s * 0.25 * 1e6:.0f} us at the measured "
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


class LatestValues:
    """A lean projection for comparison: current title/description per key, no undo."""

    name = "bench-latest"
    version = 1

    def __init__(self) -> None:
        self.items: dict[str, list[str]] = {}

    def apply(self, event: Event) -> None:
        value = event.data.get("value")
        if event.type == "title.set":
            self.items.setdefault(event.key, ["", ""])[0] = value
        elif event.type == "description.set":
            self.items.setdefault(event.key, ["", ""])[1] = value

    def snapshot(self) -> Any:
        return self.items

    def restore(self, state: Any) -> None:
        self.items = {k: list(v) for k, v in state.items()}


class CountingFS(FileSystem):
    """The store's file-system layer, counting data syncs (commits per fsync)."""

    syncs = 0

    def fdatasync(self, fd: int) -> None:
        self.syncs += 1
        super().fdatasync(fd)


def _old_store(b: Bench, items: int) -> OldJsonStore:
    path = b.fresh("legacy.json")
    old = OldJsonStore(path)
    old.data = legacy_dict(items)
    old._save()
    return old


def _catalog(b: Bench, items: int, **options: Any) -> tuple[MediaCatalog, str]:
    path = b.fresh("catalog")
    cat = MediaCatalog.open(path, actor="bench", snapshot_every=0, **options)
    with cat.batch():
        for key, entry in legacy_dict(items).items():
            cat.set_title(key, entry["title"])
            cat.set_description(key, entry["description"])
    return cat, path


def bench_change(b: Bench) -> None:
    """3e / 5: one durable change on a 10k-item catalog vs rewriting the 10k-item JSON file."""
    items = 10_000
    k = 15 if b.quick else 30
    rounds = b.repeats * 2
    cat, _ = _catalog(b, items)
    svc_path = b.fresh("service")
    shutil.copytree(cat.store.root, svc_path, ignore=shutil.ignore_patterns("LOCK", "*.lock"))
    svc = MediaPersistenceService(svc_path, actor="bench", snapshot_every=0)
    old = _old_store(b, items)
    json_bytes = os.path.getsize(old.path)
    keys = [media_path((i * 37) % items) for i in range(k)]
    rnd = [0]

    def side(save: Callable[[str, str], Any]) -> Callable[[], float]:
        def run() -> float:
            rnd[0] += 1
            t0 = now()
            for i, key in enumerate(keys):
                save(key, f"Edited {rnd[0]}.{i}")
            return (now() - t0) / k
        return run

    ours, theirs, svc_times = interleaved(rounds, side(cat.set_title), side(old.save_title),
                                          side(svc.save_title), warmup=True)
    events = cat.store.last_seq
    cat.close()
    svc.shutdown()
    m, s, sv = med(ours), med(theirs), med(svc_times)
    b.add(Row("change", "3e/5", f"one durable change, {items:,}-item catalog (MediaCatalog.set_title)",
              f"{ms(m)}/change", f"JSON rewrite {ms(s)}/change", s / m, ">= 100x", s / m >= 100,
              {"items": items, "changes_per_round": k, "metalog_s_per_change": ours,
               "json_s_per_change": theirs, "json_bytes": json_bytes, "events": events},
              note=f"old store: json.dump of {items:,} items ({mib(json_bytes)}) to a temp file, fsync, "
                   f"rename; metalog: one event, durability=fsync (one fdatasync); {rounds} alternating "
                   f"rounds of {k} changes"))
    b.add(Row("change", "5", "one durable change via the old API (MediaPersistenceService.save_title)",
              f"{ms(sv)}/change", f"JSON rewrite {ms(s)}/change", s / sv, "", None,
              {"service_s_per_change": svc_times}))


def bench_import(b: Bench) -> None:
    """5: bulk import of 10k items (title + description) vs the old store's batch mode."""
    items = 10_000
    data = legacy_dict(items)
    legacy_file = b.fresh("import-source.json")
    with open(legacy_file, "w", encoding="utf-8") as f:
        json.dump(data, f)

    def metalog_batch() -> float:
        path = b.fresh("import")
        cat = MediaCatalog.open(path, actor="bench", snapshot_every=0)
        t0 = now()
        with cat.batch():
            for key, entry in data.items():
                cat.set_title(key, entry["title"])
                cat.set_description(key, entry["description"])
        t1 = now()
        assert len(cat) == items
        cat.close()
        return t1 - t0

    def legacy_batch() -> float:
        old = OldJsonStore(b.fresh("import-old.json"))
        t0 = now()
        old.start_batch_mode()
        for key, entry in data.items():
            old.save_title(key, entry["title"])
            old.save_description(key, entry["description"])
        old.commit_batch()
        return now() - t0

    def metalog_legacy_import() -> float:
        path = b.fresh("import-json")
        cat = MediaCatalog.open(path, actor="bench", snapshot_every=0)
        t0 = now()
        report = cat.import_legacy_json(legacy_file)
        t1 = now()
        assert report.imported == items, report
        cat.close()
        return t1 - t0

    ours, theirs, imp = interleaved(b.repeats, metalog_batch, legacy_batch, metalog_legacy_import)
    m, s, i = med(ours), med(theirs), med(imp)
    b.add(Row("import", "5", f"bulk import of {items:,} items in one batch (2 sets each)",
              ms(m), f"JSON batch mode {ms(s)}", s / m, "", None,
              {"items": items, "metalog_s": ours, "json_s": theirs},
              note="both durable at the end: metalog one commit + fdatasync, old store one atomic rewrite"))
    b.add(Row("import", "5", f"import_legacy_json of a {items:,}-item JSON file",
              ms(i), f"JSON batch mode {ms(s)}", s / i, "", None, {"metalog_s": imp}))


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


# --------------------------------------------------------------------------- PostgreSQL (issue 15)
# This section is the PostgreSQL backend's: its benchmarks, baselines and helpers, and
# nothing else uses them. The server is $METALOG_PG_URL (default: the local test server);
# each benchmark works in a schema of its own and drops it. Skipped without psycopg or a
# server. Baselines are plain psycopg on the same server in the same run.

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
# --------------------------------------------------------------------------- end of PostgreSQL


# --------------------------------------------------------------------------- issue 14

# One writer process of `bench_writers`, run with ``python -c`` so that the tree on
# PYTHONPATH decides which eventstore it measures (this checkout, or the exclusive
# store before many writers). It opens the store, says READY, waits for the go file,
# appends, and prints one JSON line.
WRITER_CHILD = r"""
import json, os, sys, time
import eventstore
mode, path, durability, exclusive, amount, go = sys.argv[1:7]
options = {"durability": durability, "snapshot_every": 0}
if exclusive == "1":
    options["exclusive"] = True
store = eventstore.open(path, **options)
pid = os.getpid()
store.append("bench.start", f"/warm/{pid}", {})
def item(i):
    return ("media.title", f"/media/p{pid}/2024/IMG_{i % 5000:05d}.jpg",
            {"value": f"Holiday photo {i} taken at the beach with the family"})
items = [item(i) for i in range(int(amount))] if mode != "loop" else []
print("READY", flush=True)
if mode == "turns":                      # one durable append per line from the parent
    for t, k, d in items:
        sys.stdin.readline()
        t0 = time.perf_counter()
        store.append(t, k, d)
        print(time.perf_counter() - t0, flush=True)
    store.close()
    sys.exit(0)
while not os.path.exists(go):
    time.sleep(0.0005)
out = {"eventstore": os.path.dirname(eventstore.__file__)}
if mode == "bulk":                       # append_many of 100, durability none, then flush
    w, c = time.perf_counter(), time.process_time()
    for i in range(0, len(items), 100):
        store.append_many(items[i:i + 100])
    store.flush()
    out.update(seconds=time.perf_counter() - w, cpu=time.process_time() - c, events=len(items))
else:                                    # single durable appends for a fixed time
    n, end = 0, time.monotonic() + float(amount)
    t0, c0 = time.perf_counter(), time.process_time()
    while time.monotonic() < end:
        store.append(*item(n))
        n += 1
    out.update(seconds=time.perf_counter() - t0, cpu=time.process_time() - c0, commits=n)
store.close()
print(json.dumps(out), flush=True)
"""


def _exclusive_baseline(b: Bench) -> tuple[str, bool, str]:
    """(PYTHONPATH, exclusive flag, description) of the store to compare one writer against.

    ``eventstore.open(..., exclusive=True)`` when this checkout has it; else the
    eventstore of the commit before many writers (its lock was held for the whole
    open), extracted from git; ("", False, why) when neither is available.
    """
    import inspect
    if "exclusive" in inspect.signature(eventstore.open).parameters:
        return REPO, True, "this checkout with exclusive=True"
    try:
        seam = subprocess.run(["git", "-C", REPO, "log", "--format=%H", "-1", "--grep",
                               "the Store seam and many writers"], capture_output=True, text=True,
                              timeout=10).stdout.strip()
        if not seam:
            return "", False, "no exclusive=True here and no git history to take the old store from"
        tree = b.fresh("exclusive-tree")
        os.makedirs(tree)
        archive = subprocess.run(["git", "-C", REPO, "archive", f"{seam}^", "eventstore"],
                                 capture_output=True, timeout=30, check=True).stdout
        subprocess.run(["tar", "-x", "-C", tree], input=archive, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        return "", False, f"no exclusive=True here and the old store could not be extracted ({exc})"
    return tree, False, f"the exclusive store of {seam[:7]}^ (lock held per open), from git"


def _writers(b: Bench, pythonpath: str, mode: str, path: str, durability: str, exclusive: bool,
             amount: float, processes: int = 1) -> list[dict[str, Any]]:
    """Run ``processes`` writer children on ``path`` at once; their JSON results."""
    go = path + ".go"
    env = dict(os.environ, PYTHONPATH=pythonpath)
    procs = [subprocess.Popen([sys.executable, "-c", WRITER_CHILD, mode, path, durability,
                               "1" if exclusive else "0", str(amount), go],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(processes)]
    try:
        for p in procs:
            line = p.stdout.readline()
            if line.strip() != "READY":
                raise RuntimeError(f"bench writer failed: {line!r} {p.stderr.read()[-2000:]}")
        open(go, "w").close()
        results = []
        for p in procs:
            out, err = p.communicate(timeout=600)
            if p.returncode:
                raise RuntimeError(f"bench writer exited {p.returncode}: {err[-2000:]}")
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def _turns(b: Bench, sides: list[tuple[str, bool]], n: int) -> list[list[float]]:
    """One writer child per (PYTHONPATH, exclusive) side, each on a fresh store, appending
    durably one event at a time in turn; the latencies each measured."""
    procs = []
    try:
        for pythonpath, exclusive in sides:
            env = dict(os.environ, PYTHONPATH=pythonpath)
            p = subprocess.Popen([sys.executable, "-c", WRITER_CHILD, "turns", b.fresh("writers-turns"), "fsync",
                                  "1" if exclusive else "0", str(n), "-"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            procs.append(p)
            if p.stdout.readline().strip() != "READY":
                raise RuntimeError(f"bench writer failed: {p.stderr.read()[-2000:]}")
        latencies: list[list[float]] = [[] for _ in sides]
        for _ in range(n):
            for i, p in enumerate(procs):
                p.stdin.write("\n")
                p.stdin.flush()
                latencies[i].append(float(p.stdout.readline()))
        for p in procs:
            p.stdin.close()
            if p.wait(60):
                raise RuntimeError(f"bench writer exited {p.returncode}: {p.stderr.read()[-2000:]}")
        return latencies
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def bench_writers(b: Bench) -> None:
    """14: writers in several processes: one alone vs the exclusive store; 4 durable vs 1."""
    base_path, base_exclusive, base_name = _exclusive_baseline(b)
    if base_path:
        b.info(f"baseline for one process alone: {base_name}")
        n_bulk = 50_000 if b.quick else 200_000
        n_durable = 300 if b.quick else 800

        def one(pythonpath: str, exclusive: bool, mode: str, durability: str, n: int) -> dict[str, Any]:
            return _writers(b, pythonpath, mode, b.fresh(f"writers-{mode}"), durability, exclusive, n)[0]

        ours, theirs = interleaved(b.repeats + 2, lambda: one(REPO, False, "bulk", "none", n_bulk),
                                   lambda: one(base_path, base_exclusive, "bulk", "none", n_bulk))
        mc, sc = med(r["cpu"] for r in ours), med(r["cpu"] for r in theirs)
        mw, sw = med(r["seconds"] for r in ours), med(r["seconds"] for r in theirs)
        ratio = sc / mc
        b.add(Row("writers", "14", f"one process alone, bulk append ({n_bulk:,} events, append_many of 100, "
                  "durability=none)", f"{rate(n_bulk, mc)} CPU ({rate(n_bulk, mw)} wall)",
                  f"exclusive {rate(n_bulk, sc)} CPU ({rate(n_bulk, sw)} wall)", ratio, ">= 0.95x",
                  ratio >= 0.95, {"ours": ours, "exclusive": theirs, "wall_ratio": sw / mw},
                  note=f"baseline: {base_name}; each side a fresh process and store, {b.repeats + 2} "
                       f"alternating rounds, medians; verdict on CPU time, wall-clock ratio {sw / mw:.2f}x"))

        # Durable appends alternate op by op between two processes, ours and the baseline's
        # (fsync latency on a shared disk drifts tenfold within seconds; see bench_durable).
        ours_lat, theirs_lat = _turns(b, [(REPO, False), (base_path, base_exclusive)], n_durable)
        m, s = med(ours_lat), med(theirs_lat)
        ratio = s / m
        b.add(Row("writers", "14", f"one process alone, durable single-event appends ({n_durable} appends, "
                  "durability=fsync)", rate(1, m), f"exclusive {rate(1, s)}", ratio, ">= 0.95x", ratio >= 0.95,
                  {"ours_median_s": m, "exclusive_median_s": s, "ours_total_s": sum(ours_lat),
                   "exclusive_total_s": sum(theirs_lat)},
                  note=f"baseline: {base_name}; two processes, each on its own store, take turns one "
                       f"append at a time; rates from the median latency (ours {ms(m)}, exclusive "
                       f"{ms(s)}); from the totals the ratio is {sum(theirs_lat) / sum(ours_lat):.2f}x"))
    else:
        b.info(f"one process alone vs the exclusive store: not measured ({base_name})")

    seconds = 1.0 if b.quick else 2.0
    rounds = b.repeats + 3

    cpu_per_commit: dict[int, list[float]] = {1: [], 4: []}

    def together(processes: int) -> float:
        results = _writers(b, REPO, "loop", b.fresh(f"writers-{processes}p"), "fsync", False, seconds,
                           processes)
        commits = sum(r["commits"] for r in results)
        cpu_per_commit[processes].append(sum(r["cpu"] for r in results) / commits)
        return commits / max(r["seconds"] for r in results)

    one_rate, four_rate = interleaved(rounds, lambda: together(1), lambda: together(4))
    c1, c4 = med(cpu_per_commit[1]), med(cpu_per_commit[4])
    pairs = sorted(f / o for o, f in zip(one_rate, four_rate))
    ratio = med(pairs)
    b.add(Row("writers", "14", f"4 processes appending durably together ({seconds:g} s of single-event "
              "commits each)", f"{med(four_rate):,.0f} commits/s",
              f"1 process {med(one_rate):,.0f} commits/s", ratio, ">= 2x", ratio >= 2,
              {"one_process_rate": one_rate, "four_process_rate": four_rate, "pair_ratios": pairs,
               "cpu_s_per_commit_1": cpu_per_commit[1], "cpu_s_per_commit_4": cpu_per_commit[4]},
              note=f"each process appends single events with durability=fsync in a loop for {seconds:g} s "
                   f"(one thread each); {rounds} alternating rounds, ratio = median of the rounds' ratios "
                   f"(min {pairs[0]:.2f}, max {pairs[-1]:.2f}); CPU per commit, all processes together: "
                   f"{c4 * 1e6:.0f} us with 4 (each also reads the others' commits), {c1 * 1e6:.0f} us "
                   f"with 1, on {os.cpu_count()} CPUs"))


# --------------------------------------------------------------------------- issue 16 items 4, 5
# Measured by tools/catalog_memory.py and tools/cli_timing.py; tools/bench_cli.py makes the rows.

def bench_memory(b: Bench) -> None:
    """Live bytes of a 100k-item catalog opened from a snapshot vs the old JSON file's dict (16/4)"""
    import bench_cli
    for row in bench_cli.memory_rows(b.root, b.quick):
        b.add(Row(**row))


def bench_cli(b: Bench) -> None:
    """metalog --help, get, ls and ls | head -1 on a 100k-item store, vs python -c pass (16/5)"""
    import bench_cli
    for row in bench_cli.cli_rows(b.root, b.quick):
        b.add(Row(**row))


# --------------------------------------------------------------------------- driver

BENCHES: dict[str, Callable[[Bench], None]] = {
    "append": bench_append,
    "replay": bench_replay,
    "durable": bench_durable,
    "group": bench_group,
    "change": bench_change,
    "import": bench_import,
    "open": bench_open,
    "stall": bench_stall,
    "compact": bench_compact,
    "history": bench_history,
    "writers": bench_writers,
}
BENCHES.update(PG_BENCHES)  # the PostgreSQL section's
BENCHES.update({"memory": bench_memory, "cli": bench_cli})  # issue 16 items 4, 5


def fs_type(path: str) -> str:
    path = os.path.realpath(path)
    best, kind = "", "?"
    try:
        with open("/proc/mounts", encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                mount = parts[1]
                if (path == mount or path.startswith(mount.rstrip("/") + "/")) and len(mount) > len(best):
                    best, kind = mount, f"{parts[2]} ({parts[0]} on {mount})"
    except OSError:
        pass
    return kind


def machine(root: str) -> dict[str, Any]:
    try:
        commit = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "eventstore", "projections"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "", ""
    commit = commit or "not a git checkout"
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "cpus": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
        "platform": platform.platform(), "bench_dir": root, "fs": fs_type(root),
        "sqlite": sqlite3.sqlite_version, "msgpack": ".".join(map(str, msgpack.version)),
        "zstandard": zstandard.__version__, "commit": commit + (" (eventstore/projections modified)" if dirty else ""),
        "loadavg_start": os.getloadavg(), "eventstore": os.path.dirname(eventstore.__file__),
    }


def _profiled(fn: Callable[[Bench], None], b: Bench, out: Callable[[str], None]) -> None:
    import cProfile
    import io
    import pstats
    prof = cProfile.Profile()
    prof.enable()
    try:
        fn(b)
    finally:
        prof.disable()
        text = io.StringIO()
        pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(r"eventstore|projections|msgpack|zstd|sqlite|posix|\{", 15)
        for line in text.getvalue().splitlines()[4:]:
            if line.strip():
                out("    | " + line)


def summarize(paths: list[str]) -> int:
    """Markdown table of several ``--json`` runs: per row the run with the median ratio."""
    runs = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            runs.append(json.load(f))
    print(f"{len(runs)} runs: " + "; ".join(f"{r['machine']['date_utc']} UTC, load "
                                           f"{r['machine']['loadavg_start'][0]:.1f}" for r in runs))
    print()
    print("| benchmark | issue | metalog | baseline | ratio (median) | ratio per run | target | result |")
    print("|---|---|---|---|---|---|---|---|")
    for i, row in enumerate(runs[0]["rows"]):
        same = [r["rows"][i] for r in runs if i < len(r["rows"]) and r["rows"][i]["what"] == row["what"]]
        ratios = [r["ratio"] for r in same if r["ratio"] is not None]
        if ratios:
            mid = sorted(same, key=lambda r: r["ratio"])[(len(same) - 1) // 2]
            per_run = ", ".join(f"{x:.2f}" for x in ratios)
        else:
            scored = [r for r in same if r.get("score") is not None] or same
            mid = sorted(scored, key=lambda r: r.get("score") or 0)[(len(scored) - 1) // 2]
            per_run = ""
        ratio = "" if mid["ratio"] is None else f"{mid['ratio']:.2f}x"
        verdicts = {r["verdict"] for r in same}
        verdict = mid["verdict"] if len(verdicts) == 1 else f"{mid['verdict']} ({'/'.join(r['verdict'] for r in same)})"
        print(f"| {row['what']} | {row['issue']} | {mid['metalog']} | {mid['baseline']} | {ratio} | "
              f"{per_run} | {row['target']} | {verdict} |")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller data and fewer appends (about a minute)")
    ap.add_argument("--only", action="append", choices=sorted(BENCHES), metavar="NAME",
                    help=f"run only this benchmark (repeatable): {', '.join(BENCHES)}")
    ap.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    ap.add_argument("--dir", default=None,
                    help="parent directory for the temporary data (default: the checkout's parent, "
                         "a real disk; not tmpfs)")
    ap.add_argument("--repeats", type=int, default=None, help="rounds per short measurement (default 3; 2 with --quick)")
    ap.add_argument("--markdown", action="store_true", help="also print the results as a Markdown table")
    ap.add_argument("--keep", action="store_true", help="keep the temporary data")
    ap.add_argument("--profile", action="store_true",
                    help="run each benchmark under cProfile and print its top functions (figures are "
                         "then slower; use it to find hot spots, not to record numbers)")
    ap.add_argument("--summarize", nargs="+", metavar="RUN.json",
                    help="do not measure: print a Markdown table of the median of several --json runs")
    args = ap.parse_args(argv)
    if args.summarize:
        return summarize(args.summarize)
    repeats = args.repeats or (2 if args.quick else 3)
    parent = os.path.abspath(args.dir or os.path.dirname(REPO))
    os.makedirs(parent, exist_ok=True)
    root = tempfile.mkdtemp(prefix="metalog-bench-", dir=parent)
    out = (lambda s: print(s, file=sys.stderr, flush=True)) if args.json else (lambda s: print(s, flush=True))
    facts = machine(root)
    out("metalog benchmarks — " + " ".join(["python tools/bench.py", *(argv if argv is not None else sys.argv[1:])]))
    for k in ("date_utc", "cpus", "cpu", "python", "platform", "fs", "sqlite", "msgpack", "zstandard",
              "commit", "eventstore", "loadavg_start"):
        out(f"  {k:14} {facts[k]}")
    if facts["fs"].startswith("tmpfs"):
        out("  WARNING: the bench dir is on tmpfs; fsync figures mean nothing there (use --dir)")
    b = Bench(root, args.quick, repeats, out)
    names = args.only or list(BENCHES)
    t_all = now()
    try:
        for name in names:
            out(f"[{name}] {BENCHES[name].__doc__.splitlines()[0]}")
            t0 = now()
            if args.profile:
                _profiled(BENCHES[name], b, out)
            else:
                BENCHES[name](b)
            out(f"  ({now() - t0:.1f} s)")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    facts["loadavg_end"] = os.getloadavg()
    facts["total_s"] = round(now() - t_all, 1)
    out(f"done in {facts['total_s']} s; load average at the end {facts['loadavg_end']}")
    failed = [r for r in b.rows if r.ok is False]
    out(f"{sum(r.ok is True for r in b.rows)} PASS, {len(failed)} FAIL, "
        f"{sum(r.ok is None for r in b.rows)} info")
    if args.markdown:
        out("")
        out("| benchmark | issue | metalog | baseline | ratio | target | result |")
        out("|---|---|---|---|---|---|---|")
        for r in b.rows:
            ratio = "" if r.ratio is None else f"{r.ratio:.2f}x"
            out(f"| {r.what} | {r.issue} | {r.metalog} | {r.baseline} | {ratio} | {r.target} | {r.verdict} |")
    if args.json:
        rows = []
        for r in b.rows:
            d = asdict(r)
            d["verdict"] = r.verdict
            rows.append(d)
        json.dump({"machine": facts, "quick": args.quick, "repeats": repeats, "rows": rows},
                  sys.stdout, indent=2, default=str)
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
