"""The legacy JSON file and the old MediaPersistenceService API."""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
import threading

import pytest

from projections import MediaCatalog, MediaPersistenceService
from projections.legacy import MAX_REPORTED_ERRORS, import_legacy_json, parse_legacy_json
from projections.service import STORE_SUFFIX

from _cat import open_cat

OLD = {
    "/media/a.mp4": {"title": "A", "description": "first"},
    "/media/b.jpg": {"title": "B"},
    "/media/c.png": {"description": "only a description"},
    "/media/d.gif": {"title": "Ünïcødé \"quoted\", {braces}", "description": ""},
}


def write_json(path: pathlib.Path, data: object, *, indent: int | None = 2) -> bytes:
    raw = json.dumps(data, indent=indent, ensure_ascii=False).encode()
    path.write_bytes(raw)
    return raw



# ------------------------------------------------------------------- import

def test_import_reads_everything_and_never_modifies_the_file(cat, tmp_path) -> None:
    src = tmp_path / "media.json"
    raw = write_json(src, OLD)
    mtime = os.stat(src).st_mtime_ns
    report = cat.import_legacy_json(src)
    assert (report.entries, report.imported, report.invalid, report.damaged) == (4, 4, 0, False)
    assert report.sha256 == hashlib.sha256(raw).hexdigest() and report.errors == []
    assert cat.get("/media/a.mp4")[:2] == ("A", "first")
    assert cat.title("/media/b.jpg") == "B" and cat.description("/media/c.png") == "only a description"
    assert cat.title("/media/d.gif") == OLD["/media/d.gif"]["title"]
    assert src.read_bytes() == raw and os.stat(src).st_mtime_ns == mtime
    assert cat.history("/media/a.mp4")[0].actor == "legacy-import"


def test_import_is_idempotent(cat, tmp_path) -> None:
    src = tmp_path / "media.json"
    write_json(src, OLD)
    cat.import_legacy_json(src)
    last = cat.store.last_seq
    cat.set_title("/media/a.mp4", "edited after import")
    again = cat.import_legacy_json(src)
    assert again.already_imported and again.imported == 0 and again.events == 0
    assert cat.store.last_seq == last + 1
    assert cat.title("/media/a.mp4") == "edited after import"   # not overwritten


def test_import_reports_unchanged_and_invalid(cat, tmp_path) -> None:
    cat.set_title("/media/a.mp4", "A")
    cat.set_description("/media/a.mp4", "first")
    data = dict(OLD)
    data["/media/bad1"] = "not an object"
    data["/media/bad2"] = {"title": 42}
    data[""] = {"title": "empty key"}
    src = tmp_path / "media.json"
    write_json(src, data)
    report = cat.import_legacy_json(src)
    assert (report.entries, report.imported, report.unchanged, report.invalid) == (7, 3, 1, 3)
    assert "/media/bad1" not in cat and "/media/bad2" not in cat


@pytest.mark.parametrize("cut", [0.3, 0.5, 0.9, 0.99])
def test_truncated_file_imports_what_it_can(cat, tmp_path, cut) -> None:
    data = {f"/media/{i:03}.mp4": {"title": f"t{i}", "description": f"d, {i}"} for i in range(50)}
    raw = json.dumps(data, indent=2).encode()
    src = tmp_path / "media.json"
    src.write_bytes(raw[: int(len(raw) * cut)])
    report = cat.import_legacy_json(src)
    assert report.damaged and report.errors
    assert 0 < report.imported < 50
    # every entry fully present before the cut is there, with the right values
    for i in range(report.imported):
        assert cat.get(f"/media/{i:03}.mp4")[:2] == (f"t{i}", f"d, {i}")
    assert len(cat) == report.imported


def test_corrupted_middle_is_skipped_and_reported(cat, tmp_path) -> None:
    data = {f"/media/{i}.mp4": {"title": f"t{i}"} for i in range(10)}
    text = json.dumps(data, indent=2)
    text = text.replace('"t4"', '"t4\x00oops ] junk', 1).replace('"t7"', "@@@", 1)
    src = tmp_path / "media.json"
    src.write_text(text)
    report = cat.import_legacy_json(src)
    assert report.damaged and len(report.errors) >= 2
    assert "/media/4.mp4" not in cat and "/media/7.mp4" not in cat
    assert all(cat.title(f"/media/{i}.mp4") == f"t{i}" for i in (0, 1, 2, 3, 5, 6, 8, 9))


@pytest.mark.parametrize("raw", [b"", b"\xff\xfe garbage", b"[1, 2, 3]", b"null", b"{"])
def test_hopeless_files_import_nothing_without_crashing(cat, tmp_path, raw) -> None:
    src = tmp_path / "media.json"
    src.write_bytes(raw)
    report = cat.import_legacy_json(src)
    assert report.imported == 0 and report.errors and len(cat) == 0


