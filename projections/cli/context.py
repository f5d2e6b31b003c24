"""How the `metalog` command finds, opens and talks about a store.

This module owns the CLI's view of the store: resolving `--store`, opening
a raw `eventstore` store or a `MediaCatalog` (read-only for commands that
only look, so they run beside a writer), normalising media keys, parsing
the times users type, and the `Context` every command receives.

Opening is where the store may have repaired something or found damage:
a writer's repairs (a torn tail cut, and where its bytes went) are told
on stderr in one line each; a read-only open that meets damage opens
again with ``recovery="salvage"`` (which reads past it without writing),
the command shows what is intact, and `Context.finish` names the damage
and `metalog recover --salvage` and makes the exit code 4. It never
formats tables and never parses arguments; `eventstore` is imported only
when a store is opened, so ``--help`` does not load it.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import getpass
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, TypeVar

from .damage import Damage, EventLog, KeyCounts, damage_in, describe_entry, lost_by_key, lost_line
from .output import Printer, Progress, visible

if TYPE_CHECKING:
    from eventstore import Event, RecoveryReport, Store

    from ..catalog import MediaCatalog

__all__ = [
    "Context",
    "is_url",
    "store_url",
    "UsageError",
    "DEFAULT_STORE",
    "default_actor",
    "parse_time",
]

EXIT_CORRUPTION = 4
_T = TypeVar("_T")

DEFAULT_STORE = "./metalog-data"


class UsageError(Exception):
    """The user asked for something that cannot work; exit code 2."""


_URL_SCHEMES = ("postgresql://", "postgres://")


def is_url(store: str) -> bool:
    """Whether ``--store`` names a database store rather than a directory."""
    return store.startswith(_URL_SCHEMES)


def store_url(url: str) -> str:
    """The URL the CLI shows and opens: a password in it moves to ``$PGPASSWORD`` (which
    libpq reads), so no message, progress line or JSON document ever shows it."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    os.environ["PGPASSWORD"] = parts.password
    user, host = parts.netloc.rsplit("@", 1)
    return urlunsplit(parts._replace(netloc=f"{user.split(':', 1)[0]}@{host}"))


def default_actor() -> str:
    """``$METALOG_ACTOR``, else the login name, else ``"cli"``."""
    actor = os.environ.get("METALOG_ACTOR")
    if actor:
        return actor
    try:
        return getpass.getuser() or "cli"
    except Exception:  # getpass raises various errors without a login name
        return "cli"


_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)\s*(?:ago)?\s*$", re.I)
_UNIT_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(text: str, *, now: float | None = None) -> int:
    """A user's time as ns since the epoch.

    Accepts ISO 8601 (``2026-11-26``, ``2026-11-26T04:00``, ``...Z``; naive
    times are local), ``@SECONDS`` since the epoch, ``now``, and relative
    times such as ``90s``, ``10m``, ``2h``, ``3d``, ``1w`` (meaning: ago).
    """
    import time as _time

    now = _time.time() if now is None else now
    raw = text.strip()
    if raw.lower() == "now":
        return int(now * 1e9)
    if raw.startswith("@"):
        try:
            return int(float(raw[1:]) * 1e9)
        except ValueError:
            raise UsageError(f"bad time {text!r}: expected @SECONDS since the epoch") from None
    match = _RELATIVE.match(raw)
    if match:
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()]
        return int((now - seconds) * 1e9)
    try:
        moment = _dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"bad time {text!r}: use ISO 8601 (2026-11-26T04:00), @EPOCH, now, or 10m/2h/3d ago"
        ) from None
    if moment.tzinfo is None:
        moment = moment.astimezone()  # naive means local time
    return int(moment.timestamp() * 1e9)


@contextlib.contextmanager
def _store_log_silenced() -> Iterator[None]:
    """While a store opens, what it would log about recovery is dropped: the
    CLI reports it from ``recovery_report`` instead (which says what was
    really done: a read-only open salvages nothing, it only reads past)."""
    import logging

    def silence(record: logging.LogRecord) -> bool:
        return False

    store_log = logging.getLogger("eventstore")
    store_log.addFilter(silence)
    try:
        yield
    finally:
        store_log.removeFilter(silence)


