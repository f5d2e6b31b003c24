"""The catalog survives a killed writer: acknowledged edits, undo state and history."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from projections import MediaCatalog

CHILD = textwrap.dedent("""
    import sys
    from projections import MediaCatalog
    cat = MediaCatalog.open(sys.argv[1], actor="child", durability="flush", snapshot_every=50)
    i = 0
    while True:
        with cat.batch():
            cat.set_title(f"/m/{i % 7}", f"title {i}")
            cat.set_description(f"/m/{i % 5}", f"desc {i}")
        if i % 3 == 0:
            cat.undo()
        print(i, flush=True)          # acknowledged: the batch (and any undo) returned
        i += 1
""")


def test_killed_writer_loses_nothing_acknowledged(tmp_path) -> None:
    store = tmp_path / "store"
    env = dict(os.environ, PYTHONPATH=os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", ""))
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(store)], stdout=subprocess.PIPE,
                             text=True, env=env)
    acked = -1
    deadline = time.monotonic() + 30
    assert child.stdout is not None
    while acked < 300 and time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        acked = int(line)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert acked >= 300, "the child did not get far enough"

    with MediaCatalog.open(store, actor="parent", durability="none") as cat:
        # every acknowledged batch is there, in order, whole (never half a batch)
        titles = [c for c in cat.store.read(types=["title.set"]) if "undo_of" not in c.meta
                  and "redo_of" not in c.meta]
        written = [int(e.data["value"].split()[1]) for e in titles]
        assert written[: acked + 1] == list(range(acked + 1))
        for e in cat.store.read():
            if e.type == "description.set" and "undo_of" not in e.meta:
                assert e.meta.get("cont") is True           # second event of its batch
        # the replayed state equals a fresh replay, and undo still works
        before = dict(cat.projection.as_dict())
        from projections import MediaProjection
        fresh = MediaProjection()
        for e in cat.store.read():
            fresh.apply(e)
        assert fresh.as_dict() == before
        assert cat.undo() != []
        assert cat.projection.as_dict() != before
        assert cat.history("/m/0")
