"""The embedded backend: a directory holding a segment log, snapshots and a quarantine.

`LocalStore` (in `store`) is what `eventstore.open(path)` returns. Its
modules, each with one job: `layout` (every on-disk constant), `frame` (the
frame codec and scanner), `segment` (segment files and streaming them),
`compression` (bounded zstd), `directory` (marker, locks, quarantine), `log`
(the active segment), `groupcommit`, `writer` (commits after other writers'),
`walk` (the one segment walk every reader of the log goes through, and the
`Cursor`), `reader` (reads, follow, catching up), `recovery` (the policy walk
of open, verify and salvage), `endrecord` (``END``, how far the log reached),
`opening`, `snapshot` (the file format), `snapshotter`, `compaction`,
`salvage`, `verify`.
"""
from __future__ import annotations

from .store import LocalStore

__all__ = ["LocalStore"]
