"""`Store`: the public face of eventstore, wiring log, recovery and projections.

It owns the directory (marker, lock, layout), the commit path (validate and
encode outside the lock, assign seqs and chain digests under it, then group
commit: one leader writes and syncs every waiting commit's frame at once),
the publication of committed events to projections and subscribers in seq
order, snapshots, and the read side (`read`, `follow`). Bytes on disk are
`frame`/`segment`'s business; what damage means is `recovery`'s.
"""
from __future__ import annotations

import bisect
import collections
import gc
from operator import attrgetter
import logging
import os
import threading
import time
import zlib
from contextlib import contextmanager
from itertools import chain, count, repeat
from typing import Any, Callable, Iterable, Iterator, Sequence

from . import snapshot as snap_mod
from ._fs import DEFAULT_FS, FileSystem
from .codec import decode_commit, decode_rows, encode_commit, pack, unpack
from .errors import (
    ConcurrencyError, CorruptionError, FormatVersionError, LockedError, NotAStoreError,
    ReadOnlyError, StoreClosedError, StoreFailedError, ValidationError,
)
from .event import Event, plain_columns, plain_item, validate_key, validate_mapping, validate_type
from .frame import Damage, Frame, FrameScanner, encode_frame, is_gap
from .layout import (
    FORMAT_VERSION, LOCK_NAME, MARKER, MARKER_MAGIC, MARKER_NAME, MARKER_SIZE,
    MAX_SEGMENT_BYTES, QUARANTINE_DIR, SEGMENT_HEADER_SIZE, SEGMENTS_DIR, SNAPSHOTS_DIR, TMP_SUFFIX,
    ZERO_DIGEST,
)
from .log import PendingFrame, SegmentLog
from .projection import Projection
from .recovery import (
    RecoveryEntry, RecoveryReport, SnapshotMismatch, Walker, salvage_log,
)
from .report import seqs_in
from .segment import SegmentStream, create_segment, list_segments, scan, segment_path
from .verify import VerifyReport, verify_store

__all__ = ["Store", "open"]

log = logging.getLogger("eventstore")

DURABILITY = ("fsync", "flush", "none")
RECOVERY = ("strict", "salvage")
_ALLOWED_ENTRIES = {MARKER_NAME, LOCK_NAME, SEGMENTS_DIR, SNAPSHOTS_DIR, QUARANTINE_DIR}
_HELD_LOCKS: set[str] = set()  # store roots locked by this process ([F-24])
_HELD_GUARD = threading.Lock()
_EMPTY: dict = {}  # never handed out: events get copies
_copy = dict.copy
_event_key = attrgetter("key")  # of an Event
_allocate_lock = threading.Lock
_chain_keys = chain.from_iterable
_COUNT_AT = 1 << 20  # uncounted keys held at most (8 MiB of references)
# A queued commit: its frame, its events, the lock its committer parks on (None for
# the leader's own) and the committer's thread id (to hand leadership to).
_Queued = tuple[PendingFrame, list[Event], Any, int]
try:
    from collections import _count_elements  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - other Pythons
    def _count_elements(mapping: dict, iterable: Iterable[str]) -> None:
        for k in iterable:
            mapping[k] = mapping.get(k, 0) + 1


def _split_item(item: Any) -> tuple[Any, Any, Any, Any]:
    """``(type, key, data, meta)`` of an `append_many` item (meta None when absent).

    An item is any iterable of 3 or 4 values (a tuple or list, usually), as the
    column-wise check in `plain_columns` reads it.
    """
    if not isinstance(item, (str, bytes, dict)):
        try:
            values = tuple(item)
        except TypeError:
            values = ()
        if len(values) == 3:
            return (*values, None)
        if len(values) == 4:
            return values
    raise ValidationError("append_many items are (type, key, data) or (type, key, data, meta)")


def open(path: str | os.PathLike[str], projections: Sequence[Projection] = (), *,
         durability: str = "fsync", recovery: str = "strict", readonly: bool = False,
         segment_bytes: int = 64 << 20, snapshot_every: int = 100_000,
         max_event_bytes: int = 1 << 20, create: bool = True,
         fs: FileSystem | None = None) -> "Store":
    """Open (creating if needed) the store in directory ``path``."""
    return Store(path, projections, durability=durability, recovery=recovery, readonly=readonly,
                 segment_bytes=segment_bytes, snapshot_every=snapshot_every,
                 max_event_bytes=max_event_bytes, create=create, fs=fs)


class _Transaction:
    """Collects appends; the store commits them as one frame on clean exit."""

    def __init__(self, store: "Store") -> None:
        self._store = store
        self._items: list[tuple[str, str, dict, dict]] = []
        self._expected: list[int | None] = []
        self.events: list[Event] = []
        self.done = False

    def append(self, type: str, key: str, data: dict | None = None, *,
               meta: dict | None = None, expected_version: int | None = None) -> None:
        if self.done:
            raise ValidationError("this transaction has ended; open a new one")
        self._items.append(self._store._check_item(type, key, data, meta))
        self._expected.append(self._store._check_expected(expected_version))

    def __len__(self) -> int:
        return len(self._items)


