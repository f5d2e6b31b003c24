"""The `metalog` command on PostgreSQL stores, and `metalog copy` between backends (SPEC §6,
§8; docs/POSTGRES.md §8). In process (``main``), so a copy can be interrupted."""
from __future__ import annotations

import json

import eventstore
from pg_support import drop_schema, fresh_schema_url
from test_cli_helpers import cli_in_process as cli
from test_cli_helpers import copy_interrupted_then_resumed, fill_for_copy


def test_commands_work_on_a_url_given_by_option_or_environment(pg_url, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert cli(capsys, "--store", pg_url, "get", "a.mp4")[0] == 2  # no store there yet
    assert cli(capsys, "--store", pg_url, "init")[0] == 0
    assert cli(capsys, "--store", pg_url, "--actor", "alice", "set-title", "a.mp4", "Hello")[0] == 0
    monkeypatch.setenv("METALOG_STORE", pg_url)
    code, out, _ = cli(capsys, "--json", "get", "a.mp4")
    assert code == 0 and json.loads(out)["title"] == "Hello"
    code, out, _ = cli(capsys, "verify")
    assert code == 0 and out.startswith("ok: ")
    code, out, _ = cli(capsys, "--json", "stats")
    assert json.loads(out)["events"] == 1 and json.loads(out)["segments"] == 0


def test_a_password_in_the_url_is_never_shown(pg_base, capsys, monkeypatch):
    url = fresh_schema_url(pg_base.replace("postgres@", "postgres:hunter2@", 1))
    monkeypatch.delenv("PGPASSWORD", raising=False)
    try:
        code, out, err = cli(capsys, "--store", url, "init")
        assert code == 0 and "hunter2" not in out + err and "postgres@" in out
        code, out, err = cli(capsys, "--store", url.replace("5432", "1"), "ls")
        assert code == 1 and "hunter2" not in out + err and "unavailable" in err
    finally:
        drop_schema(url)


def fill_catalog(path, n):
    fill_for_copy(path, n)


def test_copy_directory_to_postgres_and_back(pg_url, tmp_path, capsys):
    src = str(tmp_path / "src")
    fill_catalog(src, 30)
    code, out, err = cli(capsys, "--json", "copy", src, pg_url)
    result = json.loads(out)
    assert code == 0, err
    assert result["equal"] and result["verify_ok"] and result["times_and_digests_kept"]
    with eventstore.open(src, readonly=True) as a, eventstore.open(pg_url, readonly=True) as b:
        assert list(a.read()) == list(b.read())  # seqs, times, events
        lengths = [len(c.events) for c in b.read_commits()]
        assert max(lengths) == 2 and len(lengths) < b.last_seq  # batches stayed whole commits
    back = str(tmp_path / "back")
    code, out, err = cli(capsys, "copy", pg_url, back)
    assert code == 0 and "compared equal, verify ok" in out, err
    with eventstore.open(src, readonly=True) as a, eventstore.open(back, readonly=True) as c:
        assert list(a.read()) == list(c.read())  # seqs, times, events
        assert [(x.first_seq, x.ts, x.prev, x.digest) for x in a.read_commits()] == \
            [(x.first_seq, x.ts, x.prev, x.digest) for x in c.read_commits()]  # and the chain


def test_an_interrupted_copy_goes_on_where_it_stopped(pg_url, tmp_path, capsys, monkeypatch):
    src = str(tmp_path / "src")
    fill_catalog(src, 40)
    held = copy_interrupted_then_resumed(capsys, monkeypatch, src, pg_url, stop_after=7)
    assert 7 <= held < 40
    with eventstore.open(src, readonly=True) as a, eventstore.open(pg_url, readonly=True) as b:
        assert list(a.read()) == list(b.read()) and b.verify().ok


def test_copy_refuses_a_destination_that_is_not_a_prefix(pg_url, tmp_path, capsys):
    src = str(tmp_path / "src")
    fill_catalog(src, 5)
    with eventstore.open(pg_url) as other:
        other.append("title.set", "/elsewhere", {"value": "x"})
    code, _, err = cli(capsys, "copy", src, pg_url)
    assert code == 2 and "not an interrupted copy" in err
    with eventstore.open(pg_url, readonly=True) as b:
        assert b.last_seq == 1
