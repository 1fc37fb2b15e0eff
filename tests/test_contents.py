"""What the database holds, as one run sees it (engine.contents): read from the database whenever a write may
have happened since the copy was saved (issue 20), and signatures read again only for the tables written
since they were last taken, never for every table (issue 21)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest

from setup_tasks.engine import contents as contents_module
from setup_tasks.engine.contents import ContentsView
from setup_tasks.proofs import database_proof
from setup_tasks.store import database
from setup_tasks.store.database import Database
from setup_tasks.store.lock import RunLock

KEY = ("shop", "main", "orders")


def _view(db_path: Path) -> ContentsView:
    return ContentsView(
        Database(db_path),
        RunLock(db_path.parent / "run.lock", db_path),
        db_path.parent / "db_contents.json",
        lambda: [KEY],
    )


@pytest.fixture
def shop_db(tmp_path: Path) -> Path:
    path = tmp_path / "shop.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("create table orders as select range as id from range(10)")
    return path


def _saved_long_after_the_last_write(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run that read the database and saved its copy well after the file last changed."""
    view = _view(db)
    assert view.get().signature(KEY) is not None
    later = time.time_ns() + 10 * contents_module.RACY_NS
    with monkeypatch.context() as patch:
        patch.setattr(contents_module.time, "time_ns", lambda: later)
        view.save()


