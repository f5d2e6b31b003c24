"""Migrating from the old JSON store, through the API.

Re-imports keep fields edited since the file's last import; an import cut
short is resumed; encodings never turn into U+FFFD; an entry's other fields
and times are kept; undo reverts a whole import. The files are real files,
written or damaged here; an interrupted import is made by a catalog whose
Nth commit raises.
"""
from __future__ import annotations

import ast
import datetime as dt
import json
import logging
import pathlib
from typing import Any, Iterator

import pytest

from eventstore.event import Event
from projections import ImportInterrupted, LegacyDecodeError, MediaCatalog, MediaPersistenceService
from projections.legacy import import_legacy_json
from projections.media import MediaProjection, UNDO_HORIZON

from _cat import open_cat

PROJECTIONS = pathlib.Path(__file__).resolve().parents[1] / "projections"


def write(path: pathlib.Path, data: dict[str, Any]) -> pathlib.Path:
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")
    return path


def many(n: int, prefix: str = "/m/") -> dict[str, dict[str, str]]:
    return {f"{prefix}{i:06}.jpg": {"title": f"t{i}", "description": f"d{i}"} for i in range(n)}


class FailingCatalog:
    """An `ImportTarget` over a real catalog whose ``at``-th commit raises ``exc``:
    before the commit (it never happens), or with ``landed`` after it went through."""

    def __init__(self, cat: MediaCatalog, at: int, exc: BaseException, *, landed: bool = False):
        self.cat, self.at, self.exc, self.landed, self.calls = cat, at, exc, landed, 0

    def exclusive(self, what: str):
        return self.cat.exclusive(what)

    def append_events(self, items: list) -> list[Event]:
        self.calls += 1
        if self.calls == self.at and not self.landed:
            raise self.exc
        events = self.cat.append_events(items)
        if self.calls == self.at:
            raise self.exc
        return events

    def read_log(self, start: int = 1, stop: int | None = None) -> Iterator[Event]:
        return self.cat.read_log(start, stop)

    @property
    def max_event_bytes(self) -> int:
        return self.cat.max_event_bytes


# ------------------------------------------------------- 8: re-import vs edits

def test_reimport_of_a_changed_file_keeps_fields_edited_since(cat, tmp_path) -> None:
    src = write(tmp_path / "media.json", {"/m/k.jpg": {"title": "Old", "description": "d"},
                                          "/m/l.jpg": {"title": "L1"}, "/m/n.jpg": {"title": "N"}})
    cat.import_legacy_json(src)
    cat.set_title("/m/k.jpg", "Edited in metalog")
    write(src, {"/m/k.jpg": {"title": "Old, changed in the file", "description": "d"},
                "/m/l.jpg": {"title": "L2"}, "/m/n.jpg": {"title": "N"}})
    report = cat.import_legacy_json(src)
    assert cat.title("/m/k.jpg") == "Edited in metalog"            # kept, not overwritten
    assert cat.title("/m/l.jpg") == "L2"                           # untouched since: updated
    assert (report.imported, report.unchanged, report.conflicts) == (1, 1, 1)
    [conflict] = report.conflicted
    assert (conflict.key, conflict.field, conflict.kept, conflict.file) == (
        "/m/k.jpg", "title", "Edited in metalog", "Old, changed in the file")
    assert any("edited since" in p for p in report.problems())
    write(src, {"/m/k.jpg": {"title": "Old, changed in the file", "description": "d"},
                "/m/l.jpg": {"title": "L2"}, "/m/n.jpg": {"title": "N", "description": "new"}})
    forced = cat.import_legacy_json(src, overwrite=True)
    assert forced.conflicts == 0 and cat.title("/m/k.jpg") == "Old, changed in the file"


def test_a_value_set_in_metalog_before_any_import_is_not_overwritten(cat, tmp_path) -> None:
    cat.set_title("/m/mine.jpg", "Mine")
    report = cat.import_legacy_json(write(tmp_path / "m.json", {"/m/mine.jpg": {"title": "File's"}}))
    assert cat.title("/m/mine.jpg") == "Mine" and report.conflicts == 1


