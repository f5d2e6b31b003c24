"""Terminal cells: how wide text is on screen, how it is cut, and aligned tables.

This module owns the width of text as a terminal draws it (East Asian wide
characters take two cells, combining marks none; ASCII and the marks we add
ourselves are measured by length, the fast path of a large listing), the
escaping of control characters, shortening with an ellipsis, and tables:
`table` for a few rows, `StreamTable` for listings written while they are
read. It knows nothing about stores or JSON.
"""
from __future__ import annotations

import functools
import re
import unicodedata
from typing import Any, Iterable, Sequence, TextIO

__all__ = ["visible", "display_width", "pad", "shorten", "shorten_middle", "cell", "plain_cell",
           "table", "StreamTable"]

# Control characters other than tab and newline, shown escaped in human output:
# a title holding ESC [ ... must not recolour or rewrite the reader's terminal.
_VISIBLE = {c: f"\\x{c:02x}" for c in [*range(0x20), *range(0x7F, 0xA0)] if c not in (0x09, 0x0A)}


def visible(text: str) -> str:
    """``text`` with terminal control characters written as ``\\xNN``."""
    if text.isprintable():      # no control character at all (the common case): no copy
        return text
    return text.translate(_VISIBLE)


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


def display_width(text: str) -> int:
    """The number of terminal cells ``text`` takes ("映画" takes 4, "e\u0301" 1).

    ASCII text is its length; otherwise only the non-ASCII characters are
    measured one by one (a shortened cell ends in one "…": one lookup);
    `display_width_measured` is the reference, every character measured."""
    if text.isascii():
        return len(text)
    width = len(text)
    for char in _NON_ASCII.findall(text):
        width += _char_width(char) - 1
    return width


def display_width_measured(text: str) -> int:
    """`display_width`, one character at a time (the plain path)."""
    return sum(map(_char_width, text))


def pad(text: str, width: int, *, right: bool = False) -> str:
    """``text`` padded with spaces to ``width`` cells (``ljust`` by display width)."""
    fill = " " * max(width - display_width(text), 0)
    return fill + text if right else text + fill


def _head(text: str, width: int) -> str:
    """The longest prefix of ``text`` that fits in ``width`` cells; the marks
    combining with a character that does not fit go with it."""
    if text.isascii():                      # every character one cell
        return text[:max(width, 0)]
    return _head_measured(text, width)


def _head_measured(text: str, width: int) -> str:
    """`_head`, one character at a time (the plain path)."""
    used = 0
    for i, char in enumerate(text):
        used += _char_width(char)
        if used > width:
            return text[:i]
    return text


def _tail(text: str, width: int) -> str:
    """The longest suffix of ``text`` that fits in ``width`` cells, never
    starting with a combining mark whose base character was cut off."""
    if text.isascii():                      # every character one cell, none combining
        return text[max(len(text) - width, 0):] if width > 0 else ""
    return _tail_measured(text, width)


def _tail_measured(text: str, width: int) -> str:
    """`_tail`, one character at a time (the plain path)."""
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
        return text if width <= 0 or len(text) <= width else text[:width - 1] + "\u2026"
    return shorten(visible(text), width)


def plain_cell(text: str, width: int) -> str | None:
    """`cell` of printable ASCII text (so the cell is printable ASCII, but for
    the ellipsis it may end in: a `StreamTable` row of such cells is plain);
    None for any other text."""
    if text.isascii() and text.isprintable():
        return text if width <= 0 or len(text) <= width else text[:width - 1] + "\u2026"
    return None


def _plain_row(row: Sequence[str]) -> bool:
    """Whether every cell is printable ASCII, but for our own marks (one cell each)."""
    joined = "".join(row)
    if not joined.isascii():        # our own marks take one cell: they may stay on the fast path
        joined = joined.replace("\u2026", "").replace("\u21b5", "")
    return joined.isascii() and joined.isprintable()


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
        # rows with their cell widths; None: every cell is as wide as it is long
        self._pending: list[tuple[Sequence[str], list[int] | None]] = []
        self._limit = first

    def add(self, row: Sequence[str], plain: bool = False) -> None:
        """One row. ``plain``: the caller knows every cell is printable ASCII but
        for our own marks (``…``, ``↵``), as `plain_cell` makes them, so the row
        goes on the fast path without the check (which would decide the same)."""
        if plain or _plain_row(row):
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
