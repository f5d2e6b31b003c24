"""Writers in several processes on one store, and the checks of what they leave (SPEC §2, §4).

`run(target, workdir, plan)` starts ``plan.processes`` writer processes of
``plan.threads`` threads each (this file, run as a script), optionally one
process that compacts and snapshots in a loop meanwhile, and one readonly
follower; then checks what every writer was told against the log:

- every acknowledged commit is present exactly once, at its seq, with its data;
  nothing else is (every writer closed cleanly, so every commit was acked);
- seqs are 1..N with no gap; each key's events carry, where the writer used
  ``expected_version``, exactly the version they were appended at, so per-key
  versions are contiguous and no two writers won the same version;
- every process's projection (`Tally`) at close equals a full replay, as does
  the projection a fresh open builds from snapshot + tail;
- the follower saw every event once, in order; the store verifies.

Writers use ``expected_version`` on some threads (retrying on `ConcurrencyError`)
and plain appends, `append_many` and transactions on others; each process has
its own durability (``plan.durability`` cycles). Each writer writes its
acknowledgements to a file: ``<first seq> <events> <writer> <counter>``.
"""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

import msgpack

HERE = os.path.abspath(__file__)


# -- the projection every process keeps -------------------------------------------------------
class Tally:
    """Per key the number of events and the last writer/counter; an order-sensitive fold of
    every event; refuses an event out of seq order (the store then fails, and the test sees it)."""

    name = "tally"
    version = 1

    def __init__(self) -> None:
        self.last = 0
        self.fold = 0
        self.keys: dict[str, list] = {}

    def apply(self, event: Any) -> None:
        if event.seq != self.last + 1:
            raise AssertionError(f"tally: seq {event.seq} applied after {self.last}")
        self.last = event.seq
        self.fold = zlib.crc32(msgpack.packb([event.seq, event.type, event.key, event.data]), self.fold)
        entry = self.keys.setdefault(event.key, [0, None, None])
        entry[0] += 1
        entry[1], entry[2] = event.data.get("w"), event.data.get("c")

    def snapshot(self) -> Any:
        return {"last": self.last, "fold": self.fold, "keys": self.keys}

    def restore(self, state: Any) -> None:
        self.last, self.fold = state["last"], state["fold"]
        self.keys = {k: list(v) for k, v in state["keys"].items()}

    def state(self) -> dict:
        return json.loads(json.dumps(self.snapshot()))


def replay(events: list) -> dict:
    t = Tally()
    for e in events:
        t.apply(e)
    return t.state()


# -- the plan -------------------------------------------------------------------------------------
@dataclass
class Plan:
    processes: int = 3
    threads: int = 3
    commits: int = 60  # per thread
    keys: int = 5  # shared keys k0..k{keys-1}
    durability: tuple[str, ...] = ("fsync", "flush", "none")  # process i gets [i % len]
    segment_bytes: int = 4096
    snapshot_every: int = 50
    pad: int = 150  # bytes of padding per event (rollovers)
    maintenance: bool = True  # one process compacts and snapshots in a loop meanwhile
    follower: bool = True  # one readonly process follows the log
    seed: int = 0
    timeout: float = 120.0

    def options(self, index: int) -> dict:
        return {"durability": self.durability[index % len(self.durability)],
                "segment_bytes": self.segment_bytes, "snapshot_every": self.snapshot_every}


@dataclass
class Outcome:
    events: int = 0
    acked_commits: int = 0
    conflicts: int = 0  # ConcurrencyErrors the expected_version writers retried
    maintenance_rounds: int = 0
    followed: int = 0
    segments: int | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


# -- child processes ---------------------------------------------------------------------------------
def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _open(target: str, options: dict, tally: Tally, readonly: bool = False) -> Any:
    import eventstore
    return eventstore.open(target, projections=[tally], readonly=readonly, **options)