def test_service_restart_on_a_changed_file_keeps_what_the_app_saved(tmp_path, caplog) -> None:
    src = write(tmp_path / "media_metadata.json", {"/m/k.jpg": {"title": "K"}, "/m/l.jpg": {"title": "L"}})
    with MediaPersistenceService(src, durability="none") as svc:
        svc.save_title("/m/k.jpg", "Saved by the app")
    write(src, {"/m/k.jpg": {"title": "K from a restored backup"}, "/m/l.jpg": {"title": "L2"}})
    with caplog.at_level(logging.WARNING, logger="projections.service"):
        with MediaPersistenceService(src, durability="none") as svc:
            assert svc.get_title("/m/k.jpg") == "Saved by the app"
            assert svc.get_title("/m/l.jpg") == "L2"
            assert svc.migration.conflicts == 1
    assert any("/m/k.jpg" in r.getMessage() for r in caplog.records)


# ------------------------------------------------ 9: partial imports are seen

def test_service_on_a_truncated_file_warns_and_keeps_reporting_it_damaged(tmp_path, caplog) -> None:
    src = tmp_path / "media_metadata.json"
    whole = json.dumps(many(40), indent=1).encode()
    src.write_bytes(whole[: len(whole) // 2])
    with caplog.at_level(logging.WARNING, logger="projections.service"):
        with MediaPersistenceService(src, durability="none") as svc:
            first = svc.migration
    assert first.damaged and 0 < first.imported < 40
    assert any("damaged" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="projections.service"):
        with MediaPersistenceService(src, durability="none") as svc:
            again = svc.migration
    assert again.already_imported and again.damaged and again.entries == first.entries
    assert any("damaged" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("landed", [False, True])
def test_ctrl_c_says_how_far_the_import_got_and_a_rerun_finishes_it(cat, tmp_path, landed) -> None:
    src = write(tmp_path / "m.json", many(1000))
    with pytest.raises(ImportInterrupted) as caught:
        import_legacy_json(FailingCatalog(cat, 3, KeyboardInterrupt(), landed=landed), src,
                           chunk_items=100)
    report = caught.value.report
    committed = 300 if landed else 200
    assert report.interrupted and (report.done, report.entries) == (committed, 1000)
    assert len(cat) == committed
    finished = cat.import_legacy_json(src)
    assert finished.resumed and not finished.already_imported and finished.imported == 1000
    assert len(cat) == 1000 and all(cat.title(f"/m/{i:06}.jpg") == f"t{i}" for i in range(1000))
    last = cat.store.last_seq
    assert cat.import_legacy_json(src).already_imported and cat.store.last_seq == last


def test_a_crash_mid_import_is_resumed_as_the_same_operation(tmp_path) -> None:
    src = write(tmp_path / "m.json", many(500))
    with open_cat(tmp_path) as cat:
        with pytest.raises(OSError):
            import_legacy_json(FailingCatalog(cat, 3, OSError("disk gone")), src, chunk_items=100)
        assert len(cat) == 200
    with open_cat(tmp_path) as cat:                      # a new process: only the log knows
        report = cat.import_legacy_json(src)
        assert report.resumed and report.imported == 500 and report.events == 600
        assert len(cat) == 500
        undone = cat.undo()                              # one operation: all of it goes
        assert len(cat) == 0 and undone.items == 500


# -------------------------------------------------------------- 10: encodings

def test_a_utf8_file_with_a_bom_imports(cat, tmp_path) -> None:
    src = tmp_path / "bom.json"
    src.write_bytes(b"\xef\xbb\xbf" + json.dumps({"/m/caf\u00e9.jpg": {"title": "Caf\u00e9"}},
                                                  ensure_ascii=False).encode())
    report = cat.import_legacy_json(src)
    assert (report.imported, report.damaged) == (1, False) and cat.title("/m/caf\u00e9.jpg") == "Caf\u00e9"


def test_a_latin1_file_is_refused_naming_the_byte_and_nothing_is_written(cat, tmp_path) -> None:
    src = tmp_path / "latin1.json"
    src.write_bytes('{"/m/ok.jpg": {"title": "ok"},\n "/m/caf\u00e9.jpg": {"title": "Caf\u00e9"}}'
                    .encode("latin-1"))
    with pytest.raises(LegacyDecodeError) as caught:
        cat.import_legacy_json(src)
    err = caught.value
    assert (err.encoding, err.offset, err.line, err.byte) == ("utf-8", src.read_bytes().index(b"\xe9"), 2, b"\xe9")
    assert cat.store.last_seq == 0 and len(cat) == 0
    report = cat.import_legacy_json(src, encoding="latin-1")
    assert report.imported == 2 and cat.title("/m/caf\u00e9.jpg") == "Caf\u00e9"
    assert not any("\ufffd" in key for key in cat.keys())


def test_a_file_cut_inside_a_character_is_damaged_not_refused(cat, tmp_path) -> None:
    raw = json.dumps({"/m/a.jpg": {"title": "A"}, "/m/b.jpg": {"title": "\u00e9t\u00e9"}},
                     ensure_ascii=False).encode()
    src = tmp_path / "cut.json"
    src.write_bytes(raw[: raw.index("\u00e9".encode()) + 1])      # half of a 2-byte character
    report = cat.import_legacy_json(src)
    assert report.damaged and report.imported == 1 and cat.title("/m/a.jpg") == "A"


# ------------------------------------------------------ 11: other legacy fields

def test_other_fields_are_kept_and_times_come_from_the_entry(cat, tmp_path) -> None:
    modified = dt.datetime(2019, 5, 4, 3, 2, 1, tzinfo=dt.timezone.utc)
    born = dt.datetime(2018, 1, 2, tzinfo=dt.timezone.utc)
    entry = {"title": "Party", "description": "Birthday", "last_modified": modified.timestamp(),
             "created": born.isoformat(), "tags": ["family", "2019"], "rating": 4}
    report = cat.import_legacy_json(write(tmp_path / "m.json", {"/m/party.jpg": entry,
                                                                "/m/plain.jpg": {"title": "P"}}))
    record = cat.get("/m/party.jpg")
    assert (record.updated, record.created) == (modified.timestamp(), born.timestamp())
    kept = [c.legacy for c in cat.history("/m/party.jpg") if c.legacy is not None]
    assert kept == [{k: v for k, v in entry.items() if k not in ("title", "description")}]
    assert report.kept == {"last_modified": 1, "created": 1, "tags": 1, "rating": 1}
    assert report.dated == 1
    assert all(c.legacy is None for c in cat.history("/m/plain.jpg"))


def test_a_time_that_cannot_be_read_is_kept_as_a_field_and_noted(cat, tmp_path) -> None:
    report = cat.import_legacy_json(write(tmp_path / "m.json", {
        "/m/a.jpg": {"title": "A", "last_modified": "last Tuesday"}}))
    assert report.dated == 0 and "last Tuesday" in report.notes[0]
    assert cat.history("/m/a.jpg")[0].legacy == {"last_modified": "last Tuesday"}


def test_legacy_times_survive_a_snapshot_and_reopen(tmp_path) -> None:
    when = dt.datetime(2017, 6, 1, tzinfo=dt.timezone.utc).timestamp()
    src = write(tmp_path / "m.json", {"/m/a.jpg": {"title": "A", "mtime": when}})
    with open_cat(tmp_path) as cat:
        cat.import_legacy_json(src)
        cat.snapshot()
    with open_cat(tmp_path) as cat:
        assert cat.get("/m/a.jpg").updated == when


# ----------------------------------------------------- 12: undo of an import

def test_undo_reverts_a_whole_import_larger_than_the_undo_horizon(tmp_path) -> None:
    n = UNDO_HORIZON + 1500
    src = write(tmp_path / "m.json", many(n))
    with open_cat(tmp_path) as cat:
        cat.set_title("/m/before.jpg", "before the import")
        report = cat.import_legacy_json(src)
        assert report.imported == n
        undone = cat.undo()
        assert len(cat) == 1 and cat.title("/m/before.jpg") == "before the import"
        assert (undone.source, undone.step, undone.items, undone.kept_count) == (str(src), report.op, n, 0)
        assert undone.summary().startswith(f"undid the import of m.json (seq {report.op}): {n} items")
        again = cat.import_legacy_json(src)                  # not "already imported"
        assert not again.already_imported and again.imported == n and len(cat) == n + 1


def test_redo_of_an_undone_import_keeps_a_field_edited_in_between(cat, tmp_path) -> None:
    src = write(tmp_path / "m.json", many(30))
    cat.import_legacy_json(src)
    cat.undo()
    cat.set_title("/m/000007.jpg", "mine now")
    redone = cat.redo()
    assert redone.source == str(src) and redone.kept_count == 1
    assert (redone.kept[0].key, redone.kept[0].value) == ("/m/000007.jpg", "mine now")
    assert cat.title("/m/000007.jpg") == "mine now" and len(cat) == 30
    assert cat.import_legacy_json(src).already_imported       # in effect again
    cat.undo()                                                # the redo, undone as a whole
    assert len(cat) == 1 and cat.title("/m/000007.jpg") == "mine now"


def test_undo_of_an_unfinished_import_then_a_fresh_import(cat, tmp_path) -> None:
    src = write(tmp_path / "m.json", many(300))
    with pytest.raises(ImportInterrupted):
        import_legacy_json(FailingCatalog(cat, 2, KeyboardInterrupt()), src, chunk_items=100)
    assert len(cat) == 100
    cat.undo()
    assert len(cat) == 0
    report = cat.import_legacy_json(src)
    assert not report.resumed and report.imported == 300


# ---------------------------------------------- 14: legacy on the public API

def _imports(module: pathlib.Path) -> set[str]:
    """The projections modules ``module`` imports, anywhere in it (also inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names = [node.module] if node.module else [a.name for a in node.names]
            found.update(n.split(".")[0] for n in names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("projections."):
            found.add(node.module.split(".")[1])
    return found


def test_no_module_of_projections_imports_itself_through_others() -> None:
    graph = {p.stem: _imports(p) for p in PROJECTIONS.glob("*.py") if p.stem != "__init__"}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    assert "catalog" not in graph["legacy"]
    cycles = [m for m in graph if reaches(m, m, {m})]
    assert cycles == [], cycles


def test_legacy_touches_nothing_private_of_a_catalog() -> None:
    for name in ("legacy.py", "service.py", "undo.py"):
        tree = ast.parse((PROJECTIONS / name).read_text())
        private = [n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)
                   and n.attr.startswith("_") and not n.attr.startswith("__")
                   and isinstance(n.value, ast.Name) and n.value.id in ("cat", "catalog")]
        assert private == [], (name, private)


def test_undo_and_redo_of_a_batch_wider_than_the_undo_horizon_take_all_of_it(tmp_path) -> None:
    n = UNDO_HORIZON + 700
    with open_cat(tmp_path) as cat:
        cat.set_title("/m/a.jpg", "before")
        with cat.batch():
            for i in range(n):
                cat.set_title(f"/m/{i:06}.jpg", f"t{i}")
            cat.set_title("/m/a.jpg", "in the batch")
        undone = cat.undo()
        assert len(cat) == 1 and cat.title("/m/a.jpg") == "before" and undone.items == n + 1
        redone = cat.redo()
        assert len(cat) == n + 1 and redone.items == n + 1 and cat.title("/m/000000.jpg") == "t0"
        cat.undo()
        assert len(cat) == 1
        assert cat.undo().items == 1 and len(cat) == 0      # then the edit before the batch


def test_service_refuses_a_latin1_file_unless_told_its_encoding(tmp_path) -> None:
    src = tmp_path / "media_metadata.json"
    src.write_bytes('{"/m/\u00e9t\u00e9.jpg": {"title": "\u00c9t\u00e9"}}'.encode("latin-1"))
    with pytest.raises(LegacyDecodeError):
        MediaPersistenceService(src, durability="none")
    with MediaPersistenceService(src, durability="none", legacy_encoding="latin-1") as svc:
        assert svc.get_title("/m/\u00e9t\u00e9.jpg") == "\u00c9t\u00e9"
