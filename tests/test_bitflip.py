"""Every single-bit flip of a small segment is detected ([F-07], [F-08], [F-14],
[F-17]): a strict open either raises `CorruptionError` naming the file and the
offset of the damaged structure, or -- only for a flip inside the last frame --
cuts that last commit as a torn tail ([F-13]). No open ever returns an event
that differs from what was written ([F-11]).
"""
from __future__ import annotations

import os
import shutil
import struct

import eventstore
from eventstore import CorruptionError

HEADER, FRAME_HEADER = 40, 48


def test_every_single_bit_flip_is_detected(tmp_path, segment_files):
    root = str(tmp_path / "s")
    with eventstore.open(root, durability="none", snapshot_every=0) as store:
        commits = [
            [store.append("created", "a", {"t": "one"})],
            store.append_many([("title", "b", {"n": 7, "f": 0.5}), ("desc", "a", {"b": b"\x01\x02"})]),
            [store.append("title", "a", {"l": [True, None, "s"]}, meta={"actor": "x"})],
            [store.append("t", "c", {})],
        ]
    originals = [e for c in commits for e in c]
    [seg] = segment_files(root)
    data = open(seg, "rb").read()
    starts, off = [], HEADER
    while off < len(data):
        starts.append(off)
        off += FRAME_HEADER + struct.unpack_from("<I", data, off + 8)[0]
    assert len(starts) == len(commits) and off == len(data)
    last_start = starts[-1]
    quarantine = os.path.join(root, "quarantine")

    outcomes = {"corruption": 0, "torn-tail": 0}
    prev_pos = 0
    for bit in range(len(data) * 8):
        pos = bit // 8
        flipped = bytearray(data)
        flipped[pos] ^= 1 << (bit % 8)
        if os.path.getsize(seg) != len(data):  # the previous round truncated a torn tail
            with open(seg, "wb") as f:
                f.write(data)
            shutil.rmtree(quarantine, ignore_errors=True)
        with open(seg, "r+b") as f:  # flip in place: rewriting the file is slow here
            f.seek(prev_pos)
            f.write(data[prev_pos:prev_pos + 1])
            f.seek(pos)
            f.write(flipped[pos:pos + 1])
        prev_pos = pos
        assert open(seg, "rb").read() == bytes(flipped)
        damaged_struct = 0 if pos < HEADER else max(s for s in starts if s <= pos)
        for readonly in (True, False):
            try:
                store = eventstore.open(root, readonly=readonly, durability="none")
            except CorruptionError as exc:
                assert os.path.samefile(exc.file, seg), (bit, exc)
                assert exc.offset == damaged_struct, (bit, exc.offset, exc.reason)
                assert pos < last_start, f"flip at byte {pos} in the last frame should be a torn tail"
                assert open(seg, "rb").read() == bytes(flipped), "a failed open changed the segment"
                outcomes["corruption"] += 1
                continue
            with store:
                got = list(store.read())
            assert pos >= last_start, f"flip at byte {pos} (bit {bit}) went undetected"
            # the torn last commit is gone; everything else is exactly what was written
            assert got == originals[:-len(commits[-1])], bit
            if not readonly:
                [entry] = store.recovery_report.entries
                assert (entry.action, entry.offset, entry.nbytes) == ("truncated", last_start, len(data) - last_start)
                assert open(seg, "rb").read() == data[:last_start]
                [q] = os.listdir(quarantine)
                assert open(os.path.join(quarantine, q), "rb").read() == bytes(flipped[last_start:])
            else:
                assert open(seg, "rb").read() == bytes(flipped)  # readers never truncate [F-16]
            outcomes["torn-tail"] += 1
    assert outcomes["corruption"] == 2 * last_start * 8
    assert outcomes["torn-tail"] == 2 * (len(data) - last_start) * 8
