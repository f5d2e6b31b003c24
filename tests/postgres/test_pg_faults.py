"""Faults on PostgreSQL (SPEC §8; [P-10]-[P-12]): lost connections, lost
acknowledgements, a killed backend, a server that goes away. No acknowledged commit is
lost, none is stored twice, the error says what is known, and the store works again."""
from __future__ import annotations

import threading
import time
import uuid

import pytest

import eventstore
from eventstore.postgres import CommitUnknownError, StoreUnavailableError
from pg_support import drop_schema, fresh_schema_url
from pgproxy import Proxy


def schema_of(url):
    return url.rsplit("schema=", 1)[1]


def commit_rows(admin, url):
    return admin.execute(f"SELECT first_seq, n, commit_id FROM {schema_of(url)}.commits ORDER BY 1").fetchall()


def kill_backends(admin, url, role="%"):
    """Terminate our store's backends (named ``metalog <role> <schema>``), no one else's."""
    return admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE application_name LIKE %s AND pid <> pg_backend_pid()",
                         (f"metalog {role} {schema_of(url)}",)).fetchall()


@pytest.fixture
def proxied(pg_base):
    proxy = Proxy(pg_base)
    url = fresh_schema_url(proxy.url)
    yield proxy, url
    proxy.close()
    drop_schema(fresh_schema_url(pg_base).rsplit("schema=", 1)[0] + "schema=" + schema_of(url))


def test_writer_killed_between_lock_and_commit_commits_once(pg_url, pg_admin):
    """[P-11] pg_terminate_backend while the commit holds the head lock: the transaction dies with
    its connection; the writer reconnects, finds the commit id absent, and commits it once."""
    with eventstore.open(pg_url) as store:
        store.append("t", "before")
        writer = store._writer
        kills = []

        def kill():
            if not kills:
                kills.append(kill_backends(pg_admin, pg_url, "writer"))
        writer.before_write = kill
        ev = store.append("t", "k", {"n": 1})
        writer.before_write = None
        assert kills and kills[0] == [(True,)]
        assert ev.seq == 2 and store.append("t", "after").seq == 3
        rows = commit_rows(pg_admin, pg_url)
        assert [r[0] for r in rows] == [1, 2, 3] and len({r[2] for r in rows}) == 3
        assert [e.key for e in store.read()] == ["before", "k", "after"]
        assert store.verify().ok


def test_lost_commit_acknowledgement_is_settled_by_commit_id(proxied, pg_admin):
    """[P-11] The server commits, the acknowledgement is lost on the way: the writer reconnects,
    finds its commit id stored, and returns the events: stored once, acknowledged once."""
    proxy, url = proxied
    with eventstore.open(url) as store:
        store.append("t", "before")
        proxy.drop_after_commit()
        evs = store.append_many([("t", "a", {}), ("t", "b", {})])
        assert proxy.dropped.wait(5), "the proxy never saw the COMMIT"
        assert [e.seq for e in evs] == [2, 3]
        assert [r[:2] for r in commit_rows(pg_admin, url)] == [(1, 1), (2, 2)]
        assert store.append("t", "after").seq == 4
        assert store.verify().ok


def test_unknown_outcome_is_an_error_with_the_commit_id_then_resolved_once(proxied, pg_admin):
    """[P-11] The acknowledgement is lost and the server cannot be reached again: the append raises
    CommitUnknownError carrying the commit id. Once the server is back, resolve() finds the
    commit stored (and a retry with the same id returns it): never stored twice."""
    proxy, url = proxied
    with eventstore.open(url) as store:
        store.append("t", "before")
        proxy.refuse = True  # new connections fail from now on
        proxy.drop_after_commit()
        with pytest.raises(CommitUnknownError) as info:
            store.append("t", "k", {"v": 1})
        exc = info.value
        assert isinstance(exc, eventstore.StoreFailedError) and isinstance(exc.commit_id, uuid.UUID)
        assert "outcome" in str(exc) and url.split("@")[0] not in ("",)
        [row] = [r for r in commit_rows(pg_admin, url) if r[2] == exc.commit_id]  # it did commit
        with pytest.raises(StoreUnavailableError):
            store.append("t", "while-down")
        proxy.refuse = False
        [ev] = store.resolve(exc.commit_id)
        assert (ev.seq, ev.key, ev.data) == (row[0], "k", {"v": 1})
        assert store.resolve(exc.commit_id) == [ev]
        assert store.append("t", "k", {"v": 1}, commit_id=exc.commit_id) == ev
        assert len(commit_rows(pg_admin, url)) == 2
        assert store.append("t", "after").seq == 3 and store.version("k") == 1


def test_unknown_outcome_of_a_commit_that_did_not_happen_commits_it_once(pg_url, pg_admin, monkeypatch):
    """[P-11] The writer's backend is killed before COMMIT and the server refuses connections for a
    while: CommitUnknownError; resolve() then finds the id absent and commits it, once."""
    import eventstore.postgres.connection as connection
    with eventstore.open(pg_url) as store:
        store.append("t", "before")
        real = connection.psycopg.connect
        down = []

        def refuse_while_down(*args, **kwargs):
            if down:
                raise connection.psycopg.OperationalError("server is down (test)")
            return real(*args, **kwargs)
        monkeypatch.setattr(connection.psycopg, "connect", refuse_while_down)

        def kill():
            down.append(True)
            kill_backends(pg_admin, pg_url, "writer")
        store._writer.before_write = kill
        with pytest.raises(CommitUnknownError) as info:
            store.append_many([("t", "x", {}), ("t", "y", {})])
        store._writer.before_write = None
        assert len(commit_rows(pg_admin, pg_url)) == 1  # it did not commit
        down.clear()
        evs = store.resolve(info.value.commit_id)
        assert [e.seq for e in evs] == [2, 3] and store.resolve(info.value.commit_id) == evs
        assert [r[0] for r in commit_rows(pg_admin, pg_url)] == [1, 2]


