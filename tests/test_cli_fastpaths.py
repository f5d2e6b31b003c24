"""The CLI's fast paths give exactly what the plain paths give (issue 16 item 6):
widths, cuts and cells measured without a per-character step for ASCII, the
streamed table against the whole one, the key column measured by runs of sorted
keys, keys shown relative to the current directory, and `MediaProjection.records`
against `get` - with wide, combining, emoji, control and empty text."""
from __future__ import annotations

import io
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventstore.event import Event
from projections import MediaProjection
from projections.cli import cells, listing, output
from projections.events import DESCRIPTION_SET, TITLE_SET

# characters that take 2 cells, 0 cells, an escape, or are our own marks; plus anything
ODD = "aZ \t\n\x1b\x7f\x9b\x00映画é\u0301\u20dd\U0001F600\u200b\u00ad\u2026\u21b5\ufe0f/"
TEXT = st.one_of(st.text(st.sampled_from(ODD), max_size=40),
                 st.text(st.characters(blacklist_categories=("Cs",)), max_size=20),
                 st.text(st.characters(max_codepoint=0x7f), max_size=60))
WIDTHS = st.integers(-2, 50)


@settings(max_examples=400, deadline=None)
@given(text=TEXT)
def test_display_width_equals_measuring_every_character(text: str) -> None:
    assert cells.display_width(text) == cells.display_width_measured(text)


@settings(max_examples=400, deadline=None)
@given(text=TEXT, width=WIDTHS)
def test_cuts_equal_measuring_every_character(text: str, width: int) -> None:
    assert cells._head(text, width) == cells._head_measured(text, width)
    assert cells._tail(text, width) == cells._tail_measured(text, width)


@settings(max_examples=400, deadline=None)
@given(text=TEXT, width=WIDTHS)
def test_cell_equals_shortening_the_visible_text(text: str, width: int) -> None:
    assert cells.cell(text, width) == cells.shorten(cells.visible(text), width)


@settings(max_examples=400, deadline=None)
@given(text=TEXT, width=WIDTHS)
def test_plain_cell_is_cell_for_printable_ascii_and_none_otherwise(text: str, width: int) -> None:
    made = cells.plain_cell(text, width)
    if made is None:
        assert not (text.isascii() and text.isprintable())
    else:
        assert made == cells.cell(text, width) and cells._plain_row([made])


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(st.tuples(TEXT, TEXT, st.integers(0, 10**6).map(str)), max_size=12),
       first=st.integers(1, 5), block=st.integers(1, 5))
def test_a_stream_table_in_one_block_equals_the_whole_table(rows: list[tuple[str, str, str]],
                                                            first: int, block: int) -> None:
    """Rows whose cells were made by `cell` (one line, ellipsis-cut), as `ls` adds them."""
    headers = ("KEY", "TITLE", "VER")
    made = [(cells.cell(a, 8), cells.cell(b, 12), c) for a, b, c in rows]
    whole = io.StringIO()
    one = cells.StreamTable(whole, headers, right=("VER",), first=len(made) + 1)
    for row in made:
        one.add(row)
    one.flush()
    expected = cells.table(headers, made, right=("VER",)) if made else []
    assert whole.getvalue().splitlines() == expected
    # in blocks: every block's columns are at least as wide as the rows seen so far need
    parts = io.StringIO()
    streamed = cells.StreamTable(parts, headers, right=("VER",), first=first, block=block)
    for row in made:
        streamed.add(row)
    streamed.flush()
    lines = parts.getvalue().splitlines()
    assert len(lines) == len(expected)
    assert [line.split() for line in lines] == [line.split() for line in expected]
    # a row vouched plain (by cells plain_cell made and a printable ASCII key) goes the same way
    vouched = io.StringIO()
    told = cells.StreamTable(vouched, headers, right=("VER",), first=first, block=block)
    for (a, b, c), row in zip(rows, made):
        plain = (cells.plain_cell(b, 12) is not None and a.isascii() and a.isprintable()
                 and cells.plain_cell(a, 8) is not None)
        told.add(row, plain)
    told.flush()
    assert vouched.getvalue() == parts.getvalue()


