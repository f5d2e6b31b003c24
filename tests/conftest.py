"""Shared fixtures. Keep this small; append only."""
from __future__ import annotations

import os

import pytest


@pytest.fixture
def store_dir(tmp_path):
    """A path (not yet created) for a fresh store."""
    return str(tmp_path / "store")


def _segments(root: str) -> list[str]:
    seg_dir = os.path.join(root, "segments")
    return sorted(os.path.join(seg_dir, n) for n in os.listdir(seg_dir) if n.endswith(".seg"))


@pytest.fixture
def segment_files():
    """``segment_files(root)``: the store's plain segment paths in log order."""
    return _segments


@pytest.fixture
def cat(tmp_path):
    """A fresh `MediaCatalog` (see `_cat.open_cat`), closed after the test."""
    from _cat import open_cat
    c = open_cat(tmp_path)
    yield c
    c.close()
