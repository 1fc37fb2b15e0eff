"""The run lock: one building setup run per database, and a build waits for the runs still reading it.

DuckDB refuses a writer while any other process has the file open, even read-only: without the readers'
lock, a run that read the database a moment before another started building made that build fail with
DuckDB's 'Conflicting lock ... close that connection' (seen in test_concurrency's two runs at once).
flock locks belong to open files, so two RunLocks in one process behave as two processes' would.
"""

from __future__ import annotations

import fcntl
import threading
import time
from pathlib import Path

import duckdb
import pytest

from setup_tasks.errors import RunInProgressError
from setup_tasks.store.database import Database
from setup_tasks.store.lock import ReadersStayError, RunLock


def _lock(tmp_path: Path, wait: float = 5.0) -> RunLock:
    (tmp_path / "state").mkdir(exist_ok=True)  # a run built here before (a look at a new one leaves nothing)
    return RunLock(tmp_path / "state" / "run.lock", tmp_path / "w.duckdb", readers_wait=wait)


def test_a_build_waits_for_a_run_reading_the_database(tmp_path: Path) -> None:
    reader, builder = _lock(tmp_path), _lock(tmp_path)
    reader.share()
    released: list[float] = []

    def finish_reading() -> None:
        time.sleep(0.3)
        released.append(time.monotonic())
        reader.release()

    thread = threading.Thread(target=finish_reading)
    thread.start()
    builder.acquire()  # waits for the reader, then builds
    acquired = time.monotonic()
    thread.join()
    assert released and acquired >= released[0]
    builder.release()


def test_a_run_reading_for_too_long_is_named_and_nothing_stays_locked(tmp_path: Path) -> None:
    reader, builder = _lock(tmp_path), _lock(tmp_path, wait=0.2)
    reader.share()
    with pytest.raises(ReadersStayError) as caught:
        builder.acquire()
    assert "another setup run is still reading" in caught.value.one_line()
    assert isinstance(caught.value, RunInProgressError)  # callers stop the run as for a building one
    assert reader.holder() is None  # the builder gave up its run lock too
    reader.release()
    builder.acquire()
    builder.release()


def test_a_run_is_refused_reading_while_another_builds(tmp_path: Path) -> None:
    builder, reader = _lock(tmp_path), _lock(tmp_path)
    builder.acquire()
    with pytest.raises(RunInProgressError, match="already building"):
        reader.share()
    builder.release()
    reader.share()
    reader.release()


def test_a_reader_refused_building_lets_the_builder_go_at_once(tmp_path: Path) -> None:
    """Two runs read; one builds (waiting for the other); the other, asked to build too, is refused and
    stops reading -- the builder does not wait out its time."""
    first, second = _lock(tmp_path, wait=30.0), _lock(tmp_path)
    first.share()
    second.share()
    started = time.monotonic()
    thread = threading.Thread(target=first.acquire)
    thread.start()
    deadline = time.monotonic() + 10
    run_lock = tmp_path / "state" / "run.lock"
    while not (run_lock.exists() and run_lock.read_text()) and time.monotonic() < deadline:
        time.sleep(0.01)  # until first holds run.lock (its PID written), waiting for the readers
    with pytest.raises(RunInProgressError, match="already building"):
        second.acquire()
    thread.join(timeout=10)
    assert not thread.is_alive() and time.monotonic() - started < 5
    first.release()


def test_a_holder_probe_does_not_refuse_a_build(tmp_path: Path) -> None:
    """Another run asking who builds holds run.lock shared for an instant: a build starting then proceeds."""
    lock_path = tmp_path / "state" / "run.lock"
    lock_path.parent.mkdir(exist_ok=True)
    lock_path.write_text("")

    with lock_path.open("r") as probe:
        fcntl.flock(probe, fcntl.LOCK_SH)
        timer = threading.Timer(0.05, lambda: fcntl.flock(probe, fcntl.LOCK_UN))
        timer.start()
        builder = _lock(tmp_path)
        builder.acquire()
        timer.join()
    builder.release()


def test_a_database_opened_by_a_reading_run_is_not_written_meanwhile(tmp_path: Path) -> None:
    """A real DuckDB file: a run's kept read-only connection holds the readers' lock; another run's build
    waits until it is closed, then writes (before: DuckDB's lock error for the building run)."""
    path = tmp_path / "w.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("create table t as select 1 as x")
    reading_lock, building_lock = _lock(tmp_path), _lock(tmp_path)
    reading = Database(path, before_open=reading_lock.share)
    with reading.read_only(keep_open=True) as reader:
        assert reader.query("select count(*) from t").rows == [(1,)]

    def stop_reading() -> None:
        time.sleep(0.3)
        reading.close_reader()
        reading_lock.release()

    thread = threading.Thread(target=stop_reading)
    thread.start()
    building = Database(path, before_open=building_lock.share)
    building_lock.acquire()
    with building.connect() as con:
        con.execute("insert into t values (2)")
    thread.join()
    building_lock.release()
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("select count(*) from t").fetchone() == (2,)