def test_oversized_entry_is_skipped_and_reported_like_any_invalid_entry(tmp_path) -> None:
    # SPEC §5: an event over max_event_bytes is bad input; in an import it is one
    # invalid entry, not a reason to import nothing.
    src = tmp_path / "media.json"
    write_json(src, {"/media/ok.jpg": {"title": "fine"},
                     "/media/big.jpg": {"title": "x" * 5000},
                     "/media/bigdesc.jpg": {"title": "t", "description": "y" * 5000},
                     "/media/fits.jpg": {"title": "z" * 3000}}, indent=None)
    with open_cat(tmp_path, max_event_bytes=4096) as cat:
        report = cat.import_legacy_json(src)
        assert (report.entries, report.imported, report.invalid) == (4, 2, 2)
        assert cat.title("/media/ok.jpg") == "fine" and cat.title("/media/fits.jpg") == "z" * 3000
        assert "/media/big.jpg" not in cat and "/media/bigdesc.jpg" not in cat
        assert len(report.errors) == 2
        for key in ("/media/big.jpg", "/media/bigdesc.jpg"):
            assert any(key in e and "max_event_bytes" in e for e in report.errors), report.errors
        last = cat.store.last_seq
        assert cat.import_legacy_json(src).already_imported     # still imported once
        assert cat.store.last_seq == last


def test_an_entry_over_the_default_limit_is_skipped(cat, tmp_path) -> None:
    src = tmp_path / "media.json"
    write_json(src, {"/media/ok.jpg": {"title": "fine"},
                     "/media/big.jpg": {"title": "x" * 1_100_000}}, indent=None)
    report = cat.import_legacy_json(src)
    assert (report.imported, report.invalid) == (1, 1)
    assert cat.title("/media/ok.jpg") == "fine" and "/media/big.jpg" not in cat
    assert "/media/big.jpg" in report.errors[0] and "1048576" in report.errors[0]


def test_every_invalid_entry_is_listed_with_its_reason(cat, tmp_path) -> None:
    src = tmp_path / "media.json"
    # NUL and the lone surrogate as the JSON escapes a file holds them in
    src.write_text('{"/media/ok2.jpg": {"title": "ok"}, "/media/nul\\u0000.jpg": {"title": "n"},'
                   ' "/media/lone.jpg": {"title": "\\udc80"}, "/media/int.jpg": {"title": 5},'
                   ' "/media/list.jpg": ["not", "an", "object"],'
                   ' "/media/desc.jpg": {"title": "t", "description": null, "x": 1}}')
    report = cat.import_legacy_json(src)
    assert (report.entries, report.imported, report.invalid) == (6, 2, 4)
    assert len(report.errors) == 4, report.errors
    for key, why in (("nul", "NUL"), ("lone.jpg", "surrogate"), ("int.jpg", "int"),
                     ("list.jpg", "list")):
        assert any(key in e and why in e for e in report.errors), (key, report.errors)
    assert cat.title("/media/ok2.jpg") == "ok" and cat.title("/media/desc.jpg") == "t"


def test_a_long_list_of_invalid_entries_is_capped_and_says_how_many_more(cat, tmp_path) -> None:
    data = {f"/media/bad{i:03}.jpg": {"title": i} for i in range(60)}
    data["/media/ok.jpg"] = {"title": "ok"}
    src = tmp_path / "media.json"
    write_json(src, data)
    report = cat.import_legacy_json(src)
    assert (report.imported, report.invalid) == (1, 60)
    assert len(report.errors) == MAX_REPORTED_ERRORS + 1
    assert all("/media/bad" in e for e in report.errors[:MAX_REPORTED_ERRORS])
    assert report.errors[-1] == "... and 10 more"


def test_parser_on_valid_compact_json() -> None:
    entries, errors, damaged = parse_legacy_json(json.dumps(OLD, indent=None))
    assert dict(entries) == OLD and errors == [] and not damaged


def test_import_in_chunks_is_atomic_per_chunk(cat, tmp_path) -> None:
    data = {f"/media/{i}": {"title": f"t{i}"} for i in range(25)}
    src = tmp_path / "media.json"
    write_json(src, data)
    report = import_legacy_json(cat, src, chunk_items=10)
    assert report.imported == 25 and report.events == 25 and len(cat) == 25


