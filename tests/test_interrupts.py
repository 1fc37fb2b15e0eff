"""Ctrl-C during any DuckDB query of setup's is an interrupt (exit 130 upstream), never a failed task or a lost
signature.

DuckDB ends a query on a signal with InterruptException or RuntimeError('Query interrupted');
the run's plan, its checks, signatures and setup's own builds all query the database.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import duckdb
import pytest

from setup_tasks.store.database import Database

BIG = 30_000_000  # rows: hashing them takes long enough to be interrupted


@pytest.fixture(scope="module")
def big_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("interrupts") / "big.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute(f"create table big as select range as a from range({BIG})")
    return path


class Interrupted:
    """A connection whose queries (those with ``marker`` in their SQL) are interrupted while they run,
    as Ctrl-C does: interrupts are sent every few milliseconds until the query returns."""

    def __init__(self, con: Any, marker: str) -> None:
        self._con, self._marker = con, marker

    def execute(self, sql: str, *args: Any) -> Any:
        if self._marker not in sql:
            return self._con.execute(sql, *args)
        done = threading.Event()

        def keep_interrupting() -> None:
            while not done.wait(0.005):
                self._con.interrupt()

        threading.Thread(target=keep_interrupting, daemon=True).start()
        try:
            return self._con.execute(sql, *args)
        finally:
            done.set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


def interrupting(db: Database, monkeypatch: pytest.MonkeyPatch, marker: str) -> None:
    """The database's connections interrupt every query whose SQL holds ``marker``."""
    opened = db._connect
    monkeypatch.setattr(db, "_connect", lambda read_only: Interrupted(opened(read_only), marker))


def test_an_interrupted_query_on_a_connection_is_an_interrupt(big_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = Database(big_db)
    interrupting(db, monkeypatch, "from big")
    with pytest.raises(KeyboardInterrupt):
        with db.connect(read_only=True) as con:
            con.execute("select sum(hash(a * b.range)) from big, range(100) b").fetchall()


def test_an_interrupted_signature_is_an_interrupt_not_a_missing_signature(
    big_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = Database(big_db)
    interrupting(db, monkeypatch, "bit_xor")  # only the signature query
    key = (big_db.stem, "main", "big")
    with pytest.raises(KeyboardInterrupt):
        db.contents(signed=[key])
    monkeypatch.undo()
    assert db.contents(signed=[key]).signature(key), "without an interrupt the signature is there"
