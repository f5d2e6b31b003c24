"""`metalog copy` between two directories (SPEC §6, §8): every commit keeps its seqs, its
time and its chain digest, batches stay whole commits, an interrupted copy goes on where it
stopped, and a destination that is not a prefix of the source is refused before a write.
(tests/postgres/test_pg_cli.py copies to PostgreSQL and back.)"""
from __future__ import annotations

import json

import eventstore
from test_cli_helpers import cli_in_process as cli
from test_cli_helpers import copy_interrupted_then_resumed, fill_for_copy


def fill(path, n):
    fill_for_copy(path, n, pad=" " + "x" * 200, segment_bytes=4096)


def commits(path):
    with eventstore.open(path, readonly=True) as s:
        return [(c.first_seq, c.ts, c.prev, c.digest, c.payload) for c in s.read_commits()]


def test_copy_between_directories_keeps_seqs_times_digests_and_commits(tmp_path, capsys):
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    fill(src, 40)
    code, out, err = cli(capsys, "--json", "copy", src, dst)
    result = json.loads(out)
    assert code == 0, err
    assert result["equal"] and result["verify_ok"] and result["times_and_digests_kept"]
    assert commits(dst) == commits(src)
    with eventstore.open(src, readonly=True) as a, eventstore.open(dst, readonly=True) as b:
        assert list(a.read()) == list(b.read())
        assert max(len(c.events) for c in b.read_commits()) == 2  # batches stayed one commit


def test_an_interrupted_copy_into_a_directory_goes_on_where_it_stopped(tmp_path, capsys, monkeypatch):
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    fill(src, 40)
    held = copy_interrupted_then_resumed(capsys, monkeypatch, src, dst, stop_after=9)
    assert 9 <= held < 40
    assert commits(dst) == commits(src)


def test_copy_refuses_a_directory_that_is_not_a_prefix_and_writes_nothing(tmp_path, capsys):
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    fill(src, 5)
    with eventstore.open(dst) as other:
        other.append("title.set", "/elsewhere", {"value": "x"})
    before = commits(dst)
    code, _, err = cli(capsys, "copy", src, dst)
    assert code == 2 and "not an interrupted copy" in err
    assert commits(dst) == before


def test_copy_of_a_store_with_seqs_lost_to_salvage_says_why_it_cannot(tmp_path, capsys):
    """A gap frame ([F-25]) has no commit to import and restarts the chain: the copy stops
    there with a message that names the gap and the commands that can renumber."""
    import os
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    fill(src, 12)
    seg = os.path.join(src, "segments", sorted(os.listdir(os.path.join(src, "segments")))[0])
    with open(seg, "r+b") as f:
        f.seek(40 + 48 + 60)  # inside the second frame's payload
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 1]))
    eventstore.open(src, recovery="salvage").close()
    code, _, err = cli(capsys, "copy", src, dst)
    assert code == 2 and "lost to a salvage" in err and "export" in err
