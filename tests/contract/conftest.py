"""The contract suite's fixture: `make_store`, once per backend.

Every test in tests/contract/ is written once against ``make_store`` and runs
for each backend in `BACKENDS` (in the manner of the recorder test cases of
the ``eventsourcing`` library). A backend is added by adding a `Backend`
here: how to make a fresh target, how to see what it holds, how to remove it.

``make_store(projections=(), **options)`` opens a store on this test's
target (the same one on every call, so a test can reopen, or open a second
writer or a readonly reader beside the first); everything opened is closed
at teardown, then the target is removed. ``make_store.target`` is the target
as a string, for a writer or reader in another process;
``make_store.fresh()`` is a factory on a new, empty target (hypothesis
examples need one each); ``make_store.footprint()`` is everything the
backend holds for the target (files and their bytes; tables and their rows),
for tests that check "nothing was written". ``make_store.backend`` names the
backend, for the few assertions about one backend's layout.

The PostgreSQL backend needs a server (tests/pg_support.py): without one, or
without psycopg, or while ``eventstore.postgres`` does not exist, its tests
are skipped, and the reason is printed once at the end of the run (with
``METALOG_REQUIRE_PG=1`` they fail instead).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any, Callable

import pytest

import eventstore
from pg_support import _require_pg, _split_schema, drop_schema, fresh_schema_url, pg_url_or_skip

_pg_skipped: list[str] = []  # the reasons the postgres params were skipped (printed once)


# -- what a backend provides ------------------------------------------------------------------
@dataclass(frozen=True)
class Backend:
    name: str
    new_target: Callable[[Any], str]  # (the test's request) -> a fresh, empty target
    footprint: Callable[[str], object]  # target -> what it holds (comparable; {} when nothing)
    remove: Callable[[str], None]  # target -> None, after every store on it is closed


def _local_root(request: Any) -> str:
    """A directory not yet created, on tmpfs when there is one (the contract is about
    behaviour; the local durability tests live in tests/ and run on the real disk)."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    parent = tempfile.mkdtemp(prefix="metalog-contract-", dir=base)
    return os.path.join(parent, "store")


def _local_footprint(root: str) -> dict[str, object]:
    """Every file under ``root`` with its bytes, every directory with its entries (the lock
    file aside: taking a lock is not writing)."""
    out: dict[str, object] = {}
    for dirpath, dirnames, names in os.walk(root):
        out[dirpath] = sorted(n for n in dirnames + names if n != "LOCK")
        for n in names:
            if n != "LOCK":
                with open(os.path.join(dirpath, n), "rb") as f:
                    out[os.path.join(dirpath, n)] = f.read()
    return out


def _local_remove(root: str) -> None:
    shutil.rmtree(os.path.dirname(root), ignore_errors=True)


def _pg_target(request: Any) -> str:
    reason = None
    try:
        import eventstore.postgres  # noqa: F401 - only whether it exists yet
    except ImportError as exc:
        reason = f"eventstore.postgres cannot be imported ({exc})"
    if reason is not None:
        if _require_pg():
            pytest.fail(f"METALOG_REQUIRE_PG=1 but {reason}", pytrace=False)
        _skip_pg(reason)
    try:
        base = pg_url_or_skip()
    except pytest.skip.Exception as exc:
        _skip_pg(str(exc.msg))
    return fresh_schema_url(base)


def _skip_pg(reason: str) -> None:
    if reason not in _pg_skipped:
        _pg_skipped.append(reason)
    pytest.skip(reason)


def _pg_footprint(url: str) -> dict[str, object]:
    """Every table of the test's schema with its rows (sorted), {} when there is none."""
    import psycopg
    from psycopg import sql

    base, schema = _split_schema(url)
    out: dict[str, object] = {}
    with psycopg.connect(base, autocommit=True) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
            "AND table_type = 'BASE TABLE' ORDER BY 1", (schema,))]
        for table in tables:
            rows = conn.execute(sql.SQL("SELECT * FROM {}.{}").format(
                sql.Identifier(schema), sql.Identifier(table))).fetchall()
            out[table] = sorted(map(repr, rows))
    return out


BACKENDS = {
    "local": Backend("local", _local_root, _local_footprint, _local_remove),
    "postgres": Backend("postgres", _pg_target, _pg_footprint, drop_schema),
}


# -- the factory -----------------------------------------------------------------------------
class StoreFactory:
    """Opens stores on one target and remembers them, to close them at teardown."""

    def __init__(self, backend: Backend, request: Any) -> None:
        self._backend = backend
        self._request = request
        self.backend = backend.name
        self.target = backend.new_target(request)
        self._stores: list[Any] = []
        self._children: list[StoreFactory] = []

    def __call__(self, projections: Any = (), **options: Any) -> Any:
        if "fs" in options:
            raise TypeError("contract tests do not pass fs= (only the local backend has one)")
        store = eventstore.open(self.target, projections=projections, **options)
        self._stores.append(store)
        return store

    def adopt(self, closeable: Any) -> Any:
        """Close ``closeable`` (a catalog, say) at teardown too; returns it."""
        self._stores.append(closeable)
        return closeable

    def fresh(self) -> StoreFactory:
        """A factory on a new, empty target, cleaned up with this one."""
        child = StoreFactory(self._backend, self._request)
        self._children.append(child)
        return child

    def footprint(self) -> object:
        """What the backend holds for the target now (see the module docstring)."""
        return self._backend.footprint(self.target)

    def cleanup(self) -> None:
        errors = []
        for child in self._children:
            try:
                child.cleanup()
            except Exception as exc:  # noqa: BLE001 - report after the rest is cleaned
                errors.append(exc)
        for store in reversed(self._stores):
            try:
                store.close()
            except Exception:  # noqa: BLE001 - a test may leave a failed store behind on purpose
                pass
        self._stores.clear()
        self._backend.remove(self.target)
        if errors:
            raise errors[0]

    def __repr__(self) -> str:
        return f"<make_store {self.backend} {self.target}>"


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: Any) -> Backend:
    return BACKENDS[request.param]


@pytest.fixture
def make_store(backend: Backend, request: Any):
    """``make_store(projections=(), **options)``: a store on this test's target (see above)."""
    factory = StoreFactory(backend, request)
    try:
        yield factory
    finally:
        factory.cleanup()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for reason in _pg_skipped:
        terminalreporter.write_line(f"contract tests for postgres skipped: {reason}")
