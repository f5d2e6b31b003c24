"""Writers in several processes on one target, on every backend (SPEC §2, §4.7).

A short run of tests/_many_writers.py: 2 processes x 2 threads append to shared keys with
and without ``expected_version`` while a third process compacts and snapshots and a
readonly one follows. Every acknowledged commit is there once with its data, seqs and
per-key versions are contiguous, every process's projection equals a full replay, the
follower saw every event once in order, and the store verifies. The longer local runs
are tests/test_many_writers.py.
"""
from __future__ import annotations

from _many_writers import Plan, run


def test_writer_processes_beside_maintenance_and_a_follower(make_store, tmp_path):
    plan = Plan(processes=2, threads=2, commits=60, durability=("fsync", "flush"), seed=7)
    out = run(make_store.target, str(tmp_path / "work"), plan)
    assert out.acked_commits == 2 * 2 * 60 and out.events >= out.acked_commits
    assert out.followed == out.events
