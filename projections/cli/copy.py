"""`metalog copy SRC DST`: every commit of one store into another, as it is.

Generic over the `Store` protocol, so it copies between any two backends (a
directory and a PostgreSQL schema, either way). The source's commits are read
whole (`Store.read_commits`) and written with `Store.import_commit`, so each
keeps its seqs, its time and its chain digest, and a batch stays one commit;
the destination checks that each chains on what it holds and writes nothing
else. Resumable: a destination that holds a prefix of the source (the chain
digest of its last commit is the source's at that seq) goes on from there.
At the end both stores are read again commit by commit and compared (seqs,
times, digests, events), and the destination's `verify` must pass. A source
with seqs lost to a salvage (gap frames) cannot be copied this way: the
destination's chain cannot hold the gap (`metalog export` and `restore` can).
"""
from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Iterator

from .context import Context, UsageError, is_url
from .output import Progress, plural

if TYPE_CHECKING:
    from eventstore import Store
    from eventstore.api import Commit

__all__ = ["cmd_copy"]


def _target(text: str) -> str:
    return text if is_url(text) else os.path.abspath(os.path.expanduser(text))


def _same(a: "Commit", b: "Commit") -> bool:
    return (a.first_seq, a.ts, a.digest, a.payload) == (b.first_seq, b.ts, b.digest, b.payload) and \
        [(e.seq, e.type, e.key, e.data, e.meta) for e in a.events] == \
        [(e.seq, e.type, e.key, e.data, e.meta) for e in b.events]


class _Copy:
    def __init__(self, src: "Store", dst: "Store") -> None:
        self.src, self.dst = src, dst

    def commits(self, start: int) -> Iterator["Commit"]:
        """The source's commits from the one holding seq ``start``; refuses a gap in its seqs."""
        expected = start  # the first commit holds it (it may start before it)
        for commit in self.src.read_commits(start):
            if commit.first_seq > expected:
                raise UsageError(f"{self.src.location} has no seqs {expected}-{commit.first_seq - 1} (lost to "
                                 "a salvage): a copy keeps seqs and chain digests, so it cannot hold the gap; "
                                 "`metalog export` and `metalog restore` renumber")
            expected = commit.last_seq + 1
            yield commit

    def resume(self) -> int:
        """The seq the destination ends at, once checked to be a prefix of the source (0: empty)."""
        held = self.dst.last_seq
        if not held:
            return 0
        if held > self.src.last_seq:
            raise UsageError(f"{self.dst.location} holds more events than {self.src.location}")
        theirs = next(self.src.read_commits(held), None)
        ours = next(self.dst.read_commits(held), None)
        if theirs is None or ours is None or theirs.last_seq != held or ours.digest != theirs.digest:
            raise UsageError(f"{self.dst.location} differs from {self.src.location} at or before seq {held}: "
                             "it is not an interrupted copy of it; copy into a new or empty store")
        return held

    def write(self, commit: "Commit") -> None:
        self.dst.import_commit(commit)

    def compare(self) -> str | None:
        """The first difference between the two stores, commit by commit (None: equal)."""
        ours = self.dst.read_commits()
        for commit in self.commits(1):
            other = next(ours, None)
            if other is None:
                return f"the copy ends before seq {commit.first_seq}"
            if not _same(commit, other):
                return f"the commit at seq {commit.first_seq} differs"
        extra = next(ours, None)
        return None if extra is None else f"the copy has a commit the source lacks (seq {extra.first_seq})"


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
            held = copy.resume()
            copied = 0
            with Progress("copying", total=total) as bar:
                for commit in copy.commits(held + 1):
                    if commit.last_seq <= held:
                        continue  # the commit holding seq ``held``: the destination has it
                    copy.write(commit)
                    copied += 1
                    bar.update(commit.last_seq)
            dst.flush()
            with Progress("comparing"):
                difference = copy.compare()
            with Progress("verifying the copy"):
                verified = dst.verify()
            return _report(ctx, src, dst, total, held, copied, difference, verified.ok)
    finally:
        src.close()


def _report(ctx: Context, src: "Store", dst: "Store", total: int, held: int, copied: int,
            difference: str | None, verify_ok: bool) -> int:
    equal = difference is None and verify_ok
    ctx.out.json({"src": src.location, "dst": dst.location, "events": total, "resumed_at": held,
                  "commits_copied": copied, "equal": equal, "difference": difference,
                  "verify_ok": verify_ok, "times_and_digests_kept": True})
    if difference is not None:
        return ctx.fail(1, "copy-differs", f"copied into {dst.location}, but it does not read back "
                                           f"as {src.location}: {difference}")
    if held:
        ctx.out.text(f"{dst.location} held seqs 1-{held} of the source: checked, went on from there")
    ctx.out.text(f"copied {plural(total - held, 'event')} ({plural(copied, 'commit')}) from "
                 f"{src.location} to {dst.location}: "
                 + ("compared equal, verify ok" if equal else "VERIFY FAILED"))
    ctx.out.text("  seqs, times, chain digests and commits are the source's")
    return 0 if equal else 1
