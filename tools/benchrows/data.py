"""Generated events and the baselines' stores: media captions, SQLite, the old JSON store.

`media_events` is the media shape (title/description sets with random
captions, the rows of issues 3-5); `title_events` is the shape of issue 16
(``("title.set", "/media/000123.jpg", {"title": "title 123", "n": 123})``).
`OldJsonStore` is the old uploader's DataManager; `sqlite_open` and
`sqlite_insert` are the SQLite WAL baseline.
"""
from __future__ import annotations

import json
import os
import random
import sqlite3
import time
from typing import TYPE_CHECKING

import msgpack

if TYPE_CHECKING:
    from .common import Bench


# --------------------------------------------------------------------------- data

_WORDS = ("sunset beach family holiday birthday party mountain lake forest city night "
          "portrait garden snow winter summer spring autumn river bridge harbour boat "
          "train station market street festival concert wedding graduation dog cat "
          "grandma grandpa kids school trip museum castle island sea storm rainbow clouds "
          "morning evening road bike hike camp fire dinner friends picnic park rain "
          "sky desert canyon valley village church tower lights fireworks old new first "
          "last big small red blue green yellow white black golden silver quiet busy "
          "happy funny lovely cold warm windy sunny foggy early late long short tall "
          "with and the of in at on by from near under over after before during our "
          "my their his her team club class office home kitchen garden balcony roof "
          "window door table cake gift balloon candle tree flower rose tulip leaf "
          "stone sand wave shell fish bird horse cow sheep goat duck swan bear fox "
          "deer owl eagle bee butterfly Anna Ben Clara David Emma Felix Greta Hugo "
          "Ines Jonas Karl Lena Max Nora Oskar Paula Quentin Rosa Sam Tina Udo Vera "
          "Paris Berlin Rome Lisbon Oslo Vienna Prague Madrid Athens Dublin London "
          "Zurich Geneva Munich Hamburg Lyon Porto Naples Venice Milan Krakow Tallinn "
          "Riga Bergen Seville Bruges Ghent Bordeaux Nice Split Malaga Palermo Dresden "
          "Leipzig Bremen Salzburg Innsbruck Graz Basel Bern Lucerne Turin Verona "
          "Bologna Pisa Florence Siena Granada Valencia Bilbao Cadiz Toledo Avila "
          "one two three four five six seven eight nine ten 2019 2020 2021 2022 2023 "
          "2024 2025 photo video clip scan copy edit final draft raw best").split()
_WORDS = (_WORDS * 2)[:256]


def _caption(rnd: bytes, at: int, words: int) -> str:
    w = _WORDS
    return " ".join([w[c] for c in rnd[at:at + words]]).capitalize()


def media_path(k: int) -> str:
    return f"/srv/media/library/{k % 1000:03d}/IMG_{k:07d}.jpg"


def media_events(n: int, keys: int, *, start: int = 0, meta: dict | None = None) -> list[tuple]:
    """``n`` title/description sets spread round-robin over ``keys`` items.

    Values are random words (a 256-word vocabulary: 8 bits of entropy per
    word, so text compresses roughly like real captions, not like repeated
    bytes) ending with the event number, so no set is a no-op. With
    ``meta`` the items are 4-tuples (as the catalog writes them, with an
    actor); without, 3-tuples. Deterministic for a given ``start``.
    """
    rnd = random.Random(start).randbytes(n * 12)
    out = []
    paths = [media_path(k) for k in range(keys)]
    for j in range(n):
        i = start + j
        k = i % keys
        if (i // keys) % 2 == 0:
            item = ("title.set", paths[k], {"value": f"{_caption(rnd, j * 12, 3)} #{i}"})
        else:
            item = ("description.set", paths[k], {"value": f"{_caption(rnd, j * 12, 12)} #{i}"})
        out.append(item if meta is None else (*item, meta))
    return out


def title_events(n: int, keys: int = 20_000) -> list[tuple[str, str, dict[str, object]]]:
    """Issue 16's shape: ``("title.set", "/media/000123.jpg", {"title": "title 123", "n": 123})``,
    event ``i`` on key ``i % keys`` (every key set again each ``keys`` events)."""
    return [("title.set", f"/media/{i % keys:06d}.jpg", {"title": f"title {i}", "n": i}) for i in range(n)]


def legacy_dict(items: int) -> dict[str, dict[str, str]]:
    rnd = random.Random(items).randbytes(items * 15)
    return {media_path(k): {"title": _caption(rnd, k * 15, 3), "description": _caption(rnd, k * 15 + 3, 12)}
            for k in range(items)}


# --------------------------------------------------------------------------- baselines

class OldJsonStore:
    """The old uploader's DataManager, as the baseline: one JSON dict,
    rewritten atomically (temp file, fsync, rename) on every change, or once
    per batch in batch mode."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.data: dict[str, dict[str, str]] = {}
        self.batch = False
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                self.data = json.load(f)

    def _save(self) -> None:
        tmp = self.path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.data, f, ensure_ascii=False, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def _set(self, key: str, field_: str, value: str) -> bool:
        entry = self.data.setdefault(key, {"title": "", "description": ""})
        if entry.get(field_) == value:
            return False
        entry[field_] = value
        if not self.batch:
            self._save()
        return True

    def save_title(self, key: str, title: str) -> bool:
        return self._set(key, "title", title)

    def save_description(self, key: str, text: str) -> bool:
        return self._set(key, "description", text)

    def start_batch_mode(self) -> None:
        self.batch = True

    def commit_batch(self) -> None:
        self.batch = False
        self._save()


def sqlite_open(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, ts INTEGER NOT NULL, "
               "type TEXT NOT NULL, key TEXT NOT NULL, data BLOB NOT NULL)")
    return db


def sqlite_insert(db: sqlite3.Connection, items: list[tuple], first_seq: int = 1) -> None:
    """One transaction inserting ``items`` (type, key, data) as msgpack rows."""
    pack = msgpack.packb
    ts = time.time_ns
    db.execute("BEGIN")
    db.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?)",
                   ((first_seq + i, ts(), t, k, pack(d, use_bin_type=True))
                    for i, (t, k, d) in enumerate(items)))
    db.execute("COMMIT")


def replay_fixture(b: Bench, name: str, items: list[tuple]) -> tuple[str, str]:
    """The same events in a fresh store (commits of 100) and a fresh SQLite table: the two
    sides of a replay row. Returns (store path, SQLite path)."""
    import eventstore
    path = b.fresh(name)
    with eventstore.open(path, durability="none", snapshot_every=0) as store:
        for i in range(0, len(items), 100):
            store.append_many(items[i:i + 100])
    db_path = b.fresh(f"{name}.sqlite")
    db = sqlite_open(db_path)
    sqlite_insert(db, items)
    db.close()
    return path, db_path