SUFFIX = st.text(st.sampled_from("ab/.-_0映\u0301\x1b\U0001F600"), max_size=8)
# where a key lies against the current directory D: under it, D itself, D's parent,
# beside it (D + "x", D + "0": sorted next to D's run), or elsewhere
PLACES = st.sampled_from(["under", "itself", "parent", "beside", "digit", "elsewhere", "root"])


@settings(max_examples=300, deadline=None)
@given(parts=st.lists(st.tuples(PLACES, SUFFIX), max_size=30), at_root=st.booleans())
def test_key_width_and_shown_keys_equal_the_plain_measure(parts: list[tuple[str, str]], at_root: bool,
                                                          tmp_path_factory: pytest.TempPathFactory) -> None:
    cwd = os.getcwd()
    here = "/" if at_root else str(tmp_path_factory.mktemp("cwd"))
    try:
        os.chdir(here)
        here = os.getcwd()
        make = {"under": lambda t: f"{here.rstrip('/')}/{t or 'x'}", "itself": lambda t: here,
                "parent": lambda t: os.path.dirname(here), "beside": lambda t: f"{here}x{t}",
                "digit": lambda t: f"{here}0{t}", "elsewhere": lambda t: f"/elsewhere/{t}",
                "root": lambda t: "/"}
        keys = sorted({make[place](suffix) for place, suffix in parts})
        show = output.key_shower()
        assert [show(k) for k in keys] == [output.display_key(k) for k in keys]
        assert listing._key_width(keys) == listing.key_width_plain(keys)
    finally:
        os.chdir(cwd)


@settings(max_examples=200, deadline=None)
@given(values=st.lists(st.tuples(st.sampled_from(["/m/a", "/m/b", "/m/c", "/m/映"]), TEXT,
                                 st.booleans()), min_size=1, max_size=20),
       probes=st.lists(st.sampled_from(["/m/a", "/m/b", "/m/c", "/m/映", "/m/none", ""]), max_size=8))
def test_records_equal_get(values: list[tuple[str, str, bool]], probes: list[str]) -> None:
    live = MediaProjection()
    for seq, (key, value, title) in enumerate(values, 1):
        live.apply(Event(seq, seq * 10**9, TITLE_SET if title else DESCRIPTION_SET, key,
                         {"value": value.replace("\ud800", "")}, {}))
    packed = MediaProjection()
    packed.restore(live.snapshot())
    for p in (live, packed):
        assert list(p.records(probes)) == [p.get(k) for k in probes]
        assert list(p.records(probes)) == [live.get(k) for k in probes]


# -------------------------------------------------- the parser of one command

def _outcome(parser_argv: tuple[object, list[str]]) -> object:
    """What parsing gives: the namespace (its handler as a yes/no), or the error."""
    import contextlib
    import io as _io

    from projections.cli import app

    parser, argv = parser_argv
    out, err = _io.StringIO(), _io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            ns = parser.parse_args(argv)  # type: ignore[attr-defined]
    except app._UsageExit as exc:
        return ("usage", exc.prog, exc.usage, exc.message)
    except SystemExit as exc:
        return ("exit", exc.code, out.getvalue(), err.getvalue())
    found = vars(ns)
    return {k: (callable(v) if k == "handler" else v) for k, v in found.items()}


WORDS = st.sampled_from(["get", "ls", "log", "set-title", "tail", "copy", "nope", "--store", "--sto",
                         "--store=get", "--actor", "--act", "--json", "--js", "-h", "--help", "--version",
                         "--", "-", "x.mp4", "5", "--from", "--reason", "-m", "-f", "--bogus", "a b"])


@settings(max_examples=400, deadline=None)
@given(argv=st.lists(WORDS, max_size=6))
def test_the_parser_of_the_named_command_parses_as_the_whole_parser(argv: list[str]) -> None:
    from projections.cli import app

    only = app.command_named(argv)
    whole = _outcome((app.build_parser(), argv))
    if only is not None:
        assert _outcome((app.build_parser(only), argv)) == whole
