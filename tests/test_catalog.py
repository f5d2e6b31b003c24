"""MediaCatalog through the public API on a real store (SPEC §3)."""
from __future__ import annotations

import os
import pathlib
import threading
import time
from types import SimpleNamespace

import pytest

import eventstore
from _cat import open_cat
from projections import MediaCatalog, MediaRecord




# ------------------------------------------------------------------- keys

def test_media_arguments_normalise_to_one_key(cat: MediaCatalog, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    expected = str(tmp_path / "clips" / "a.mp4")
    forms = ["clips/a.mp4", "./clips//x/../a.mp4", pathlib.Path("clips/a.mp4"),
             SimpleNamespace(path="clips/a.mp4"), SimpleNamespace(file_path=expected),
             expected.encode()]
    for form in forms:
        assert cat.key(form) == expected
    cat.set_title(forms[0], "A")
    for form in forms:
        assert cat.title(form) == "A" and form in cat
    assert [k for k, _ in cat.items()] == [expected]


@pytest.mark.parametrize("bad", ["", "a\x00b", 5, None, object()])
def test_bad_media_is_refused_before_writing(cat: MediaCatalog, bad) -> None:
    with pytest.raises(ValueError):
        cat.set_title(bad, "t")
    assert bad not in cat
    assert cat.store.last_seq == 0


@pytest.mark.parametrize("bad", [5, None, b"bytes", "lone \ud800 surrogate"])
def test_bad_title_is_refused_before_writing(cat: MediaCatalog, bad) -> None:
    with pytest.raises(ValueError):
        cat.set_title("/m/a", bad)
    with pytest.raises(ValueError):
        cat.set_description("/m/a", bad)
    assert cat.store.last_seq == 0


# ------------------------------------------------------------- set / get

def test_set_returns_event_and_none_when_unchanged(cat: MediaCatalog) -> None:
    e = cat.set_title("/m/a", "Hello", reason="first")
    assert e is not None and e.type == "title.set" and e.key == "/m/a"
    assert e.meta["actor"] == "alice" and e.meta["reason"] == "first"
    last = cat.store.last_seq
    assert cat.set_title("/m/a", "Hello") is None
    assert cat.set_description("/m/a", "") is None       # unset == ""
    assert cat.store.last_seq == last


def test_get_returns_a_media_record(cat: MediaCatalog) -> None:
    before = time.time()
    cat.set_title("/m/a", "T")
    cat.set_description("/m/a", "D")
    rec = cat.get("/m/a")
    assert isinstance(rec, MediaRecord)
    assert (rec.title, rec.description, rec.version) == ("T", "D", 2)
    assert rec.version == cat.store.version("/m/a")
    assert before - 1 <= rec.created <= rec.updated <= time.time() + 1
    assert cat.get("/m/none") is None
    assert cat.title("/m/none") == "" and cat.description("/m/none") == ""


def test_len_contains_items(cat: MediaCatalog) -> None:
    for name in ("c", "a", "b"):
        cat.set_title(f"/m/{name}", name.upper())
    assert len(cat) == 3 and "/m/b" in cat and "/m/z" not in cat
    assert [(k, r.title) for k, r in cat.items()] == [("/m/a", "A"), ("/m/b", "B"), ("/m/c", "C")]


def test_state_survives_reopen(tmp_path) -> None:
    with open_cat(tmp_path) as c:
        c.set_title("/m/a", "A")
        c.set_description("/m/a", "about")
        created = c.get("/m/a").created
    with open_cat(tmp_path, actor="bob") as c:
        rec = c.get("/m/a")
        assert (rec.title, rec.description, rec.created) == ("A", "about", created)
        assert c.history("/m/a")[0].actor == "alice"


def test_concurrent_writers_lose_nothing(cat: MediaCatalog) -> None:
    def work(t: int) -> None:
        for i in range(50):
            cat.set_title(f"/m/{t}/{i}", f"t{t}-{i}")
            cat.set_description(f"/m/shared/{i % 5}", f"from {t} {i}")
            assert cat.title(f"/m/{t}/{i}") == f"t{t}-{i}"
    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(cat) == 8 * 50 + 5
    assert all(cat.title(f"/m/{t}/{i}") == f"t{t}-{i}" for t in range(8) for i in range(50))
    seqs = [e.seq for e in cat.store.read()]
    assert seqs == list(range(1, len(seqs) + 1))


# ----------------------------------------------------------------- batches

def test_batch_is_one_commit_and_reads_see_pending(cat: MediaCatalog) -> None:
    cat.set_title("/m/a", "old")
    with cat.batch() as b:
        assert cat.set_title("/m/a", "new") is None
        cat.set_title("/m/b", "B")
        cat.set_description("/m/b", "bee")
        cat.set_title("/m/b", "B2")                 # coalesced with the first
        assert cat.title("/m/a") == "new" and cat.get("/m/b").title == "B2"
        assert len(cat) == 2 and "/m/b" in cat
        assert cat.store.last_seq == 1               # nothing written yet
    assert [(e.key, e.data["value"]) for e in b.events] == [
        ("/m/a", "new"), ("/m/b", "B2"), ("/m/b", "bee")]
    assert cat.store.last_seq == 4
    # one commit = one undo step
    cat.undo()
    assert cat.title("/m/a") == "old" and "/m/b" not in cat


def test_batch_discarded_on_exception(cat: MediaCatalog) -> None:
    cat.set_title("/m/a", "keep")
    with pytest.raises(RuntimeError):
        with cat.batch():
            cat.set_title("/m/a", "lost")
            cat.set_title("/m/b", "lost")
            raise RuntimeError("boom")
    assert cat.title("/m/a") == "keep" and "/m/b" not in cat
    assert cat.store.last_seq == 1 and not cat.in_batch


def test_bad_item_in_batch_aborts_it(cat: MediaCatalog) -> None:
    with pytest.raises(ValueError):
        with cat.batch():
            cat.set_title("/m/a", "fine")
            cat.set_title("/m/b", 42)
    assert cat.store.last_seq == 0 and len(cat) == 0


def test_old_batch_api(cat: MediaCatalog) -> None:
    cat.start_batch_mode()
    cat.set_title("/m/a", "A")
    cat.set_title("/m/b", "B")
    assert cat.pending_changes() == 2 and cat.store.last_seq == 0
    events = cat.commit_batch()
    assert len(events) == 2 and cat.store.last_seq == 2
    cat.start_batch_mode()
    cat.set_title("/m/a", "changed")
    assert cat.cancel_batch() == 1
    assert cat.title("/m/a") == "A" and cat.commit_batch() == []


BAD_SETS = {
    "non-str title": lambda c: c.set_title("/m/b", 5),
    "lone surrogate": lambda c: c.set_description("/m/b", "\udc80"),
    "NUL in key": lambda c: c.set_title("/m/b\x00", "B"),
    "empty key": lambda c: c.set_title("", "B"),
    "non-str reason": lambda c: c.set_title("/m/b", "B", reason=3),
}
KEY_OF = {"NUL in key": "/m/b\x00", "empty key": ""}  # the key each refusal names (else /m/b)


@pytest.mark.parametrize("bad", BAD_SETS, ids=list(BAD_SETS))
def test_refused_item_aborts_an_old_api_batch(cat: MediaCatalog, bad: str) -> None:
    # SPEC §5: a bad item in a batch aborts the whole batch.
    cat.set_title("/m/a", "committed")
    cat.start_batch_mode()
    cat.set_title("/m/a", "A")
    cat.set_title("/m/c", "C")
    with pytest.raises(eventstore.ValidationError):
        BAD_SETS[bad](cat)                           # refused at once
    # the aborted batch is not shown
    assert cat.title("/m/a") == "committed" and cat.get("/m/c") is None
    assert len(cat) == 1 and "/m/c" not in cat and cat.items()[0][1].title == "committed"
    with pytest.raises(eventstore.ValidationError, match="aborted") as info:
        cat.commit_batch()
    assert f"(key {KEY_OF.get(bad, '/m/b')!r}: " in str(info.value)
    assert cat.store.last_seq == 1 and not cat.in_batch
    assert cat.title("/m/a") == "committed" and len(cat) == 1
    cat.start_batch_mode()                           # the caller can start again
    cat.set_title("/m/c", "C")
    assert len(cat.commit_batch()) == 1 and cat.title("/m/c") == "C"


def test_refused_item_caught_inside_a_batch_block_still_aborts_it(cat: MediaCatalog) -> None:
    with pytest.raises(eventstore.ValidationError, match="aborted.*'/m/b'.*int"):
        with cat.batch():
            cat.set_title("/m/a", "A")
            try:
                cat.set_title("/m/b", 5)
            except eventstore.ValidationError:
                pass                                 # caught: the block exits cleanly
            assert "/m/a" not in cat
    assert cat.store.last_seq == 0 and len(cat) == 0 and not cat.in_batch
    with cat.batch():
        cat.set_title("/m/a", "A")
    assert cat.title("/m/a") == "A"


def test_sets_after_a_refused_item_are_refused_too(cat: MediaCatalog) -> None:
    cat.start_batch_mode()
    with pytest.raises(eventstore.ValidationError):
        cat.set_title("/m/b", None)
    with pytest.raises(eventstore.ValidationError, match="aborted"):
        cat.set_title("/m/a", "A")
    assert cat.title("/m/a") == "" and cat.pending_changes() == 0
    with pytest.raises(eventstore.ValidationError, match="aborted"):
        cat.commit_batch()
    assert cat.store.last_seq == 0


def test_cancel_after_a_refused_item_is_silent(cat: MediaCatalog) -> None:
    cat.start_batch_mode()
    cat.set_title("/m/a", "A")
    with pytest.raises(eventstore.ValidationError):
        cat.set_title("/m/b", 5)
    assert cat.cancel_batch() == 1                   # the pending change it dropped
    assert not cat.in_batch and cat.commit_batch() == []
    cat.set_title("/m/a", "A")
    assert cat.store.last_seq == 1


def test_close_with_an_aborted_batch_writes_nothing_and_says_so(tmp_path) -> None:
    c = open_cat(tmp_path)
    c.start_batch_mode()
    c.set_title("/m/a", "A")
    with pytest.raises(eventstore.ValidationError):
        c.set_title("/m/b", 5)
    with pytest.raises(eventstore.ValidationError, match="aborted"):
        c.close()
    assert c.closed
    c.close()                                        # idempotent
    with open_cat(tmp_path) as c:
        assert c.store.last_seq == 0


def test_leaving_a_with_block_by_exception_drops_an_aborted_batch_quietly(tmp_path) -> None:
    with pytest.raises(RuntimeError, match="the caller's own error"):
        with open_cat(tmp_path) as c:
            c.start_batch_mode()
            c.set_title("/m/a", "A")
            with pytest.raises(eventstore.ValidationError):
                c.set_title("/m/b", 5)
            raise RuntimeError("the caller's own error")     # not replaced by the abort
    assert c.closed
    with open_cat(tmp_path) as c:
        assert c.store.last_seq == 0


def test_a_refused_set_of_another_thread_does_not_abort_a_batch_block(cat: MediaCatalog) -> None:
    # batch() belongs to the thread holding it: another thread's set waits for it
    # and is not part of it, so its refusal cannot abort it.
    started, errors = threading.Event(), []

    def other() -> None:
        started.wait(5)
        try:
            cat.set_title("/m/x", 5)
        except eventstore.ValidationError as exc:
            errors.append(exc)

    th = threading.Thread(target=other)
    th.start()
    with cat.batch():
        cat.set_title("/m/a", "A")
        started.set()
        time.sleep(0.1)
    th.join(5)
    assert len(errors) == 1 and cat.title("/m/a") == "A" and cat.store.last_seq == 1
    assert not cat.in_batch


def test_batch_setting_back_the_committed_value_writes_nothing(cat: MediaCatalog) -> None:
    cat.set_title("/m/a", "A")
    with cat.batch() as b:
        cat.set_title("/m/a", "B")
        cat.set_title("/m/a", "A")
    assert b.events == [] and cat.store.last_seq == 1


def test_lifecycle_calls_refused_inside_batch(cat: MediaCatalog) -> None:
    cat.set_title("/m/a", "A")
    with cat.batch():
        for call in (lambda: cat.undo(), lambda: cat.redo(), lambda: cat.forget("/m/a"),
                     lambda: cat.rename("/m/a", "/m/b")):
            with pytest.raises(RuntimeError):
                call()


def test_close_commits_a_pending_batch(tmp_path) -> None:
    c = open_cat(tmp_path)
    c.start_batch_mode()
    c.set_title("/m/a", "A")
    c.close()
    c.close()                                        # idempotent
    with open_cat(tmp_path) as c:
        assert c.title("/m/a") == "A"


# ----------------------------------------------------- rename / forget / cleanup

def test_rename_moves_metadata_and_refuses_conflicts(cat: MediaCatalog) -> None:
    cat.set_title("/m/a", "A")
    cat.set_title("/m/c", "C")
    events = cat.rename("/m/a", "/m/b", reason="moved")
    assert [(e.key, e.data) for e in events] == [("/m/a", {"to": "/m/b"}), ("/m/b", {"from": "/m/a"})]
    assert "/m/a" not in cat and cat.title("/m/b") == "A"
    with pytest.raises(KeyError):
        cat.rename("/m/a", "/m/x")
    with pytest.raises(ValueError):
        cat.rename("/m/b", "/m/c")
    assert cat.rename("/m/b", "/m/b") == []


def test_forget_is_an_event(cat: MediaCatalog) -> None:
    cat.set_title("/m/a", "A")
    e = cat.forget("/m/a", reason="deleted by user")
    assert e.type == "media.forgotten" and e.meta["reason"] == "deleted by user"
    assert "/m/a" not in cat and len(cat) == 0
    assert cat.forget("/m/a") is None
    assert cat.store.version("/m/a") == 2


def test_cleanup_missing_forgets_gone_files(cat: MediaCatalog, tmp_path) -> None:
    here, gone = tmp_path / "here.mp4", tmp_path / "gone.mp4"
    here.write_bytes(b"x")
    gone.write_bytes(b"x")
    cat.set_title(here, "H")
    cat.set_title(gone, "G")
    gone.unlink()
    assert cat.cleanup_missing() == [str(gone)]
    assert here in cat and gone not in cat
    assert cat.history(gone)[-1].field == "key"
    assert cat.cleanup_missing() == []


# ------------------------------------------------------------- time travel

def test_state_at_seq_is_inclusive_and_read_only(cat: MediaCatalog) -> None:
    e1 = cat.set_title("/m/a", "one")
    e2 = cat.set_title("/m/a", "two")
    cat.set_title("/m/b", "B")
    view = cat.state_at(seq=e1.seq)
    assert view.as_dict() == {"/m/a": ("one", "")}
    assert cat.state_at(seq=e2.seq).title("/m/a") == "two"
    assert cat.state_at(seq=0).as_dict() == {}
    assert cat.state_at(seq=10**6).as_dict() == {"/m/a": ("two", ""), "/m/b": ("B", "")}
    with pytest.raises(RuntimeError):
        view.apply(e2)
    with pytest.raises(ValueError):
        cat.state_at()
    with pytest.raises(ValueError):
        cat.state_at(seq=1, time=1.0)


def test_state_at_time(cat: MediaCatalog) -> None:
    e1 = cat.set_title("/m/a", "one")
    time.sleep(0.01)
    e2 = cat.set_title("/m/a", "two")
    assert cat.state_at(time=e1.ts / 1e9).title("/m/a") == "one"
    assert cat.state_at(time=e2.ts / 1e9).title("/m/a") == "two"
    assert cat.state_at(time=e1.ts / 1e9 - 1).as_dict() == {}
    import datetime as dt
    when = dt.datetime.fromtimestamp(e1.ts / 1e9, tz=dt.timezone.utc)
    assert cat.state_at(time=when).title("/m/a") == "one"
    with pytest.raises(ValueError):
        cat.state_at(time=when.replace(tzinfo=None))


def test_state_at_uses_snapshots_and_matches_replay(tmp_path) -> None:
    with open_cat(tmp_path, snapshot_every=10) as c:
        for i in range(45):
            c.set_title(f"/m/{i % 4}", f"v{i}")
        c.snapshot()
        for i in range(10):
            c.set_description(f"/m/{i % 3}", f"d{i}")
        last = c.store.last_seq
        views = {seq: c.state_at(seq=seq).as_dict() for seq in range(0, last + 1)}
    # a fresh replay of each prefix gives the same states
    from projections import MediaProjection
    with eventstore.open(tmp_path / "store", durability="none", readonly=True) as store:
        events = list(store.read())
    for seq, state in views.items():
        p = MediaProjection()
        for e in events[:seq]:
            p.apply(e)
        assert p.as_dict() == state, seq


def test_diff_between_two_seqs(cat: MediaCatalog) -> None:
    cat.set_title("/m/a", "A")
    mark = cat.set_title("/m/b", "B").seq
    cat.set_title("/m/a", "A2")
    cat.forget("/m/b")
    cat.set_title("/m/c", "C")
    cat.set_title("/m/c", "")                         # back to nothing: no difference
    d = cat.diff(mark, cat.store.last_seq)
    assert set(d) == {"/m/a", "/m/b"}
    assert (d["/m/a"][0].title, d["/m/a"][1].title) == ("A", "A2")
    assert d["/m/b"][0].title == "B" and d["/m/b"][1] is None
    back = cat.diff(cat.store.last_seq, mark)
    assert back["/m/b"] == (None, d["/m/b"][0])
    assert cat.diff(mark, mark) == {}


# ------------------------------------------------------------------ upkeep

def test_stats_compact_verify(cat: MediaCatalog) -> None:
    cat.set_title("/m/a", "A")
    stats = cat.stats()
    assert stats["items"] == 1 and stats["events"] == 1 and stats["last_seq"] == 1
    cat.compact()
    assert cat.verify().ok
    assert cat.title("/m/a") == "A"


def test_closed_catalog_refuses_calls(tmp_path) -> None:
    c = open_cat(tmp_path)
    c.close()
    with pytest.raises(eventstore.StoreClosedError):
        c.set_title("/m/a", "A")


def test_readonly_catalog_reads_and_refuses_writes(tmp_path) -> None:
    with open_cat(tmp_path) as c:
        c.set_title("/m/a", "A")
    with open_cat(tmp_path, readonly=True) as c:
        assert c.title("/m/a") == "A"
        with pytest.raises(eventstore.ReadOnlyError):
            c.set_title("/m/a", "B")


def test_state_at_time_across_the_coarse_time_index(cat: MediaCatalog) -> None:
    """Over several TIME_STRIDE windows, time -> seq matches a scan of the log."""
    from projections.media import TIME_STRIDE
    commits = []
    n = 0
    while n < 3 * TIME_STRIDE + 100:
        with cat.batch() as b:
            for _ in range(97):
                cat.set_title(f"/m/{n % 500}", f"v{n}")
                n += 1
        commits.append(b.events)
        time.sleep(0.002)
    events = list(cat.store.read())
    for evs in commits[::5] + commits[-2:]:
        ts = evs[0].ts
        expected = max(e.seq for e in events if e.ts <= ts)
        view = cat.state_at(time=ts / 1e9)
        assert view.last_seq == expected
        earlier = cat.state_at(time=(ts - 1_000_000) / 1e9)     # commits are 2 ms apart
        assert earlier.last_seq == max((e.seq for e in events if e.ts <= ts - 1_000_000),
                                       default=0)
    assert len(events) > 3 * TIME_STRIDE


def test_state_at_replays_only_after_the_nearest_snapshot(tmp_path) -> None:
    with open_cat(tmp_path, snapshot_every=0) as c:
        for i in range(100):
            c.set_title(f"/m/{i % 7}", f"v{i}")
        covered = c.store.snapshot()
        for i in range(20):
            c.set_title(f"/m/{i % 7}", f"w{i}")
        starts: list[int] = []
        real_read = c.store.read

        def spy(start: int = 1, stop: int | None = None, **kw):
            starts.append(start)
            return real_read(start, stop, **kw)

        c.store.read = spy                      # type: ignore[method-assign]
        try:
            view = c.state_at(seq=covered + 5)
            assert starts == [covered + 1]
            starts.clear()
            assert c.state_at(seq=50).last_seq == 50
            assert starts == [1]                # no snapshot at or before seq 50
        finally:
            del c.store.read
        from projections import MediaProjection
        full = MediaProjection()
        for e in c.store.read(1, covered + 6):
            full.apply(e)
        assert view.as_dict() == full.as_dict() and view.last_seq == covered + 5


def test_batch_block_isolates_other_threads(cat: MediaCatalog) -> None:
    inside, other_done = threading.Event(), threading.Event()
    seen: list[str] = []

    def other() -> None:
        inside.wait()
        seen.append(cat.title("/m/a"))         # waits for the batch: no dirty read
        cat.set_title("/m/b", "from other thread")
        other_done.set()

    th = threading.Thread(target=other)
    th.start()
    with pytest.raises(RuntimeError):
        with cat.batch():
            cat.set_title("/m/a", "pending")
            inside.set()
            assert not other_done.wait(0.2)     # blocked while the batch is open
            raise RuntimeError("roll back")
    th.join(5)
    assert seen == [""] and other_done.is_set()
    assert cat.title("/m/b") == "from other thread" and "/m/a" not in cat


def test_oversized_title_is_refused_alone_and_in_a_batch(cat: MediaCatalog) -> None:
    huge = "x" * (2 << 20)                       # over the default max_event_bytes (1 MiB)
    with pytest.raises(ValueError):
        cat.set_title("/m/a", huge)
    with pytest.raises(ValueError):
        with cat.batch():
            cat.set_title("/m/b", "small")
            cat.set_title("/m/c", huge)
    assert cat.store.last_seq == 0 and len(cat) == 0 and not cat.in_batch


def test_diff_matches_a_brute_force_comparison_for_every_pair(cat: MediaCatalog) -> None:
    from projections import MediaProjection
    cat.set_title("/m/a", "A")
    cat.set_title("/m/b", "B")
    cat.set_description("/m/a", "d")
    cat.rename("/m/a", "/m/c")
    cat.set_title("/m/b", "")
    cat.undo()
    cat.forget("/m/c")
    cat.set_title("/m/a", "A again")
    events = list(cat.store.read())
    states = []
    for n in range(len(events) + 1):
        p = MediaProjection()
        for e in events[:n]:
            p.apply(e)
        states.append(p.as_dict())
    for a in range(len(events) + 1):
        for b in range(len(events) + 1):
            d = cat.diff(a, b)
            keys = set(states[a]) | set(states[b])
            expected = {k for k in keys if states[a].get(k) != states[b].get(k)}
            assert set(d) == expected, (a, b)
            for k, (before, after) in d.items():
                assert (before and before[:2]) == (states[a].get(k)), (a, b, k)
                assert (after and after[:2]) == (states[b].get(k)), (a, b, k)


@pytest.mark.parametrize("path", ["/m/a.jpg", "/m//a", "//m/a", "///m", "/m/./a", "/m/../a",
                                  "/m/a/", "/m/.hidden", "/m/a.", "/m/..b", "/", "/m/a/.",
                                  "/m/a/..", "/m/é ü"])
def test_absolute_str_keys_take_the_fast_path_to_the_same_key(path: str) -> None:
    from projections.keys import media_key
    assert media_key(path) == os.path.normpath(path)
    assert media_key(pathlib.PurePosixPath(path)) == os.path.normpath(str(pathlib.PurePosixPath(path)))


@pytest.mark.parametrize("options, message", [
    ({"actor": ""}, "actor must not be empty"),
    ({"actor": 5}, "actor must be str"),
    ({"undo_merge_window": "x"}, "undo_merge_window must be a number of seconds, not str"),
    ({"undo_merge_window": True}, "undo_merge_window must be a number of seconds, not bool"),
    ({"undo_merge_window": -1}, "must be a finite number >= 0, not -1"),
    ({"undo_merge_window": float("nan")}, "must be a finite number >= 0, not nan"),
    ({"undo_merge_window": float("inf")}, "must be a finite number >= 0, not inf"),
])
def test_bad_catalog_options_are_refused_before_a_store_is_created(tmp_path, options, message):
    """SPEC §5 for the catalog's own options: a clear ValidationError (a ValueError), and no
    store is created. (An empty actor was accepted, and a str window raised a bare TypeError.)"""
    path = tmp_path / "cat"
    with pytest.raises(eventstore.ValidationError, match=message):
        MediaCatalog.open(path, **options)
    assert not path.exists()


def test_two_catalogs_on_one_store_see_and_undo_each_others_changes(tmp_path) -> None:
    """SPEC §2: several writers share a store; a catalog takes in the others' commits before
    it reads or plans, so it shows them and its undo reverts them (here two catalogs in one
    process, which share the store as two processes would)."""
    path = tmp_path / "shared"
    with MediaCatalog.open(path, actor="alice") as a, MediaCatalog.open(path, actor="bob") as b:
        a.set_title("/m/x.jpg", "one")
        assert b.title("/m/x.jpg") == "one" and len(b) == 1
        b.set_title("/m/x.jpg", "two", reason="better")
        assert a.get("/m/x.jpg").title == "two" and a.get("/m/x.jpg").version == 2
        undone = a.undo()  # the last commit overall is bob's
        assert [e.data for e in undone] == [{"value": "one"}]
        assert b.title("/m/x.jpg") == "one"
        assert [(c.actor, c.new) for c in b.history("/m/x.jpg")] == [("alice", "one"), ("bob", "two"),
                                                                     ("alice", "one")]
        b.rename("/m/x.jpg", "/m/y.jpg")
        assert "/m/y.jpg" in a and "/m/x.jpg" not in a
        assert a.forget("/m/x.jpg") is None  # b renamed it away: nothing to forget here
        assert a.forget("/m/y.jpg").key == "/m/y.jpg" and len(b) == 0