def test_import_of_large_values_splits_commits_by_bytes(cat, tmp_path) -> None:
    # 1000 items of values near max_event_bytes would make one commit over the
    # store's frame limit (256 MiB) and abort the import half done; chunk_bytes
    # keeps each commit bounded. Shown here at a small scale.
    data = {f"/media/{i}": {"title": "x" * 1000} for i in range(10)}
    src = tmp_path / "media.json"
    write_json(src, data)
    report = import_legacy_json(cat, src, chunk_bytes=10_000)
    assert report.imported == 10 and len(cat) == 10
    commits = sum(1 for e in cat.store.read() if not e.meta.get("cont"))
    assert commits == 5                       # five commits of 2 items each
    cat.undo()                                # the whole import, not its last commit
    assert len(cat) == 0


# ------------------------------------------------ MediaPersistenceService

def svc_at(path: pathlib.Path, **kw) -> MediaPersistenceService:
    kw.setdefault("durability", "none")
    return MediaPersistenceService(path, **kw)


def test_service_basic_save_and_get(tmp_path) -> None:
    with svc_at(tmp_path / "store") as svc:
        assert svc.save_title("/media/a.mp4", "A") is True
        assert svc.save_title("/media/a.mp4", "A") is False
        svc.save_description("/media/a.mp4", "about")
        assert svc.get_title("/media/a.mp4") == "A"
        assert svc.get_description("/media/a.mp4") == "about"
        assert svc.get_title("/media/none") == ""
    with svc_at(tmp_path / "store") as svc:
        assert svc.get_metadata("/media/a.mp4") == {"title": "A", "description": "about"}


def test_service_migrates_an_old_json_file_automatically(tmp_path) -> None:
    src = tmp_path / "media_metadata.json"
    raw = write_json(src, OLD)
    svc = svc_at(src)
    assert svc.store_path == str(tmp_path / ("media_metadata" + STORE_SUFFIX))
    assert os.path.isdir(svc.store_path)
    assert svc.migration is not None and svc.migration.imported == 4
    assert svc.get_title("/media/a.mp4") == "A"
    svc.save_title("/media/a.mp4", "new")
    svc.shutdown()
    assert src.read_bytes() == raw                         # the old file is untouched
    svc = svc_at(src)                                      # second start: no re-import
    assert svc.migration.already_imported
    assert svc.get_title("/media/a.mp4") == "new"
    svc.shutdown()


def test_service_starts_on_an_old_file_with_an_oversized_entry(tmp_path) -> None:
    # The old JSON store had no size limit: one huge entry must not stop the app starting.
    src = tmp_path / "media2.json"
    write_json(src, {"/media/ok.jpg": {"title": "fine"},
                     "/media/big.jpg": {"title": "x" * 1_100_000}}, indent=None)
    with svc_at(src) as svc:
        assert (svc.migration.imported, svc.migration.invalid) == (1, 1)
        assert "/media/big.jpg" in svc.migration.errors[0]
        assert svc.get_title("/media/ok.jpg") == "fine" and svc.get_title("/media/big.jpg") == ""
    with svc_at(src) as svc:                               # and every later start
        assert svc.migration.already_imported
        assert svc.get_title("/media/ok.jpg") == "fine"


def test_service_batch_operations(tmp_path) -> None:
    with svc_at(tmp_path / "store") as svc:
        svc.start_batch_mode()
        assert svc.batch_mode
        for i in range(20):
            svc.save_title(f"/media/{i}", f"t{i}")
        assert svc.get_title("/media/7") == "t7"           # visible before commit
        assert svc.get_statistics()["pending_changes"] == 20
        assert svc.catalog.store.last_seq == 0
        assert svc.commit_batch() == 20
        assert not svc.batch_mode and svc.catalog.store.last_seq == 20


def test_service_batch_cancel(tmp_path) -> None:
    with svc_at(tmp_path / "store") as svc:
        svc.save_title("/media/a", "kept")
        svc.start_batch_mode()
        svc.save_title("/media/a", "dropped")
        svc.save_title("/media/b", "dropped")
        assert svc.cancel_batch() == 2
        assert svc.get_title("/media/a") == "kept" and svc.get_title("/media/b") == ""
        assert svc.get_statistics()["total_entries"] == 1


def test_service_batch_with_a_refused_save_is_aborted(tmp_path) -> None:
    with svc_at(tmp_path / "store") as svc:
        svc.save_title("/media/a", "kept")
        svc.start_batch_mode()
        svc.save_title("/media/a", "batched")
        svc.save_title("/media/b", "batched")
        with pytest.raises(ValueError):
            svc.save_title("/media/c", 7)                  # refused at once, as before
        assert svc.get_title("/media/a") == "kept" and svc.get_title("/media/b") == ""
        assert svc.get_statistics()["total_entries"] == 1
        with pytest.raises(ValueError, match="aborted.*'/media/c'"):
            svc.commit_batch()
        assert not svc.batch_mode and svc.catalog.store.last_seq == 1
        assert svc.get_title("/media/b") == "" and svc.get_statistics()["total_entries"] == 1
        svc.start_batch_mode()                             # starts again
        svc.save_title("/media/b", "B")
        assert svc.commit_batch() == 1 and svc.get_title("/media/b") == "B"


