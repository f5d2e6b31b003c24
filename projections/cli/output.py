"""Terminal output for the `metalog` command: times, JSON, printing, progress.

This module owns how things look: human times, the JSON
encoding of events and records, and a small stderr progress bar that only
appears on a terminal once an operation has run for about a second; widths,
shortening and tables are `cells`' (re-exported here). It knows nothing
about stores; the command modules hand it plain values.
"""
from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
import functools
import json
import math
import os
import sys
import threading
import time
from typing import Any, Callable, Sequence, TextIO

from .cells import (StreamTable, cell, display_width, pad, plain_cell, shorten, shorten_middle,
                    table, visible)

__all__ = [
    "Printer",
    "Progress",
    "display_key",
    "key_shower",
    "plain_cell",
    "plural",
    "event_dict",
    "format_time",
    "visible",
    "json_line",
    "json_item",
    "iso_time",
    "plain",
    "table",
    "to_ns",
    "shorten",
    "shorten_middle",
    "display_width",
    "pad",
    "StreamTable",
    "cell",
]


# --------------------------------------------------------------------------
# values


def to_ns(value: Any) -> int | None:
    """A timestamp as ns since the epoch, from ns ints, float seconds or datetimes."""
    if value is None:
        return None
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.timezone.utc)
        return int(value.timestamp() * 1e9)
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        # Heuristic: anything below year ~2286 in seconds is a seconds value.
        return value if abs(value) > 10**12 else value * 10**9
    if isinstance(value, float):
        return int(value * 1e9) if abs(value) < 1e12 else int(value)
    return None


def iso_time(value: Any) -> str | None:
    """ISO 8601 in UTC with microseconds, for machines."""
    ns = to_ns(value)
    if ns is None:
        return None
    seconds = ns / 1e9
    if seconds < 0:
        moment = _dt.datetime.fromtimestamp(seconds, tz=_dt.timezone.utc)
        return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")
    # What datetime.fromtimestamp(seconds) gives, without a datetime per value: the
    # fraction rounded half-even to microseconds; the date and time of day cached per second
    fraction, whole = math.modf(seconds)
    micros = round(fraction * 1e6)
    second = int(whole) + (micros >= 1_000_000)
    return f"{_utc_second(second)}.{micros % 1_000_000:06d}Z"