def test_caller_commit_ids_make_retries_idempotent(pg_url):
    """[P-10] one id, one commit: a retry with the id returns the stored events."""
    cid = uuid.uuid4()
    with eventstore.open(pg_url) as store:
        first = store.append_many([("t", "a", {"i": 1})], commit_id=cid)
        again = store.append_many([("t", "a", {"i": 1})], commit_id=str(cid))
        assert first == again and store.last_seq == 1
        with pytest.raises(eventstore.ValidationError):
            store.append_many([("t", "a", {"i": 2})], commit_id=cid)  # same id, other commit
        with pytest.raises(eventstore.ValidationError):
            store.append("t", "a", commit_id="not a uuid")
        with pytest.raises(eventstore.ValidationError):
            store.resolve(uuid.uuid4())  # never sent, not stored
    with eventstore.open(pg_url) as other:  # another process retrying finds it too
        assert other.append_many([("t", "a", {"i": 1})], commit_id=cid) == first
        assert other.resolve(cid) == first


def test_backends_killed_during_appends_lose_and_duplicate_nothing(pg_url, pg_admin):
    """Our store's connections are all terminated again and again (as by a server restart)
    while 4 threads append: every acknowledged event is stored exactly once, every
    unacknowledged one is settled by resolve(), and the store goes on working."""
    store = eventstore.open(pg_url, snapshot_every=0)
    acked, unknown, errors, killed = [], [], [], []
    stop = threading.Event()

    kills_wanted = 10
    deadline = time.monotonic() + 60

    def writer(w):
        i = 0
        # Write at least 40 each, and go on until the killer has struck often enough.
        while (i < 40 or not stop.is_set()) and time.monotonic() < deadline:
            i += 1
            try:
                acked.append(store.append("t", f"w{w}", {"w": w, "i": i}))
            except CommitUnknownError as exc:
                unknown.append(exc.commit_id)
            except StoreUnavailableError:
                pass  # refused before anything was sent: not written, not acknowledged
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

    def killer():
        while len(killed) < kills_wanted and time.monotonic() < deadline:
            killed.extend(kill_backends(pg_admin, pg_url))
            time.sleep(0.02)
        stop.set()

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    k = threading.Thread(target=killer)
    k.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    k.join()
    assert not errors
    assert len(killed) >= kills_wanted, "the test killed (almost) nothing"
    for cid in unknown:
        acked += store.resolve(cid)
    events = list(store.read())
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    stored = [(e.data["w"], e.data["i"]) for e in events]
    assert len(stored) == len(set(stored)), "a commit was stored twice"
    assert sorted((e.data["w"], e.data["i"]) for e in acked) == sorted(stored)
    assert store.append("t", "after").seq == len(events) + 1
    assert store.verify().ok
    store.close()


def _cluster_of(url):
    """``(version, name)`` of the local cluster serving ``url``'s port (pg_lsclusters), or None."""
    import shutil
    import subprocess
    from urllib.parse import urlsplit
    if not shutil.which("pg_lsclusters"):
        return None
    port = urlsplit(url).port or 5432
    for line in subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True).stdout.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[2] == str(port):
            return fields[0], fields[1]
    return None


@pytest.mark.slow
def test_server_restart_during_appends(pg_url):
    """A real restart (pg_ctlcluster) of the cluster serving the test URL while appending:
    every acknowledged event is there once, the unknown ones settle, the store goes on.
    Point METALOG_PG_URL at a cluster of your own: this restarts it."""
    import subprocess
    cluster = _cluster_of(pg_url)
    if cluster is None:
        pytest.skip("the server is not a local pg_ctlcluster cluster")
    store = eventstore.open(pg_url)
    acked, unknown = [], []
    done = threading.Event()

    def writer():
        i = 0
        while not done.is_set():
            try:
                acked.append(store.append("t", "k", {"i": i}))
            except CommitUnknownError as exc:
                unknown.append(exc.commit_id)
            except StoreUnavailableError:
                pass
            i += 1
    t = threading.Thread(target=writer)
    t.start()
    def wait_for(count):
        deadline = time.monotonic() + 60
        while len(acked) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(acked) >= count, "appends did not go on"
    wait_for(20)
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", *cluster, "restart"], check=True)
    wait_for(len(acked) + 20)  # appends go on after the restart
    done.set()
    t.join(60)
    for cid in unknown:
        acked += store.resolve(cid)
    events = list(store.read())
    assert sorted(e.seq for e in acked) == [e.seq for e in events]
    assert len({e.data["i"] for e in events}) == len(events)
    assert store.append("t", "after").seq == len(events) + 1 and store.verify().ok
    store.close()
