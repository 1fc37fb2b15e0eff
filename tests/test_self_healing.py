"""Issue 11: setup's own files heal, and unwritable locations are one line, not a traceback.

Every cache or state file that is truncated, garbage or of the wrong JSON type is discarded (with
a note in ``-v 2``) and rebuilt; a damaged doit.sqlite is moved aside (its tasks count as forgotten:
they rebuild, and no table is lost); disk full and read-only locations give one line with the cause
and the fix, exit 1, and leave no temporary files; a census generation killed with SIGKILL leaves
no temp file after the next one. Every loader meets every damage in this process; setup as users
run it meets them all at once, and the disk-full and read-only mounts.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from factories import Workspace, database_tables
from setup_tasks.config import load_settings
from setup_tasks.engine.census import generate_census
from setup_tasks.engine.engine import Engine
from setup_tasks.ops.run_report import read_history
from setup_tasks.project.manifest import project_stamp
from setup_tasks.store.caches import manifest_cache

pytestmark = pytest.mark.slow

STATE = ".planwise/warehouse.duckdb/projects/shop"  # this project's state for the database
# Setup's own files (doit.sqlite aside), where they are in the built shop workspace; "ctx-*" is the context folder.
OWN_FILES = {
    "records.json": f"{STATE}/records.json",
    "file_hashes.json": f"{STATE}/file_hashes.json",
    "db_contents.json": f"{STATE}/db_contents.json",
    "graph_memo.json": "proj/target/planwise/ctx-*/graph_memo.json",
    "setup_cache.json": "proj/target/planwise/ctx-*/setup_cache.json",
    "manifest.json": "proj/target/planwise/ctx-*/manifest.json",
    "manifest.pickle": "proj/target/planwise/ctx-*/manifest.pickle",
    "compiled_sql.sealed": "proj/target/planwise/ctx-*/compiled_sql.sealed",
    "run_history": "warehouse.setup_history.jsonl",
    "run_report": "warehouse.setup_report.json",
}
DAMAGES = ("truncated", "garbage", "wrong_json_type")


def own_file(ws: Workspace, name: str) -> Path:
    (path,) = ws.root.glob(OWN_FILES[name])
    return path


def damage(path: Path, how: str) -> None:
    if how == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif how == "garbage":
        path.write_bytes(b"\x00\xff\xfe\x80 not what was written \x81\x9c" * 8)
    elif how == "wrong_json_type":
        path.write_text("[1, 2, 3]\n")
    else:  # pragma: no cover
        raise ValueError(how)


def output(run: Any) -> str:
    return run.stdout + run.stderr


def tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.splitlines()[-lines:])


def assert_no_traceback(run: Any) -> None:
    text = output(run)
    assert "Traceback" not in text and "PythonAction Error" not in text, f"rc {run.returncode}:\n{tail(text)}"


def _temp_files(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.name.endswith(".tmp"))


# -- damaged own files ----------------------------------------------------------------------


@pytest.mark.parametrize("how", DAMAGES)
def test_every_loader_discards_a_damaged_own_file_with_a_note(
    built_shop: Workspace, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The engine of a run over damaged caches and state (every file damaged the same way) loads, says
    which it discarded at INFO (``-v 2``), and answers every node's status: those whose records went
    are stale, never an exception."""
    ws = built_shop
    # setup_cache.json last: with it damaged, manifest.json would not even be read.
    damaged = [name for name in OWN_FILES if name not in ("setup_cache.json", "run_report", "manifest.pickle")]
    for name in damaged:
        damage(own_file(ws, name), how)
    caplog.set_level(logging.INFO, logger="setup_tasks")
    settings = load_settings(ws.config_path, root=ws.root)
    engine = Engine.open(settings)
    statuses = {uid: engine.status(uid) for uid in engine.setup_nodes}
    engine.database_contents()
    runs = read_history(own_file(ws, "run_history"))
    engine.close()
    damage(own_file(ws, "setup_cache.json"), how)
    cache = manifest_cache(engine.ctx)
    assert (
        cache.load(
            project_stamp(
                engine.ctx, {"setup": settings.dbt.setup_selection, "foundation": settings.dbt.foundation_selection}
            )
        )
        is None
    )
    notes = caplog.text
    silent = sorted(name for name in [*damaged, "setup_cache.json"] if f"discarded {own_file(ws, name)}" not in notes)
    assert not silent, f"discarded without a note: {silent}\n{notes}"
    assert all(s.stale and s.error is None for s in statuses.values()), statuses
    assert runs == []


