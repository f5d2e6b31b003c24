"""`metalog copy SRC DST`: every event of one store into another, commit by commit.

Generic over the `Store` protocol, so it copies between any two backends
(a directory and a PostgreSQL schema, either way). A store that can tell
its commits (``read_commits``: the PostgreSQL backend) gives them whole;
from one that cannot, the events of one commit are found as the run of
events sharing one time (every commit's events carry the same ``ts``; two
commits stamped with the same nanosecond would be copied as one, still
atomic). Each commit is written as one commit: with the destination's
``import_commit`` when it has one (PostgreSQL: seqs, times and so the digest
chain are the source's), else with ``append_many`` (the destination stamps
its own times). Resumable: a destination that holds a prefix of the source,
commit for commit, is checked and continued. At the end both stores are
read again and compared (events, seqs, times and chain digests where the
destination keeps them), and the destination's `verify` must pass.
"""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

from .context import Context, UsageError, is_url
from .output import Progress, plural

if TYPE_CHECKING:
    from eventstore import Event, Store

__all__ = ["cmd_copy", "source_commits", "SourceCommit"]


@dataclass
class SourceCommit:
    first_seq: int
    ts: int
    events: list["Event"]

    @property
    def last_seq(self) -> int:
        return self.first_seq + len(self.events) - 1


def source_commits(store: "Store", start: int = 1) -> Iterator[SourceCommit]:
    """The store's commits from the one holding seq ``start``, in seq order."""
    read_commits = getattr(store, "read_commits", None)
    if read_commits is not None:
        for c in read_commits(start):
            yield SourceCommit(c.first_seq, c.ts, c.events)
        return
    run: list["Event"] = []
    for event in store.read(start):
        if run and event.ts != run[0].ts:
            yield SourceCommit(run[0].seq, run[0].ts, run)
            run = []
        run.append(event)
    if run:
        yield SourceCommit(run[0].seq, run[0].ts, run)


def _row(e: "Event", with_ts: bool) -> tuple[Any, ...]:
    return (e.seq, e.type, e.key, e.data, e.meta) + ((e.ts,) if with_ts else ())


def _target(text: str) -> str:
    return text if is_url(text) else os.path.abspath(os.path.expanduser(text))


class _Copy:
    def __init__(self, src: "Store", dst: "Store") -> None:
        self.src, self.dst = src, dst
        self.importing = hasattr(dst, "import_commit")  # times (so digests) are the source's

    def resume(self, commits: Iterator[SourceCommit]) -> tuple[int, SourceCommit | None]:
        """Check the destination holds a prefix of the source, commit for commit; return its
        last seq and the first source commit still to copy."""
        held = self.dst.last_seq
        theirs = self.dst.read(1, held + 1)
        for commit in commits:
            if commit.first_seq > held:
                return held, commit
            if commit.last_seq > held:
                raise UsageError(f"{self.dst.location} ends at seq {held}, inside a commit of "
                                 f"{self.src.location} (seqs {commit.first_seq}-{commit.last_seq}): "
                                 "it is not a copy of it")
            for e in commit.events:
                other = next(theirs, None)
                if other is None or _row(other, self.importing) != _row(e, self.importing):
                    raise UsageError(f"{self.dst.location} differs from {self.src.location} at seq "
                                     f"{e.seq}: it is not an interrupted copy of it; copy into a "
                                     "new or empty store")
        if held > self.src.last_seq:
            raise UsageError(f"{self.dst.location} holds more events than {self.src.location}")
        return held, None

    def write(self, commit: SourceCommit) -> None:
        items = [(e.type, e.key, e.data, e.meta) for e in commit.events]
        if self.importing:
            self.dst.import_commit(commit.first_seq, commit.ts, items)  # type: ignore[attr-defined]
            return
        got = self.dst.append_many(items)
        if got[0].seq != commit.first_seq:
            raise UsageError(f"{self.dst.location} numbered seq {commit.first_seq} as {got[0].seq}; "
                             "another writer is appending to it")

    def compare(self) -> str | None:
        """The first difference between the two stores (None: equal)."""
        from eventstore.chain import ZERO_DIGEST, commit_digest
        from eventstore.codec import MAX_COMMIT_BYTES, encode_commit

        ours = self.dst.read()
        digests = getattr(self.dst, "read_commits", None)
        stored = iter(digests()) if digests is not None else None
        prev = ZERO_DIGEST
        for commit in source_commits(self.src):
            for e in commit.events:
                other = next(ours, None)
                if other is None or _row(other, self.importing) != _row(e, self.importing):
                    return f"seq {e.seq} differs"
            if stored is not None and self.importing:
                payload = encode_commit([(e.type, e.key, e.data, e.meta) for e in commit.events],
                                        MAX_COMMIT_BYTES)
                prev = commit_digest(prev, commit.first_seq, len(commit.events), commit.ts, payload)
                theirs = next(stored, None)
                if theirs is None or theirs.digest != prev:
                    return f"the chain digest after seq {commit.last_seq} differs"
        extra = next(ours, None)
        return None if extra is None else f"the copy has an event the source lacks (seq {extra.seq})"


def cmd_copy(args: argparse.Namespace, ctx: Context) -> int:
    """Exit 2 when DST holds something else than a prefix of SRC (nothing written), 1 when
    the copy does not compare equal or does not verify."""
    import eventstore

    src_target, dst_target = _target(args.src), _target(args.dst)
    if src_target == dst_target:
        raise UsageError("SRC and DST are the same store")
    with Progress("opening the stores"):
        src = eventstore.open(src_target, readonly=True, create=False)
    try:
        with eventstore.open(dst_target, durability="none", snapshot_every=0) as dst:
            copy = _Copy(src, dst)
            total = src.last_seq
            commits = source_commits(src)
            held, first = copy.resume(commits)
            copied = 0
            with Progress("copying", total=total) as bar:
                for commit in ([first] if first is not None else []):
                    copy.write(commit)
                for commit in commits:
                    copy.write(commit)
                    copied += 1
                    bar.update(commit.last_seq)
                copied += first is not None
            dst.flush()
            with Progress("comparing"):
                difference = copy.compare()
            with Progress("verifying the copy"):
                verified = dst.verify()
            return _report(ctx, src, dst, total, held, copied, difference, verified.ok, copy.importing)
    finally:
        src.close()


def _report(ctx: Context, src: "Store", dst: "Store", total: int, held: int, copied: int,
            difference: str | None, verify_ok: bool, importing: bool) -> int:
    equal = difference is None and verify_ok
    ctx.out.json({"src": src.location, "dst": dst.location, "events": total, "resumed_at": held,
                  "commits_copied": copied, "equal": equal, "difference": difference,
                  "verify_ok": verify_ok, "times_and_digests_kept": importing})
    if difference is not None:
        return ctx.fail(1, "copy-differs", f"copied into {dst.location}, but it does not read back "
                                           f"as {src.location}: {difference}")
    if held:
        ctx.out.text(f"{dst.location} held seqs 1-{held} of the source: checked, went on from there")
    ctx.out.text(f"copied {plural(total - held, 'event')} ({plural(copied, 'commit')}) from "
                 f"{src.location} to {dst.location}: "
                 + ("compared equal, verify ok" if equal else "VERIFY FAILED"))
    ctx.out.text("  seqs, times and chain digests are the source's" if importing else
                 "  seqs and events are the source's; times are the copy's (this store stamps its own)")
    return 0 if equal else 1
