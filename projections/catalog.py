"""`MediaCatalog`: the media domain API (SPEC §3) on top of an event store.

This module owns the write side of the media domain: it validates input,
normalises media keys, decides which events to append (none when a value
is unchanged), groups a batch into one atomic commit, appends the
compensating events `projections.undo` plans for undo and redo, and
answers reads from its `MediaProjection` (overlaid with a pending batch).
Time travel is `projections.timetravel`'s. Bulk writers (the legacy
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
import datetime as _dt
from dataclasses import dataclass
import getpass
import os
import threading
import time as _time
from typing import TYPE_CHECKING, Any, Callable, Iterator

import eventstore
from eventstore.errors import ConcurrencyError, StoreClosedError, ValidationError
from eventstore.api import Store
from eventstore.event import Event

from .checks import check_actor, check_text
from .events import ACTOR, CONT, FORGOTTEN, MERGE, REASON, TYPE_OF_FIELD, VALUE, Change, MediaRecord
from .keys import PathChecker, _normalise_absolute, media_key
from .media import MediaProjection, UndoUnit

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

Media = Any   # str | os.PathLike | object with .path / .file_path
Item = tuple[str, str, dict[str, Any], dict[str, Any]]
DEFAULT_MAX_EVENT_BYTES = 1 << 20   # eventstore.open's default, for a store that does not say
_PLAN_ATTEMPTS = 5   # undo/rename/forget re-planned after another writer's commit, at most


def _default_actor() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user database entry, no $USER: still audit something
        return f"uid-{os.getuid()}" if hasattr(os, "getuid") else "unknown"


def _check_window(value: object) -> float:
    """``undo_merge_window``: seconds, a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(f"undo_merge_window must be a number of seconds, not {type(value).__name__}")
    if not 0 <= value < float("inf"):
        raise ValidationError(f"undo_merge_window must be a finite number >= 0, not {value}")
    return float(value)


class Batch:
    """The pending changes of an open batch; ``events`` is set on commit.

    ``refused`` is set when a set was refused as bad input while the batch
    was open (SPEC §5: a bad item aborts the whole batch): it says which
    and why, and the batch then writes nothing and shows nothing.
    """

    def __init__(self) -> None:
        self.changes: dict[tuple[str, str], tuple[str, str | None]] = {}
        self.events: list[Event] = []
        self.refused: str | None = None
        self._keys: set[str] = set()

    def put(self, key: str, field: str, value: str, reason: str | None) -> None:
        self.changes[(key, field)] = (value, reason)
        self._keys.add(key)

    def value(self, key: str, field: str) -> str | None:
        entry = self.changes.get((key, field))
        return None if entry is None else entry[0]

    def keys(self) -> set[str]:
        return self._keys

    def __len__(self) -> int:
        return len(self.changes)


@dataclass(frozen=True)
class _LastEdit:
    """The catalog's last single edit: what a following edit within the merge window joins."""

    key: str
    field: str
    step: int  # the undo unit's step (first seq of the commit that made it)
    order: int  # the seq of the edit
    at: float  # time.monotonic() when it was made