class Store:
    def __init__(self, path: str | os.PathLike[str], projections: Sequence[Projection], *,
                 durability: str, recovery: str, readonly: bool, segment_bytes: int,
                 snapshot_every: int, max_event_bytes: int, create: bool,
                 fs: FileSystem | None) -> None:
        if durability not in DURABILITY:
            raise ValidationError(f"durability must be one of {DURABILITY}, not {durability!r}")
        if recovery not in RECOVERY:
            raise ValidationError(f"recovery must be one of {RECOVERY}, not {recovery!r}")
        for name, value, low in (("segment_bytes", segment_bytes, 4096),
                                 ("snapshot_every", snapshot_every, 0),
                                 ("max_event_bytes", max_event_bytes, 64)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValidationError(f"{name} must be an int >= {low}")
        if segment_bytes > MAX_SEGMENT_BYTES // 2:
            raise ValidationError(f"segment_bytes must be at most {MAX_SEGMENT_BYTES // 2}")
        for p in projections:
            if not isinstance(p, Projection):
                raise ValidationError(f"{p!r} does not implement the Projection protocol")
        self.root = os.path.abspath(os.fspath(path))
        self.seg_dir = os.path.join(self.root, SEGMENTS_DIR)
        self.snap_dir = os.path.join(self.root, SNAPSHOTS_DIR)
        self.durability = durability
        self.recovery = recovery
        self.readonly = readonly
        self.segment_bytes = segment_bytes
        self.snapshot_every = snapshot_every
        self.max_event_bytes = max_event_bytes
        self._fs = fs or DEFAULT_FS
        self._projections = tuple(projections)
        self._known_types: set[str] = set()  # event types already validated
        self.recovery_report = RecoveryReport()

        lock = self._mutex = threading.Lock()  # `with self._mutex` is `with self._cond`, in C
        self._cond = threading.Condition(lock)
        self._gather = threading.Condition(lock)  # a leader waiting for stragglers
        self._gathering = 0  # commits the gathering leader waits for (0: nobody gathers)
        self._expect = 1  # commits the next group commit is expected to take (one per thread)
        self._sync_seconds = 0.0  # duration of the last write+sync
        self._synced_at = 0.0  # when it ended (perf_counter)
        self._widest = 1  # the widest batch expected since a burst began narrower
        self._burst = False  # the batch now gathering started after a pause
        self._queue: list[_Queued] = []  # commits encoded, not yet taken by a leader
        self._leader = 0  # thread id of the group-commit leader, 0 when none
        self._failed: BaseException | None = None
        self._closed = False
        self._subscribers: list[Callable[[Event], None]] = []
        self._wake_chain: collections.deque[Any] = collections.deque()  # see _wake_next
        self._to_deliver: collections.deque[Event] = collections.deque()  # leader thread only
        self._delivering = False
        self._draining = 0  # threads in _exclusive waiting for in-flight commits to finish
        self._versions: dict[str, int] = {}  # per key: events ever appended (see _counted)
        self._uncounted: list[Sequence[str]] = []  # keys of commits not yet in _versions
        self._uncounted_n = 0
        self._next_seq = 1  # seq the next commit gets
        self._published = 0  # last seq applied to projections and acknowledged
        self._digest = ZERO_DIGEST
        self._last_ts = 0
        self._lost = 0  # events lost in salvage gaps (for stats)
        self._snapshot_seq = 0
        self._since_snapshot = 0
        self._snap_thread: threading.Thread | None = None
        self._snap_write = threading.Lock()  # one snapshot file written at a time
        self._lock_fd: int | None = None
        self._log: SegmentLog | None = None
        self._tail: tuple[int, int] = (1, SEGMENT_HEADER_SIZE)  # readonly refresh cursor
        self._refresh_lock = threading.RLock()
        self._refreshing = False  # this store is applying new commits (readonly)

        self._prepare_directory(create)
        try:
            if not readonly:
                self._acquire_lock()
            gc_enabled = gc.isenabled()
            gc.disable()  # replay allocates millions of long-lived objects: no cycles to find
            try:
                self._recover()
            finally:
                if gc_enabled:
                    gc.enable()
        except BaseException:
            self._release_lock()
            raise

    # ------------------------------------------------------------------ opening
    def _prepare_directory(self, create: bool) -> None:
        fs, root = self._fs, self.root
        marker = os.path.join(root, MARKER_NAME)
        if os.path.exists(root) and not os.path.isdir(root):
            raise NotAStoreError(f"{root} exists and is not a directory")
        if os.path.isdir(root):
            if fs.exists(marker):
                self._check_marker(marker)
                return
            if not self._unfinished_creation(fs.listdir(root)):
                raise NotAStoreError(f"{root} is not empty and holds no metalog store ({MARKER_NAME} missing)")
        if not create or self.readonly:
            raise NotAStoreError(f"no metalog store at {root}")
        fs.makedirs(root)
        fs.makedirs(self.seg_dir)
        fs.makedirs(self.snap_dir)
        body = MARKER.pack(MARKER_MAGIC, FORMAT_VERSION, 0)
        fs.create_atomic(marker, body + zlib.crc32(body).to_bytes(4, "little"))
        fs.fsync_dir(os.path.dirname(root) or ".")

    def _unfinished_creation(self, entries: list[str]) -> bool:
        """True for an empty directory or what a crash while creating a store leaves behind
        (our empty subdirectories, an unfinished marker), which open may complete."""
        for name in entries:
            if name == MARKER_NAME + TMP_SUFFIX:
                continue
            sub = os.path.join(self.root, name)
            if name in (SEGMENTS_DIR, SNAPSHOTS_DIR) and os.path.isdir(sub) and not self._fs.listdir(sub):
                continue
            return False
        return True

    def _check_marker(self, marker: str) -> None:
        data = self._fs.read_file(marker, MARKER_SIZE)
        if len(data) != MARKER_SIZE or data[:8] != MARKER_MAGIC:
            raise CorruptionError(marker, 0, "not a metalog store marker")
        if zlib.crc32(data[:-4]) != int.from_bytes(data[-4:], "little"):
            raise CorruptionError(marker, 0, "store marker checksum mismatch")
        _, version, _ = MARKER.unpack(data[:-4])
        if version != FORMAT_VERSION:
            raise FormatVersionError(marker, version, FORMAT_VERSION)
        # A marker is written after the directories ([F-01]), so a store without its
        # segments/ lost its log: refuse rather than start a new one at seq 1.
        if not os.path.isdir(self.seg_dir):
            raise CorruptionError(self.seg_dir, None, "the store's segments directory is missing")
        if not self.readonly:
            self._fs.makedirs(self.snap_dir)

    def _acquire_lock(self) -> None:
        fs = self._fs
        path = os.path.join(self.root, LOCK_NAME)
        with _HELD_GUARD:
            if self.root in _HELD_LOCKS:
                raise LockedError(self.root, os.getpid())
            fd = fs.open_rw(path, create=True)
            if not fs.try_lock(fd):
                try:
                    pid_text = fs.read_file(path, 64).strip()
                    pid = int(pid_text) if pid_text.isdigit() else None
                finally:
                    fs.close(fd)
                raise LockedError(self.root, pid)
            _HELD_LOCKS.add(self.root)
        self._lock_fd = fd
        fs.truncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        fs.write(fd, str(os.getpid()).encode())

    def _release_lock(self) -> None:
        if self._lock_fd is None:
            return
        try:
            self._fs.unlock(self._lock_fd)
            self._fs.close(self._lock_fd)
        finally:
            self._lock_fd = None
            with _HELD_GUARD:
                _HELD_LOCKS.discard(self.root)

    def _quarantine_tmp_files(self) -> None:
        """[F-02]: a .tmp file is never read; a writer moves leftovers aside."""
        for d in (self.root, self.seg_dir, self.snap_dir):
            for name in self._fs.listdir(d):
                if name.endswith(TMP_SUFFIX):
                    qdir = os.path.join(self.root, QUARANTINE_DIR)
                    self._fs.makedirs(qdir)
                    dest = os.path.join(qdir, f"{time.strftime('%Y%m%dT%H%M%S')}-{name}")
                    self._fs.rename(os.path.join(d, name), dest)
                    self.recovery_report.add(RecoveryEntry("quarantined", os.path.join(d, name), None,
                                                           "unfinished temporary file", ))

    def _recover(self) -> None:
        fs = self._fs
        writer = not self.readonly
        if writer:
            self._quarantine_tmp_files()
            from .compaction import finish_interrupted
            finish_interrupted(fs, self.seg_dir, self.recovery_report)
        refs = list_segments(fs, self.seg_dir)
        if not refs and writer:
            create_segment(fs, self.seg_dir, 1, ZERO_DIGEST)
            refs = list_segments(fs, self.seg_dir)
        if writer and self.recovery == "salvage" and salvage_log(fs, self.root, refs, self.recovery_report):
            refs = list_segments(fs, self.seg_dir)  # damaged segments were rewritten with gap frames
        fresh = [(p, pack(p.snapshot())) for p in self._projections]  # a copy, to undo a bad snapshot
        walker = Walker(fs, self.root, policy=self.recovery, writer=writer, report=self.recovery_report)

        def apply_to(targets: Sequence[Projection]) -> Callable[[Frame, list[Event]], None]:
            count_versions = targets is self._projections

            def on_commit(frame: Frame, events: list[Event]) -> None:
                for p in targets:
                    apply = p.apply
                    for e in events:
                        apply(e)
                if count_versions:
                    _count_elements(self._versions, map(_event_key, events))
            return on_commit

        end = None
        claimed_past = (0, "")  # the highest seq a mismatched snapshot claimed, and its file
        firsts = [r.first_seq for r in refs]
        for seq, path in self._snapshot_candidates():
            try:
                snap = snap_mod.read_snapshot(fs, path)
                if snap.seq != seq:
                    raise CorruptionError(path, 8, "snapshot seq does not match its file name")
            except FormatVersionError:
                raise
            except CorruptionError as exc:
                self.recovery_report.add(RecoveryEntry("skipped-snapshot", path, exc.offset, exc.reason))
                continue
            if snap.seg_first not in firsts:
                reason = f"snapshot at seq {snap.seq} points into segment {snap.seg_first}, which is not in the log"
                if self.recovery == "strict" and (not firsts or snap.seg_first > firsts[-1]):
                    raise CorruptionError(path, 24, f"{reason}: it claims seqs past the log")
                self.recovery_report.add(RecoveryEntry("skipped-snapshot", path, 24, reason))
                continue
            missing = []
            for p in self._projections:
                ok, state = snap.state(p.name, p.version)
                if ok:
                    p.restore(state)
                else:
                    missing.append(p)
            self._versions = dict(snap.versions)
            try:
                if missing:  # [F-22]: rebuild those by replay up to the snapshot
                    Walker(fs, self.root, policy=self.recovery, writer=False, report=self.recovery_report).walk(
                        refs, 0, SEGMENT_HEADER_SIZE, 1, ZERO_DIGEST, 0, apply_to(missing),
                        stop_seq=snap.seq)
                end = walker.walk(refs, firsts.index(snap.seg_first), snap.offset, snap.seq + 1,
                                  snap.digest, snap.ts, apply_to(self._projections), check_snapshot=True)
            except SnapshotMismatch as exc:
                if self.recovery == "strict" and "past the end" in str(exc):
                    raise CorruptionError(path, 32, f"snapshot claims seqs past the log: {exc}") from None
                self.recovery_report.add(RecoveryEntry("skipped-snapshot", path, None,
                                                       f"does not match the log: {exc}"))
                if snap.seq > claimed_past[0]:
                    claimed_past = (snap.seq, path)
                for p, state in fresh:
                    p.restore(unpack(state, path, 0, "initial projection state"))
                self._versions = {}
                continue
            self._snapshot_seq = snap.seq
            break
        if end is None:
            end = walker.walk(refs, 0, SEGMENT_HEADER_SIZE, 1, ZERO_DIGEST, 0,
                              apply_to(self._projections)) if refs else None
        next_seq = end.next_seq if end else 1
        if self.recovery == "strict" and claimed_past[0] >= next_seq:
            raise CorruptionError(claimed_past[1], 8, f"snapshot claims seq {claimed_past[0]}, past the end "
                                                      f"of the log (last seq {next_seq - 1})")
        self._next_seq = next_seq
        self._published = next_seq - 1
        self._digest = end.digest if end else ZERO_DIGEST
        self._last_ts = end.last_ts if end else 0
        self._lost = seqs_in(self.recovery_report.lost_ranges)
        if self._lost and self.recovery == "salvage":
            log.warning("salvage recovery of %s lost %d event%s", self.root, self._lost,
                        "" if self._lost == 1 else "s")
        if not writer:
            if end and end.last_ref:
                self._tail = (end.last_ref.first_seq, end.end_offset)
            return
        if walker.damaged:
            walker.rewrite_damaged(refs)
            refs = list_segments(fs, self.seg_dir)
        last = refs[-1]
        if last.compressed:
            create_segment(fs, self.seg_dir, next_seq, self._digest)
            refs = list_segments(fs, self.seg_dir)
            last = refs[-1]
        self._log = SegmentLog(fs, self.seg_dir, last.first_seq, last.path, fs.size(last.path),
                               self._digest, self.segment_bytes)
        # A writer killed before its sync may have left accepted frames only in the page
        # cache. Make them durable before anyone reads or builds on them, so a power cut
        # after this open cannot take back what it showed ([F-13]).
        self._log.sync_everything()

    def _snapshot_candidates(self) -> list[tuple[int, str]]:
        try:
            return snap_mod.list_snapshots(self._fs, self.snap_dir)
        except FileNotFoundError:
            return []

    # ------------------------------------------------------------------ writing
    def _check_item(self, type_: Any, key: Any, data: Any, meta: Any) -> tuple[str, str, dict, dict]:
        if type_.__class__ is not str or type_ not in self._known_types:
            validate_type(type_)
            if len(self._known_types) < 1024:
                self._known_types.add(type_)
        validate_key(key)
        return type_, key, validate_mapping("data", data), validate_mapping("meta", meta)

    def _learn_types(self, items: list) -> bool:
        """Validate a batch's event types not seen before; True if any was learned.

        So the first batch of a new type (an import into a new store, say) can
        take the column-wise path too. Anything odd is left to the item-by-item
        check, which raises precisely.
        """
        try:
            new = {item[0] for item in items} - self._known_types
        except (TypeError, IndexError, KeyError):
            return False
        learned = False
        for type_ in new:
            if type_.__class__ is not str or len(self._known_types) >= 1024:
                return False
            try:
                validate_type(type_)
            except ValidationError:
                return False
            self._known_types.add(type_)
            learned = True
        return learned

    @staticmethod
    def _check_expected(expected_version: Any) -> int | None:
        if expected_version is not None and (not isinstance(expected_version, int)
                                             or isinstance(expected_version, bool) or expected_version < 0):
            raise ValidationError("expected_version must be a non-negative int")
        return expected_version

    def _writable(self) -> None:
        if self._closed:
            raise StoreClosedError(f"store {self.root} is closed")
        if self.readonly:
            raise ReadOnlyError(f"store {self.root} was opened readonly")
        if self._failed is not None:
            raise StoreFailedError(f"store {self.root} failed earlier ({self._failed}); reopen it") from self._failed

    def append(self, type: str, key: str, data: dict | None = None, *,
               meta: dict | None = None, expected_version: int | None = None) -> Event:
        """Append one event as one commit; returns it once durable per ``durability``."""
        if data is None:
            data = _EMPTY
        if meta is None:
            meta = _EMPTY
        plain = plain_item(type, key, data, meta, self._known_types)
        if not plain:
            type, key, data, meta = self._check_item(type, key, data, meta)
        expected = None if expected_version is None else [self._check_expected(expected_version)]
        return self._commit((type,), (key,), (data,), (meta,), expected, plain=plain)[0]

    def append_many(self, items: Iterable[Sequence[Any]]) -> list[Event]:
        """Append ``(type, key, data)`` or ``(type, key, data, meta)`` items as one atomic commit."""
        if items.__class__ is not list:
            items = list(items)
        if not items:
            return []
        columns = plain_columns(items, self._known_types)
        if columns is None and self._learn_types(items):  # a first batch of new types
            columns = plain_columns(items, self._known_types)
        if columns is not None:
            return self._commit(*columns, plain=True)
        # check item by item, raising precisely
        return self._commit(*zip(*[self._check_item(*_split_item(item)) for item in items]))

    @contextmanager
    def transaction(self) -> Iterator[_Transaction]:
        """Appends inside commit atomically on clean exit; nothing is written on exception."""
        self._writable()
        tx = _Transaction(self)
        try:
            yield tx
        finally:
            tx.done = True
        if tx._items:
            expected = tx._expected if any(e is not None for e in tx._expected) else None
            tx.events = self._commit(*zip(*tx._items), expected)

    def _commit(self, types: Sequence[str], keys: Sequence[str], datas: Sequence[dict],
                metas: Sequence[dict] | None, expected: list[int | None] | None = None, *,
                plain: bool = False) -> list[Event]:
        """Commit validated events, given column by column (``metas`` None: all empty).

        ``plain``: the plain check passed them (exact built-in types throughout).
        """
        self._writable()
        n = len(keys)
        if n == 1:  # one event: skip the column machinery (a durable append's CPU is latency)
            row = (types[0], keys[0], datas[0], _EMPTY if metas is None else metas[0])
            payload = encode_commit([row], self.max_event_bytes, plain=plain)
        else:
            payload = encode_commit(list(zip(types, keys, datas, repeat(_EMPTY, n) if metas is None else metas)),
                                    self.max_event_bytes, plain=plain)
        # Nested values (or subclasses): the events get the values as read() will return
        # them, decoded from the payload, so they share no list or dict with the caller.
        # Plain values are scalars in exact dicts, where a shallow copy does the same.
        rows = None if plain else decode_rows(payload)
        with self._mutex:
            # While close/flush/snapshot wait for the log to go quiet, hold new commits back
            # so a steady stream of appenders cannot starve them (a subscriber appending on
            # the leader's thread must go through, or it would wait for itself).
            while self._draining and self._leader != threading.get_ident():
                self._cond.wait()
            self._writable()
            if expected is not None:
                versions = self._counted()
                pending: dict[str, int] = {}
                for key, want in zip(keys, expected):
                    current = pending.get(key, versions.get(key, 0))
                    if want is not None and want != current:
                        raise ConcurrencyError(key, want, current)
                    pending[key] = current + 1
            seq = self._next_seq
            ts = time.time_ns()
            if ts < self._last_ts:
                ts = self._last_ts
            frame, digest = encode_frame(seq, n, ts, payload, self._digest)
            if expected is not None:
                versions.update(pending)
            else:  # counted when first needed (_counted)
                self._uncounted.append(keys)
                self._uncounted_n += n
                if self._uncounted_n >= _COUNT_AT:
                    self._counted()
            self._next_seq = seq + n
            self._digest = digest
            self._last_ts = ts
            # Copies: a caller changing its dicts later must not change the event that
            # projections and subscribers see.
            if rows is not None:
                events = [Event(s, ts, *r) for s, r in zip(count(seq), rows)]
            elif n == 1:
                events = [Event(seq, ts, row[0], row[1], _copy(row[2]), _copy(row[3]))]
            elif metas is None:  # Event's default meta: a new empty dict each
                events = list(map(Event, count(seq), repeat(ts, n), types, keys, map(_copy, datas)))
            else:
                events = list(map(Event, count(seq), repeat(ts, n), types, keys, map(_copy, datas),
                                  map(_copy, metas)))
            me = threading.get_ident()
            leader = self._leader
            queued = len(self._queue)
            if leader == me:  # a subscriber of ours appending: lead it inline
                waiter: Any = None
            elif leader or (self.durability == "fsync" and self._batch_incomplete(queued)):
                # Park on our own lock until a leader wakes us: one is at work, or the
                # batch we expect is not complete yet (whoever completes it leads, so
                # no thread is woken just to start the sync).
                waiter = _allocate_lock()
                waiter.acquire()
            else:
                waiter = None
            self._queue.append((PendingFrame(frame, seq, seq + n - 1, digest), events, waiter, me))
            if self._gathering and queued + 1 >= self._gathering:
                self._gather.notify()
            if waiter is None:
                self._lead(seq + n - 1, nested=leader == me)
                return events
        # The first commit of a batch that no leader is gathering waits for it to
        # complete only so long, then leads what is queued.
        self._park(waiter, seq + n - 1, gathers=not leader and not queued)
        return events

    def _batch_incomplete(self, queued: int) -> bool:
        """With no leader, in fsync mode: should a new commit wait for more of its batch?"""
        if not queued and time.perf_counter() - self._synced_at > 4 * self._sync_seconds:
            # The first commit after a pause: expect the burst to be as wide as the
            # widest one lately (the last ended with a short batch, or a lone straggler).
            self._expect = self._widest
            self._burst = True
        return queued + 1 < self._expect

    # Group commit. Every queued commit either leads or parks on a lock of its own.
    # The leader takes the whole queue, writes it with one write (and one sync)
    # outside `_cond`, applies and publishes it, starts the chain that wakes the
    # committers it published (one by one: _wake_next), and hands leadership to
    # the oldest commit still queued. A woken committer never contends for `_cond`
    # just to learn that it is done, and no committer is woken for a batch it is
    # not in.

    def _park(self, waiter: Any, ticket: int, *, gathers: bool = False) -> None:
        """Wait, outside `_cond`, until ``ticket`` is published or we are made leader.

        ``gathers``: ours is the first commit of a batch with no leader. If the
        batch has not been completed (and led) within two sync times, we lead it.

        A Ctrl-C while parked is held until our lock is released: the wake chain
        and the hand-over of leadership both count on each parked committer
        waking up and doing its part, and our commit may be on disk already.
        """
        interrupted: BaseException | None = None
        woken = False
        if gathers:
            try:
                woken = waiter.acquire(True, 2 * self._sync_seconds)
            except BaseException as exc:  # Ctrl-C: stop gathering, lead or wait as below
                interrupted = exc
                woken = self._lock_due(ticket)
            if not woken:
                interrupted = self._take_mutex(interrupted)
                try:
                    # No leader and our commit unpublished: it is still queued, and
                    # nobody else will start the sync. Otherwise a leader took it (or
                    # will, or failed it) and releases our lock: wait for that below.
                    lead = not self._leader and not self._lock_due(ticket)
                    if lead:
                        if interrupted is None:
                            self._waited_in_vain()
                        self._lead(ticket, nested=False, gather=False)
                finally:
                    self._mutex.release()
                if lead:
                    if interrupted is not None:
                        raise interrupted
                    return
        try:
            while not woken:
                try:
                    woken = waiter.acquire()
                except BaseException as exc:
                    interrupted = exc
                    # A signal just after the acquire succeeded raises here too, and the
                    # lock is ours again: waiting on it would be forever. It was released
                    # only if its release was due; if it is due but not done yet, waking
                    # now is safe (every committer still pops the wake chain once).
                    woken = self._lock_due(ticket)
        finally:
            self._wake_next()
        try:
            if self._published >= ticket:  # set before our lock was released
                return
            interrupted = self._take_mutex(interrupted)
            try:
                if self._leader == threading.get_ident():
                    self._lead(ticket, nested=False)
                    return
                self._raise_unwritten()
            finally:
                self._mutex.release()
        finally:
            if interrupted is not None:
                raise interrupted

    def _waited_in_vain(self) -> None:
        """A batch did not fill in two sync times: fewer threads commit now (holding `_cond`)."""
        self._expect = len(self._queue)
        if self._burst:  # ... even right after a pause
            self._widest = self._expect

    def _lock_due(self, ticket: int) -> bool:
        """Whether a parked commit's lock is (or is about to be) released: published,
        made leader, or dropped by a failed or closed store."""
        return (self._published >= ticket or self._leader == threading.get_ident()
                or self._failed is not None or self._closed)

    def _take_mutex(self, interrupted: BaseException | None) -> BaseException | None:
        """Acquire `_mutex` where leaving early would strand other committers.

        A Ctrl-C that interrupts the wait is held and returned, to be raised once
        our part is done. (One that lands just after the acquire succeeded
        cannot be told apart; Python gives no way to close that window.)
        """
        while True:
            try:
                self._mutex.acquire()
                return interrupted
            except BaseException as exc:
                interrupted = exc

    def _wake_next(self) -> None:
        """Release the next committer the leader is done with, if any.

        Woken all at once, the committers of a batch would wake into a fight for
        the GIL: each would sleep again until the one holding it blocks, and a
        thread switch costs ~20 us on this kind of machine. Woken one by one,
        each wakes the next on its way out, and the next finds the GIL free.
        """
        chain = self._wake_chain
        if chain:
            try:
                waiter = chain.popleft()
            except IndexError:  # another woken committer took the last one meanwhile
                return
            waiter.release()

    def _raise_unwritten(self) -> None:
        if self._failed is not None:
            raise StoreFailedError(f"write to {self.root} failed; nothing after seq "
                                   f"{self._published} is acknowledged") from self._failed
        if self._closed:  # queued while close() held the log: never written
            raise StoreClosedError(f"store {self.root} was closed before this commit was written")
        raise AssertionError("a parked commit was woken unpublished")  # pragma: no cover

    def _lead(self, ticket: int, *, nested: bool, gather: bool = True) -> None:
        """Lead group commits (holding `_cond`) until ``ticket`` is published.

        ``nested``: a subscriber of ours appended on our thread while we were
        delivering; it leads its commit inline and leaves the hand-over to us.
        ``gather``: false when we already waited for the batch to complete.
        """
        self._leader = me = threading.get_ident()
        interrupted: BaseException | None = None
        try:
            while self._published < ticket:
                if self._failed is not None or self._closed:
                    self._raise_unwritten()
                if gather and not nested and self.durability == "fsync" and not self._draining \
                        and len(self._queue) < self._expect:
                    # The threads of the previous batch are about to append again;
                    # waiting for them saves whole syncs. They arrive one by one (the
                    # wake chain), which took longer than one sync here (median 224 vs
                    # 191 us with 8 threads), so wait up to two.
                    self._gathering = self._expect
                    try:
                        if not self._gather.wait(2 * self._sync_seconds):
                            self._waited_in_vain()
                    except BaseException as exc:  # Ctrl-C: the queue still needs its leader
                        interrupted = exc
                    finally:
                        self._gathering = 0
                batch, self._queue = self._queue, []
                self._burst = False
                self._mutex.release()
                last = None
                try:
                    last = self._write_and_apply(batch)
                except BaseException as exc:
                    # Not an OSError (those return None): a projection's snapshot, a
                    # thread that would not start, Ctrl-C during the sync. Whether the
                    # batch is durable is unknown: fail the store, as for a write error.
                    self._fail(exc, "group commit in %s failed: %r", self.root, exc)
                    raise
                finally:
                    self._mutex.acquire()
                    if last is not None:
                        self._published = last
                    # The next batch: this one's committers, about to append again, and
                    # those that queued during the sync (one commit in flight per thread).
                    # Only a gatherer that waited in vain lowers it: a short batch at the
                    # end of a burst says nothing about the next burst.
                    self._expect = max(self._expect, len(batch) + len(self._queue))
                    self._widest = max(self._widest, self._expect)
                    # Published, or failed: either way their committers are done waiting.
                    # Wake the first; each woken committer wakes the next (see _park).
                    # (A leader handed the lead by _hand_off parked too: skip its own lock,
                    # the one for `ticket`; any other commit of its thread is woken as usual.)
                    if len(batch) > 1 or batch[0][2] is not None:
                        self._wake_chain.extend([entry[2] for entry in batch
                                                 if entry[2] is not None and entry[0].last_seq != ticket])
                        self._wake_next()
                if last is not None and self._subscribers:
                    self._cond.release()
                    try:
                        self._deliver(batch)
                    finally:
                        self._cond.acquire()
        finally:
            if not nested:
                self._hand_off()
        if interrupted is not None:
            raise interrupted

    def _hand_off(self) -> None:
        """Leave leadership (holding `_cond`) to the oldest queued commit, if any."""
        if not self._queue:  # the common case, first
            self._leader = 0
            if self._draining:
                self._cond.notify_all()
            return
        _, _, waiter, owner = self._queue[0]
        if waiter is None and self._failed is None:  # pragma: no cover - a leader left its own commit
            self._failed = RuntimeError("group commit lost its leader")
        if self._failed is None and not self._closed:
            self._leader = owner
            waiter.release()
            return
        self._leader = 0
        dropped, self._queue = self._queue, []
        for entry in dropped:  # a failed or closed store writes none of these
            if entry[2] is not None:
                entry[2].release()
        if self._draining:
            self._cond.notify_all()

    def _fail(self, exc: BaseException, message: str, *args: Any) -> None:
        """Refuse writes until reopened; the first failure is the one `StoreFailedError` names."""
        if self._failed is None:
            self._failed = exc
        log.error(message + "; the store refuses writes until reopened", *args)

    def _write_and_apply(self, batch: list[_Queued]) -> int | None:
        """Leader work, outside `_cond`: write (+ sync) and apply a batch.

        Returns the last seq to publish, or None when the write failed.
        """
        assert self._log is not None
        frames = [entry[0] for entry in batch]
        try:
            if self.durability == "fsync":
                started = time.perf_counter()
                self._log.append(frames, buffered=False)
                self._log.sync()
                self._synced_at = time.perf_counter()
                self._sync_seconds = min(self._synced_at - started, 0.01)  # for gathering
            else:
                self._log.append(frames, buffered=self.durability == "none")
        except OSError as exc:
            self._fail(exc, "write to %s failed: %s", self.root, exc)
            return None
        for entry in batch if self._projections else ():
            events = entry[1]
            for p in self._projections:
                try:
                    for e in events:
                        p.apply(e)
                except Exception as exc:
                    # The commit is durable, so it is published; but the projection now
                    # disagrees with the log. Refuse further writes and snapshots (which
                    # would persist the wrong state) until the store is reopened.
                    self._fail(exc, "projection %s failed to apply a commit at seq %d: %r",
                               getattr(p, "name", p), events[0].seq, exc)
        last_frame = batch[-1][0]
        self._since_snapshot += last_frame.last_seq - batch[0][0].first_seq + 1
        if self.snapshot_every and self._since_snapshot >= self.snapshot_every and self._failed is None:
            self._start_background_snapshot(last_frame.last_seq, batch[-1][1][-1].ts)
        return last_frame.last_seq

    def _deliver(self, batch: list[_Queued]) -> None:
        """Call subscribers with a published batch, in seq order (leader thread)."""
        # A subscriber that appends publishes a nested batch on this thread while
        # we are still delivering; queue its events behind ours so every
        # subscriber sees seqs in order.
        for entry in batch:
            self._to_deliver.extend(entry[1])
        if self._delivering:
            return
        self._delivering = True
        try:
            while self._to_deliver:
                e = self._to_deliver.popleft()
                for cb in list(self._subscribers):
                    try:
                        cb(e)
                    except Exception:
                        log.exception("subscriber %r failed on seq %d", cb, e.seq)
        finally:
            self._delivering = False

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Be the leader with no commit in flight: the published state is the log's state."""
        me = threading.get_ident()
        with self._cond:
            if self._leader == me:  # re-entered from a subscriber: already exclusive
                nested = True
            else:
                nested = False
                self._draining += 1  # new commits wait at the gate in _commit meanwhile
                try:
                    while self._leader or self._queue:
                        if not self._leader:  # a batch still gathering: have it led now
                            self._hand_off()
                        self._cond.wait()
                finally:
                    self._draining -= 1
                    if not self._draining:
                        self._cond.notify_all()  # commits held at the gate in _commit
                self._leader = me
        try:
            yield
        finally:
            if not nested:
                with self._cond:
                    self._hand_off()
                    self._cond.notify_all()  # commits held at the gate

    def flush(self) -> None:
        """Push buffered commits to the OS and to stable storage."""
        self._open_check()
        if self.readonly:
            return
        self._writable()
        with self._exclusive(), self._log_io("flush") as log_:
            log_.sync()

    @contextmanager
    def _log_io(self, what: str) -> Iterator[SegmentLog]:
        """The log, for I/O whose failure is sticky: an OSError fails the store."""
        assert self._log is not None
        try:
            yield self._log
        except OSError as exc:
            self._failed = exc
            raise StoreFailedError(f"{what} of {self.root} failed ({exc}); the store refuses "
                                   f"writes until reopened") from exc

    # ------------------------------------------------------------------ snapshots
    def _capture(self, seq: int, ts: int) -> tuple[int, int, tuple[int, int], bytes, dict, list]:
        """State of every projection at ``seq`` (called by the leader or under `_exclusive`).

        Only what must be consistent with ``seq`` happens here: each projection's
        ``snapshot()`` (packed now unless the projection declares
        ``snapshot_detached = True``, i.e. returns a value later ``apply`` calls will
        not mutate) and a copy of the key versions. Packing the rest, compressing
        and writing happen later, off the commit path.
        """
        assert self._log is not None
        states = []
        for p in self._projections:
            value = p.snapshot()
            if getattr(p, "snapshot_detached", False):
                states.append((p.name, p.version, value, False))
            else:
                states.append((p.name, p.version, pack(value), True))
        with self._cond:
            versions = self._versions_published()
        return seq, ts, self._log.position, self._log.last_digest, versions, states

    def _counted(self) -> dict[str, int]:
        """The key versions, with every commit counted (holding `_mutex`, or while opening).

        Commits only note their keys; they are counted here, in one C call, when
        something needs a version (`version`, ``expected_version``, `stats`, a
        snapshot) or every `_COUNT_AT` events. A bulk load that asks for none pays
        nothing per event, as a table without an index on the key would not.
        """
        if self._uncounted:
            _count_elements(self._versions, _chain_keys(self._uncounted))
            self._uncounted.clear()
            self._uncounted_n = 0
        return self._versions

    def _versions_published(self) -> dict[str, int]:
        """A copy of the key versions without the commits still queued."""
        versions = dict(self._counted())
        for _, events, _, _ in self._queue:
            for e in events:
                versions[e.key] -= 1
                if not versions[e.key]:
                    del versions[e.key]
        return versions

    def _start_background_snapshot(self, seq: int, ts: int) -> None:
        if self._snap_thread is not None and self._snap_thread.is_alive():
            return  # one at a time; the next trigger catches up
        try:
            captured = self._capture(seq, ts)
        except Exception:  # a projection whose state cannot be snapshotted: replay still works
            log.exception("automatic snapshot of %s at seq %d failed; trying again after %d events",
                          self.root, seq, self.snapshot_every)
            self._since_snapshot = 0
            return
        if self.durability != "fsync":
            try:
                with self._log_io("sync before a snapshot") as log_:
                    log_.sync()  # a snapshot never covers bytes that are not durable
            except StoreFailedError:
                return  # the store is failed now; the committing caller was acknowledged
        self._since_snapshot = 0
        thread = threading.Thread(target=self._write_snapshot_quietly, args=(captured,),
                                  name="metalog-snapshot", daemon=True)
        thread.start()  # before publishing it: snapshot() and close() join it
        self._snap_thread = thread

    def _write_snapshot_quietly(self, captured: tuple) -> None:
        try:
            self._write_snapshot(captured)
        except Exception as exc:
            log.warning("background snapshot of %s failed: %s", self.root, exc)

    def _write_snapshot(self, captured: tuple) -> None:
        seq, ts, position, digest, versions, states = captured
        states = [(name, version, state if packed else pack(state))
                  for name, version, state, packed in states]
        data = snap_mod.encode_snapshot(seq, ts, position, digest, pack(versions), states)
        with self._snap_write:  # a background and a foreground snapshot may overlap
            snap_mod.write_snapshot(self._fs, self.snap_dir, seq, data)
            self._snapshot_seq = max(self._snapshot_seq, seq)

    def snapshot(self) -> int:
        """Write a snapshot of every projection now; returns the seq it covers."""
        self._writable()
        if self._snap_thread is not None:
            self._snap_thread.join()
        with self._exclusive():
            with self._log_io("sync before a snapshot") as log_:
                log_.sync()
            captured = self._capture(self._published, self._last_ts)
            self._since_snapshot = 0
        try:
            self._write_snapshot(captured)
        except OSError as exc:
            raise StoreFailedError(f"snapshot of {self.root} failed: {exc}") from exc
        return captured[0]

    def nearest_snapshot(self, name: str, version: int, max_seq: int) -> tuple[int, Any] | None:
        """The state of projection ``name``/``version`` from the newest usable snapshot at or
        before ``max_seq``, as ``(seq, state)``; None when there is none."""
        self._open_check()
        for seq, path in self._snapshot_candidates():
            if seq > max_seq:
                continue
            try:
                snap = snap_mod.read_snapshot(self._fs, path)
                ok, state = snap.state(name, version)
            except (CorruptionError, OSError):
                continue
            if ok:
                return seq, state
        return None

    # ------------------------------------------------------------------ compaction / verify
    def compact(self) -> dict:
        """Seal the active segment, compress sealed ones, snapshot, apply retention."""
        from .compaction import compact_store
        self._writable()
        return compact_store(self)

    def _seal_active(self) -> None:
        with self._exclusive(), self._log_io("sealing the active segment") as log_:
            log_.roll_now(self._published + 1)

    def verify(self, progress: Callable[[int, int], None] | None = None) -> VerifyReport:
        """Re-read everything: checksums, seq continuity, digest chain, snapshots."""
        self._open_check()
        bound = None
        if not self.readonly:
            self.flush()
            bound = self._published
        return verify_store(self._fs, self.root, self._projections, bound, progress=progress)

    # ------------------------------------------------------------------ reading
    def _open_check(self) -> None:
        """A closed store refuses every member but `close` (which is idempotent): it no
        longer follows the log (a writer has released its lock, so another writer may move
        the log on), and an answer from it (`last_seq`, `version`, `stats`, ...) would be
        stale while `read` refuses."""
        if self._closed:
            raise StoreClosedError(f"store {self.root} is closed")

    def _readable_bound(self) -> int | None:
        """The last seq a reader may return (None: whatever is valid on disk)."""
        if self.readonly:
            return None
        if self.durability == "none" and self._failed is None:
            try:
                with self._exclusive(), self._log_io("write of buffered commits") as log_:
                    log_.write_buffer()
            except StoreFailedError:
                pass  # readers still get every published commit; writers get the error
        return self._published

    def _frames(self, start: int, bound: int | None, cursor: list | None = None) -> Iterator[Frame]:
        """Valid frames holding seqs >= ``start``; stops at a torn or in-progress tail."""
        fs = self._fs
        refs = list_segments(fs, self.seg_dir)
        if not refs:
            return
        firsts = [r.first_seq for r in refs]
        if cursor and cursor[0] in firsts and cursor[2] <= start:
            i, offset, expected, digest = firsts.index(cursor[0]), cursor[1], cursor[2], cursor[3]
        else:
            i, offset, expected, digest = max(bisect.bisect_right(firsts, start) - 1, 0), None, None, None
        while i < len(refs):
            ref = refs[i]
            try:
                stream = SegmentStream(fs, ref)  # follows a compaction that replaced it
            except FileNotFoundError:
                raise CorruptionError(ref.path, None, "segment vanished while reading") from None
            if offset is None:
                if expected is not None and ref.first_seq != expected:
                    raise CorruptionError(ref.path, 0, f"segment starts at seq {ref.first_seq}, expected {expected}")
                offset, expected, digest = SEGMENT_HEADER_SIZE, ref.first_seq, stream.prev_digest
                if cursor is not None:  # even if no frame follows yet (a new empty segment)
                    cursor[:] = [ref.first_seq, offset, expected, digest]
            scanner = FrameScanner(offset, expected, digest, end=stream.end, verify_chain=False)
            last = i == len(refs) - 1
            damage: Damage | None = None
            for item in scan(stream, scanner, offset, resync=last):
                if isinstance(item, Damage):
                    if not last:
                        raise CorruptionError(ref.path, item.offset, item.reason)
                    damage = item
                    continue
                if damage is not None:
                    raise CorruptionError(ref.path, damage.offset, damage.reason)
                if bound is not None and item.first_seq > bound:
                    return
                if cursor is not None:
                    cursor[:] = [ref.first_seq, item.offset + item.size, item.first_seq + item.count, item.digest]
                if item.last_seq >= start and not is_gap(item.payload):
                    yield item
            if damage is not None:
                return
            expected, digest, offset = scanner.expected_seq, scanner.digest, None
            i += 1

    def read(self, start: int = 1, stop: int | None = None, *, key: str | None = None,
             types: Iterable[str] | None = None) -> Iterator[Event]:
        """Events with ``start <= seq < stop`` in seq order, optionally filtered."""
        self._open_check()
        for name, value in (("start", start), ("stop", stop)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise ValidationError(f"{name} must be a non-negative int")
        if key is not None:
            validate_key(key)
        type_set = None if types is None else ({types} if isinstance(types, str) else set(types))
        bound = self._readable_bound()
        return self._read(max(start, 1), stop, key, type_set, bound, None)

    def _read(self, start: int, stop: int | None, key: str | None, type_set: set | None,
              bound: int | None, cursor: list | None) -> Iterator[Event]:
        root = self.seg_dir
        # A commit holding the key (or a type) holds its msgpack encoding verbatim, so a
        # substring test skips decoding the commits that cannot match (exact: no misses).
        needles = [pack(key)] if key is not None else [pack(t) for t in type_set] if type_set else []
        for frame in self._frames(start, bound, cursor):
            if stop is not None and frame.first_seq >= stop:
                return
            if needles and not any(n in frame.payload for n in needles):
                continue
            for e in decode_commit(frame.payload, frame.first_seq, frame.count, frame.ts, root, frame.offset):
                if e.seq < start or (bound is not None and e.seq > bound):
                    continue
                if stop is not None and e.seq >= stop:
                    return
                if (key is None or e.key == key) and (type_set is None or e.type in type_set):
                    yield e

    def follow(self, start: int | None = None, *, poll: float = 0.05,
               timeout: float | None = None) -> Iterator[Event]:
        """Live tail: yield events from ``start`` (default: after the current last seq) as they
        are committed, by this process or a writer in another one. Ends after ``timeout``
        seconds without a new event (never, by default) or when the store is closed.

        The start point is fixed when ``follow`` is called, not at the first ``next()``,
        so events committed in between are not skipped."""
        self._open_check()
        next_seq = self.last_seq + 1 if start is None else max(int(start), 1)
        return self._follow(next_seq, poll, timeout)

    def _follow(self, next_seq: int, poll: float, timeout: float | None) -> Iterator[Event]:
        cursor: list = []
        idle_since = time.monotonic()
        while not self._closed:
            got = False
            for e in self._read(next_seq, None, None, None, self._readable_bound(), cursor):
                got = True
                next_seq = e.seq + 1
                yield e
            if got:
                idle_since = time.monotonic()
            elif timeout is not None and time.monotonic() - idle_since >= timeout:
                return
            else:
                time.sleep(poll)

    def refresh(self, *, strict: bool = True) -> int:
        """Readonly stores: apply events another process committed since; returns how many.

        `last_seq`, `version`, `stats`, `projections` and `follow` call it, so a
        readonly store shows what the writer has committed up to now (SPEC §2).
        When the log has not moved it costs a few `stat` calls. Projections are
        applied one commit at a time outside the store's lock; one that reads
        the store while being applied sees the state before that commit.
        ``strict=False`` (what those accessors use, after checking that the
        store is open) keeps the state we have instead of raising when another
        thread closes the store meanwhile or the new bytes are damaged; `read`
        and `follow` still raise there.
        """
        if not strict:
            try:
                return self.refresh()
            except StoreClosedError:
                return 0  # closed by another thread meanwhile
            except CorruptionError as exc:
                log.warning("readonly %s stays at seq %d: %s", self.root, self._published, exc)
                return 0
        self._open_check()
        if not self.readonly:
            return 0
        with self._refresh_lock:  # re-entrant: a projection of ours may read the store
            if self._refreshing or self._log_unmoved():
                return 0
            self._refreshing = True
            try:
                return self._apply_new_commits()
            finally:
                self._refreshing = False

    def _log_unmoved(self) -> bool:
        """Readonly: the last segment still ends where we stopped and no segment follows it."""
        seg_first, offset = self._tail
        fs, following = self._fs, self._published + 1
        try:
            if fs.size(segment_path(self.seg_dir, seg_first)) != offset:
                return False
        except FileNotFoundError:  # compressed meanwhile, or no segment yet
            return False
        return following == seg_first or not (   # an empty segment of our own is not a new one
            fs.exists(segment_path(self.seg_dir, following))
            or fs.exists(segment_path(self.seg_dir, following, compressed=True)))

    def _apply_new_commits(self) -> int:
        cursor = [self._tail[0], self._tail[1], self._published + 1, self._digest]
        n = 0
        versions = self._versions
        for frame in self._frames(self._published + 1, None, cursor):
            events = decode_commit(frame.payload, frame.first_seq, frame.count, frame.ts,
                                   self.seg_dir, frame.offset)
            for p in self._projections:
                for e in events:
                    p.apply(e)
            with self._mutex:
                for e in events:
                    versions[e.key] = versions.get(e.key, 0) + 1
                self._advance(cursor)
            n += len(events)
        with self._mutex:  # past trailing gap frames, or into a new empty segment
            self._advance(cursor)
        return n

    def _advance(self, cursor: list) -> None:
        """Publish a readonly catch-up up to ``cursor`` (segment, offset, next seq, digest)."""
        self._tail = (cursor[0], cursor[1])
        self._published = self._next_seq = cursor[2] - 1
        self._digest = cursor[3]

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``callback(event)`` for each event committed by this store from now on."""
        self._open_check()
        if not callable(callback):
            raise ValidationError("callback must be callable")
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            try:
                self._subscribers.remove(callback)
            except ValueError:
                pass
        return unsubscribe

    def _catch_up(self) -> None:
        """Refuse if closed; a readonly store first takes in what the writer committed."""
        self._open_check()
        if self.readonly:
            self.refresh(strict=False)

    def version(self, key: str) -> int:
        self._catch_up()
        validate_key(key)
        with self._mutex:
            return self._counted().get(key, 0)

    def _key_count(self) -> int:
        with self._mutex:
            return len(self._counted())

    @property
    def last_seq(self) -> int:
        self._catch_up()
        return self._published

    @property
    def projections(self) -> tuple[Projection, ...]:
        self._catch_up()
        return self._projections

    def stats(self) -> dict[str, Any]:
        self._catch_up()
        refs = list_segments(self._fs, self.seg_dir) if os.path.isdir(self.seg_dir) else []
        total = 0
        for dirpath, _, names in os.walk(self.root):
            for name in names:
                try:
                    total += os.path.getsize(os.path.join(dirpath, name))
                except OSError:
                    pass
        snaps = self._snapshot_candidates()
        return {
            "events": self._published - self._lost,
            "keys": self._key_count(),
            "segments": len(refs),
            "compressed_segments": sum(1 for r in refs if r.compressed),
            "bytes_on_disk": total,
            "last_seq": self._published,
            "snapshot_seq": self._snapshot_seq,  # the newest snapshot loaded or written (checked)
            "snapshots": len(snaps),
            "durability": self.durability,
            "readonly": self.readonly,
            "path": self.root,
        }

    # ------------------------------------------------------------------ closing
    def close(self) -> None:
        """Flush, fsync, release the lock. Idempotent."""
        if self._closed:
            return
        try:
            if self._log is not None:
                with self._exclusive():
                    try:
                        if self._failed is None:
                            self._log.sync()
                    except OSError as exc:
                        self._failed = exc
                        raise StoreFailedError(f"closing {self.root}: the final sync failed; "
                                               f"commits not acknowledged as durable may be lost") from exc
                    finally:
                        self._closed = True
                        if self._snap_thread is not None:  # no snapshot may outlive the lock
                            self._snap_thread.join()
                        try:
                            self._fs.close(self._log.fd)
                        except OSError:
                            pass
        finally:
            self._closed = True
            self._release_lock()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "readonly" if self.readonly else self.durability
        return f"<eventstore.Store {self.root!r} {mode} last_seq={self._published}>"
