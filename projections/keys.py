"""Media keys: turning what callers pass into the key the log stores.

This module owns two small caches. `media_key` accepts a ``str``, an
``os.PathLike`` or any object with a ``.path`` / ``.file_path`` attribute
and returns the absolute, normalised path (``~`` expanded); the pure
string work is memoised in a bounded LRU cache. `PathChecker` answers
"does this file still exist?" with a bounded, time-limited cache, as the
old uploader's ``PathValidator`` did, so `cleanup_missing` and the legacy
service do not stat the same file again and again. Nothing here touches
the store.
"""
from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from functools import lru_cache
from typing import Any, Callable

from eventstore.errors import ValidationError

__all__ = ["media_key", "KEY_CACHE_SIZE", "PathChecker"]

KEY_CACHE_SIZE = 8192
_POSIX = os.name == "posix" and os.sep == "/"


@lru_cache(maxsize=KEY_CACHE_SIZE)
def _normalise_absolute(path: str) -> str:
    return os.path.normpath(path)


def media_key(media: Any) -> str:
    """The catalog key of ``media``: an absolute, normalised path.

    Relative paths are resolved against the current directory at the time
    of the call (so the cache never returns a stale key after a ``chdir``).
    Raises `ValidationError` (a ``ValueError``) for anything else.
    """
    if media.__class__ is str and _POSIX and media[:1] == "/" and "\x00" not in media:
        # The common case, an absolute str: what the slow path does, and an
        # already normal path (no "//", no "." or ".." part, no trailing
        # "/") is its own normpath, so it skips even the cache.
        if "//" in media or "/." in media or media[-1] == "/":
            return _normalise_absolute(media)
        return media
    raw = media
    if not isinstance(raw, (str, bytes, os.PathLike)):
        for attr in ("path", "file_path"):
            value = getattr(raw, attr, None)
            if value is not None:
                raw = value
                break
        else:
            raise ValidationError(
                f"media must be a str, os.PathLike or have .path/.file_path, "
                f"not {type(media).__name__}")
    try:
        path = os.fsdecode(os.fspath(raw))
    except TypeError as exc:
        raise ValidationError(f"media path is not a path: {raw!r}") from exc
    if not path:
        raise ValidationError("media path must not be empty")
    if "\x00" in path:
        raise ValidationError("media path must not contain NUL")
    if path[0] == "~":
        path = os.path.expanduser(path)
    if not os.path.isabs(path):
        path = os.path.join(os.getcwd(), path)
    return _normalise_absolute(path)


class PathChecker:
    """A bounded, expiring cache of ``os.path.exists`` answers.

    At most ``max_entries`` paths are remembered (least recently used are
    dropped first), each for ``ttl`` seconds. ``hits``/``misses`` count
    cache use; `invalidate` forgets one path or all. Thread-safe.
    """

    def __init__(self, max_entries: int = 10_000, ttl: float = 30.0,
                 exists: Callable[[str], bool] = os.path.exists,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self.ttl = ttl
        self._exists = exists
        self._clock = clock
        self._cache: OrderedDict[str, tuple[bool, float]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def exists(self, path: str) -> bool:
        now = self._clock()
        with self._lock:
            entry = self._cache.get(path)
            if entry is not None and now - entry[1] < self.ttl:
                self._cache.move_to_end(path)
                self.hits += 1
                return entry[0]
            self.misses += 1
        answer = bool(self._exists(path))
        with self._lock:
            self._cache[path] = (answer, now)
            self._cache.move_to_end(path)
            while len(self._cache) > self.max_entries:
                self._cache.popitem(last=False)
        return answer

    def invalidate(self, path: str | None = None) -> None:
        with self._lock:
            if path is None:
                self._cache.clear()
            else:
                self._cache.pop(path, None)

    def __len__(self) -> int:
        return len(self._cache)

    def stats(self) -> dict[str, int]:
        return {"entries": len(self._cache), "max_entries": self.max_entries,
                "hits": self.hits, "misses": self.misses}
