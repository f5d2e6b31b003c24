"""Tamper evidence, snapshots, schema versions and open errors on PostgreSQL (SPEC §8;
docs/POSTGRES.md [P-02]-[P-04], [P-13]-[P-16], [P-19], [P-20]). The damage verbs edit the tables directly, as someone with
write access to the database could, making the edited row's own columns agree."""
from __future__ import annotations

import pytest

import eventstore
from eventstore.chain import commit_digest
from eventstore.codec import encode_commit
from eventstore.postgres import StoreUnavailableError


def schema_of(url):
    return url.rsplit("schema=", 1)[1]


def fill(url, commits=6):
    with eventstore.open(url, snapshot_every=0) as store:
        for i in range(commits):
            store.append_many([("t", f"k{i % 2}", {"i": i, "j": j}) for j in range(2)])


def _digest_before(admin, s, first_seq):
    row = admin.execute(f"SELECT digest FROM {s}.commits WHERE first_seq < %s ORDER BY first_seq DESC LIMIT 1",
                        (first_seq,)).fetchone()
    return bytes(row[0]) if row else bytes(16)


def edit_payload_and_its_digest(admin, s):
    """Commit 3-4 gets another payload of the same shape, and its digest recomputed."""
    payload = encode_commit([("t", "k1", {"i": 99, "j": 0}, {}), ("t", "k1", {"i": 99, "j": 1}, {})], 1 << 20)
    ts = admin.execute(f"SELECT ts FROM {s}.commits WHERE first_seq = 3").fetchone()[0]
    digest = commit_digest(_digest_before(admin, s, 3), 3, 2, ts, payload)
    admin.execute(f"UPDATE {s}.commits SET payload = %s, digest = %s WHERE first_seq = 3", (payload, digest))
    return 5  # the next commit no longer chains


def delete_a_commit(admin, s):
    admin.execute(f"DELETE FROM {s}.commits WHERE first_seq = 5")
    admin.execute(f"DELETE FROM {s}.key_versions WHERE commit_seq = 5")
    return 5


def renumber_after_delete(admin, s):
    """Delete commit 5-6 and move the later ones down, seqs and index made consistent."""
    admin.execute(f"DELETE FROM {s}.commits WHERE first_seq = 5")
    admin.execute(f"DELETE FROM {s}.key_versions WHERE commit_seq = 5")
    admin.execute(f"UPDATE {s}.commits SET first_seq = first_seq - 2 WHERE first_seq > 5")
    admin.execute(f"UPDATE {s}.key_versions SET commit_seq = commit_seq - 2 WHERE commit_seq > 5")
    admin.execute(f"UPDATE {s}.head SET last_seq = last_seq - 2")
    return 5


def change_a_time(admin, s):
    admin.execute(f"UPDATE {s}.commits SET ts = ts + 1 WHERE first_seq = 7")
    return 7


def drop_an_index_row(admin, s):
    admin.execute(f"DELETE FROM {s}.key_versions WHERE key = 'k0' AND version = 2")
    return None


VERBS = [edit_payload_and_its_digest, delete_a_commit, renumber_after_delete, change_a_time, drop_an_index_row]


@pytest.mark.parametrize("verb", VERBS, ids=[v.__name__ for v in VERBS])
def test_verify_reports_rows_edited_in_the_database(pg_url, pg_admin, verb):
    """[P-13] [P-14] [P-16] each verb is reported by verify, at the seq it damaged."""
    fill(pg_url)
    with eventstore.open(pg_url) as store:
        assert store.verify().ok
    at = verb(pg_admin, schema_of(pg_url))
    if at is not None:  # a log that does not chain refuses a strict open ...
        with pytest.raises(eventstore.CorruptionError):
            eventstore.open(pg_url, readonly=True)
    with eventstore.open(pg_url, readonly=True, recovery="salvage") as store:  # ... salvage shows the rest
        assert bool(store.recovery_report) == (at is not None)
        report = store.verify()
    assert not report.ok
    if at is not None:
        assert at in [p.offset for p in report.problems], [str(p) for p in report.problems]


class Counts:
    """A projection: events per key."""

    name, version = "counts", 1

    def __init__(self):
        self.counts = {}

    def apply(self, e):
        self.counts[e.key] = self.counts.get(e.key, 0) + 1

    def snapshot(self):
        return self.counts

    def restore(self, state):
        self.counts = dict(state)


