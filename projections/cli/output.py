"""Terminal output for the `metalog` command: tables, times, JSON, progress.

This module owns how things look: aligned tables, human times, the JSON
encoding of events and records, and a small stderr progress bar that only
appears on a terminal once an operation has run for about a second. It knows
nothing about stores; the command modules hand it plain values.
"""
from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
import functools
import json
import math
import os
import re
import sys
import threading
import time
import unicodedata
from typing import Any, Callable, Iterable, Sequence, TextIO

__all__ = [
    "Printer",
    "Progress",
    "display_key",
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


@functools.lru_cache(maxsize=8192)
def _char_width(char: str) -> int:
    """Terminal cells of one character: 2 for East Asian wide and fullwidth,
    0 for combining marks and invisible format characters, else 1."""
    if unicodedata.east_asian_width(char) in ("W", "F"):
        return 2
    category = unicodedata.category(char)
    if category in ("Mn", "Me") or (category == "Cf" and char != "\u00ad"):
        return 0                            # the soft hyphen (Cf) is drawn by terminals
    return 1


_NON_ASCII = re.compile(r"[^\x00-\x7f]")
# characters that may not take exactly one cell: non-ASCII but for the marks we add
# ourselves (the ellipsis of a shortened cell, the arrow of a newline)
_NOT_ONE_CELL = re.compile(r"[^\x00-\x7f\u2026\u21b5]")


def display_width(text: str) -> int:
    """The number of terminal cells ``text`` takes ("映画" takes 4, "e\u0301" 1).

    ASCII text is its length; otherwise only the non-ASCII characters are
    measured one by one (a shortened cell ends in one "…": one lookup)."""
    if text.isascii():
        return len(text)
    width = len(text)
    for char in _NON_ASCII.findall(text):
        width += _char_width(char) - 1
    return width


def pad(text: str, width: int, *, right: bool = False) -> str:
    """``text`` padded with spaces to ``width`` cells (``ljust`` by display width)."""
    fill = " " * max(width - display_width(text), 0)
    return fill + text if right else text + fill


def _head(text: str, width: int) -> str:
    """The longest prefix of ``text`` that fits in ``width`` cells; the marks
    combining with a character that does not fit go with it."""
    if text.isascii():
        return text[:width]
    used = 0
    for i, char in enumerate(text):
        used += _char_width(char)
        if used > width:
            return text[:i]
    return text


def _tail(text: str, width: int) -> str:
    """The longest suffix of ``text`` that fits in ``width`` cells, never
    starting with a combining mark whose base character was cut off."""
    if text.isascii():
        return text[max(len(text) - width, 0):] if width > 0 else ""
    used, start = 0, len(text)
    for i in range(len(text) - 1, -1, -1):
        used += _char_width(text[i])
        if used > width:
            break
        start = i
    while start < len(text) and _char_width(text[start]) == 0:
        start += 1
    return text[start:]


def _one_line(text: str) -> str:
    return text.replace("\n", "\u21b5")


def shorten(text: str, width: int) -> str:
    """Cut ``text`` to ``width`` terminal cells with an ellipsis; one line only."""
    text = _one_line(text)
    if width <= 0 or display_width(text) <= width:
        return text
    return _head(text, max(width - 1, 0)) + "\u2026"


def shorten_middle(text: str, width: int) -> str:
    """Cut ``text`` to ``width`` cells by replacing its middle with an ellipsis,
    keeping its end (a path's file name) and its beginning (where it lives)."""
    text = _one_line(text)
    if width <= 0 or display_width(text) <= width:
        return text
    room = max(width - 1, 0)
    head = _head(text, room // 3)
    return head + "\u2026" + _tail(text, room - display_width(head))


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]],
          right: Sequence[str] = ()) -> list[str]:
    """Aligned columns; columns named in ``right`` are right-aligned.

    Cells are measured as the terminal shows them: control characters as
    their ``\\xNN`` escape (see `visible`), wide characters as two cells,
    combining marks as none.
    """
    cells = [[visible(str(c)) for c in row] for row in rows]
    widths = [display_width(h) for h in headers]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], display_width(cell))

    def line(row: Sequence[str]) -> str:
        parts = []
        for i, cell in enumerate(row):
            if headers[i] in right:
                parts.append(pad(cell, widths[i], right=True))
            elif i == len(row) - 1:
                parts.append(cell)
            else:
                parts.append(pad(cell, widths[i]))
        return "  ".join(parts).rstrip()

    return [line(list(headers))] + [line(row) for row in cells]