def test_damaged_files_heal_and_no_table_is_lost(built_shop: Workspace) -> None:
    """Every own file damaged (each in its own way) and doit.sqlite garbage: `doit status` reports without a
    traceback; `doit -v 2 setup` says what it discarded and moved aside, rebuilds, loses no table; the
    next run builds nothing."""
    ws = built_shop
    tables = ws.tables()
    damaged = {}
    for i, name in enumerate(OWN_FILES):
        damage(own_file(ws, name), DAMAGES[i % len(DAMAGES)])
        damaged[name] = own_file(ws, name).read_bytes()
    doit_state = ws.root / STATE / "doit.sqlite"
    damage(doit_state, "garbage")
    status = ws.doit("-v", "2", "status", json_report=False)
    assert_no_traceback(status)
    assert status.returncode in (0, 1), tail(output(status))
    damage(doit_state, "truncated")  # status moved the garbage aside; damage the new one again
    # Files status read (or rewrote, healed, without reading: the database snapshot) need no second note.
    left = {name for name, data in damaged.items() if own_file(ws, name).read_bytes() == data}
    first = ws.doit("-v", "2", "setup", json_report=False)
    text = output(first)
    assert_no_traceback(first)
    assert first.returncode == 0, tail(text)
    assert "moved aside" in text and "doit.sqlite" in text, "no line says doit's state was damaged and moved aside"
    notes = [line for line in (output(status) + text).splitlines() if line.startswith("discarded ")]
    # Never read: the report (written only), the pickle and manifest.json (re-parsed: setup_cache.json was damaged).
    silent = [
        name
        for name in OWN_FILES
        if name not in ("run_report", "manifest.pickle", "manifest.json")
        and not any(str(own_file(ws, name)) in line for line in notes)
        and (name in left or name == "setup_cache.json")
    ]
    assert not silent, f"discarded without a note at -v 2: {silent}\n" + "\n".join(notes)
    assert len(list((ws.root / STATE).glob("doit.sqlite.damaged-*"))) == 2, (
        "the damaged state files were not kept aside"
    )
    assert ws.tables() == tables, "tables changed or lost"
    again = ws.doit("setup")
    assert_no_traceback(again)
    assert again.returncode == 0 and again.ran() == set(), f"not healed: the next run built {sorted(again.ran())}"


# -- disk full and read-only -------------------------------------------------------------------


def mount_or_skip(*args: str) -> None:
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs / read-only bind needs root and mount(8)")
    proc = subprocess.run(["mount", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"mount not permitted here: {proc.stderr.strip()}")


# The mount tests run dbt in the doit process: a warm worker keeps dbt's log file in the project
# open, and an open file keeps the mount busy.
IN_PROCESS = {"PLANWISE_SETUP_WORKER": "0"}


def umount(path: Path) -> None:
    if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)  # busy: detach it all the same


@pytest.fixture
def full_disk(built_shop: Workspace, tmp_path: Path) -> Iterator[tuple[Workspace, Path]]:
    """The built workspace (database, state, reports beside it) on a small tmpfs at the same path, filled."""
    ws = built_shop
    db_dir = ws.root
    saved = tmp_path / "saved"
    shutil.copytree(db_dir, saved, symlinks=True)
    mount_or_skip("-t", "tmpfs", "-o", "size=16m,mode=0755", "tmpfs", str(db_dir))
    try:
        shutil.copytree(saved, db_dir, symlinks=True, dirs_exist_ok=True)
        shutil.copystat(saved, db_dir)
        fill(db_dir)
        yield ws, db_dir
    finally:
        umount(db_dir)


def fill(directory: Path) -> None:
    """Fill the file system of ``directory`` (a ``filler`` file takes what is left).

    Unbuffered: a buffered file keeps the part of the last write that did not fit, and closing
    it tries again and raises ENOSPC (whether depends on the exact free space, so on file sizes).
    """
    with open(directory / "filler", "ab", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * (1 << 16))
                fh.flush()
        except OSError:
            pass


def test_disk_full_is_one_line_without_traceback_or_temp_files(full_disk: tuple[Workspace, Path]) -> None:
    """Nothing stale, then a seed edited: exit 0 or 1 and 1, each failure one line with the cause (no space)
    and the fix, no traceback, no temp file, the tables as they were."""
    ws, db_dir = full_disk
    before = database_tables(ws.db_path)
    problems: list[str] = []
    for change in ("nothing_stale", "seed_edited"):
        if change == "seed_edited":
            (db_dir / "filler").unlink()
            ws.seed("regions", "region,tax_rate\nnorth,0.3\nsouth,0.1\n")
            fill(db_dir)
        run = ws.doit("setup", json_report=False, env=IN_PROCESS)
        problems += one_line_failure(change, run, (0, 1) if change == "nothing_stale" else (1,), "space", ws, before)
        if _temp_files(db_dir):
            problems.append(f"{change}: temp files left: {_temp_files(db_dir)}")
        if problems:
            break
    assert not problems, "\n".join(problems)


