"""What an open repaired and what `verify` found, for every backend.

`RecoveryEntry`/`RecoveryReport` are what `Store.recovery_report` and
`VerifyReport.problems` hold: each entry has an action, a file (a path, or a
table for a database backend), an offset, a reason, and the seq range it lost.
Plain data; no I/O and no format knowledge here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Iterator


__all__ = ["RecoveryEntry", "RecoveryReport", "VerifyReport", "seqs_in"]


@dataclass(frozen=True)
class RecoveryEntry:
    action: str  # truncated, skipped-snapshot, lost, damaged, quarantined, rewrote, problem, ...
    file: str
    offset: int | None = None
    reason: str = ""
    nbytes: int = 0
    lost: tuple[int, int] | None = None  # inclusive seq range

    def __str__(self) -> str:
        where = self.file if self.offset is None else f"{self.file} at offset {self.offset}"
        extra = f"; {self.nbytes} bytes" if self.nbytes else ""
        lost = f"; seqs {self.lost[0]}-{self.lost[1]} lost" if self.lost else ""
        return f"{self.action}: {where}: {self.reason}{extra}{lost}"

    def as_dict(self) -> dict[str, object]:
        return {"action": self.action, "file": self.file, "offset": self.offset,
                "reason": self.reason, "bytes": self.nbytes,
                "lost": list(self.lost) if self.lost else None}


@dataclass
class RecoveryReport:
    """What `open` repaired, skipped or quarantined; falsy when nothing."""

    entries: list[RecoveryEntry] = field(default_factory=list)

    def add(self, entry: RecoveryEntry) -> None:
        self.entries.append(entry)

    @property
    def lost_ranges(self) -> list[tuple[int, int]]:
        return [e.lost for e in self.entries if e.lost]

    def __bool__(self) -> bool:
        return bool(self.entries)

    def __iter__(self) -> Iterator[RecoveryEntry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def as_dict(self) -> dict[str, object]:
        return {"entries": [e.as_dict() for e in self.entries],
                "lost_ranges": [list(r) for r in self.lost_ranges]}

    def __str__(self) -> str:
        return "\n".join(map(str, self.entries)) or "nothing to recover"


def seqs_in(ranges: Iterable[tuple[int, int]]) -> int:
    """How many seqs inclusive ``(first, last)`` ranges hold."""
    return sum(last - first + 1 for first, last in ranges)


@dataclass
class VerifyReport:
    """Result of `Store.verify`: ``ok`` is true when ``problems`` is empty."""

    problems: list[RecoveryEntry] = field(default_factory=list)
    events: int = 0
    commits: int = 0
    segments: int = 0
    snapshots: int = 0
    last_seq: int = 0
    lost: list[tuple[int, int]] = field(default_factory=list)
    """Seq ranges of the gap frames ([F-25]): events an earlier salvage recorded as lost.

    Not a problem (the log is consistent), but listed: a gap frame restarts the
    digest chain, so the chain cannot tell it from a commit replaced on purpose.
    """

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, object]:
        return {"ok": self.ok, "events": self.events, "commits": self.commits,
                "segments": self.segments, "snapshots": self.snapshots, "last_seq": self.last_seq,
                "lost": [list(r) for r in self.lost], "problems": [p.as_dict() for p in self.problems]}

    def lost_line(self) -> str | None:
        """One line naming the events earlier salvages lost, or None."""
        if not self.lost:
            return None
        n = seqs_in(self.lost)
        ranges = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in self.lost)
        return f"{n} event{'s' if n != 1 else ''} lost to an earlier salvage (seqs {ranges})"

    def __str__(self) -> str:
        head = (f"{'ok' if self.ok else 'PROBLEMS'}: {self.events} events in {self.commits} commits, "
                f"{self.segments} segments, {self.snapshots} snapshots checked")
        lost = self.lost_line()
        return "\n".join([head] + ([f"  {lost}"] if lost else []) + [f"  {p}" for p in self.problems])
