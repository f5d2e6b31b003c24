"""`MediaCatalog`: the media domain API (SPEC §3) on top of an event store.

This module owns the write side of the media domain: it validates input,
normalises media keys, decides which events to append (none when a value
is unchanged), groups a batch into one atomic commit (`projections.batch`),
appends the compensating events `projections.undo` plans for undo and redo,
and merges quick edits into one undo step (`projections.edits`). Reads
(the `MediaProjection` overlaid with a pending batch, history, time travel)
are `projections.reads`'. Bulk writers (the legacy
importer, `projections.legacy`) use its public `exclusive` /
`append_events` / `read_log` members: legacy never imports this module.

One re-entrant lock serialises every call, so a catalog can be shared by
many threads; ``batch()`` holds it for its whole block. The old API's
``start_batch_mode()`` batch belongs to the catalog, not to a thread: while
it is open every set goes into it. Inside a batch ``set_title`` and
``set_description`` return None because nothing is written until commit;
a set refused as bad input aborts the open batch, which then writes
nothing (SPEC §5). Renames, forgets, undo and redo refuse to run inside a
batch. The format of the events lives in `projections.events`.
"""
from __future__ import annotations

import contextlib
import os
import time as _time
from typing import TYPE_CHECKING, Any, Callable, Iterator

import eventstore
from eventstore.errors import ValidationError
from eventstore.api import Store
from eventstore.event import Event

from .batch import Batch, Item, batch_items, committed_value
from .checks import check_actor, check_text
from .edits import MergeWindow, append_planned, check_window, default_actor, mark_cont
from .events import ACTOR, FORGOTTEN, MERGE, REASON, TYPE_OF_FIELD, VALUE
from .keys import PathChecker, media_key
from .media import MediaProjection
from .reads import CatalogReads, Media

if TYPE_CHECKING:   # imported when used (`metalog get` needs none of them)
    from .legacy import ImportReport
    from .undo import Plan, UndoError, UndoResult

__all__ = ["MediaCatalog", "Batch", "UndoError", "UndoResult"]


