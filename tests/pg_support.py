"""Finding the PostgreSQL server the tests run against, and a fresh schema per test.

``METALOG_PG_URL`` names the server (default: the local one CI starts);
``METALOG_REQUIRE_PG=1`` (set by ``.ci/run``) makes a missing driver or an
unreachable server a failure instead of a skip. Without it, PostgreSQL
tests skip, and the reason is printed once per run. Each test gets its own
schema (``t_<random hex>``), dropped afterwards. Shared by tests/postgres/
and the contract suite; keep these three functions' signatures.
"""
from __future__ import annotations

import os
import secrets
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

__all__ = ["pg_url_or_skip", "fresh_schema_url", "drop_schema", "skip_reason", "DEFAULT_URL"]

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
_checked: dict[str, str | None] = {}  # base URL -> None (reachable) or why not
_skipped: list[str] = []  # the reason PostgreSQL tests were skipped, once


def _base() -> str:
    return os.environ.get("METALOG_PG_URL") or DEFAULT_URL


def _problem(base: str) -> str | None:
    """Why the server cannot be used (None when it can), checked once per run."""
    if base not in _checked:
        try:
            import psycopg
        except ImportError:
            _checked[base] = "psycopg is not installed (pip install -e '.[test]')"
        else:
            try:
                psycopg.connect(base, connect_timeout=3, autocommit=True).close()
                _checked[base] = None
            except psycopg.Error as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                _checked[base] = f"cannot connect to {_redact(base)}: {first}"
    return _checked[base]


def pg_url_or_skip() -> str:
    """The server's base URL; skips the test (or fails it, under METALOG_REQUIRE_PG=1) when
    psycopg is missing or the server does not answer."""
    base = _base()
    problem = _problem(base)
    if problem is None:
        return base
    if os.environ.get("METALOG_REQUIRE_PG") == "1":
        pytest.fail(f"METALOG_REQUIRE_PG=1 and PostgreSQL is unavailable: {problem}", pytrace=False)
    if not _skipped:
        _skipped.append(problem)
    pytest.skip(f"PostgreSQL unavailable: {problem}")


def skip_reason() -> str | None:
    """Why PostgreSQL tests were skipped in this run (None: they were not): a conftest's
    ``pytest_terminal_summary`` prints it once, after the run (tests' own output is captured)."""
    return _skipped[0] if _skipped else None


def fresh_schema_url(base: str) -> str:
    """``base`` with ``schema=t_<random hex>``: a store of its own for one test."""
    parts = urlsplit(base)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "schema"]
    query.append(("schema", f"t_{secrets.token_hex(6)}"))
    return urlunsplit(parts._replace(query=urlencode(query)))


def drop_schema(url: str) -> None:
    """Drop the schema a store URL names (and everything in it)."""
    import psycopg

    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    schema = dict(query).get("schema")
    if not schema:
        return
    rest = urlunsplit(parts._replace(query=urlencode([(k, v) for k, v in query if k != "schema"])))
    with psycopg.connect(rest, connect_timeout=5, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')  # type: ignore[arg-type]


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", "@")))
