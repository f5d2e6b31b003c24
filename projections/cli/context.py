"""How the `metalog` command finds, opens and talks about a store.

This module owns the CLI's view of the store: resolving `--store`, opening
a raw `eventstore` store or a `MediaCatalog` (read-only for commands that
only look, so they run beside a writer), normalising media keys, parsing
the times users type, and the `Context` every command receives. It never
formats output (that is `output`) and never parses arguments.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import getpass
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import eventstore

from .output import Printer, Progress

__all__ = [
    "Context",
    "UsageError",
    "DEFAULT_STORE",
    "default_actor",
    "parse_time",
]

DEFAULT_STORE = "./metalog-data"


class UsageError(Exception):
    """The user asked for something that cannot work; exit code 2."""


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


@dataclass
class Context:
    """What every command gets: where the store is, who acts, how to print."""

    store: Path
    actor: str
    out: Printer

    @property
    def json(self) -> bool:
        return self.out.json_mode

    # ---------------------------------------------------------------- opening

    def require_store(self) -> None:
        """Refuse early, with a hint, when there is no store at ``--store``."""
        if not self.store.exists():
            raise UsageError(
                f"no metalog store at {self.store} "
                f"(run `metalog --store {self.store} init`, or pass --store / set METALOG_STORE)"
            )
        if not self.store.is_dir():
            raise UsageError(f"{self.store} is a file, not a metalog store directory")

    @contextlib.contextmanager
    def store_handle(self, *, readonly: bool = True, recovery: str = "strict",
                     projections: tuple[Any, ...] = ()) -> Iterator[Any]:
        """A raw `eventstore` store (read-only by default)."""
        self.require_store()
        with Progress("opening store"):
            store = eventstore.open(str(self.store), projections=projections,
                                    readonly=readonly, recovery=recovery, create=False)
        try:
            yield store
        finally:
            store.close()

    @contextlib.contextmanager
    def catalog(self, *, readonly: bool = False, create: bool = False,
                **options: Any) -> Iterator[Any]:
        """A `MediaCatalog` on the store, replayed (progress shown if slow).
        Only ``create=True`` (`init`) may create a store."""
        from ..catalog import MediaCatalog

        if not create:
            self.require_store()
        with Progress("opening store (replay)"):
            cat = MediaCatalog.open(str(self.store), actor=self.actor,
                                    readonly=readonly, create=create, **options)
        try:
            yield cat
        finally:
            cat.close()


def log_key(store: Any, media: str) -> str:
    """A key filter for `log`: the key exactly as typed if the log has it,
    else the normalised path (as the catalog stores it)."""
    from ..keys import media_key as normalise

    if store.version(media) > 0:
        return media
    return normalise(media)
