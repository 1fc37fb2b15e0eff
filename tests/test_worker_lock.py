"""Issue 24, item 1: setup's own warm worker never keeps a database, and a lock it holds is known as setup's.

A profile whose extension DuckDB cannot load (``extensions: [httpfs]``, no network here) failed the
build, and from then on the worker kept the database file open: every later run, also after the
profile was fixed, stopped with "locked by python3.11 (PID n) -- fix: close that connection
(notebook, IDE, another dbt run)". That process was setup's own worker.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

import duckdb
import pytest
import yaml

from factories import SHOP_TASKS, Workspace, stop_workers, worker_pids
from setup_tasks.dbt import invoke
from setup_tasks.dbt.client import DbtClient
from setup_tasks.dbt.worker import Connection, Request, Worker
from setup_tasks.errors import DatabaseLockedError
from setup_tasks.store.database import Database, held_databases
from tempdirs import short_temp_dir

HOLD = "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('ready', flush=True); time.sleep(120)"


def make_database(path: Path) -> None:
    con = duckdb.connect(str(path))
    con.execute("create table t as select 1 as x")
    con.close()


@pytest.fixture
def worker_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    directory = short_temp_dir("pw-")  # short: socket paths are limited
    monkeypatch.setenv("PLANWISE_SETUP_WORKER_DIR", str(directory))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """A process that holds a database open, started the way setup's worker is named (its command line)."""
    db = tmp_path / "w.duckdb"
    make_database(db)
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(db), "setup_tasks.dbt.worker"], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    yield proc, db
    proc.kill()
    proc.wait()


