"""The tables of a PostgreSQL store, their version, and creating or checking them on open.

Owns every table, column, constraint and index (docs/POSTGRES.md describes
each and why) and `SCHEMA_VERSION`: a store created by a newer metalog is
refused with `FormatVersionError`, as a newer file format is. Every SQL
statement that names a table is built here, from the schema name (checked
by `url.parse_url`: lower-case letters, digits, ``_``), so no other module
spells a table. Creation runs in one transaction under an advisory lock, so
two processes opening a new store at once create it once.
"""
from __future__ import annotations

import time

from ..errors import CorruptionError, FormatVersionError, NotAStoreError
from .connection import Conn
from .url import StoreURL

__all__ = ["SCHEMA_VERSION", "TABLES", "Sql", "prepare_schema"]

SCHEMA_VERSION = 1
TABLES = ("meta", "head", "commits", "key_versions", "snapshots")

_DDL = """
CREATE TABLE {s}.meta (
    id             smallint PRIMARY KEY CHECK (id = 1),
    schema_version integer  NOT NULL,
    created_ns     bigint   NOT NULL
);
CREATE TABLE {s}.head (
    id       smallint PRIMARY KEY CHECK (id = 1),
    last_seq bigint   NOT NULL CHECK (last_seq >= 0),
    last_ts  bigint   NOT NULL CHECK (last_ts >= 0),
    digest   bytea    NOT NULL CHECK (octet_length(digest) = 16)
);
CREATE TABLE {s}.commits (
    first_seq bigint  PRIMARY KEY CHECK (first_seq >= 1),
    n         integer NOT NULL CHECK (n >= 1),
    ts        bigint  NOT NULL CHECK (ts >= 0),
    commit_id uuid    NOT NULL UNIQUE,
    digest    bytea   NOT NULL CHECK (octet_length(digest) = 16),
    payload   bytea   NOT NULL
);
ALTER TABLE {s}.commits ALTER COLUMN payload SET STORAGE EXTERNAL;
CREATE TABLE {s}.key_versions (
    key        text COLLATE "C" NOT NULL,
    version    bigint NOT NULL CHECK (version >= 1),
    commit_seq bigint NOT NULL,
    PRIMARY KEY (key, version)
);
CREATE TABLE {s}.snapshots (
    seq      bigint PRIMARY KEY CHECK (seq >= 1),
    ts       bigint NOT NULL,
    digest   bytea  NOT NULL CHECK (octet_length(digest) = 16),
    body_len bigint NOT NULL CHECK (body_len >= 0),
    body     bytea  NOT NULL
);
ALTER TABLE {s}.snapshots ALTER COLUMN body SET STORAGE EXTERNAL;
INSERT INTO {s}.head (id, last_seq, last_ts, digest) VALUES (1, 0, 0, '\\x00000000000000000000000000000000');
"""


class Sql:
    """Every statement of one store's schema, built once."""

    def __init__(self, schema: str) -> None:
        s = self.schema = schema
        cols = "first_seq, n, ts, digest, payload"
        self.lock_head = f"SELECT last_seq, last_ts, digest FROM {s}.head WHERE id = 1 FOR UPDATE"
        self.head = f"SELECT last_seq, last_ts, digest FROM {s}.head WHERE id = 1"
        self.commits_from = f"SELECT {cols} FROM {s}.commits WHERE first_seq >= %s ORDER BY first_seq LIMIT %s"
        self.commits_by_id = f"SELECT commit_id, {cols} FROM {s}.commits WHERE commit_id = ANY(%s)"
        self.insert_commits = (
            f"INSERT INTO {s}.commits (first_seq, n, ts, commit_id, digest, payload) "
            "SELECT * FROM unnest(%s::bigint[], %s::integer[], %s::bigint[], %s::uuid[], %s::bytea[], %s::bytea[])")
        self.insert_versions = (
            f"INSERT INTO {s}.key_versions (key, version, commit_seq) "
            "SELECT * FROM unnest(%s::text[], %s::bigint[], %s::bigint[])")
        self.set_head = f"UPDATE {s}.head SET last_seq = %s, last_ts = %s, digest = %s WHERE id = 1"
        self.versions_of = f"SELECT key, max(version) FROM {s}.key_versions WHERE key = ANY(%s) GROUP BY key"
        self.commit_start = f"SELECT coalesce(max(first_seq), 1) FROM {s}.commits WHERE first_seq <= %s"

    def table(self, name: str) -> str:
        assert name in TABLES
        return f"{self.schema}.{name}"


def _tables(conn: Conn, schema: str) -> set[str]:
    rows = conn.execute("SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
                        "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f')",
                        (schema,)).fetchall()
    return {str(r[0]) for r in rows}


def _check_version(conn: Conn, url: StoreURL) -> None:
    where = f"{url.redacted} table {url.schema}.meta"
    row = conn.execute(f"SELECT schema_version FROM {url.schema}.meta WHERE id = 1").fetchone()
    if row is None:
        raise CorruptionError(where, None, "the meta row is missing")
    found = int(row[0])
    if found != SCHEMA_VERSION:
        raise FormatVersionError(where, found, SCHEMA_VERSION)


def prepare_schema(conn: Conn, url: StoreURL, *,
                   create: bool) -> bool:
    """Check the store's schema, creating it when allowed; True when it was created.

    Refuses (`NotAStoreError`) a schema holding tables that are not a store's,
    or no store when ``create`` is false; `FormatVersionError` for a store of
    another schema version; `CorruptionError` when a table is missing.
    """
    found = _tables(conn, url.schema)
    if "meta" in found:
        _check_version(conn, url)
        missing = [t for t in TABLES if t not in found]
        if missing:
            raise CorruptionError(f"{url.redacted} schema {url.schema}", None,
                                  f"tables missing: {', '.join(missing)}")
        return False
    if found:
        raise NotAStoreError(f"schema {url.schema} of {url.redacted} holds tables that are not a "
                             f"metalog store's ({', '.join(sorted(found)[:5])}); nothing was touched")
    if not create:
        raise NotAStoreError(f"no metalog store in schema {url.schema} of {url.redacted}")
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"metalog:{url.schema}",))
        if _tables(conn, url.schema):  # another process created it meanwhile
            created = False
        else:
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {url.schema}")
            conn.execute(_DDL.format(s=url.schema))
            conn.execute(f"INSERT INTO {url.schema}.meta VALUES (1, %s, %s)",
                         (SCHEMA_VERSION, time.time_ns()))
            created = True
    if not created:
        return prepare_schema(conn, url, create=False)
    return True
