"""tools/dump.py prints frames through the shared scanner ([F-08], [F-15])."""
from __future__ import annotations

import os
import subprocess
import sys

import eventstore

DUMP = os.path.join(os.path.dirname(__file__), "..", "tools", "dump.py")


def test_dump_lists_commits_and_reports_damage(tmp_path):
    with eventstore.open(tmp_path / "s") as s:
        s.append("t", "k", {"a": 1})
        s.append_many([("t", "k", {"a": 2}), ("t", "j", {"b": "x"})])
        s.append("t", "z", {"c": 3})
    seg = os.path.join(tmp_path, "s", "segments", "00000000000000000001.seg")
    out = subprocess.run([sys.executable, DUMP, str(tmp_path / "s"), "--events"],
                         capture_output=True, text=True, check=True).stdout
    assert "commit seq 1-1" in out and "commit seq 2-3" in out and "commit seq 4-4" in out
    assert "3 t j {'b': 'x'}" in out

    data = bytearray(open(seg, "rb").read())
    data[40 + 50] ^= 0x01  # inside the first frame's payload
    with open(seg, "wb") as f:
        f.write(data)
    run = subprocess.run([sys.executable, DUMP, seg], capture_output=True, text=True)
    assert run.returncode == 1
    assert "DAMAGE crc" in run.stdout
    assert "commit seq 2-3" in run.stdout  # resynchronised after the damage


def test_dump_goes_on_past_a_segment_that_does_not_read(tmp_path):
    """The print policy over the one walk: a `.zseg` whose zstd stream is damaged is reported
    with its offset and the dump goes on with the next segment (no traceback)."""
    root = tmp_path / "s"
    with eventstore.open(root, segment_bytes=4096, snapshot_every=0) as s:
        for i in range(60):
            s.append("t", f"k{i % 3}", {"pad": "x" * 200, "i": i})
        s.compact()
    seg_dir = os.path.join(root, "segments")
    zsegs = sorted(n for n in os.listdir(seg_dir) if n.endswith(".zseg"))
    assert len(zsegs) >= 2
    path = os.path.join(seg_dir, zsegs[0])
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(path, "wb").write(bytes(data))
    run = subprocess.run([sys.executable, DUMP, str(root)], capture_output=True, text=True)
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    assert f"== {os.path.join(seg_dir, zsegs[1])}" in run.stdout  # it went on
    assert "zstd" in run.stdout
