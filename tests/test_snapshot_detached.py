"""Automatic snapshots of a `snapshot_detached` projection are packed by the background
thread while appends go on; each must still hold exactly the state at its seq ([F-21])."""
from __future__ import annotations

import os

import eventstore
import eventstore.fs
from eventstore.local.snapshot import list_snapshots, read_snapshot
from projections import MediaProjection

from _verbs import run_threads


def test_background_snapshots_of_media_projection_match_a_replay_to_their_seq(tmp_path):
    assert MediaProjection.snapshot_detached is True
    root = tmp_path / "s"
    store = eventstore.open(root, [MediaProjection()], durability="none", snapshot_every=40)

    def writer(t: int) -> None:
        for i in range(150):
            store.append("title.set", f"/media/{t}/{i % 17}.jpg", {"value": f"title {t} {i}"},
                         meta={"actor": f"w{t}"})

    run_threads(writer, 4)
    store.close()

    snaps = list_snapshots(eventstore.fs.DEFAULT_FS, os.path.join(root, "snapshots"))
    assert snaps, "snapshot_every=40 over 600 events wrote no snapshot"
    with eventstore.open(root, readonly=True) as reader:
        events = list(reader.read())
    for seq, path in snaps:
        ok, state = read_snapshot(eventstore.fs.DEFAULT_FS, path).state("media", MediaProjection.version)
        assert ok
        replayed = MediaProjection()
        for e in events[:seq]:
            replayed.apply(e)
        assert state == replayed.snapshot(), f"snapshot at seq {seq} differs from a replay"


def test_media_snapshot_is_not_changed_by_later_applies(tmp_path):
    """The `snapshot_detached` contract: what snapshot() returned stays as it was while
    the projection goes on applying (edits, undo, redo, rename, forget)."""
    import msgpack

    from projections import MediaCatalog

    with MediaCatalog.open(tmp_path / "c", actor="alice", durability="none") as cat:
        for i in range(30):
            cat.set_title(f"/m/{i % 7}.jpg", f"title {i}")
            cat.set_description(f"/m/{i % 5}.jpg", f"text {i}")
        cat.undo("/m/1.jpg")
        taken = cat.projection.snapshot()
        frozen = msgpack.packb(taken)
        for i in range(30, 60):
            cat.set_title(f"/m/{i % 7}.jpg", f"title {i}")
            cat.set_description(f"/m/{i % 5}.jpg", f"text {i}")
        cat.undo("/m/2.jpg")
        cat.undo()
        cat.redo()
        cat.rename("/m/3.jpg", "/m/33.jpg")
        cat.forget("/m/4.jpg", reason="gone")
        cat.set_title("/m/new.jpg", "brand new")
        assert msgpack.packb(cat.projection.snapshot()) != frozen  # the state did move on
        assert msgpack.packb(taken) == frozen  # ...and the earlier snapshot did not
