"""Opening a test catalog: one place for the options every catalog test uses."""
from __future__ import annotations

import pathlib

from projections import MediaCatalog


def open_cat(path: pathlib.Path, **kw) -> MediaCatalog:
    """A catalog in ``path/store``, actor alice, no fsync (these tests are not about durability)."""
    kw.setdefault("actor", "alice")
    kw.setdefault("durability", "none")
    return MediaCatalog.open(path / "store", **kw)
