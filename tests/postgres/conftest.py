"""Fixtures of the PostgreSQL tests: a server (or a skip) and a fresh schema per test."""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pg_support import drop_schema, fresh_schema_url, pg_url_or_skip, skip_reason  # noqa: E402


def pytest_terminal_summary(terminalreporter):
    reason = skip_reason()
    if reason is not None:
        terminalreporter.write_line(f"PostgreSQL tests skipped: {reason}")


@pytest.fixture
def pg_base() -> str:
    return pg_url_or_skip()


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
