"""Issue 3a/3b: bulk append and replay of the media shape, against SQLite."""
from __future__ import annotations

import sqlite3

import msgpack

import eventstore
from eventstore import Event
from eventstore.codec import encode_commit
from projections.media import MediaProjection

from .common import Bench, Row, Span, cpu_row, interleaved, med, ms, now
from .data import media_events, replay_fixture, sqlite_insert, sqlite_open


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


def bench_replay(b: Bench) -> None:
    """3b: reopen replaying 200k events into MediaProjection vs SQLite SELECT + unpack."""
    n = 50_000 if b.quick else 200_000
    path, db_path = replay_fixture(b, "replay", media_events(n, n // 10))
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
