"""Issues 3e and 5: one durable catalog change and bulk imports, against the old JSON store."""
from __future__ import annotations

import json
import os
import shutil
from typing import Any, Callable

from eventstore import Event
from projections import MediaCatalog, MediaPersistenceService

from .common import Bench, Row, interleaved, med, mib, ms, now
from .data import OldJsonStore, legacy_dict, media_path


class LatestValues:
    """A lean projection for comparison: current title/description per key, no undo."""

    name = "bench-latest"
    version = 1

    def __init__(self) -> None:
        self.items: dict[str, list[str]] = {}

    def apply(self, event: Event) -> None:
        value = event.data.get("value")
        if event.type == "title.set":
            self.items.setdefault(event.key, ["", ""])[0] = value
        elif event.type == "description.set":
            self.items.setdefault(event.key, ["", ""])[1] = value

    def snapshot(self) -> Any:
        return self.items

    def restore(self, state: Any) -> None:
        self.items = {k: list(v) for k, v in state.items()}


def _old_store(b: Bench, items: int) -> OldJsonStore:
    path = b.fresh("legacy.json")
    old = OldJsonStore(path)
    old.data = legacy_dict(items)
    old._save()
    return old


def _catalog(b: Bench, items: int, **options: Any) -> tuple[MediaCatalog, str]:
    path = b.fresh("catalog")
    cat = MediaCatalog.open(path, actor="bench", snapshot_every=0, **options)
    with cat.batch():
        for key, entry in legacy_dict(items).items():
            cat.set_title(key, entry["title"])
            cat.set_description(key, entry["description"])
    return cat, path


def bench_change(b: Bench) -> None:
    """3e / 5: one durable change on a 10k-item catalog vs rewriting the 10k-item JSON file."""
    items = 10_000
    k = 15 if b.quick else 30
    rounds = b.repeats * 2
    cat, _ = _catalog(b, items)
    svc_path = b.fresh("service")
    shutil.copytree(cat.store.root, svc_path, ignore=shutil.ignore_patterns("LOCK", "*.lock"))
    svc = MediaPersistenceService(svc_path, actor="bench", snapshot_every=0)
    old = _old_store(b, items)
    json_bytes = os.path.getsize(old.path)
    keys = [media_path((i * 37) % items) for i in range(k)]
    rnd = [0]

    def side(save: Callable[[str, str], Any]) -> Callable[[], float]:
        def run() -> float:
            rnd[0] += 1
            t0 = now()
            for i, key in enumerate(keys):
                save(key, f"Edited {rnd[0]}.{i}")
            return (now() - t0) / k
        return run

    ours, theirs, svc_times = interleaved(rounds, side(cat.set_title), side(old.save_title),
                                          side(svc.save_title), warmup=True)
    events = cat.store.last_seq
    cat.close()
    svc.shutdown()
    m, s, sv = med(ours), med(theirs), med(svc_times)
    b.add(Row("change", "3e/5", f"one durable change, {items:,}-item catalog (MediaCatalog.set_title)",
              f"{ms(m)}/change", f"JSON rewrite {ms(s)}/change", s / m, ">= 100x", s / m >= 100,
              {"items": items, "changes_per_round": k, "metalog_s_per_change": ours,
               "json_s_per_change": theirs, "json_bytes": json_bytes, "events": events},
              note=f"old store: json.dump of {items:,} items ({mib(json_bytes)}) to a temp file, fsync, "
                   f"rename; metalog: one event, durability=fsync (one fdatasync); {rounds} alternating "
                   f"rounds of {k} changes"))
    b.add(Row("change", "5", "one durable change via the old API (MediaPersistenceService.save_title)",
              f"{ms(sv)}/change", f"JSON rewrite {ms(s)}/change", s / sv, "", None,
              {"service_s_per_change": svc_times}))


def bench_import(b: Bench) -> None:
    """5: bulk import of 10k items (title + description) vs the old store's batch mode."""
    items = 10_000
    data = legacy_dict(items)
    legacy_file = b.fresh("import-source.json")
    with open(legacy_file, "w", encoding="utf-8") as f:
        json.dump(data, f)

    def metalog_batch() -> float:
        path = b.fresh("import")
        cat = MediaCatalog.open(path, actor="bench", snapshot_every=0)
        t0 = now()
        with cat.batch():
            for key, entry in data.items():
                cat.set_title(key, entry["title"])
                cat.set_description(key, entry["description"])
        t1 = now()
        assert len(cat) == items
        cat.close()
        return t1 - t0

    def legacy_batch() -> float:
        old = OldJsonStore(b.fresh("import-old.json"))
        t0 = now()
        old.start_batch_mode()
        for key, entry in data.items():
            old.save_title(key, entry["title"])
            old.save_description(key, entry["description"])
        old.commit_batch()
        return now() - t0

    def metalog_legacy_import() -> float:
        path = b.fresh("import-json")
        cat = MediaCatalog.open(path, actor="bench", snapshot_every=0)
        t0 = now()
        report = cat.import_legacy_json(legacy_file)
        t1 = now()
        assert report.imported == items, report
        cat.close()
        return t1 - t0

    ours, theirs, imp = interleaved(b.repeats, metalog_batch, legacy_batch, metalog_legacy_import)
    m, s, i = med(ours), med(theirs), med(imp)
    b.add(Row("import", "5", f"bulk import of {items:,} items in one batch (2 sets each)",
              ms(m), f"JSON batch mode {ms(s)}", s / m, "", None,
              {"items": items, "metalog_s": ours, "json_s": theirs},
              note="both durable at the end: metalog one commit + fdatasync, old store one atomic rewrite"))
    b.add(Row("import", "5", f"import_legacy_json of a {items:,}-item JSON file",
              ms(i), f"JSON batch mode {ms(s)}", s / i, "", None, {"metalog_s": imp}))