def test_service_cancel_after_a_refused_save(tmp_path) -> None:
    with svc_at(tmp_path / "store") as svc:
        svc.start_batch_mode()
        svc.save_title("/media/a", "dropped")
        with pytest.raises(ValueError):
            svc.save_description("/media/a", b"bytes")
        assert svc.cancel_batch() == 1 and not svc.batch_mode
        assert svc.get_title("/media/a") == "" and svc.catalog.store.last_seq == 0


def test_service_shutdown_with_an_aborted_batch_writes_nothing_and_says_so(tmp_path) -> None:
    svc = svc_at(tmp_path / "store")
    svc.start_batch_mode()
    svc.save_title("/media/a", "pending")
    with pytest.raises(ValueError):
        svc.save_title("/media/b", 7)
    with pytest.raises(ValueError, match="aborted"):
        svc.shutdown()
    svc.shutdown()                                         # closed, idempotent
    with svc_at(tmp_path / "store") as svc:
        assert svc.get_title("/media/a") == "" and svc.catalog.store.last_seq == 0


def test_service_statistics(tmp_path) -> None:
    with svc_at(tmp_path / "store") as svc:
        stats = svc.get_statistics()
        assert stats["total_entries"] == 0
        for i in range(30):
            svc.save_title(f"/media/{i}", "x" * 1000)
        svc.catalog.flush()
        stats = svc.get_statistics()
        assert stats["total_entries"] == 30
        assert 30 * 1000 / (1 << 20) <= stats["file_size_mb"] < 10
        assert stats["batch_mode"] is False


def test_service_shutdown_with_pending_batch_saves_it(tmp_path) -> None:
    svc = svc_at(tmp_path / "store")
    svc.start_batch_mode()
    svc.save_title("/media/a", "pending")
    svc.shutdown()
    svc.shutdown()                                         # idempotent
    with svc_at(tmp_path / "store") as svc:
        assert svc.get_title("/media/a") == "pending"


def test_service_thread_safety(tmp_path) -> None:
    with svc_at(tmp_path / "store") as svc:
        errors: list[BaseException] = []

        def work(t: int) -> None:
            try:
                for i in range(40):
                    svc.save_title(f"/media/{t}/{i}", f"title {t} {i}")
                    svc.save_description(f"/media/{t}/{i}", f"desc {t} {i}")
                    svc.get_title(f"/media/{(t + 1) % 6}/{i}")
                    svc.get_statistics()
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert errors == []
        assert svc.get_statistics()["total_entries"] == 240
        assert all(svc.get_description(f"/media/{t}/{i}") == f"desc {t} {i}"
                   for t in range(6) for i in range(40))


def test_service_path_validation_is_cached_and_bounded(tmp_path) -> None:
    calls: list[str] = []
    from projections.keys import PathChecker
    clock = [0.0]

    def exists(path: str) -> bool:
        calls.append(path)
        return os.path.exists(path)

    checker = PathChecker(max_entries=3, ttl=10.0, exists=exists, clock=lambda: clock[0])
    media = tmp_path / "clip.mp4"
    media.write_bytes(b"x")
    with svc_at(tmp_path / "store", path_checker=checker) as svc:
        assert svc.validate_path(media) is True
        assert svc.validate_path(media) is True
        assert len(calls) == 1 and checker.hits == 1       # second answer from the cache
        media.unlink()
        assert svc.validate_path(media) is True            # cached until it expires
        clock[0] += 11
        assert svc.validate_path(media) is False
        for i in range(10):
            svc.validate_path(tmp_path / f"other{i}")
        assert len(checker) == 3                           # bounded
        stats = svc.get_statistics()["path_cache"]
        assert stats["max_entries"] == 3 and stats["misses"] == len(calls)


def test_hostile_nesting_is_reported_not_a_crash(cat, tmp_path) -> None:
    src = tmp_path / "media.json"
    src.write_text('{"/media/ok": {"title": "fine"}, "/media/deep": '
                   + "[" * 100_000 + "]" * 100_000 + ', "/media/after": {"title": "also"}}')
    report = cat.import_legacy_json(src)
    assert report.damaged and report.errors
    assert cat.title("/media/ok") == "fine" and cat.title("/media/after") == "also"
    assert "/media/deep" not in cat
