"""What the database holds is read from the database whenever a write may have happened since the copy was saved."""

from __future__ import annotations

import os
import time
from pathlib import Path

import duckdb
import pytest

from setup_tasks.engine import contents as contents_module
from setup_tasks.engine.contents import ContentsView
from setup_tasks.store.database import Database
from setup_tasks.store.lock import RunLock

KEY = ("shop", "main", "orders")


def _view(db_path: Path) -> ContentsView:
    return ContentsView(Database(db_path), RunLock(db_path.parent / "run.lock", db_path),
                        db_path.parent / "db_contents.json", lambda: [KEY])


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
    monkeypatch.setattr(contents_module.time, "time_ns", lambda: later)
    view.save()
    monkeypatch.undo()


def test_an_unchanged_file_answers_from_the_saved_copy(shop_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _saved_long_after_the_last_write(shop_db, monkeypatch)
    view = _view(shop_db)
    assert view.get() is view._saved, "an unchanged file must not be opened"


def test_rows_deleted_with_the_modification_time_restored_are_seen(shop_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
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


def test_a_copy_saved_while_the_file_was_changing_is_not_trusted(shop_db: Path) -> None:
    """Saved within the racy margin of the file's last change: a write in the same clock tick could keep
    every key, so the next run reads the database."""
    view = _view(shop_db)
    view.get()
    view.save()
    again = _view(shop_db)
    assert again.get() is not again._saved