def writer_main(target: str, workdir: str, index: int, plan: Plan) -> None:
    from eventstore import ConcurrencyError

    tally = Tally()
    store = _open(target, plan.options(index), tally)
    acks = open(os.path.join(workdir, f"acks-p{index}.txt"), "w")
    say = threading.Lock()
    conflicts = [0]
    errors: list[str] = []
    keys = [f"k{i}" for i in range(plan.keys)]

    def ack(events: list, wid: str, c: int) -> None:
        with say:
            acks.write(f"{events[0].seq} {len(events)} {wid} {c}\n")

    def data(wid: str, c: int, i: int, n: int, rng: random.Random, **more: Any) -> dict:
        return {"w": wid, "c": c, "i": i, "n": n, "pad": "x" * rng.randint(0, plan.pad), **more}

    def thread(t: int) -> None:
        wid = f"p{index}t{t}"
        rng = random.Random(plan.seed * 1000 + index * 10 + t)
        expecting = t % 2 == 0  # even threads use expected_version, odd ones do not
        try:
            for c in range(plan.commits):
                r = rng.random()
                if expecting and r < 0.8:  # one event at the version it saw
                    key = rng.choice(keys)
                    while True:
                        v = store.version(key)
                        try:
                            ev = store.append("ev", key, data(wid, c, 0, 1, rng, ev=v), expected_version=v)
                            break
                        except ConcurrencyError:
                            conflicts[0] += 1
                    ack([ev], wid, c)
                elif expecting:  # a transaction over two keys, both at the versions it saw
                    a, b = rng.sample(keys, 2)
                    while True:
                        va, vb = store.version(a), store.version(b)
                        try:
                            with store.transaction() as tx:
                                tx.append("ev", a, data(wid, c, 0, 2, rng, ev=va), expected_version=va)
                                tx.append("ev", b, data(wid, c, 1, 2, rng, ev=vb), expected_version=vb)
                            break
                        except ConcurrencyError:
                            conflicts[0] += 1
                    ack(tx.events, wid, c)
                elif r < 0.7:
                    ack([store.append("one", rng.choice(keys), data(wid, c, 0, 1, rng))], wid, c)
                else:
                    n = rng.randint(2, 4)
                    ack(store.append_many([("many", rng.choice(keys), data(wid, c, i, n, rng))
                                           for i in range(n)]), wid, c)
        except Exception as exc:  # noqa: BLE001 - reported to the parent
            errors.append(f"{wid}: {exc!r}")

    _say("READY")
    sys.stdin.readline()
    threads = [threading.Thread(target=thread, args=(t,)) for t in range(plan.threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    acks.close()
    _say("DONE " + json.dumps({"errors": errors, "conflicts": conflicts[0]}))
    sys.stdin.readline()  # every writer is done: catch up with them all, then show our projection
    last = store.last_seq
    with open(os.path.join(workdir, f"proj-p{index}.json"), "w") as f:
        json.dump({"last_seq": last, "state": tally.state()}, f)
    store.close()
    _say("CLOSED")


def maintenance_main(target: str, workdir: str, plan: Plan) -> None:
    tally = Tally()
    store = _open(target, {"durability": "flush", "segment_bytes": plan.segment_bytes,
                           "snapshot_every": 0}, tally)
    stop = os.path.join(workdir, "stop-maintenance")
    rounds = 0
    _say("READY")
    while not os.path.exists(stop):
        store.compact()
        store.snapshot()
        rounds += 1
        time.sleep(0.02)
    last = store.last_seq
    with open(os.path.join(workdir, "proj-maintenance.json"), "w") as f:
        json.dump({"last_seq": last, "state": tally.state(), "rounds": rounds}, f)
    store.close()
    _say("CLOSED")


def follower_main(target: str, workdir: str, plan: Plan) -> None:
    tally = Tally()
    store = _open(target, {}, tally, readonly=True)
    final_path = os.path.join(workdir, "final")
    seen: list[list] = []
    _say("READY")
    next_seq = 1
    while True:
        for e in store.follow(start=next_seq, poll=0.01, timeout=0.3):
            seen.append([e.seq, e.key, e.data.get("w"), e.data.get("c"), e.data.get("i")])
            next_seq = e.seq + 1
        if os.path.exists(final_path):
            with open(final_path) as f:
                final = int(f.read())
            if next_seq > final:
                break
    last = store.last_seq
    with open(os.path.join(workdir, "follow.json"), "w") as f:
        json.dump({"seen": seen, "last_seq": last, "state": tally.state()}, f)
    store.close()
    _say("CLOSED")


# -- the parent ----------------------------------------------------------------------------------------
class Child:
    def __init__(self, role: str, target: str, workdir: str, index: int, plan: Plan) -> None:
        self.role = role
        self.proc = subprocess.Popen(
            [sys.executable, HERE, role, target, workdir, str(index), json.dumps(plan.__dict__)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def expect(self, word: str) -> str:
        line = self.proc.stdout.readline()
        if not line.startswith(word):
            self.proc.kill()
            err = self.proc.stderr.read()
            raise AssertionError(f"{self.role} said {line!r}, expected {word}: {err[-3000:]}")
        return line[len(word):].strip()

    def send(self, line: str = "") -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def finish(self, timeout: float) -> None:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"{self.role} did not exit") from None
        if self.proc.returncode:
            raise AssertionError(f"{self.role} exited {self.proc.returncode}: {self.proc.stderr.read()[-3000:]}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                pipe.close()
            except OSError:
                pass


def _with_deadline(deadline: float, fn: Any, what: str) -> Any:
    """Run ``fn`` in a thread; fail (instead of hanging the suite) past ``deadline``."""
    box: list = []
    th = threading.Thread(target=lambda: box.append(_catch(fn)), daemon=True)
    th.start()
    th.join(max(0.1, deadline - time.monotonic()))
    if th.is_alive():
        raise AssertionError(f"timed out waiting for {what}")
    ok, value = box[0]
    if not ok:
        raise value
    return value


def _catch(fn: Any) -> tuple[bool, Any]:
    try:
        return True, fn()
    except BaseException as exc:  # noqa: BLE001 - re-raised by the caller
        return False, exc


def run(target: str, workdir: str, plan: Plan) -> Outcome:
    """Run the plan against ``target`` (created if needed); raise AssertionError on a violation."""
    import eventstore

    t0 = time.monotonic()
    deadline = t0 + plan.timeout
    os.makedirs(workdir, exist_ok=True)
    with eventstore.open(target, segment_bytes=plan.segment_bytes):
        pass  # create it, so readers can open it before the writers
    children: list[Child] = []
    try:
        writers = [Child("writer", target, workdir, i, plan) for i in range(plan.processes)]
        children += writers
        maintenance = Child("maintenance", target, workdir, 0, plan) if plan.maintenance else None
        follower = Child("follower", target, workdir, 0, plan) if plan.follower else None
        children += [c for c in (maintenance, follower) if c is not None]
        for c in children:
            _with_deadline(deadline, lambda c=c: c.expect("READY"), f"{c.role} to open")
        for w in writers:
            w.send("go")
        outcome = Outcome()
        for w in writers:
            done = json.loads(_with_deadline(deadline, lambda w=w: w.expect("DONE"), "the writers"))
            if done["errors"]:
                raise AssertionError(f"writer errors: {done['errors']}")
            outcome.conflicts += done["conflicts"]
        if maintenance is not None:
            open(os.path.join(workdir, "stop-maintenance"), "w").close()
            _with_deadline(deadline, lambda: maintenance.expect("CLOSED"), "maintenance to stop")
            maintenance.finish(10)
        for w in writers:
            w.send("dump")
        for w in writers:
            _with_deadline(deadline, lambda w=w: w.expect("CLOSED"), "the writers to close")
            w.finish(10)
        with eventstore.open(target, readonly=True) as ro:
            events = list(ro.read())
            versions = {k: ro.version(k) for k in {e.key for e in events}}
        with open(os.path.join(workdir, "final"), "w") as f:
            f.write(str(len(events)))
        if follower is not None:
            _with_deadline(deadline, lambda: follower.expect("CLOSED"), "the follower")
            follower.finish(10)
    finally:
        for c in children:
            c.kill()
    check(events, versions, workdir, plan, outcome)
    with eventstore.open(target, readonly=True) as ro:
        report = ro.verify()
        assert report.ok, f"verify: {report}"
    tally = Tally()
    with eventstore.open(target, projections=[tally], readonly=True) as ro:  # snapshot + tail
        assert ro.last_seq == len(events)
        assert tally.state() == replay(events), "snapshot + replay differs from a full replay"
    if os.path.isdir(target):
        outcome.segments = len(os.listdir(os.path.join(target, "segments")))
    outcome.seconds = time.monotonic() - t0
    return outcome


def check(events: list, versions: dict, workdir: str, plan: Plan, outcome: Outcome) -> None:
    n = len(events)
    outcome.events = n
    assert [e.seq for e in events] == list(range(1, n + 1)), "seqs are not 1..N"
    # every acknowledged commit is there, once, at its seq, with its data
    acked: dict[tuple[str, int], tuple[int, int]] = {}
    for p in range(plan.processes):
        with open(os.path.join(workdir, f"acks-p{p}.txt")) as f:
            for line in f:
                first, count, wid, c = line.split()
                ident = (wid, int(c))
                assert ident not in acked, f"commit {ident} acknowledged twice"
                acked[ident] = (int(first), int(count))
    assert len(acked) == plan.processes * plan.threads * plan.commits, "a writer lost count of its acks"
    outcome.acked_commits = len(acked)
    for (wid, c), (first, count) in acked.items():
        got = events[first - 1:first - 1 + count]
        assert len(got) == count and all(e.data["w"] == wid and e.data["c"] == c and e.data["n"] == count
                                         and e.data["i"] == i for i, e in enumerate(got)), \
            f"acknowledged commit {wid}/{c} at seq {first} x{count} is not there as acked"
        assert len({e.ts for e in got}) == 1, f"commit {wid}/{c} has several timestamps"
    # nothing else: every event belongs to an acknowledged commit (so none is there twice)
    owned = sum(count for _, count in acked.values())
    assert owned == n, f"{n - owned} events belong to no acknowledged commit"
    # per key: versions 1..v, and every expected_version write got exactly the version it saw
    per_key: dict[str, int] = {}
    for e in events:
        before = per_key.get(e.key, 0)
        if "ev" in e.data:
            assert e.data["ev"] == before, \
                f"seq {e.seq}: appended expecting version {e.data['ev']} of {e.key}, which had {before}"
        per_key[e.key] = before + 1
    assert versions == per_key, "version() disagrees with the log"
    # every process's projection is a full replay
    full = replay(events)
    dumps = [f"proj-p{p}.json" for p in range(plan.processes)]
    if plan.maintenance:
        dumps.append("proj-maintenance.json")
        with open(os.path.join(workdir, "proj-maintenance.json")) as f:
            outcome.maintenance_rounds = json.load(f)["rounds"]
    for name in dumps:
        with open(os.path.join(workdir, name)) as f:
            dump = json.load(f)
        assert dump["last_seq"] == n, f"{name}: the process saw {dump['last_seq']} of {n} events"
        assert dump["state"] == full, f"{name}: the projection differs from a full replay"
    if plan.follower:
        with open(os.path.join(workdir, "follow.json")) as f:
            followed = json.load(f)
        want = [[e.seq, e.key, e.data.get("w"), e.data.get("c"), e.data.get("i")] for e in events]
        assert followed["seen"] == want, "the follower did not see every event once, in order"
        assert followed["last_seq"] == n and followed["state"] == full, "the follower's projection"
        outcome.followed = len(followed["seen"])


def _child_main(argv: list[str]) -> None:
    role, target, workdir, index, plan_json = argv
    raw = json.loads(plan_json)
    raw["durability"] = tuple(raw["durability"])
    plan = Plan(**raw)
    if role == "writer":
        writer_main(target, workdir, int(index), plan)
    elif role == "maintenance":
        maintenance_main(target, workdir, plan)
    else:
        follower_main(target, workdir, plan)


if __name__ == "__main__":
    _child_main(sys.argv[1:])
