#!/usr/bin/env python3
"""Crash harness: a real writer process killed with SIGKILL at random moments.

Each round spawns a writer subprocess (this script with ``--writer``) that
appends commits to the store -- single ``append``s and ``append_many``s of
random sizes, some of them hundreds of KiB -- and prints ``ACK <commit id>
<first seq> <events>`` (flushed) after each ``append`` returns. The parent
kills it with ``kill -9`` at a random moment (sometimes while it is still
starting or recovering the store), reopens the store in strict mode and
checks SPEC §4 guarantees 1-3 and docs/FORMAT.md [F-11], [F-13]:

- every acknowledged commit is present at its seq with exactly its content;
- no commit is partially present: each event carries its commit id, its
  index and the commit's size, and its payload is a deterministic function
  of those, so half a commit or a changed byte is detected;
- seqs are contiguous, and what one round saw is a prefix of the next round;
- a strict open never raises (a kill leaves at most a torn tail).

With ``--durability none`` acknowledged commits may be lost (they sat in the
process's buffer), so only whole commits, content and order are checked.

With ``--power-loss`` (fsync mode) the parent also simulates losing what was
not yet fsynced: it cuts the active segment at a random offset after the last
commit known to be durable and sometimes appends zeros, as a file system may
after a power cut. Known durable: acknowledged, shown by an earlier open, or
held by a snapshot file (snapshots are taken only of synced commits, whose
ACK lines a killed writer may not have printed). Those bytes are never
touched.

    python tools/crash_harness.py --rounds 200 --durability fsync
    python tools/crash_harness.py --rounds 200 --durability flush
    python tools/crash_harness.py --rounds 100 --durability fsync --power-loss
    python tools/crash_harness.py --rounds 100 --durability fsync --threads 8
    python tools/crash_harness.py --rounds 100 --durability fsync --writers 2

With ``--writers 2`` (or more) several writer processes append to the store at
once (SPEC §2: the commit lock is held per group commit). Each round kills one
of them or all of them, at random; the survivors go on writing while the
parent reopens the store beside them and checks it, and a fresh writer takes
each dead one's place next round. Every commit any writer acknowledged must be
present; the commit ids tell the writers apart. With ``--power-loss`` the
un-fsynced tail is cut only in rounds that killed every writer.

Prints one line per round with ``-v`` and a summary; exits 1 on a violation.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # run from a checkout without installing
sys.path.insert(0, HERE)  # crash_checks, beside this file

import eventstore  # noqa: E402
from crash_checks import (  # noqa: E402
    Stats, Violation, check_store, commit_items, event_item, newest_snapshot_seq, power_cut,
)

__all__ = ["run", "main", "writer_main", "check_store", "event_item", "Stats", "Violation"]


# -- the writer subprocess ---------------------------------------------------------------------
def writer_main(path: str, durability: str, round_no: int, seed: int, segment_bytes: int,
                snapshot_every: int, threads: int = 1, name: str | None = None, pace: float = 0.0) -> None:
    store = eventstore.open(path, durability=durability, segment_bytes=segment_bytes,
                            snapshot_every=snapshot_every)
    out = sys.stdout
    out.write(f"READY {store.last_seq}\n")
    out.flush()
    say = threading.Lock()

    def commit_forever(rng: random.Random, prefix: str) -> None:
        counter = 0
        while True:
            cid = f"{prefix}c{counter}"
            counter += 1
            items = commit_items(rng, cid)
            if len(items) == 1 and rng.random() < 0.5:
                events = [store.append(*items[0], meta={"cid": cid})]
            else:
                events = store.append_many(items)
            with say:
                out.write(f"ACK {cid} {events[0].seq} {len(events)}\n")
                out.flush()
            if pace:
                time.sleep(pace)

    # With several writer threads, commits share group commits (one write + fsync), so
    # a kill also lands between the sync of a batch and the wake-up of its committers.
    prefix = name or f"r{round_no}"  # commit ids are unique across rounds and writers
    workers = [threading.Thread(target=commit_forever, args=(random.Random(seed + j), f"{prefix}t{j}"),
                                daemon=True) for j in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


# -- the parent ----------------------------------------------------------------------------------
def _read_lines(pipe, lines: list[str]) -> None:
    for raw in pipe:
        lines.append(raw.decode())


def _run_writer(path: str, args, round_no: int, rng: random.Random) -> tuple[list[str], bool]:
    cmd = [sys.executable, os.path.abspath(__file__), "--writer", path, "--durability", args.durability,
           "--round", str(round_no), "--seed", str(rng.randrange(2**32)),
           "--segment-bytes", str(args.segment_bytes), "--snapshot-every", str(args.snapshot_every),
           "--threads", str(args.threads)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines: list[str] = []
    reader = threading.Thread(target=_read_lines, args=(proc.stdout, lines), daemon=True)
    reader.start()
    started = time.monotonic()
    early = rng.random() < 0.15  # sometimes kill during start-up / recovery
    if early:
        time.sleep(rng.uniform(0.0, 0.4))
    else:
        while not lines and proc.poll() is None and time.monotonic() - started < 30:
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, args.max_delay))
    ready = bool(lines)
    if proc.poll() is not None:
        err = proc.stderr.read().decode(errors="replace")
        raise Violation(f"writer exited by itself with {proc.returncode}: {err[-2000:]}")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    reader.join(10)
    proc.stderr.close()
    return [ln for ln in lines if ln.endswith("\n")], ready


class _Writer:
    """One writer process of a ``--writers`` run, and the lines it printed so far."""

    def __init__(self, path: str, args, name: str, rng: random.Random) -> None:
        cmd = [sys.executable, os.path.abspath(__file__), "--writer", path, "--durability", args.durability,
               "--name", name, "--seed", str(rng.randrange(2**32)), "--pace", str(args.pace),
               "--segment-bytes", str(args.segment_bytes), "--snapshot-every", str(args.snapshot_every),
               "--threads", str(args.threads)]
        self.name = name
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=_read_lines, args=(self.proc.stdout, self.lines), daemon=True)
        self.reader.start()

    def wait_ready(self, timeout: float = 30) -> None:
        started = time.monotonic()
        while not self.lines and self.proc.poll() is None and time.monotonic() - started < timeout:
            time.sleep(0.002)

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            err = self.proc.stderr.read().decode(errors="replace")
            raise Violation(f"writer {self.name} exited by itself with {self.proc.returncode}: {err[-2000:]}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.reader.join(10)
        self.proc.stderr.close()

    def acks(self) -> list[str]:
        """The whole ACK lines printed so far (each one printed after its append returned)."""
        return [ln for ln in list(self.lines) if ln.startswith("ACK ") and ln.endswith("\n")]


def run_writers(rounds: int, durability: str, path: str, rng: random.Random, args, stats: Stats,
                *, writers: int, power_loss: bool, verbose: bool, seed: int) -> None:
    """``--writers N``: N writer processes at once; each round kills one of them, or all."""
    live: list[_Writer] = []
    acked: dict[str, tuple[int, int]] = {}
    seen: list = []
    spawned = 0

    def note_acks(ws: list[_Writer]) -> int:
        new = 0
        for w in ws:
            for ln in w.acks():
                _, cid, first, n = ln.split()
                if cid not in acked:
                    acked[cid] = (int(first), int(n))
                    new += 1
        return new

    def check(r: int) -> list:
        try:
            return check_store(path, acked, seen, stats, require_acked=durability != "none")
        except (Violation, eventstore.CorruptionError) as exc:  # a strict open must not raise
            raise Violation(f"round {r} (seed {seed}, store {path}): {exc}") from None

    try:
        for r in range(rounds):
            fresh = []
            while len(live) < writers:
                w = _Writer(path, args, f"r{r}w{spawned}", rng)
                spawned += 1
                live.append(w)
                fresh.append(w)
            if rng.random() < 0.15:  # sometimes kill while the new ones start or recover
                time.sleep(rng.uniform(0.0, 0.4))
            else:
                for w in fresh:
                    w.wait_ready()
                time.sleep(rng.uniform(0.0, args.max_delay))
            for w in live:
                w.check_alive()
            everyone = rng.random() < 0.5
            victims = list(live) if everyone else [rng.choice(live)]
            stats.killed_before_ready += sum(1 for w in victims if not w.lines)
            for w in victims:
                w.kill()
                live.remove(w)
            stats.kills += len(victims)
            stats.rounds_all_killed += everyone
            # The survivors' ACK lines read so far are acknowledged commits too; they go on
            # writing while the store is reopened and checked beside them.
            new = note_acks(victims + live)
            if power_loss and not live:
                durable = max(max((f + n - 1 for f, n in acked.values()), default=0), len(seen),
                              newest_snapshot_seq(path))
                stats.power_cuts += power_cut(path, durable, rng)
            seen = check(r)
            stats.rounds += 1
            stats.acked_commits = len(acked)
            stats.events = len(seen)
            stats.per_round.append(new)
            if verbose:
                print(f"round {r}: killed {'all' if everyone else 'one'} of {writers} writers, {new} new acks, "
                      f"{len(seen)} events, torn tails so far {stats.torn_tails}", flush=True)
        for w in live:  # the end: every survivor's acks are checked too
            w.kill()
        note_acks(live)
        live.clear()
        seen = check(rounds)
        stats.acked_commits = len(acked)
        stats.events = len(seen)
    finally:
        for w in live:
            w.kill()


def run(rounds: int, durability: str, directory: str | None = None, *, seed: int | None = None,
        max_delay: float = 0.15, segment_bytes: int = 1 << 16, snapshot_every: int = 2000,
        power_loss: bool = False, verbose: bool = False, threads: int = 1, writers: int = 1,
        pace: float | None = None) -> Stats:
    """Run ``rounds`` kill/reopen/check rounds; raise `Violation` on the first failure.

    ``writers`` > 1: that many writer processes at once (`run_writers`)."""
    if power_loss and durability != "fsync":
        raise ValueError("power loss is only survivable with durability='fsync'")
    seed = random.randrange(2**32) if seed is None else seed
    rng = random.Random(seed)
    if pace is None:
        pace = 0.001 if writers > 1 else 0.0
    args = argparse.Namespace(durability=durability, max_delay=max_delay, threads=threads,
                              segment_bytes=segment_bytes, snapshot_every=snapshot_every, pace=pace)
    own = directory is None
    directory = directory or tempfile.mkdtemp(prefix="metalog-crash-")
    path = os.path.join(directory, "store")
    stats = Stats()
    acked: dict[str, tuple[int, int]] = {}
    seen: list = []
    t0 = time.monotonic()
    try:
        if writers > 1:
            run_writers(rounds, durability, path, rng, args, stats, writers=writers, power_loss=power_loss,
                        verbose=verbose, seed=seed)
            return stats
        for r in range(rounds):
            lines, ready = _run_writer(path, args, r, rng)
            new = 0
            for ln in lines:
                if ln.startswith("ACK "):
                    _, cid, first, n = ln.split()
                    acked[cid] = (int(first), int(n))
                    new += 1
            stats.killed_before_ready += not ready
            if power_loss:
                # Durable: every acknowledged commit, everything an open showed (a writer's
                # open syncs the frames it accepts: the checker's open last round), and every
                # seq a snapshot file holds (a snapshot is taken only of synced commits, and
                # its writer may have been killed before it printed their ACK lines).
                durable = max(max((f + n - 1 for f, n in acked.values()), default=0), len(seen),
                              newest_snapshot_seq(path))
                stats.power_cuts += power_cut(path, durable, rng)
            try:
                seen = check_store(path, acked, seen, stats, require_acked=durability != "none")
            except (Violation, eventstore.CorruptionError) as exc:  # a strict open must not raise
                raise Violation(f"round {r} (seed {seed}, store {path}): {exc}") from None
            stats.rounds += 1
            stats.acked_commits = len(acked)
            stats.events = len(seen)
            stats.per_round.append(new)
            if verbose:
                print(f"round {r}: {new} new acks, {len(seen)} events, torn tails so far {stats.torn_tails}",
                      flush=True)
    finally:
        stats.seconds = time.monotonic() - t0
        if own and (sys.exc_info()[0] is None):
            shutil.rmtree(directory, ignore_errors=True)
    return stats


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=50)
    p.add_argument("--durability", choices=("fsync", "flush", "none"), default="fsync",
                   help='"none" checks only that commits are whole (acknowledged ones may be lost)')
    p.add_argument("--dir", help="work directory (kept); default: a temporary one, removed on success")
    p.add_argument("--seed", type=int)
    p.add_argument("--max-delay", type=float, default=0.15, help="longest run before the kill, seconds")
    p.add_argument("--segment-bytes", type=int, default=1 << 16)
    p.add_argument("--snapshot-every", type=int, default=2000)
    p.add_argument("--power-loss", action="store_true", help="also drop un-fsynced bytes (fsync mode)")
    p.add_argument("--threads", type=int, default=1, help="writer threads sharing group commits")
    p.add_argument("--writers", type=int, default=1,
                   help="writer processes on the store at once; each round kills one or all of them")
    p.add_argument("--json", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("--writer", metavar="PATH", help=argparse.SUPPRESS)
    p.add_argument("--round", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--name", help=argparse.SUPPRESS)
    p.add_argument("--pace", type=float, default=None,
                   help="seconds each writer thread waits between commits (default: 0; 0.001 with "
                        "--writers, whose survivors live for many rounds and would otherwise grow the "
                        "store, and the time each check takes, without bound)")
    a = p.parse_args(argv)
    if a.writer:
        writer_main(a.writer, a.durability, a.round, a.seed or 0, a.segment_bytes, a.snapshot_every,
                    a.threads, a.name, a.pace or 0.0)
        return 0
    seed = a.seed if a.seed is not None else random.randrange(2**32)
    try:
        stats = run(a.rounds, a.durability, a.dir, seed=seed, max_delay=a.max_delay,
                    segment_bytes=a.segment_bytes, snapshot_every=a.snapshot_every,
                    power_loss=a.power_loss, verbose=a.verbose, threads=a.threads, writers=a.writers,
                    pace=a.pace)
    except Violation as exc:
        print(f"VIOLATION: {exc}", file=sys.stderr)
        return 1
    summary = {"durability": a.durability, "power_loss": a.power_loss, "threads": a.threads,
               "writers": a.writers, "kills": stats.kills, "rounds_all_writers_killed": stats.rounds_all_killed,
               "seed": seed,
               "rounds": stats.rounds, "acknowledged_commits": stats.acked_commits,
               "events": stats.events, "torn_tails_truncated": stats.torn_tails,
               "unacknowledged_commits_present": stats.unacked_present,
               "killed_before_ready": stats.killed_before_ready, "power_cuts": stats.power_cuts,
               "acknowledged_but_lost_none_mode": stats.lost_unsynced,
               "seconds": round(stats.seconds, 1)}
    if a.json:
        print(json.dumps(summary))
    else:
        writers = (f", {a.writers} writer processes, {stats.kills} killed, all of them in "
                   f"{stats.rounds_all_killed} rounds" if a.writers > 1 else "")
        print(f"OK: {stats.rounds} rounds of kill -9 ({a.durability}{', power loss' if a.power_loss else ''}{f', {a.threads} writer threads' if a.threads > 1 else ''}{writers}), "
              f"seed {seed}: {stats.acked_commits} acknowledged commits "
              f"{'checked where present' if a.durability == 'none' else 'all present'}, {stats.events} events, "
              f"no partial commit; {stats.torn_tails} torn tails truncated, "
              f"{stats.unacked_present} unacknowledged commits present, "
              f"{stats.killed_before_ready} kills before the store was open, "
              f"{stats.power_cuts} power cuts"
              + (f", {stats.lost_unsynced} acknowledged commits lost (allowed with durability none)"
                 if a.durability == "none" else "") + f"; {stats.seconds:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
