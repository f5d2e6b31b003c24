"""How the `metalog` command reads a damaged store and talks about the damage.

A read-only command first opens a store strictly; when that raises
`CorruptionError`, or a read does, it opens the store again read-only with
``recovery="salvage"``, which reads past damage without writing, and shows
what is intact. This module owns that second look: `Damage` (one damaged
place, from the error's or the recovery report's fields), `EventLog` (the
intact events, collected while the salvage open replays them, with the
``read`` of a store so `history` and `log` work on it), the lost events'
media items where a snapshot still counts them, and the one-line
descriptions of recovery entries. It never writes and never formats tables.
"""
from __future__ import annotations

import bisect
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Iterator

if TYPE_CHECKING:
    from eventstore import Event, RecoveryEntry, RecoveryReport, Store

__all__ = ["Damage", "EventLog", "KeyCounts", "damage_in", "describe_entry", "lost_by_key",
           "lost_line", "seq_ranges"]

#: recovery report actions that mean events or frames could not be read
DAMAGE_ACTIONS = ("lost", "damaged", "problem")


def _relative(path: str, root: str) -> str:
    inside = root.rstrip(os.sep) + os.sep
    return path[len(inside):] if path.startswith(inside) else path


def seq_ranges(ranges: Iterable[tuple[int, int]]) -> str:
    """``seq 4`` / ``seqs 4-7, 9``."""
    items = list(ranges)
    text = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in items)
    single = len(items) == 1 and items[0][0] == items[0][1]
    return f"seq {text}" if single else f"seqs {text}"


@dataclass(frozen=True)
class Damage:
    """One damaged place in a store: where, why, and which seqs it cost."""

    file: str
    offset: int | None
    reason: str
    lost: tuple[int, int] | None = None

    def describe(self, root: str) -> str:
        where = _relative(self.file, root)
        if self.offset is not None:
            where += f" at offset {self.offset}"
        lost = f"; {seq_ranges([self.lost])} lost" if self.lost else ""
        return f"{where}: {self.reason}{lost}"

    def as_dict(self) -> dict[str, object]:
        return {"file": self.file, "offset": self.offset, "reason": self.reason,
                "lost": list(self.lost) if self.lost else None}


def damage_in(report: "RecoveryReport") -> list[Damage]:
    """The damage a recovery report lists (not its repairs or skipped snapshots)."""
    return [Damage(e.file, e.offset, e.reason, e.lost) for e in report
            if e.action in DAMAGE_ACTIONS]


def describe_entry(entry: "RecoveryEntry", root: str, *, action: bool = True) -> str:
    """A recovery report entry in one line, paths shown inside the store;
    ``action=False`` leaves out what was done (verify only finds)."""
    where = _relative(entry.file, root)
    if entry.offset is not None:
        where += f" at offset {entry.offset}"
    reason = entry.reason.replace(root.rstrip(os.sep) + os.sep, "")
    size = f" ({entry.nbytes} bytes)" if entry.nbytes else ""
    lost = f"; {seq_ranges([entry.lost])} lost" if entry.lost else ""
    return f"{entry.action + ' ' if action else ''}{where}{size}: {reason}{lost}"


class KeyCounts:
    """A projection that counts the intact events of every key.

    Its name is in no snapshot, so a store opened with it replays the whole
    intact log into it; against the versions a snapshot restored (which
    still count the events a salvage lost) it names the lost events' keys.
    """

    name = "metalog-cli-key-counts"
    version = 1

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def apply(self, event: "Event") -> None:
        self.counts[event.key] = self.counts.get(event.key, 0) + 1

    def snapshot(self) -> list[object]:
        return []

    def restore(self, state: object) -> None:
        self.counts = {}


class EventLog(KeyCounts):
    """The intact events of a damaged store, collected while it is opened
    with ``recovery="salvage"``, and read back like a store's log.

    Holds the events in memory (a damaged store is the exception; `log`
    and `export` stream from the store itself otherwise).
    """

    name = "metalog-cli-intact-events"

    def __init__(self) -> None:
        super().__init__()
        self.events: list[Event] = []
        self._seqs: list[int] = []

    def apply(self, event: "Event") -> None:
        super().apply(event)
        self.events.append(event)
        self._seqs.append(event.seq)

    def restore(self, state: object) -> None:
        super().restore(state)
        self.events, self._seqs = [], []

    def read(self, start: int = 1, stop: int | None = None, *, key: str | None = None,
             types: Iterable[str] | None = None) -> Iterator["Event"]:
        """Intact events with ``start <= seq < stop``, as `Store.read` filters them."""
        wanted = None if types is None else ({types} if isinstance(types, str) else set(types))
        first = bisect.bisect_left(self._seqs, start)
        for event in self.events[first:]:
            if stop is not None and event.seq >= stop:
                return
            if (key is None or event.key == key) and (wanted is None or event.type in wanted):
                yield event


def lost_line(by_key: dict[str, int], shown: int = 10) -> str | None:
    """``lost events of: a.mp4 (1 event), b.mp4 (2 events)``, or None; past
    ``shown`` keys the rest is counted (JSON carries every key)."""
    if not by_key:
        return None
    keys = sorted(by_key)
    parts = [f"{key} ({by_key[key]} event{'s' if by_key[key] != 1 else ''})" for key in keys[:shown]]
    if len(keys) > shown:
        parts.append(f"and {len(keys) - shown} more items")
    return "lost events of: " + ", ".join(parts)


def lost_by_key(store: "Store", counts: dict[str, int], keys: Iterable[str]) -> dict[str, int]:
    """{key: events lost} for the keys whose version (what the store counts,
    from a snapshot taken before the damage) exceeds their intact events."""
    lost = {}
    for key in set(counts) | set(keys):
        missing = store.version(key) - counts.get(key, 0)
        if missing > 0:
            lost[key] = missing
    return lost
