"""In-process tests of the CLI's small pieces: time parsing, tables, JSON
values, the progress bar, and `main()` returning exit codes."""
from __future__ import annotations

import datetime as dt
import io
import time

import pytest

from projections.cli import output as out
from projections.cli.context import UsageError, parse_time
from projections.cli import build_parser, main

NOW = 1_800_000_000.0


@pytest.mark.parametrize("text, seconds", [
    ("now", NOW),
    ("@1700000000", 1_700_000_000),
    ("@1700000000.5", 1_700_000_000.5),
    ("90s", NOW - 90),
    ("10m", NOW - 600),
    ("2h ago", NOW - 7200),
    ("3d", NOW - 3 * 86400),
    ("1w", NOW - 604800),
    ("2026-11-26T04:00:00Z", dt.datetime(2026, 11, 26, 4, tzinfo=dt.timezone.utc).timestamp()),
    ("2026-11-26T04:00:00+02:00",
     dt.datetime(2026, 11, 26, 2, tzinfo=dt.timezone.utc).timestamp()),
])
def test_parse_time(text: str, seconds: float) -> None:
    assert parse_time(text, now=NOW) == int(seconds * 1e9)


def test_parse_time_naive_is_local() -> None:
    expected = dt.datetime(2026, 1, 2, 3, 4).astimezone().timestamp()
    assert parse_time("2026-01-02 03:04", now=NOW) == int(expected * 1e9)


@pytest.mark.parametrize("bad", ["yesterday", "@x", "5 parsecs", ""])
def test_parse_time_rejects(bad: str) -> None:
    with pytest.raises(UsageError):
        parse_time(bad, now=NOW)


def test_times_from_every_unit() -> None:
    ns = 1_700_000_000_123_456_000
    assert out.to_ns(ns) == ns
    assert out.to_ns(1_700_000_000.123456) == pytest.approx(ns, abs=1000)
    assert out.iso_time(ns) == "2023-11-14T22:13:20.123456Z"
    assert out.format_time(None) == "-"


def test_table_aligns_and_right_aligns() -> None:
    lines = out.table(["KEY", "N", "NOTE"], [("a", 1, "x"), ("bbbb", 100, "")], right=("N",))
    assert lines == ["KEY     N  NOTE", "a       1  x", "bbbb  100"]


def test_plain_values() -> None:
    assert out.plain({"b": b"\x00\x01", "t": (1, 2)}) == {"b": {"$base64": "AAE="}, "t": [1, 2]}
    assert out.shorten("a\nb" * 30, 10) == "a\u21b5ba\u21b5ba\u21b5b\u2026"


def test_progress_draws_only_after_delay_and_clears() -> None:
    stream = io.StringIO()
    stream.isatty = lambda: True  # type: ignore[method-assign]
    with out.Progress("exporting", total=10, delay=0.05, stream=stream) as bar:
        bar.update(5)
        time.sleep(0.3)
    text = stream.getvalue()
    assert "exporting [" in text and "5/10" in text and "50%" in text
    assert text.endswith("\r\x1b[2K")

    quiet = io.StringIO()
    quiet.isatty = lambda: True  # type: ignore[method-assign]
    with out.Progress("fast", delay=5, stream=quiet):
        pass
    assert quiet.getvalue() == ""


def test_progress_never_draws_on_a_pipe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("METALOG_PROGRESS", raising=False)
    stream = io.StringIO()
    with out.Progress("x", delay=0, stream=stream):
        time.sleep(0.15)
    assert stream.getvalue() == ""


def test_main_returns_codes_instead_of_exiting(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert main([]) == 2
    assert main(["no-such-command"]) == 2
    capsys.readouterr()


def test_global_options_work_after_the_command() -> None:
    args = build_parser().parse_args(["ls", "--json", "--store", "/x"])
    assert args.json is True and args.store == "/x"
    args = build_parser().parse_args(["--json", "--store", "/y", "ls"])
    assert args.json is True and args.store == "/y"