def cell(text: str, width: int) -> str:
    """``text`` as a table cell of at most ``width`` terminal cells: control
    characters escaped first (so their escapes count), on one line, cut with
    an ellipsis."""
    if text.isascii() and text.isprintable():        # the common case, without a call
        return text if len(text) <= width else text[:width - 1] + "\u2026"
    return shorten(visible(text), width)


class StreamTable:
    """Aligned columns written while rows still arrive, for listings too long
    to hold (``ls`` of a large store, ``log``).

    Rows are written in blocks: the first block is small (``first`` rows), so
    the first lines come at once; later blocks hold ``block`` rows. Column
    widths are measured over the rows seen so far and only grow, starting
    from the headers or from ``widths`` (a column measured in advance never
    moves). Cells are shown as `visible` makes them; columns named in
    ``right`` are right-aligned; the last column is not padded.
    """

    def __init__(self, out: TextIO, headers: Sequence[str], *, right: Sequence[str] = (),
                 widths: Sequence[int] | None = None, first: int = 100, block: int = 1000,
                 header: bool = True) -> None:
        self.out = out
        self.headers = tuple(headers)
        self.right = tuple(h in right for h in headers)
        self.widths = [max(display_width(h), w) for h, w in
                       zip(headers, widths or [0] * len(headers))]
        self.first, self.block = first, block
        self.header = header
        self.count = 0          # rows added
        self._pending: list[tuple[Sequence[str], list[int]]] = []
        self._limit = first

    def add(self, row: Sequence[str]) -> None:
        joined = "".join(row)
        if joined.isprintable() and (joined.isascii() or not _NOT_ONE_CELL.search(joined)):
            self._pending.append((row, None))       # every cell is as wide as it is long
        else:
            shown = [visible(c) for c in row]
            self._pending.append((shown, [display_width(c) for c in shown]))
        self.count += 1
        if len(self._pending) >= self._limit:
            self.flush()
            self._limit = self.block

    def flush(self) -> None:
        """Write the rows held so far (with the header before the first)."""
        pending, widths = self._pending, self.widths
        plain = [row for row, cell_widths in pending if cell_widths is None]
        if plain:
            for i, column in enumerate(zip(*plain)):
                widths[i] = max(widths[i], max(map(len, column)))
        for _, cell_widths in pending:
            if cell_widths is not None:
                widths[:] = [max(w, c) for w, c in zip(widths, cell_widths)]
        lines = []
        if self.header and pending:
            lines.append(self._line(self.headers, [display_width(h) for h in self.headers]))
            self.header = False
        layout = self._layout()
        lines.extend(layout.format(*row).rstrip() if cell_widths is None
                     else self._line(row, cell_widths) for row, cell_widths in pending)
        pending.clear()
        if lines:
            self.out.write("\n".join(lines) + "\n")
        self.out.flush()

    def _layout(self) -> str:
        """A format string that pads ASCII cells to the current widths (one call per row)."""
        last = len(self.widths) - 1
        fields = [f"{{:{'>' if right else '<'}{width}}}" if i < last or right else "{}"
                  for i, (width, right) in enumerate(zip(self.widths, self.right))]
        return "  ".join(fields)

    def _line(self, row: Sequence[str], cell_widths: Sequence[int]) -> str:
        last = len(row) - 1
        parts = []
        for i, text in enumerate(row):
            if i == last and not self.right[i]:
                parts.append(text)
                continue
            fill = " " * (self.widths[i] - cell_widths[i])
            parts.append(fill + text if self.right[i] else text + fill)
        return "  ".join(parts).rstrip()


# --------------------------------------------------------------------------
# printing


# Control characters other than tab and newline, shown escaped in human output:
# a title holding ESC [ ... must not recolour or rewrite the reader's terminal.
_VISIBLE = {c: f"\\x{c:02x}" for c in [*range(0x20), *range(0x7F, 0xA0)] if c not in (0x09, 0x0A)}


def visible(text: str) -> str:
    """``text`` with terminal control characters written as ``\\xNN``."""
    if text.isprintable():      # no control character at all (the common case): no copy
        return text
    return text.translate(_VISIBLE)


class Printer:
    """Writes either human text or JSON to stdout, never both.

    ``annotate``, when set, gives an ``error`` object (damage a read met)
    that `json` adds to the document it prints; ``annotated`` then says the
    error has its place in the output.
    """

    def __init__(self, json_mode: bool, out: TextIO | None = None) -> None:
        self.json_mode = json_mode
        self.out = out or sys.stdout
        self.annotate: Callable[[], dict[str, Any] | None] | None = None
        self.annotated = False

    def text(self, *lines: str) -> None:
        if not self.json_mode:
            for line in lines:
                self.out.write(visible(line) + "\n")

    def error_for(self, value: Any) -> dict[str, Any] | None:
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