def __getattr__(name: str) -> object:
    """`UndoError` and `UndoResult` are `projections.undo`'s, imported on first use."""
    if name in ("UndoError", "UndoResult"):
        from . import undo

        return getattr(undo, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

DEFAULT_MAX_EVENT_BYTES = 1 << 20   # eventstore.open's default, for a store that does not say


class MediaCatalog(CatalogReads):
    """Media titles and descriptions with history, undo/redo and time travel.

    The reads (the state with an open batch laid over it, history, time
    travel, stats) are `CatalogReads`'; this class writes."""

    def __init__(self, store: Store, projection: MediaProjection, *,
                 actor: str | None = None, undo_merge_window: float = 0.0,
                 path_checker: PathChecker | None = None) -> None:
        super().__init__(store, projection, path_checker)
        self._merge = MergeWindow(check_window(undo_merge_window))
        self.actor = default_actor() if actor is None else check_actor(actor)

    @classmethod
    def open(cls, path: str | os.PathLike[str], actor: str | None = None,
             undo_merge_window: float = 0.0, **store_options: Any) -> "MediaCatalog":
        """Open (or create) the store at ``path`` and replay it into a catalog.

        ``store_options`` go to `eventstore.open` (``durability``,
        ``readonly``, ``snapshot_every``, ...); extra ``projections`` given
        there are fed too, and ``path_checker`` (a `PathChecker`) replaces
        the default existence cache used by `cleanup_missing`.
        """
        check_window(undo_merge_window)  # before a store is opened
        if actor is not None:
            check_actor(actor)
        projection = MediaProjection()
        extra = tuple(store_options.pop("projections", ()))
        path_checker = store_options.pop("path_checker", None)
        store = eventstore.open(path, projections=(projection, *extra), **store_options)
        try:
            return cls(store, projection, actor=actor, undo_merge_window=undo_merge_window,
                       path_checker=path_checker)
        except BaseException:
            store.close()
            raise

    # ------------------------------------------------------------- plumbing

    def _meta(self, reason: str | None) -> dict[str, Any]:
        meta: dict[str, Any] = {ACTOR: self.actor}
        if reason is not None:
            meta[REASON] = check_text("reason", reason)
        return meta

    def _no_batch(self, what: str) -> None:
        if self._batch is not None:
            raise RuntimeError(f"{what} is not allowed while a batch is open")

    @property
    def undo_merge_window(self) -> float:
        """Seconds within which edits of one field of one item by this catalog undo as one step."""
        return self._merge.seconds

    @undo_merge_window.setter
    def undo_merge_window(self, value: float) -> None:
        self._merge.seconds = check_window(value)

    def _append(self, items: list[Item]) -> list[Event]:
        """One atomic commit; every event after the first carries ``cont``."""
        return list(self._store.append_many(mark_cont(items)))

    def _append_planned(self, plan: Callable[[], list[Item]]) -> list[Event]:
        """Append what ``plan`` decides, only on the state it planned on (`edits.append_planned`)."""
        return append_planned(self._store, self._proj, self._fresh, plan)

    # ---------------------------------------------------- bulk writers (legacy)

    @contextlib.contextmanager
    def exclusive(self, what: str) -> Iterator[MediaProjection]:
        """Hold the catalog for a bulk writer (``what`` names it in errors).

        Refuses a closed catalog and an open batch; yields the live projection
        (committed state), which stays still while the block runs, except
        for what `append_events` adds. Other threads' calls wait.
        """
        with self._lock:
            self._check_open()
            self._no_batch(what)
            self._fresh()
            yield self._proj
            self._merge.forget()      # nothing after a bulk write merges into an earlier edit

    def append_events(self, items: list[Item]) -> list[Event]:
        """Append prepared events as one atomic commit (``cont`` is set here).

        For bulk writers inside `exclusive`: the store validates every item
        before a byte is written (SPEC §5).
        """
        with self._lock:
            self._check_open()
            return self._append(items)

    def read_log(self, start: int = 1, stop: int | None = None) -> Iterator[Event]:
        """The store's events with ``start <= seq < stop``, in seq order."""
        return self._store.read(start, stop)

    @property
    def max_event_bytes(self) -> int:
        """The largest encoded event the store accepts."""
        return int(getattr(self._store, "max_event_bytes", DEFAULT_MAX_EVENT_BYTES))

    # ----------------------------------------------------------------- writes

    def set_title(self, media: Media, title: str, *, reason: str | None = None) -> Event | None:
        """Set the title; returns the event, or None if unchanged or batched."""
        return self._set("title", media, title, reason)

    def set_description(self, media: Media, text: str, *,
                        reason: str | None = None) -> Event | None:
        """Set the description; returns the event, or None if unchanged or batched."""
        return self._set("description", media, text, reason)

    def _set(self, field: str, media: Media, value: str, reason: str | None) -> Event | None:
        try:
            check_text(field, value)
            key = media_key(media)
            if reason is not None:
                check_text("reason", reason)
        except ValidationError as exc:
            self._refuse(media, exc)
            raise
        with self._lock:
            self._check_open()
            batch = self._batch
            if batch is not None:       # the bulk-import path: keep it lean
                if batch.refused is not None:
                    raise ValidationError(batch.refused)
                pending = batch.changes.get((key, field))
                current = pending.value if pending is not None else committed_value(self._proj, key, field)
                if value != current:
                    batch.put(key, field, value, reason)
                return None
            self._fresh()
            if value == committed_value(self._proj, key, field):
                return None
            meta: dict[str, Any] = {ACTOR: self.actor}
            if reason is not None:
                meta[REASON] = reason
            now = _time.monotonic()
            joins = self._merge.candidate(self._proj, key, field, now)
            if joins is not None:
                meta[MERGE] = True
            event = self._store.append(TYPE_OF_FIELD[field], key, {VALUE: value}, meta=meta)
            self._merge.made(key, field, event, joins, now)
            return event

    def _refuse(self, media: Media, exc: ValidationError) -> None:
        """A set was refused: abort the batch it would have joined, if any.

        Taken under the lock, so a ``batch()`` block of another thread (which
        this set waits for, and is not part of) is never aborted by it.
        """
        with self._lock:
            batch = self._batch
            if batch is None or batch.refused is not None:
                return
            try:
                name = repr(media_key(media))
            except Exception:  # noqa: BLE001 - the key itself was refused: show it as given
                name = repr(media)[:200]
            batch.refused = (f"batch aborted: an item was invalid (key {name}: {exc}); "
                             "nothing of the batch was written")

    def rename(self, old: Media, new: Media, *, reason: str | None = None) -> list[Event]:
        """Move an item's metadata (and its history and undo) to a new path.

        Raises KeyError if ``old`` has no metadata, ValueError if ``new`` has.
        """
        k_old, k_new = media_key(old), media_key(new)
        meta = self._meta(reason)
        with self._lock:
            self._check_open()
            self._no_batch("rename")
            self._fresh()
            if k_old == k_new:
                return []

            def plan() -> list[Item]:
                if k_old not in self._proj:
                    raise KeyError(f"no media item at {k_old}")
                if k_new in self._proj:
                    raise ValueError(f"{k_new} already has metadata; forget it first")
                from .undo import rename_items

                return rename_items(k_old, k_new, dict(meta))
            events = self._append_planned(plan)
            self._merge.forget()
            self.path_checker.invalidate(k_old)
            self.path_checker.invalidate(k_new)
            return events

    def forget(self, media: Media, *, reason: str | None = None) -> Event | None:
        """Drop an item's metadata (an event: its history stays). None if absent."""
        key = media_key(media)
        meta = self._meta(reason)
        with self._lock:
            self._check_open()
            self._no_batch("forget")
            events = self._append_planned(lambda: [(FORGOTTEN, key, {}, dict(meta))] if key in self._proj else [])
            self._merge.forget()
            return events[0] if events else None

    def cleanup_missing(self, *, reason: str = "file missing") -> list[str]:
        """Forget every item whose file no longer exists; returns their keys.

        Existence checks go through the bounded, expiring `path_checker`.
        """
        meta = self._meta(reason)
        with self._lock:
            self._check_open()
            self._no_batch("cleanup_missing")
            self._fresh()
            gone = [k for k in self._proj.keys() if not self.path_checker.exists(k)]
            if gone:
                self._append([(FORGOTTEN, k, {}, dict(meta)) for k in sorted(gone)])
            return sorted(gone)

    # ----------------------------------------------------------------- batches

    @contextlib.contextmanager
    def batch(self) -> Iterator[Batch]:
        """All sets inside commit atomically on exit; an exception discards them.

        The calling thread holds the catalog for the whole block: other
        threads' calls wait, so they never see the batch's pending changes
        nor lose their own edits to its rollback. A nested ``batch()`` (or
        one inside `start_batch_mode`) joins the open batch; an exception
        anywhere discards the whole batch. The yielded `Batch` has
        ``events`` after the commit.
        """
        with self._lock:
            self._check_open()
            owner = self._batch is None
            if owner:
                self._batch = Batch()
            current = self._batch
            try:
                yield current  # type: ignore[misc]
            except BaseException:
                self.cancel_batch()
                raise
            if owner:
                self.commit_batch()

    def start_batch_mode(self) -> None:
        """Old API: collect sets until `commit_batch` (no-op if already batching)."""
        with self._lock:
            self._check_open()
            if self._batch is None:
                self._batch = Batch()

    @property
    def in_batch(self) -> bool:
        return self._batch is not None

    def commit_batch(self) -> list[Event]:
        """Write the open batch as one atomic commit; returns its events.

        If a set was refused while it was open, the batch is aborted: this
        writes nothing, ends batch mode and raises ValidationError naming the
        first refused item.
        """
        with self._lock:
            batch, self._batch = self._batch, None
            if batch is None:
                return []
            if batch.refused is not None:
                raise ValidationError(batch.refused)
            self._check_open()
            self._fresh()
            items = batch_items(batch, self._proj, self._meta)
            batch.events = list(self._store.append_many(items)) if items else []
            return batch.events

    def cancel_batch(self) -> int:
        """Discard the open batch (aborted or not); returns how many pending changes were dropped."""
        with self._lock:
            batch, self._batch = self._batch, None
            return 0 if batch is None else len(batch)

    # -------------------------------------------------------------- undo/redo

    def undo(self, media: Media | None = None, *, reason: str | None = None) -> UndoResult:
        """Revert the item's last change, or the last user action overall.

        Appends compensating events (meta ``undo_of``) and returns them, as
        an `UndoResult` (a list that also says what was reverted), empty
        when there is nothing to undo. A rename is undone by renaming the
        item back and a forget by setting its values back; `UndoError`
        (nothing written) when that would overwrite a live item. Without
        ``media``, a legacy import done last, or a commit of more items than
        the projection keeps undo for, is undone as a whole from the log;
        fields edited since it are kept and listed in the result.
        """
        return self._undo_redo(media, reason, redo=False)

    def redo(self, media: Media | None = None, *, reason: str | None = None) -> UndoResult:
        """Re-apply the item's last undone change, or the last undo overall."""
        return self._undo_redo(media, reason, redo=True)

    def _undo_redo(self, media: Media | None, reason: str | None, *, redo: bool) -> UndoResult:
        from .undo import plan_step

        key = None if media is None else media_key(media)
        meta = self._meta(reason)
        with self._lock:
            self._check_open()
            self._no_batch("redo" if redo else "undo")
            planned: list[Plan] = []

            def plan() -> list[Item]:
                planned[:] = [plan_step(self._store, self._proj, key, meta, redo=redo)]
                return planned[0].items
            events = self._append_planned(plan)
            plan_ = planned[0]
            if not events:
                return plan_.result([])
            self._merge.forget()
            for moved in plan_.moved:
                self.path_checker.invalidate(moved)
            return plan_.result(events)

    # ------------------------------------------------------------------ legacy

    def import_legacy_json(self, path: str | os.PathLike[str], *, overwrite: bool = False,
                           encoding: str | None = None, reason: str | None = None,
                           progress: Callable[[int, int], None] | None = None) -> ImportReport:
        """Import the old ``{media_key: {"title", "description"}}`` file once.

        See `projections.legacy.import_legacy_json`; returns its report.
        """
        from .legacy import import_legacy_json

        return import_legacy_json(self, path, overwrite=overwrite, encoding=encoding,
                                  reason=reason, progress=progress)

    # --------------------------------------------------------------- upkeep

    def flush(self) -> None:
        with self._lock:
            self._store.flush()

    def snapshot(self) -> None:
        with self._lock:
            self._store.snapshot()

    def compact(self) -> Any:
        with self._lock:
            return self._store.compact()

    def verify(self) -> Any:
        with self._lock:
            return self._store.verify()

    def close(self) -> None:
        """Commit a pending batch (as the old API's shutdown did), then close.

        A batch aborted by a refused item is not written; the store is
        closed all the same and then the abort is raised (ValidationError).
        """
        self._close(quiet_abort=False)

    def _close(self, *, quiet_abort: bool) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                batch = self._batch
                if batch is not None and batch.refused is not None and quiet_abort:
                    self._batch = None
                elif batch is not None:
                    self.commit_batch()
            finally:
                self._closed = True
                self._store.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> "MediaCatalog":
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        # With an exception already on its way out, an aborted batch is dropped
        # quietly rather than raised over it (the refusal was raised earlier).
        self._close(quiet_abort=exc_type is not None)

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._proj)} items"
        return f"<MediaCatalog {state} actor={self.actor!r}>"