@dataclass
class Context:
    """What every command gets: where the store is, who acts, how to print,
    and the damage its reads met (which makes the exit code 4)."""

    store: Path | str  # a directory, or a postgresql:// URL (without its password)
    actor: str
    out: Printer
    explicit_store: bool = False
    damage: list[Damage] = field(default_factory=list)
    lost_items: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.out.annotate = self.damage_json

    @property
    def json(self) -> bool:
        return self.out.json_mode

    # ---------------------------------------------------------------- opening

    def require_store(self) -> None:
        """Refuse early, with a hint, when there is no store at ``--store``. (A database
        store is looked for when it is opened: `NotAStoreError` when it is not there.)"""
        if isinstance(self.store, str):
            return
        if not self.store.exists():
            raise UsageError(
                f"no metalog store at {self.store} "
                f"(run `metalog --store {self.store} init`, or pass --store / set METALOG_STORE)"
            )
        if not self.store.is_dir():
            raise UsageError(f"{self.store} is a file, not a metalog store directory")

    @contextlib.contextmanager
    def store_handle(self, *, readonly: bool = True, recovery: str | None = None,
                     projections: tuple[Any, ...] = ()) -> Iterator["Store"]:
        """A raw `eventstore` store, read-only by default. A read-only one
        opened without a ``recovery`` falls back to salvage on damage."""
        import eventstore

        self.require_store()

        def opener(mode: str, extra: tuple[Any, ...]) -> Store:
            return eventstore.open(str(self.store), projections=projections + extra,
                                   readonly=readonly, recovery=mode, create=False)
        if readonly and recovery is None:
            store = self._open_reading(opener, lambda s: s, "opening store")
        else:
            with Progress("opening store"), _store_log_silenced():
                store = opener(recovery or "strict", ())
            if not readonly:
                self._tell_repairs(store.recovery_report)
        try:
            yield store
        finally:
            store.close()

    @contextlib.contextmanager
    def catalog(self, *, readonly: bool = False, create: bool = False, notice: bool = True,
                **options: Any) -> Iterator["MediaCatalog"]:
        """A `MediaCatalog` on the store, replayed (progress shown if slow).
        Only ``create=True`` (`init`) may create a store. ``notice=False``:
        the command reports the open's repairs itself (`recover`)."""
        from ..catalog import MediaCatalog

        if not create:
            self.require_store()

        def opener(mode: str, extra: tuple[Any, ...]) -> MediaCatalog:
            return MediaCatalog.open(str(self.store), actor=self.actor, readonly=True,
                                     create=False, recovery=mode, projections=extra, **options)
        if readonly and "recovery" not in options:
            cat = self._open_reading(opener, lambda c: c.store, "opening store (replay)")
        else:
            with Progress("opening store (replay)"), _store_log_silenced():
                cat = MediaCatalog.open(str(self.store), actor=self.actor, readonly=readonly,
                                        create=create, **options)
            if notice and not readonly:
                self._tell_repairs(cat.store.recovery_report)
        try:
            yield cat
        finally:
            cat.close()

    def _open_reading(self, opener: Callable[[str, tuple[Any, ...]], _T],
                      store_of: Callable[[_T], "Store"], label: str) -> _T:
        """Open read-only, strictly; on damage, again with salvage (which reads
        past it without writing), noting the damage and the lost items."""
        import eventstore

        try:
            with Progress(label), _store_log_silenced():
                return opener("strict", ())
        except eventstore.CorruptionError as exc:
            found = Damage(exc.file, exc.offset, exc.reason)
        counts = KeyCounts()
        with Progress(label + ", past damage"), _store_log_silenced():
            handle = opener("salvage", (counts,))
        store = store_of(handle)
        self.note_damage(damage_in(store.recovery_report) or [found])
        self.lost_items.update(lost_by_key(store, counts.counts, _media_keys(handle)))
        return handle

    def _tell_repairs(self, report: "RecoveryReport") -> None:
        """Item 13: one line on stderr for each thing a writer's open repaired."""
        for entry in report:
            sys.stderr.write(visible("metalog: repaired on open: "
                                     + describe_entry(entry, str(self.store))) + "\n")

    def fail(self, code: int, kind: str, message: str, **fields: object) -> int:
        """A refusal the command reports itself: stderr, and with ``--json``
        an ``error`` object carrying ``fields`` on stdout."""
        sys.stderr.write(visible(f"metalog: {message}") + "\n")
        if self.json:
            self.out.json_line({"error": {"kind": kind, "message": message, "exit_code": code,
                                          **fields}})
        return code

    def store_exists(self) -> bool:
        """Whether ``--store`` holds a store already (a directory with files, or a schema)."""
        if isinstance(self.store, Path):
            return self.store.is_dir() and any(self.store.iterdir())
        import eventstore

        try:
            eventstore.open(self.store, readonly=True, create=False).close()
        except eventstore.NotAStoreError:
            return False
        return True

    # ----------------------------------------------------------------- damage

    def note_damage(self, found: Iterable[Damage]) -> None:
        """Add damage met, once per place (the fuller of two reports of one place stays)."""
        for damage in found:
            place = (damage.file, damage.offset)
            same = [i for i, d in enumerate(self.damage) if (d.file, d.offset) == place]
            if not same:
                self.damage.append(damage)
            elif damage.lost and not self.damage[same[0]].lost:
                self.damage[same[0]] = damage

    def intact_events(self) -> EventLog:
        """Every intact event of a damaged store (a salvage read-only open)."""
        import eventstore
        from ..media import MediaProjection

        log, items = EventLog(), MediaProjection(track_undo=False)
        self.require_store()
        with Progress("reading past damage"), _store_log_silenced():
            store = eventstore.open(str(self.store), projections=(log, items), readonly=True,
                                    recovery="salvage", create=False)
        try:
            self.note_damage(damage_in(store.recovery_report))
            self.lost_items.update(lost_by_key(store, log.counts, items.keys()))
        finally:
            store.close()
        return log

    def lost_keys(self) -> dict[str, int]:
        """{media key: events lost} of a damaged store, where a snapshot taken
        before the damage still counts them (a salvage read-only open)."""
        from ..catalog import MediaCatalog

        counts = KeyCounts()
        self.require_store()
        with Progress("naming lost events"), _store_log_silenced():
            cat = MediaCatalog.open(str(self.store), actor=self.actor, readonly=True,
                                    create=False, recovery="salvage", projections=(counts,))
        try:
            return lost_by_key(cat.store, counts.counts, cat.projection.keys())
        finally:
            cat.close()

    def events(self, store: "Store", start: int = 1, stop: int | None = None, *,
               key: str | None = None, types: Iterable[str] | None = None) -> Iterator["Event"]:
        """``store.read(...)``, going on past damage: the rest comes from
        `intact_events` (events after the last one already yielded)."""
        import eventstore

        last = start - 1
        try:
            for event in store.read(start, stop, key=key, types=types):
                last = event.seq
                yield event
            return
        except eventstore.CorruptionError as exc:
            self.note_damage([Damage(exc.file, exc.offset, exc.reason)])
        yield from self.intact_events().read(last + 1, stop, key=key, types=types)

    def damage_json(self) -> dict[str, object] | None:
        """The ``error`` object of a command's JSON when its reads met damage."""
        if not self.damage:
            return None
        first = self.damage[0]
        return {"kind": "corruption", "exit_code": EXIT_CORRUPTION,
                "message": f"damaged store: {first.describe(str(self.store))}",
                "file": first.file, "offset": first.offset, "reason": first.reason,
                "damage": [d.as_dict() for d in self.damage], "lost_items": self.lost_items}

    def finish(self, code: int) -> int:
        """The command's exit code, after the damage its reads met (if any)
        is named on stderr (and in JSON when the output had no place for it)."""
        if not self.damage:
            return code
        lines = [f"damaged store {self.store}:"]
        lines += [f"  {d.describe(str(self.store))}" for d in self.damage]
        items = lost_line(self.lost_items)
        if items:
            lines.append(f"  {items}")
        lines.append("shown: everything intact. `metalog recover --salvage` keeps every intact "
                     "event and moves the damage to quarantine/ (nothing is deleted)")
        sys.stderr.write("".join(visible(f"metalog: {line}") + "\n" for line in lines))
        if self.json and not self.out.annotated:
            self.out.json_line({"error": self.damage_json()})
        return EXIT_CORRUPTION


def _media_keys(handle: object) -> Iterable[str]:
    """The live items' keys of a catalog (a raw store has none to offer)."""
    projection = getattr(handle, "projection", None)
    return projection.keys() if projection is not None else ()


def log_key(store: "Store", media: str) -> str:
    """A key filter for `log`: the key exactly as typed if the log has it,
    else the normalised path (as the catalog stores it)."""
    from ..keys import media_key as normalise

    if store.version(media) > 0:
        return media
    return normalise(media)