@functools.lru_cache(maxsize=4096)
def _utc_second(second: int) -> str:
    return _dt.datetime.fromtimestamp(second, tz=_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def format_time(value: Any) -> str:
    """Local time to the second, for people."""
    if value.__class__ is float and value >= 0:    # seconds, as records hold them: the hot path
        second = int(value)
        # datetime rounds to the microsecond: the last half of one rounds up to the next second
        return _local_second(second + 1 if value - second >= 0.9999995 else second)
    ns = to_ns(value)
    if ns is None:
        return "-"
    return _local_second(math.floor(round(ns / 1e9, 6)))


@functools.lru_cache(maxsize=4096)
def _local_second(second: int) -> str:
    """One second since the epoch as local time (a listing's rows share few)."""
    return _dt.datetime.fromtimestamp(second).strftime("%Y-%m-%d %H:%M:%S")


def plain(value: Any) -> Any:
    """Turn records, named tuples, dataclasses and bytes into JSON-able values.

    JSON has no NaN or infinity: those floats become the strings ``"NaN"``,
    ``"Infinity"`` and ``"-Infinity"``, so every line we print parses as JSON.
    """
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else ("NaN" if value != value else
                                                   "Infinity" if value > 0 else "-Infinity")
    if isinstance(value, bytes):
        return {"$base64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if hasattr(value, "_asdict"):
        return {k: plain(v) for k, v in value._asdict().items()}
    if hasattr(value, "__struct_fields__"):  # an Event (a msgspec Struct): msgspec stays unimported
        return {name: plain(getattr(value, name)) for name in value.__struct_fields__}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    if isinstance(value, _dt.datetime):
        return iso_time(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return str(value)


def event_dict(event: Any) -> dict[str, Any]:
    """One event as the JSON object that `log --json`, `tail` and `export` print."""
    return {
        "seq": event.seq,
        "ts": event.ts,
        "time": iso_time(event.ts),
        "type": event.type,
        "key": event.key,
        "data": plain(event.data),
        "meta": plain(event.meta),
    }


# one encoder each, made once: json.dumps with options builds a new one per call
_LINE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_ITEM = json.JSONEncoder(ensure_ascii=False, allow_nan=False)


def json_line(value: Any) -> str:
    """One JSON-able value as one compact, strict JSON line (JSON Lines)."""
    return _LINE.encode(value) + "\n"


def json_item(value: Any) -> str:
    """One JSON-able value on one line, readably spaced (an item of a listing)."""
    return _ITEM.encode(value)


def plural(n: int, word: str) -> str:
    """``1 item``, ``2 items`` (words ending in y take -ies)."""
    if n == 1:
        return f"{n} {word}"
    return f"{n} {word[:-1]}ies" if word.endswith("y") else f"{n} {word}s"


def display_key(key: str) -> str:
    """A media key for people: relative to the current directory when inside
    it (as `git status` shows paths), else unchanged. JSON keeps keys whole."""
    try:
        here = os.getcwd()
    except OSError:
        return key
    prefix = here.rstrip(os.sep) + os.sep
    return key[len(prefix):] if key.startswith(prefix) and len(key) > len(prefix) else key


def key_shower() -> Callable[[str], str]:
    """`display_key` for many keys: the current directory is looked up once
    (not one ``getcwd`` call a key)."""
    try:
        prefix = os.getcwd().rstrip(os.sep) + os.sep
    except OSError:
        prefix = "\0"                       # no current directory: keys are shown whole
    cut = len(prefix)

    def show(key: str) -> str:
        return key[cut:] if key.startswith(prefix) and len(key) > cut else key
    return show


# --------------------------------------------------------------------------
# printing

class Printer:
    """Writes either human text or JSON to stdout, never both.

    ``annotate``, when set, gives an ``error`` object (damage a read met)
    that `json` adds to the document it prints; ``annotated`` then says the
    error has its place in the output.
    """

    def __init__(self, json_mode: bool, out: TextIO | None = None) -> None:
        self.json_mode = json_mode
        self.out = out or sys.stdout
        self.annotate: Callable[[], dict[str, object] | None] | None = None
        self.annotated = False

    def text(self, *lines: str) -> None:
        if not self.json_mode:
            for line in lines:
                self.out.write(visible(line) + "\n")

    def error_for(self, value: object) -> dict[str, object] | None:
        """The ``error`` object to add to the JSON document ``value``, if any."""
        error = self.annotate() if self.annotate is not None else None
        if error is not None and isinstance(value, dict):
            self.annotated = True
            return error
        return None

    def json(self, value: Any) -> None:
        if self.json_mode:
            error = self.error_for(value)
            if error is not None:
                value = {**value, "error": error}
            self.out.write(json.dumps(plain(value), ensure_ascii=False, indent=2, allow_nan=False) + "\n")

    def json_line(self, value: Any) -> None:
        """One compact JSON object on one line (JSON Lines)."""
        self.out.write(json_line(plain(value)))

    def kv(self, pairs: Sequence[tuple[str, Any]], indent: str = "") -> None:
        """``key: value`` lines with the values aligned."""
        if self.json_mode or not pairs:
            return
        width = max(len(k) for k, _ in pairs) + 1
        for key, value in pairs:
            self.out.write(visible(f"{indent}{(key + ':').ljust(width)} {value}") + "\n")


# --------------------------------------------------------------------------
# progress


def _progress_wanted(stream: TextIO) -> bool:
    forced = os.environ.get("METALOG_PROGRESS", "").strip().lower()
    if forced in ("0", "no", "never", "off"):
        return False
    if forced in ("1", "yes", "always", "on"):
        return True
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Progress:
    """A stderr progress bar that shows up only after ``delay`` seconds.

    Use as a context manager around work that may be slow. With ``total``
    it draws a bar from ``update(done)``; without, a spinner with the elapsed
    time (for calls such as ``verify()`` that report nothing while they run).
    Nothing is drawn unless stderr is a terminal (or ``METALOG_PROGRESS=1``),
    so pipes and tests stay clean.
    """

    _SPIN = "|/-\\"

    def __init__(self, label: str, total: int | None = None, *, delay: float = 1.0,
                 stream: TextIO | None = None) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.delay = delay
        self.stream = stream or sys.stderr
        self.enabled = _progress_wanted(self.stream)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._drawn = False
        self._start = 0.0

    def update(self, done: int, total: int | None = None) -> None:
        """Record progress; usable directly as a ``progress(done, total)`` callback."""
        self.done = done
        if total is not None:
            self.total = total

    def __enter__(self) -> "Progress":
        self._start = time.monotonic()
        if self.enabled:
            self._thread = threading.Thread(target=self._run, name="metalog-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._drawn:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()

    def _run(self) -> None:
        if self._stop.wait(self.delay):
            return
        tick = 0
        while True:
            self._draw(tick)
            tick += 1
            if self._stop.wait(0.1):
                return

    def render(self, tick: int = 0) -> str:
        elapsed = time.monotonic() - self._start
        if self.total:
            frac = min(max(self.done / self.total, 0.0), 1.0)
            width = 30
            filled = int(frac * width)
            bar = "#" * filled + "-" * (width - filled)
            return f"{self.label} [{bar}] {self.done}/{self.total} {frac:4.0%} {elapsed:5.1f}s"
        return f"{self.label} {self._SPIN[tick % len(self._SPIN)]} {elapsed:5.1f}s"

    def _draw(self, tick: int) -> None:
        try:
            self.stream.write("\r\x1b[2K" + self.render(tick))
            self.stream.flush()
            self._drawn = True
        except (OSError, ValueError):
            self._stop.set()
