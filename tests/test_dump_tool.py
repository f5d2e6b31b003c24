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