class MediaCatalog:
    """Media titles and descriptions with history, undo/redo and time travel."""

    def __init__(self, store: Store, projection: MediaProjection, *,
                 actor: str | None = None, undo_merge_window: float = 0.0,
                 path_checker: PathChecker | None = None) -> None:
        self.undo_merge_window = _check_window(undo_merge_window)
        self.actor = _default_actor() if actor is None else check_actor(actor)
        self._store = store
        self._proj = projection
        self.path_checker = path_checker if path_checker is not None else PathChecker()
        self._lock = threading.RLock()
        self._batch: Batch | None = None
        self._last_edit: _LastEdit | None = None  # our last single edit, for undo_merge_window
        self._closed = False

    @classmethod
    def open(cls, path: str | os.PathLike[str], actor: str | None = None,
             undo_merge_window: float = 0.0, **store_options: Any) -> "MediaCatalog":
        """Open (or create) the store at ``path`` and replay it into a catalog.

        ``store_options`` go to `eventstore.open` (``durability``,
        ``readonly``, ``snapshot_every``, ...); extra ``projections`` given
        there are fed too, and ``path_checker`` (a `PathChecker`) replaces
        the default existence cache used by `cleanup_missing`.
        """
        _check_window(undo_merge_window)  # before a store is opened
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

    def _meta(self, reason: str | None) -> dict[str, Any]:
        meta: dict[str, Any] = {ACTOR: self.actor}
        if reason is not None:
            meta[REASON] = check_text("reason", reason)
        return meta

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError("the catalog is closed")

    def _no_batch(self, what: str) -> None:
        if self._batch is not None:
            raise RuntimeError(f"{what} is not allowed while a batch is open")

    def _append(self, items: list[Item]) -> list[Event]:
        """One atomic commit; every event after the first carries ``cont``."""
        for item in items[1:]:
            item[3][CONT] = True
        return list(self._store.append_many(items))

    def _append_planned(self, plan: Callable[[], list[Item]]) -> list[Event]:
        """Append what ``plan`` decides from the current state, and only on that state.

        Another writer may commit between our look at the projection and our
        append. Each key the commit touches must still be at the version we
        planned on (``expected_version``); if not, we take in the new commits
        and plan again, a few times, before the `ConcurrencyError` goes to the caller.
        """
        for attempt in range(_PLAN_ATTEMPTS):
            self._fresh()
            items = plan()
            if not items:
                return []
            for item in items[1:]:
                item[3][CONT] = True
            seen: set[str] = set()
            try:
                with self._store.transaction() as tx:
                    for type_, key, data, meta in items:
                        expected = None if key in seen else self._proj.key_version(key)
                        seen.add(key)
                        tx.append(type_, key, data, meta=meta, expected_version=expected)
            except ConcurrencyError:
                if attempt == _PLAN_ATTEMPTS - 1:
                    raise
                continue
            return list(tx.events)
        raise AssertionError("unreachable")  # pragma: no cover

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
            self._last_edit = None      # nothing after a bulk write merges into an earlier edit

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
                current = pending[0] if pending is not None else self._committed(key, field)
                if value != current:
                    batch.put(key, field, value, reason)
                return None
            self._fresh()
            if value == self._committed(key, field):
                return None
            meta: dict[str, Any] = {ACTOR: self.actor}
            if reason is not None:
                meta[REASON] = reason
            now = _time.monotonic()
            merge_unit = self._merge_candidate(key, field, now)
            if merge_unit is not None:
                meta[MERGE] = True
            event = self._store.append(TYPE_OF_FIELD[field], key, {VALUE: value}, meta=meta)
            if merge_unit is not None:
                self._last_edit = _LastEdit(key, field, merge_unit.step, event.seq, now)
            else:
                self._last_edit = _LastEdit(key, field, event.seq, event.seq, now)
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

    def _committed(self, key: str, field: str) -> str:
        return self._proj.title(key) if field == "title" else self._proj.description(key)

    def _merge_candidate(self, key: str, field: str, now: float) -> UndoUnit | None:
        """The undo unit this edit may join, per ``undo_merge_window``."""
        last = self._last_edit
        if (self.undo_merge_window <= 0 or last is None or last.key != key
                or last.field != field or now - last.at >= self.undo_merge_window):
            return None
        top = self._proj.undo_top(key)
        if top is None or top.step != last.step or top.order != last.order or list(top.changes) != [field]:
            return None
        return top

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
            self._last_edit = None
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
            self._last_edit = None
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

    def pending_changes(self) -> int:
        """Changes the open batch will write (0 once it was aborted)."""
        batch = self._shown_batch()
        return 0 if batch is None else len(batch)

    def _shown_batch(self) -> Batch | None:
        """The open batch whose pending values reads overlay; not an aborted one."""
        batch = self._batch
        return None if batch is None or batch.refused is not None else batch

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
            items: list[Item] = []
            committed = self._committed
            cont_meta: dict[str | None, dict[str, Any]] = {}   # shared by the cont events
            for (key, field), (value, reason) in batch.changes.items():
                if value == committed(key, field):
                    continue
                if items:
                    meta = cont_meta.get(reason)
                    if meta is None:
                        meta = cont_meta[reason] = self._meta(reason)
                        meta[CONT] = True
                else:
                    meta = self._meta(reason)
                items.append((TYPE_OF_FIELD[field], key, {VALUE: value}, meta))
            batch.events = list(self._store.append_many(items)) if items else []
            return batch.events

    def cancel_batch(self) -> int:
        """Discard the open batch (aborted or not); returns how many pending changes were dropped."""
        with self._lock:
            batch, self._batch = self._batch, None
            return 0 if batch is None else len(batch)

    # ------------------------------------------------------------------- reads

    def get(self, media: Media) -> MediaRecord | None:
        key = media_key(media)
        with self._lock:
            self._fresh()
            record = self._proj.get(key)
            batch = self._shown_batch()
            if batch is None or key not in batch.keys():
                return record
            title = batch.value(key, "title")
            desc = batch.value(key, "description")
            if record is None:
                if not title and not desc:
                    return None
                now = _time.time()
                return MediaRecord(title or "", desc or "", self._proj.key_version(key), now, now)
            title = record.title if title is None else title
            desc = record.description if desc is None else desc
            if not title and not desc:
                return None
            return record._replace(title=title, description=desc)

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
            self._fresh()
            keys = set(self._proj.keys())
            batch = self._shown_batch()
            if batch is not None:
                for key in batch.keys():
                    if self.get(key) is None:
                        keys.discard(key)
                    else:
                        keys.add(key)
            return sorted(keys)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        with self._lock:
            self._fresh()
            if self._shown_batch() is None:
                return len(self._proj)
            return len(self.keys())

    def items(self) -> list[tuple[str, MediaRecord]]:
        """(key, record) of every live item, sorted by key."""
        with self._lock:
            self._fresh()
            if self._shown_batch() is None:
                return self._proj.items()
            return [(k, self.get(k)) for k in self.keys()]  # type: ignore[misc]

    def history(self, media: Media) -> list[Change]:
        """Every committed change of the item, oldest first (renames followed)."""
        key = media_key(media)
        with self._lock:
            self._check_open()
            from .history import item_history

            return item_history(self._store, key)

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
            self._last_edit = None
            for moved in plan_.moved:
                self.path_checker.invalidate(moved)
            return plan_.result(events)

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