def fake_worker(path: Path, pid: int, busy_with: str | None, on_shutdown: Any) -> threading.Thread:
    """A worker socket that says it is ``pid`` (and what it is busy with), and ends that process when told to stop."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(4)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                op = json.loads(conn.makefile("r").readline()).get("op")
                if op == "hello":
                    conn.sendall(
                        json.dumps({"event": "done", "result": {"pid": pid, "busy_with": busy_with}}).encode() + b"\n"
                    )
                elif op == "shutdown":
                    on_shutdown()
                    conn.sendall(b'{"event": "done", "result": "bye"}\n')
                    server.close()
                    return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


# -- the worker lets go of every database after each request -----------------------------------------


def _connect_and_fail(path: Path) -> None:
    conn = duckdb.connect(str(path))  # noqa: F841 - held by this frame, as dbt-duckdb's initialize_db holds it
    raise OSError('IO Error: Failed to download extension "httpfs" (ERROR Could not establish connection)')


def _fail_as_dbt_does(path: Path) -> None:
    """Leave a failed connection alive only in a reference cycle (the error, its traceback, a frame keeping
    the error), as dbt-duckdb does when an extension of the profile cannot load."""
    errors = []
    try:
        _connect_and_fail(path)
    except OSError as exc:
        errors.append(exc)


def test_a_connection_a_failed_build_left_in_a_cycle_is_released(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    make_database(db)
    _fail_as_dbt_does(db)
    assert str(db) in (held_databases() or [str(db)]), "the failed connection should still be held here"
    assert invoke.release_database() == []
    assert str(db) not in (held_databases() or [])
    duckdb.connect(str(db), read_only=True, config={"threads": 1}).close()  # another configuration: nothing holds it


def answer_of(worker: Worker, dispatch: Any) -> dict[str, Any]:
    """What the worker answers one request, dispatched by ``dispatch``."""
    ours, theirs = socket.socketpair()
    request = Request(Connection(ours), {"op": "build", "who": "a test"})
    worker.waiting.append(request)
    worker.dispatch = dispatch  # type: ignore[method-assign]
    worker.run(request)
    with theirs:
        return json.loads(theirs.makefile("r").readline())


def test_the_worker_ends_after_a_request_that_leaves_a_database_held(tmp_path: Path) -> None:
    """Whatever keeps a database open past a request (a leak no release reaches): the worker says so in its
    answer (the client waits for it to end) and serves no more, so the OS releases the file."""
    if held_databases() is None:
        pytest.skip("open files cannot be listed here (no /proc)")
    db = tmp_path / "w.duckdb"
    make_database(db)
    kept: list[Any] = []
    worker = Worker(tmp_path / "worker-test.sock", idle=60)
    assert "exiting" not in answer_of(worker, lambda message, conn: None) and not worker.exiting
    try:
        reply = answer_of(worker, lambda message, conn: kept.append(duckdb.connect(str(db))))
    finally:
        for con in kept:
            con.close()
    assert reply["exiting"] == os.getpid() and worker.exiting


# -- a lock held by setup's worker is setup's: it is ended, or named with the run it serves ---------------


def test_a_lock_held_by_an_idle_worker_of_setup_is_ended_and_said(
    worker_dir: Path, holder: tuple[subprocess.Popen[str], Path], caplog: pytest.LogCaptureFixture
) -> None:
    proc, db = holder
    fake_worker(worker_dir / "worker-0123456789abcdef.sock", proc.pid, None, proc.kill)
    contents = Database(db, locked_by=DbtClient(900).free_database).contents()
    assert ("w", "main", "t") in contents.tables
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(said) == 1 and f"setup's dbt worker (PID {proc.pid})" in said[0] and "ended it" in said[0], said


def test_a_lock_held_by_a_busy_worker_of_setup_names_the_run_it_serves(
    worker_dir: Path, holder: tuple[subprocess.Popen[str], Path]
) -> None:
    proc, db = holder
    fake_worker(worker_dir / "worker-0123456789abcdef.sock", proc.pid, "setup of /x/other.duckdb (PID 4242)", proc.kill)
    with pytest.raises(DatabaseLockedError) as err:
        Database(db, locked_by=DbtClient(900).free_database).contents()
    assert (
        f"setup's dbt worker (PID {proc.pid}), running dbt for setup of /x/other.duckdb (PID 4242)" in err.value.cause
    )
    assert err.value.fix.startswith("wait for that run") and proc.poll() is None  # never ended mid-build


def test_a_lock_held_by_a_worker_this_run_cannot_reach_is_still_named_setups(
    worker_dir: Path, holder: tuple[subprocess.Popen[str], Path]
) -> None:
    """Started with another worker folder (or with the worker off now): named as setup's worker, with a fix
    that ends it, never "close that connection (notebook, IDE...)"."""
    if not Path("/proc/self/cmdline").exists():
        pytest.skip("a process's command line cannot be read here (no /proc)")
    proc, db = holder
    for locked_by in (None, DbtClient(900).free_database):
        with pytest.raises(DatabaseLockedError) as err:
            Database(db, locked_by=locked_by).contents()
        assert f"setup's dbt worker (PID {proc.pid})" in err.value.cause
        assert f"kill {proc.pid}" in err.value.fix and "notebook" not in err.value.fix


def test_a_lock_held_by_another_program_is_still_that_programs(tmp_path: Path, worker_dir: Path) -> None:
    db = tmp_path / "w.duckdb"
    make_database(db)
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(db)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        with pytest.raises(DatabaseLockedError) as err:
            Database(db, locked_by=DbtClient(900).free_database).contents()
    finally:
        proc.kill()
        proc.wait()
    assert f"(PID {proc.pid})" in err.value.cause and "setup's" not in err.value.cause
    assert "close that connection" in err.value.fix


# -- end to end: a profile whose extension cannot load ------------------------------------------------------


def with_extension(ws: Workspace, extension: str | None) -> None:
    profiles = ws.project / "profiles.yml"
    data = yaml.safe_load(profiles.read_text())
    output = data["shop"]["outputs"]["dev"]
    if extension is None:
        output.pop("extensions", None)
    else:
        output["extensions"] = [extension]
    profiles.write_text(yaml.safe_dump(data))


def holds(pid: int, path: Path) -> bool:
    folder = Path(f"/proc/{pid}/fd")
    for fd in folder.iterdir() if folder.exists() else ():
        try:
            if os.readlink(fd) == str(path):
                return True
        except OSError:
            continue
    return False


@pytest.mark.slow
@pytest.mark.parametrize("where", ["worker", "in process"])
def test_a_profile_extension_that_cannot_load_never_locks_the_next_runs_out(shop: Workspace, where: str) -> None:
    """`extensions: [httpfs]` offline: the build fails, in one line per node naming the extension and the
    profile; the worker (alive, for the next runs) holds no database; the next run, with the profile
    fixed, builds (before: "locked by python3.11 (PID n) -- fix: close that connection (notebook, IDE...)",
    or in process "Can't open a connection to same database file with a different configuration")."""
    directory = short_temp_dir("pw-")
    env = {
        "PLANWISE_SETUP_WORKER": "1" if where == "worker" else "0",
        "PLANWISE_SETUP_WORKER_DIR": str(directory),
        "PLANWISE_SETUP_DIRECT": "0",
    }
    try:
        with_extension(shop, "httpfs")
        failed = shop.doit("setup", json_report=False, env=env)
        text = failed.stdout + failed.stderr
        nodes = [line for line in text.splitlines() if line.startswith("✗ seed:") or line.startswith("✗ model:")]
        assert failed.returncode == 1 and "Traceback" not in text and nodes, text[-3000:]
        # Setup tries the profile's extensions before it builds (issue 22): the run's one failure names them.
        assert "extensions (httpfs)" in nodes[0] and "profiles.yml" in nodes[0], "\n".join(nodes)
        assert all("extensions (httpfs)" in line or "the same cause as" in line for line in nodes), "\n".join(nodes)
        for wrong in ("locked by", "different configuration", "cannot open database"):
            assert wrong not in text, text[-3000:]
        if where == "worker":
            pids = worker_pids(directory)
            assert len(pids) == 1 and not holds(pids[0], shop.db_path), "the worker kept the database open"
        with_extension(shop, None)
        fixed = shop.doit("setup", env=env)
        assert fixed.returncode == 0, (fixed.stdout + fixed.stderr)[-3000:]
        assert fixed.ran() == SHOP_TASKS
    finally:
        stop_workers(directory)
