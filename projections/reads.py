"""The read side of a `MediaCatalog` (SPEC §3): its state, history, time travel and stats.

`CatalogReads` holds what every catalog call shares (the store, the
projection, the re-entrant lock, the open batch) and answers reads: the
committed state with an open batch's pending values laid over it
(`batch.Overlay`), an item's history (`history`), the state at a seq or a
time and the difference between two (`timetravel`), and the counts `stats`
gives. Each read first takes in what other writers committed (`_fresh`).
It never appends; `MediaCatalog` adds the writes.
"""
from __future__ import annotations

import datetime as _dt
import threading
from typing import Any, Iterator

from eventstore.api import Store
from eventstore.errors import StoreClosedError, ValidationError

from .batch import Batch, Overlay
from .events import Change, MediaRecord
from .keys import PathChecker, _normalise_absolute, media_key
from .media import MediaProjection

__all__ = ["CatalogReads", "Media"]

Media = Any   # str | os.PathLike | object with .path / .file_path


class CatalogReads:
    """A catalog's shared parts and its reads (see the module docstring)."""

    def __init__(self, store: Store, projection: MediaProjection, path_checker: PathChecker | None) -> None:
        self._store = store
        self._proj = projection
        self.path_checker = path_checker if path_checker is not None else PathChecker()
        self._lock = threading.RLock()
        self._batch: Batch | None = None
        self._closed = False

    # ------------------------------------------------------------- plumbing

    @property
    def store(self) -> Store:
        """The underlying `eventstore` store (for raw reads and tools)."""
        return self._store

    @property
    def lock(self) -> "threading.RLock":
        """The catalog's re-entrant lock: hold it to make several calls one atomic step."""
        return self._lock

    @property
    def projection(self) -> MediaProjection:
        """The live projection (committed state, without a pending batch)."""
        with self._lock:
            self._fresh()
            return self._proj

    def _fresh(self) -> None:
        """Take in what other writers (other processes, other catalogs) committed since.

        Reads and writes call it, so a catalog shows every writer's changes and plans
        undo, rename and forget on them (SPEC §2). Called holding the catalog's lock:
        applying new commits changes the projection that every read of another thread
        is walking. Costs a few `stat` calls when nothing changed.
        """
        if not self._closed:
            self._store.refresh(strict=False)

    def key(self, media: Media) -> str:
        """The normalised key ``media`` is stored under."""
        return media_key(media)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError("the catalog is closed")

    def _shown_batch(self) -> Batch | None:
        """The open batch whose pending values reads overlay; not an aborted one."""
        batch = self._batch
        return None if batch is None or batch.refused is not None else batch

    def pending_changes(self) -> int:
        """Changes the open batch will write (0 once it was aborted)."""
        batch = self._shown_batch()
        return 0 if batch is None else len(batch)

    # ------------------------------------------------------------------- reads

    def _view(self) -> Overlay:
        """Reads of the committed state with the open batch laid over it (under the lock)."""
        self._fresh()
        return Overlay(self._proj, self._shown_batch())

    def get(self, media: Media) -> MediaRecord | None:
        key = media_key(media)
        with self._lock:
            return self._view().get(key)

    def title(self, media: Media) -> str:
        record = self.get(media)
        return "" if record is None else record.title

    def description(self, media: Media) -> str:
        record = self.get(media)
        return "" if record is None else record.description

    def __contains__(self, media: object) -> bool:
        try:
            return self.get(media) is not None
        except ValidationError:
            return False

    def keys(self) -> list[str]:
        """Keys of the live items (batch included), sorted."""
        with self._lock:
            return self._view().keys()

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        with self._lock:
            return len(self._view())

    def items(self) -> list[tuple[str, MediaRecord]]:
        """(key, record) of every live item, sorted by key."""
        with self._lock:
            return self._view().items()

    def history(self, media: Media) -> list[Change]:
        """Every committed change of the item, oldest first (renames followed)."""
        key = media_key(media)
        with self._lock:
            self._check_open()
            from .history import item_history

            return item_history(self._store, key)

    # ------------------------------------------------------------- time travel

    def state_at(self, seq: int | None = None,
                 time: float | _dt.datetime | None = None) -> MediaProjection:
        """A frozen projection of the state after every event up to ``seq``
        (inclusive), or after every event stamped at or before ``time``
        (seconds since the epoch, or an aware datetime)."""
        if (seq is None) == (time is None):
            raise ValueError("give exactly one of seq= or time=")
        with self._lock:
            self._check_open()
            self._fresh()
            if time is not None:
                from .timetravel import seq_at_time

                seq = seq_at_time(self._store, self._proj, time)
            assert seq is not None
            if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
                raise ValueError(f"seq must be an int >= 0, not {seq!r}")
            from .timetravel import replay_to

            return replay_to(self._store, self._proj, seq).freeze()

    def diff(self, a: int, b: int) -> dict[str, tuple[MediaRecord | None, MediaRecord | None]]:
        """{key: (record at seq a, record at seq b)} for items whose title,
        description or existence differ between the two points (in key order).

        Costs one `state_at(min(a, b))` plus either a copy of the live state
        (when the other point is now) or a replay between the two."""
        for name, value in (("a", a), ("b", b)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, not {value!r}")
        lo, hi = sorted((a, b))
        with self._lock:
            self._check_open()
            hi = min(hi, self._store.last_seq)
            from .timetravel import diff_states

            out = diff_states(self._store, self._proj, min(lo, hi), hi)
        if a > b:
            out = {k: (v[1], v[0]) for k, v in out.items()}
        return out

    # ------------------------------------------------------------------ stats

    def stats(self) -> dict[str, Any]:
        """The store's stats plus item, batch, undo and cache counts."""
        with self._lock:
            self._check_open()
            out: dict[str, Any] = dict(self._store.stats())
            done, undone = self._proj.undo_depths()
            out.update(items=len(self._proj), pending=self.pending_changes(),
                       undo_steps=done, redo_steps=undone,
                       key_cache=_normalise_absolute.cache_info()._asdict(),
                       path_cache=self.path_checker.stats())
            return out