def one_line_failure(
    label: str, run: Any, codes: tuple[int, ...], needle: str, ws: Workspace, tables: dict[str, Any]
) -> list[str]:
    """What is wrong with a run that met an unwritable location: a traceback, another exit code, a failure
    without one line holding ``needle`` and the fix, changed tables (with the output's tail)."""
    text = output(run)
    problems = []
    if "Traceback" in text or "readonly database" in text:
        problems.append(f"{label}: traceback")
    if run.returncode not in codes:
        problems.append(f"{label}: exit {run.returncode}")
    if run.returncode == 1 and not any("fix:" in line and needle in line for line in text.splitlines()):
        problems.append(f"{label}: no one line with {needle!r} and the fix")
    if database_tables(ws.db_path) != tables:
        problems.append(f"{label}: tables changed")
    return [*problems, tail(text)] if problems else []


def test_read_only_database_directory_is_one_line_without_traceback(built_shop: Workspace) -> None:
    """Status, a no-op setup and a build over a read-only database folder: exit 0 or 1 (1 for the build),
    never a traceback, a failure named in one line with the folder and the fix, the tables as they were."""
    ws = built_shop
    db_dir = ws.root
    before = database_tables(ws.db_path)
    problems: list[str] = []
    for command in ("status", "no-op setup", "build"):
        if command == "build":
            ws.seed("regions", "region,tax_rate\nnorth,0.3\nsouth,0.1\n")
        mount_or_skip("--bind", "-o", "ro", str(db_dir), str(db_dir))
        try:
            run = ws.doit("status" if command == "status" else "setup", json_report=False, env=IN_PROCESS)
        finally:
            umount(db_dir)  # the seed edit of the build needs the folder writable
        problems += one_line_failure(command, run, (0, 1) if command != "build" else (1,), str(db_dir), ws, before)
        if problems:
            break
    assert not problems, "\n".join(problems)


def test_a_read_only_folder_around_a_writable_database_is_not_ready_and_fails_in_one_line(
    built_shop: Workspace, tmp_path: Path
) -> None:
    """The database file can be written, its folder cannot (DuckDB writes the WAL there): `doit status`
    says NOT READY naming the folder, and a build fails in one line with exit 1 (not 3), no traceback."""
    ws = built_shop
    ws.execute("drop table stg_regions")  # something to build, without a new parse
    writable = tmp_path / "writable.duckdb"
    shutil.copy(ws.db_path, writable)
    mount_or_skip("--bind", "-o", "ro", str(ws.root), str(ws.root))
    try:
        subprocess.run(["mount", "--bind", str(writable), str(ws.db_path)], check=True)
        try:
            status = ws.doit("status", json_report=False, env=IN_PROCESS)
            build = ws.doit("setup", json_report=False, env=IN_PROCESS)
        finally:
            umount(ws.db_path)
    finally:
        umount(ws.root)
    assert_no_traceback(status)
    assert status.returncode == 1 and f"NOT READY: the database folder {ws.root} is not writable" in status.stdout, (
        tail(output(status))
    )
    assert_no_traceback(build)
    assert build.returncode == 1, tail(output(build))
    assert any("fix:" in line and str(ws.root) in line for line in output(build).splitlines()), tail(output(build))


# -- census temp file after kill -9 ----------------------------------------------------------------


def test_census_temp_file_of_a_killed_generation_is_removed_by_the_next_one(tmp_path: Path) -> None:
    """A generation killed with SIGKILL leaves its temp file; the next generation removes it (and never
    touches a live writer's)."""
    census = tmp_path / "data" / "census.parquet"
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child generates until killed
        try:
            generate_census(census, employees=5_000_000)
        finally:
            os._exit(0)
    try:
        deadline = time.monotonic() + 120
        temps: list[Path] = []
        while time.monotonic() < deadline and not temps:
            temps = [p for p in census.parent.glob(".*.tmp") if p.stat().st_size > 0] if census.parent.exists() else []
            time.sleep(0.05)
        assert temps, "the generation never wrote a temp file"
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    live_writer = census.with_name(f".{census.name}.{os.getppid()}.tmp")  # a live process's: kept
    live_writer.write_bytes(b"being written")
    generate_census(census, employees=1000)
    left = sorted(p.name for p in census.parent.iterdir() if p != census)
    assert left == [live_writer.name], f"the next generation left the killed one's temp file(s): {left}"
    assert census.is_file()
