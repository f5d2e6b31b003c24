"""Taking snapshots of the projections, on the commit path and in the background.

`Snapshotter.capture` takes what must be consistent with one seq (each
projection's ``snapshot()``, the key versions, the log position and digest
after that seq) while the store is quiet; packing, compressing and writing
the `.snap` file ([F-21], [F-23]) happen later, in a background thread for
the automatic snapshots. Writing holds the maintenance lock, so it never
races a compaction or salvage in another process. `nearest` finds a stored
state for time travel. The file format itself is `snapshot`'s.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Sequence

from ..api import SnapshotState
from ..codec import pack
from ..errors import CorruptionError
from ..fs import FileSystem
from ..keytable import encode_table
from ..projection import Projection
from . import snapshot as snap_mod
from .directory import FileLock
from .opening import snapshot_candidates

__all__ = ["Captured", "Snapshotter"]

log = logging.getLogger("eventstore")


@dataclass
class _State:
    name: str
    version: int
    value: object  # packed bytes, or the projection's detached value (packed when written)
    packed: bool


@dataclass
class Captured:
    """Everything a snapshot at ``seq`` holds, taken while the log was at that seq."""

    seq: int
    ts: int
    position: tuple[int, int]  # (segment, offset) of the frame after ``seq``
    digest: bytes  # the chain digest after ``seq``
    versions: dict[str, int]
    states: list[_State]


class Snapshotter:
    """Snapshots of one store's projections."""

    def __init__(self, fs: FileSystem, snap_dir: str, projections: Sequence[Projection],
                 maintenance: FileLock) -> None:
        self.fs = fs
        self.snap_dir = snap_dir
        self.projections = tuple(projections)
        self.maintenance = maintenance
        self.seq = 0  # the newest snapshot loaded or written
        self._thread: threading.Thread | None = None

    def capture(self, seq: int, ts: int, position: tuple[int, int], digest: bytes,
                versions: dict[str, int]) -> Captured:
        """The state at ``seq`` (the store is quiet: its leader, or exclusive).

        Only what must be consistent with ``seq`` happens here: each projection's
        ``snapshot()`` (packed now unless the projection declares
        ``snapshot_detached = True``, i.e. returns a value later ``apply`` calls
        will not mutate) and a copy of the key versions.
        """
        states = []
        for p in self.projections:
            value = p.snapshot()
            if getattr(p, "snapshot_detached", False):
                states.append(_State(p.name, p.version, value, False))
            else:
                states.append(_State(p.name, p.version, pack(value), True))
        return Captured(seq, ts, position, digest, dict(versions), states)

    def write(self, captured: Captured) -> None:
        """Pack, compress and write the snapshot file, then prune old ones."""
        states = [(s.name, s.version, s.value if s.packed else pack(s.value)) for s in captured.states]
        data = snap_mod.encode_snapshot(captured.seq, captured.ts, captured.position, captured.digest,
                                        encode_table(captured.versions), states)  # type: ignore[arg-type]
        with self.maintenance:  # one at a time, in this process (a background and a foreground
            # one may overlap) and across processes (no compaction or salvage meanwhile)
            snap_mod.write_snapshot(self.fs, self.snap_dir, captured.seq, data)
            self.seq = max(self.seq, captured.seq)

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start_background(self, captured: Captured) -> None:
        thread = threading.Thread(target=self._write_quietly, args=(captured,),
                                  name="metalog-snapshot", daemon=True)
        thread.start()  # before publishing it: join() must find it
        self._thread = thread

    def _write_quietly(self, captured: Captured) -> None:
        try:
            self.write(captured)
        except Exception as exc:  # noqa: BLE001 - replay still works; the next trigger tries again
            log.warning("background snapshot at seq %d failed: %s", captured.seq, exc)

    def join(self) -> None:
        thread = self._thread
        if thread is not None:
            thread.join()

    def nearest(self, name: str, version: int, max_seq: int) -> SnapshotState | None:
        """The newest usable state of ``name``/``version`` at or before ``max_seq``."""
        for seq, path in snapshot_candidates(self.fs, self.snap_dir):
            if seq > max_seq:
                continue
            try:
                snap = snap_mod.read_snapshot(self.fs, path)
                ok, state = snap.state(name, version)
            except (CorruptionError, OSError):
                continue
            if ok:
                return SnapshotState(seq, state)
        return None