def test_an_unchanged_file_answers_from_the_saved_copy(shop_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _saved_long_after_the_last_write(shop_db, monkeypatch)
    view = _view(shop_db)
    assert view.get() is view._saved, "an unchanged file must not be opened"


def test_rows_deleted_with_the_modification_time_restored_are_seen(
    shop_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another program deletes rows, then restores the file's size... and modification time: the change time
    moved, so the saved copy is not used and the new signature is read (issue 20, item 15)."""
    _saved_long_after_the_last_write(shop_db, monkeypatch)
    before = _view(shop_db).get().signature(KEY)
    stat = shop_db.stat()
    with duckdb.connect(str(shop_db)) as con:
        con.execute("delete from orders where id < 3")
        con.execute("checkpoint")
    os.utime(shop_db, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert shop_db.stat().st_mtime_ns == stat.st_mtime_ns
    view = _view(shop_db)
    assert view.get() is not view._saved
    assert view.get().signature(KEY) != before


def test_a_copy_saved_while_the_file_was_changing_is_trusted_by_its_bytes(shop_db: Path) -> None:
    """Saved within the racy margin of the file's last change (as every building run saves): its keys prove
    nothing, but the database's headers and WAL, unchanged since, do -- the next run need not read the
    database (before, every run after a build re-signed every table)."""
    view = _view(shop_db)
    view.get()
    view.save()
    again = _view(shop_db)
    assert again.get() is again._saved


def test_a_write_in_the_same_clock_tick_is_seen(shop_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write after the racy save that keeps every stat key (same clock tick: simulated by keeping the keys)
    changes the checkpointed headers: the saved copy is not trusted and the new signature is read."""
    view = _view(shop_db)
    before = view.get().signature(KEY)
    view.save()
    view.db.close_reader()
    keys = database.file_state(shop_db)
    with duckdb.connect(str(shop_db)) as con:
        con.execute("delete from orders where id < 3")
    monkeypatch.setattr(contents_module.Database, "file_state", lambda self: keys)
    again = _view(shop_db)
    assert again.get() is not again._saved
    assert again.get().signature(KEY) != before


def test_a_write_after_the_read_is_not_saved_as_read(shop_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write between a run's read and its save, in the same clock tick (keys kept): the saved copy names
    what the file holds at the save, not what the run read."""
    view = _view(shop_db)
    before = view.get().signature(KEY)
    view.db.close_reader()
    keys = database.file_state(shop_db)
    monkeypatch.setattr(contents_module.Database, "file_state", lambda self: keys)
    with duckdb.connect(str(shop_db)) as con:
        con.execute("delete from orders where id < 3")
    view.save()
    again = _view(shop_db)
    assert again.get().signature(KEY) != before


TABLES = [("db", "main", f"t{i}") for i in range(20)]


@pytest.fixture
def view(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[ContentsView, list[list[Any]]]:
    path = tmp_path / "db.duckdb"
    con = duckdb.connect(str(path))
    for _, _, name in TABLES:
        con.execute(f"create table {name} as select 1 as x")
    con.close()
    signed: list[list[Any]] = []  # the tables each signature read scanned
    real = database._signatures

    def counting(con: Any, keys: list[Any]) -> Any:
        signed.append(list(keys))
        return real(con, keys)

    monkeypatch.setattr(database, "_signatures", counting)
    db = Database(path)
    return ContentsView(db, RunLock(tmp_path / "run.lock", path), tmp_path / "contents.json", lambda: TABLES), signed


def test_after_a_build_only_the_tables_it_wrote_are_signed_again(view: tuple[ContentsView, list[list[Any]]]) -> None:
    contents, signed = view
    before = contents.get(live=True)
    assert [sorted(s) for s in signed] == [sorted(TABLES)]
    contents.db.close_reader()  # as every writer does first
    con = duckdb.connect(str(contents.db.path))
    con.execute("create or replace table t3 as select 2 as x")  # what a build of t3 writes
    con.close()
    signed.clear()
    contents.invalidate([("db", "main", "t3")])
    after = contents.get()
    assert signed == [[("db", "main", "t3")]]
    assert after.signature(("db", "main", "t3")) != before.signature(("db", "main", "t3"))
    assert {k: after.signature(k) for k in TABLES if k[2] != "t3"} == {
        k: before.signature(k) for k in TABLES if k[2] != "t3"
    }
    signed.clear()
    contents.invalidate([("db", "main", "t4")])  # two writes before the next read (moved aside, then built):
    contents.invalidate([("db", "main", "t5")])  # the tables of both are signed again
    contents.get()
    assert sorted(signed[0]) == [("db", "main", "t4"), ("db", "main", "t5")]
    signed.clear()
    contents.invalidate()  # anything may have changed: every table is signed again
    contents.get()
    assert [sorted(s) for s in signed] == [sorted(TABLES)]


def test_a_live_read_of_a_file_unchanged_since_the_saved_copy_signs_nothing(
    view: tuple[ContentsView, list[list[Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A build opens the file (is it free?) but takes the signatures of the last run's copy while the file
    is unchanged since (saved well after its last change); a file written meanwhile is signed in full."""
    contents, signed = view
    contents.get()
    later = time.time_ns() + 10 * contents_module.RACY_NS
    with monkeypatch.context() as patch:
        patch.setattr(contents_module.time, "time_ns", lambda: later)
        contents.save()
    signed.clear()
    again = ContentsView(contents.db, contents.lock, contents.saved_path, contents.signed_keys)
    assert again.get(live=True).signature(("db", "main", "t0"))
    assert signed == [[]]
    again.db.close_reader()
    con = duckdb.connect(str(contents.db.path))
    con.execute("create or replace table t0 as select 5 as x")  # someone else writes the file
    con.close()
    signed.clear()
    ContentsView(contents.db, contents.lock, contents.saved_path, contents.signed_keys).get(live=True)
    assert [sorted(s) for s in signed] == [sorted(TABLES)]


def test_the_checks_after_a_read_use_its_connection(
    view: tuple[ContentsView, list[list[Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Opening the file costs 10 ms at 30 tables, 100 at 1,000: what the database holds is read on the
    connection the checks then read through, until a writer closes it."""
    contents, _ = view
    opened: list[bool] = []
    real = Database._open

    def counting(self: Database, read_only: bool, config: Any) -> Any:
        opened.append(read_only)
        return real(self, read_only, config)

    monkeypatch.setattr(Database, "_open", counting)
    contents.get(live=True)
    with contents.db.read_only(keep_open=True) as reader:
        assert reader.tables() and reader.columns(("db", "main", "t1")) == ("x",)
    assert opened == [True]
    contents.db.close_reader()


def test_the_view_proves_the_database_only_while_it_holds_what_the_view_read(shop_db: Path) -> None:
    """The building run's witness proves the database by the proof of its view's last read (cli.witnessing):
    none before a read, none once another program wrote the file, none once the view is invalidated."""
    view = _view(shop_db)
    assert view.view_proof() is None
    view.get()
    proof = view.view_proof()
    assert proof is not None and proof == database_proof(shop_db)
    view.db.close_reader()  # as a run's end does, before it leaves its witness
    assert view.view_proof() == proof
    with duckdb.connect(str(shop_db)) as con:
        con.execute("insert into orders values (99)")
    assert view.view_proof() is None
    view.invalidate()
    view.get()
    assert view.view_proof() not in (None, proof)
    view.invalidate([KEY])
    assert view.view_proof() is None


def test_what_a_build_session_read_before_closing_is_the_view_without_opening_the_file_again(
    shop_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch setup builds itself reads the database through its own writing connection before it closes
    (``take_in``): the run's view then needs no open of its own (one an open per batch: 100 ms at 1,000
    tables), and its signatures are those a fresh read gives."""
    view = _view(shop_db)
    before = view.get().signature(KEY)
    view.db.close_reader()
    with duckdb.connect(str(shop_db)) as con:
        con.execute("insert into orders values (10)")
        view.take_in(con, [KEY])
    opened: list[bool] = []
    real_open = database.Database._open
    monkeypatch.setattr(database.Database, "_open", lambda self, *a: opened.append(True) or real_open(self, *a))
    assert view.adopt_taken()
    taken = view.get()
    assert opened == [] and taken.signature(KEY) not in (None, before)
    view.db.close_reader()
    assert _view(shop_db).get().signature(KEY) == taken.signature(KEY)  # as a fresh read finds it
    assert view.view_proof() == database_proof(shop_db)


def test_a_write_after_the_build_session_closed_makes_the_run_read_the_file_itself(shop_db: Path) -> None:
    """Another program wrote between the session's close and the run's next look: what the session read is
    not the file's content any more, so it is not adopted."""
    view = _view(shop_db)
    view.get()
    view.db.close_reader()
    with duckdb.connect(str(shop_db)) as con:
        con.execute("insert into orders values (10)")
        view.take_in(con, [KEY])
    with duckdb.connect(str(shop_db)) as con:
        con.execute("insert into orders values (11)")
    assert not view.adopt_taken()
    view.invalidate([KEY])
    assert view.get().signature(KEY) == _view(shop_db).get().signature(KEY)


def test_a_session_that_may_have_written_any_table_is_not_adopted(shop_db: Path) -> None:
    """``written`` None (a hook may write any table): the signatures the view kept do not hold."""
    view = _view(shop_db)
    view.get()
    view.db.close_reader()
    with duckdb.connect(str(shop_db)) as con:
        view.take_in(con, None)
    assert not view.adopt_taken()
