"""Fixtures of the PostgreSQL tests: a server (or a skip) and a fresh schema per test."""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pg_support import drop_schema, fresh_schema_url, pg_url_or_skip  # noqa: E402

_skipped: list[str] = []  # why these tests were skipped: printed once, after the run


def pytest_terminal_summary(terminalreporter):
    if _skipped:
        terminalreporter.write_line(f"PostgreSQL tests (tests/postgres) skipped: {_skipped[0]}")


@pytest.fixture
def pg_base() -> str:
    try:
        return pg_url_or_skip()
    except pytest.skip.Exception as exc:
        if not _skipped:
            _skipped.append(str(exc.msg))
        raise


@pytest.fixture
def pg_url(pg_base):
    """A store URL in a schema of its own, dropped after the test."""
    url = fresh_schema_url(pg_base)
    yield url
    drop_schema(url)


@pytest.fixture
def pg_admin(pg_base):
    """A plain autocommit connection to the server, for tampering and killing backends."""
    import psycopg
    conn = psycopg.connect(pg_base, autocommit=True)
    yield conn
    conn.close()


@pytest.fixture
def store_dir(pg_url):
    """The Store behaviour tests of tests/test_store_api.py take ``store_dir``: here it is a
    PostgreSQL URL, so the same test bodies run against the database backend."""
    return pg_url
