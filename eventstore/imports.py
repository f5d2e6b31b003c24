"""Imported commits: what every backend checks before it stores a `Commit` from elsewhere.

`Store.import_commit` (what `metalog copy` writes with) keeps a commit's seqs,
time and chain digest. `prepare_import` checks the commit on its own, before
any lock: its events are valid appends ([SPEC §5]), its payload is exactly
their encoding, and its digest recomputes from its ``prev``. `check_chains_on`
checks it against the store's head, under the backend's commit lock: the seq
that comes next, the digest of the last commit, a time no earlier than the
last. Either raises `ValidationError`, so nothing is written. No I/O here.
"""
from __future__ import annotations

from .api import Commit
from .chain import commit_digest
from .commit import Intake, PreparedCommit
from .errors import ValidationError

__all__ = ["prepare_import", "check_chains_on"]


def prepare_import(commit: Commit, intake: Intake) -> PreparedCommit:
    """The commit checked on its own, encoded as this store would encode its events."""
    if not isinstance(commit, Commit):
        raise ValidationError(f"import_commit takes an eventstore.api.Commit, not {type(commit).__name__}")
    if not commit.events:
        raise ValidationError("an imported commit holds at least one event")
    for i, e in enumerate(commit.events):
        if e.seq != commit.first_seq + i or e.ts != commit.ts:
            raise ValidationError(f"event {i} of the commit at seq {commit.first_seq} has seq {e.seq} "
                                  f"at {e.ts}; a commit's events have its seqs and its time")
    prepared = intake.many([(e.type, e.key, e.data, e.meta) for e in commit.events])
    assert prepared is not None
    if prepared.payload != commit.payload:
        raise ValidationError(f"the payload of the commit at seq {commit.first_seq} is not the encoding "
                              "of its events")
    if commit_digest(commit.prev, commit.first_seq, prepared.n, commit.ts, commit.payload) != commit.digest:
        raise ValidationError(f"the digest of the commit at seq {commit.first_seq} does not recompute "
                              "from its prev digest and its bytes")
    return prepared


def check_chains_on(commit: Commit, next_seq: int, head: bytes, last_ts: int) -> None:
    """That ``commit`` continues a log whose next seq is ``next_seq`` after digest ``head``."""
    if commit.first_seq != next_seq:
        raise ValidationError(f"an imported commit must start at seq {next_seq}, the next of this store, "
                              f"not at seq {commit.first_seq}")
    if commit.prev != head:
        raise ValidationError(f"the commit at seq {commit.first_seq} does not chain on this store's last "
                              f"commit (its prev digest {commit.prev.hex()}, this store's {head.hex()})")
    if commit.ts < last_ts:
        raise ValidationError(f"the commit at seq {commit.first_seq} is dated {commit.ts}, before this "
                              f"store's last commit ({last_ts})")
