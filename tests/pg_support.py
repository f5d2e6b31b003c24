"""The PostgreSQL server the tests may use, and one throw-away schema per test.

The server is given by ``METALOG_PG_URL`` (default
``postgresql://postgres@127.0.0.1:5432/test``). Without psycopg or a reachable
server, `pg_url_or_skip` skips the calling test, or fails it when
``METALOG_REQUIRE_PG=1`` (CI with a server must not pass by skipping). Each
test gets its own schema (``?schema=t_<hex>``, the backend creates it on
open); `drop_schema` removes it afterwards. The probe runs once per session.
"""
from __future__ import annotations

import functools
import os
import secrets
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

__all__ = ["pg_url_or_skip", "fresh_schema_url", "drop_schema"]

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _require_pg() -> bool:
    """True when a missing server must fail the tests instead of skipping them."""
    return os.environ.get("METALOG_REQUIRE_PG", "") not in ("", "0")


@functools.lru_cache(maxsize=None)
def _probe(url: str) -> str | None:
    """Why the server at ``url`` cannot be used (None when it can)."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'metalog[postgres]')"
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any failure means: no server to test against
        return f"PostgreSQL at {_redact(url)} is unreachable: {str(exc).strip().splitlines()[0]}"
    return None


def pg_url_or_skip() -> str:
    """The server's base URL; skips the test (fails it with METALOG_REQUIRE_PG=1) if unusable."""
    url = os.environ.get("METALOG_PG_URL") or DEFAULT_URL
    reason = _probe(url)
    if reason is not None:
        if _require_pg():
            pytest.fail(f"METALOG_REQUIRE_PG=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    return url


def fresh_schema_url(base: str) -> str:
    """``base`` with ``schema=t_<random hex>`` in its query (any earlier schema replaced)."""
    parts = urlsplit(base)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "schema"]
    query.append(("schema", f"t_{secrets.token_hex(6)}"))
    return urlunsplit(parts._replace(query=urlencode(query)))


def _split_schema(url: str) -> tuple[str, str | None]:
    """(the URL without its schema parameter, the schema name)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in query if k == "schema"), None)
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    return urlunsplit(parts._replace(query=rest)), schema


def drop_schema(url: str) -> None:
    """Drop the schema named in ``url`` and everything in it (nothing if it does not exist)."""
    import psycopg
    from psycopg import sql

    base, schema = _split_schema(url)
    if not schema:
        raise ValueError(f"{_redact(url)} names no schema")
    with psycopg.connect(base, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))