def test_open_from_a_snapshot_plus_the_tail_equals_a_full_replay(pg_url, pg_admin):
    """[P-19] [P-20] only the tail is replayed; a snapshot that does not fit is skipped."""
    fill(pg_url, 10)
    with eventstore.open(pg_url, projections=[Counts()]) as store:
        assert store.snapshot() == 20
        store.append_many([("t", "k0", {}), ("t", "new", {})])
    applied = []

    class Watching(Counts):
        def apply(self, e):
            applied.append(e.seq)
            super().apply(e)

    full = Counts()
    for e in eventstore.open(pg_url).read():
        full.apply(e)
    with eventstore.open(pg_url, projections=[Watching()]) as store:
        assert store.stats()["snapshot_seq"] == 20 and applied == [21, 22]
        assert store.projections[0].counts == full.counts
        assert store.version("k0") == full.counts["k0"] and not store.recovery_report
        assert store.nearest_snapshot("counts", 1, 30).seq == 20
        assert store.nearest_snapshot("counts", 2, 30) is None
    pg_admin.execute(f"UPDATE {schema_of(pg_url)}.snapshots SET digest = %s", (bytes(16),))
    applied.clear()
    with eventstore.open(pg_url, projections=[Watching()]) as store:  # does not fit: replay
        assert applied == list(range(1, 23)) and store.projections[0].counts == full.counts
        [entry] = store.recovery_report
        assert entry.action == "skipped-snapshot" and entry.offset == 20
        assert not store.verify().ok


@pytest.mark.parametrize("body", [b"not zstd", "bomb", "short"])
def test_a_damaged_snapshot_body_is_skipped_and_reported(pg_url, pg_admin, body):
    """[P-20] a body that is not one zstd frame, inflates past its declared length, or
    inflates short, is skipped (replay rebuilds the state) and verify names it."""
    import zstandard
    fill(pg_url, 4)
    with eventstore.open(pg_url, projections=[Counts()]) as store:
        store.snapshot()
    s = schema_of(pg_url)
    if body == "bomb":  # declares 100 bytes, inflates to 50 MB
        body, length = zstandard.ZstdCompressor(write_checksum=True).compress(b"\0" * (50 << 20)), 100
    elif body == "short":
        length = 10 ** 6
        body = zstandard.ZstdCompressor(write_checksum=True).compress(b"x" * 100)
    else:
        length = 100
    pg_admin.execute(f"UPDATE {s}.snapshots SET body = %s, body_len = %s", (body, length))
    with eventstore.open(pg_url, projections=[Counts()]) as store:
        assert store.projections[0].counts == {"k0": 4, "k1": 4}
        assert [e.action for e in store.recovery_report] == ["skipped-snapshot"]
        assert [p.offset for p in store.verify().problems] == [8]


def test_automatic_snapshots_keep_the_newest_three(pg_url, pg_admin):
    with eventstore.open(pg_url, projections=[Counts()], snapshot_every=4) as store:
        for i in range(40):
            store.append("t", f"k{i % 3}")
        store.snapshot()
    seqs = [r[0] for r in pg_admin.execute(f"SELECT seq FROM {schema_of(pg_url)}.snapshots ORDER BY seq")]
    assert len(seqs) <= 3 and seqs[-1] == 40
    with eventstore.open(pg_url, projections=[Counts()]) as store:
        assert store.projections[0].counts == {"k0": 14, "k1": 13, "k2": 13} and store.verify().ok


def test_a_future_schema_version_is_refused(pg_url, pg_admin):
    """[P-04]"""
    eventstore.open(pg_url).close()
    pg_admin.execute(f"UPDATE {schema_of(pg_url)}.meta SET schema_version = 2")
    for kwargs in ({}, {"readonly": True}):
        with pytest.raises(eventstore.FormatVersionError) as info:
            eventstore.open(pg_url, **kwargs)
        assert (info.value.found, info.value.supported) == (2, 1)


def test_unreachable_server_and_missing_driver_name_the_url_without_password(monkeypatch):
    """[P-01] [P-02]"""
    url = "postgresql://alice:s3cret@127.0.0.1:1/db?schema=x&connect_timeout=2"
    with pytest.raises(StoreUnavailableError) as info:
        eventstore.open(url)
    assert "s3cret" not in str(info.value) and "alice@127.0.0.1:1/db" in info.value.url
    monkeypatch.setitem(__import__("sys").modules, "psycopg", None)
    with pytest.raises(StoreUnavailableError) as info:
        eventstore.open(url)
    assert "s3cret" not in str(info.value) and "metalog[postgres]" in info.value.reason
    with pytest.raises(eventstore.ValidationError):
        eventstore.open("postgresql://h/db?schema=Bad-Name")


def test_location_and_options_ignored_on_postgres(pg_base):
    from pg_support import drop_schema, fresh_schema_url
    url = fresh_schema_url(pg_base.replace("postgres@", "postgres:pw@", 1))
    try:
        with eventstore.open(url, segment_bytes=1 << 20, recovery="salvage", durability="none") as store:
            assert ":pw@" not in store.location and store.location.endswith(url.rsplit("?", 1)[1])
            store.append("t", "k")
            store.flush()
            assert store.stats()["durability"] == "none" and store.compact()["snapshot_seq"] == 1
    finally:
        drop_schema(url)
