"""Whole commits out of and into a `LocalStore`: `Store.read_commits`, `Store.import_commit`.

`read_commits` reads frames through the `LogReader` (gap frames are passed,
not returned) and gives each commit with the chain digest before it.
`import_commit` appends a commit read from another store with its own seqs,
time and digest: checked on its own first (`imports.prepare_import`), then,
holding the commit lock, against the head of the log (`imports.check_chains_on`);
a `ValidationError` leaves the log as it was. `metalog copy` is their user.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from ..api import Commit
from ..codec import decode_commit
from ..commit import Intake, PreparedCommit
from ..event import Event
from ..imports import check_chains_on, prepare_import
from .frame import Frame, encode_frame
from .groupcommit import GroupCommit
from .layout import ZERO_DIGEST
from .log import PendingFrame
from .publication import Publication
from .reader import Cursor, LogReader
from .upkeep import Upkeep

__all__ = ["read_commits", "import_commit"]


@dataclass
class _Trail(Cursor):
    """A cursor that also keeps the chain digest before the frame it last passed."""

    prev: bytes = ZERO_DIGEST

    def past(self, segment: int, frame: Frame) -> None:
        self.prev = self.digest
        super().past(segment, frame)


def read_commits(reader: LogReader, start: int, bound: int | None) -> Iterator[Commit]:
    """The commits from the one holding seq ``start`` (up to ``bound``), in seq order."""
    trail = _Trail(0, 0, 0, ZERO_DIGEST)  # unset: the walk finds the segment holding ``start``
    for frame in reader.frames(max(start, 1), bound, trail):
        events = decode_commit(frame.payload, frame.first_seq, frame.count, frame.ts, reader.seg_dir,
                               frame.offset)
        yield Commit(frame.first_seq, frame.ts, trail.prev, frame.digest, frame.payload, events)


def import_commit(commit: Commit, intake: Intake, engine: GroupCommit[PreparedCommit, list[Event]],
                  upkeep: Upkeep, publication: Publication, durability: str) -> list[Event]:
    """Append ``commit`` as it is, after the commits of every other writer (see the module docstring)."""
    prepared = prepare_import(commit, intake)
    with engine.exclusive():
        upkeep.catch_up_locked()  # takes the commit lock
        try:
            with upkeep.log_io("import of a commit") as writer:
                cursor = writer.cursor
                check_chains_on(commit, cursor.next_seq, cursor.digest, cursor.last_ts)
                data, digest = encode_frame(commit.first_seq, prepared.n, commit.ts, commit.payload, cursor.digest)
                writer.log.append([PendingFrame(data, commit.first_seq, commit.last_seq, digest)], buffered=False)
                writer.after_append()
                cursor.next_seq, cursor.digest, cursor.last_ts = commit.last_seq + 1, digest, commit.ts
            with engine.mutex:
                publication.versions.note(prepared.keys)
            events = prepared.events(commit.first_seq, commit.ts)
            publication.publish([], [events], cursor.next_seq)
        finally:
            with upkeep.log_io("import of a commit") as writer:
                writer.flush(sync=durability != "none")  # and give the commit lock back
    publication.deliver()
    return events
