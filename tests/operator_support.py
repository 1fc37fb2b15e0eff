"""Helpers of the operator-experience tests (issue 13): what a person at a terminal or in a CI log sees.

Everything here drives doit (or dbt) in subprocesses from the repository root and reads what a
user reads: exit codes, output lines, the run report. Nothing imports setup_tasks internals, so
the tests survive the rearrangement of setup_tasks/ (notes/LAYOUT.md).
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import shutil
import struct
import subprocess
import sys
import termios
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from factories import REPO, DoitRun, Workspace, clean_env

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# A task line of the reporter: mark, task name, then the detail column.
TASK_LINE = re.compile(r"^(✓|✗|·|-|!) (\S+)( +)(\S.*)$")
NODE_PREFIXES = ("seed:", "model:", "snapshot:")


def text_of(run: DoitRun | subprocess.CompletedProcess) -> str:
    return (run.stdout or "") + (run.stderr or "")


def lines_of(run: DoitRun) -> list[str]:
    return [line for line in text_of(run).splitlines() if line.strip()]


def report(ws: Workspace) -> dict[str, Any]:
    """The JSON report of the workspace's latest run (report.path defaults beside the database)."""
    return json.loads((ws.root / "warehouse.setup_report.json").read_text())


def check_entry(rep: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    """A check's entry in the report's validation section, by check name (with or without validate:)."""
    checks = rep.get("validation", {}).get("checks", {})
    for key in (name, f"validate:{name}", name.removeprefix("validate:")):
        if key in checks:
            return checks[key]
    return None


def status_words(value: Any) -> str:
    """'not_run' / 'not-run' / 'Not run' -> 'not run'."""
    return re.sub(r"[_-]", " ", str(value or "")).strip().lower()


# -- workspaces ------------------------------------------------------------------------------


def read_config(ws: Workspace) -> dict[str, Any]:
    return yaml.safe_load(ws.config_path.read_text())


def write_config_data(ws: Workspace, data: Mapping[str, Any]) -> None:
    ws.config_path.write_text(yaml.safe_dump(dict(data), sort_keys=False))


def add_custom_checks(ws: Workspace, *checks: Mapping[str, Any]) -> None:
    data = read_config(ws)
    validation = data.setdefault("validation", {})
    validation["custom_checks"] = [*validation.get("custom_checks", []), *map(dict, checks)]
    write_config_data(ws, data)


def set_config(ws: Workspace, section: str, **values: Any) -> None:
    data = read_config(ws)
    data.setdefault(section, {}).update(values)
    write_config_data(ws, data)


def add_model_tests(ws: Workspace, file_name: str, tests: Mapping[str, Mapping[str, list[Any]]]) -> None:
    """A schema file: model -> column -> dbt data tests."""
    models = [
        {
            "name": model,
            "columns": [{"name": column, "data_tests": list(data_tests)} for column, data_tests in columns.items()],
        }
        for model, columns in tests.items()
    ]
    (ws.project / "models" / "staging" / file_name).write_text(
        yaml.safe_dump({"version": 2, "models": models}, sort_keys=False)
    )


def copy_workspace(source: Workspace, destination: Path) -> Workspace:
    """A copy of a built workspace: database, state and project (the copy's first run re-parses)."""
    shutil.copytree(source.root, destination, symlinks=True, ignore=shutil.ignore_patterns("*.tmp", "run.lock"))
    return Workspace(destination)


def doit_cmd(ws: Workspace, *args: str) -> list[str]:
    return [sys.executable, "-m", "doit", *args, f"config={ws.config_path}"]


# -- processes ---------------------------------------------------------------------------------


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def has_open(pid: int, path: Path) -> bool:
    """Does process ``pid`` hold ``path`` (or its WAL) open?"""
    wanted = {str(path.resolve()), str(path.resolve()) + ".wal"}
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") in wanted:
                return True
        except OSError:
            continue
    return False


def held_open_for(pid: int, path: Path, seconds: float, timeout: float) -> bool:
    """True once ``pid`` has held ``path`` open without a break for ``seconds`` (a long query runs)."""
    deadline = time.monotonic() + timeout
    since: float | None = None
    while time.monotonic() < deadline:
        if has_open(pid, path):
            since = since or time.monotonic()
            if time.monotonic() - since >= seconds:
                return True
        else:
            since = None
        time.sleep(0.05)
    return False


def stop(proc: subprocess.Popen) -> None:
    """End a process this test started (and only that one)."""
    if proc.poll() is None:
        proc.kill()
    try:
        proc.communicate(timeout=30)
    except (subprocess.TimeoutExpired, ValueError):
        pass


# -- a terminal --------------------------------------------------------------------------------


@dataclass
class TerminalRun:
    """A command run in a pseudo-terminal: its output as timed chunks, and when watched events happened."""

    returncode: int
    started: float
    chunks: list[tuple[float, bytes]] = field(default_factory=list)
    events: dict[str, float] = field(default_factory=dict)

    @property
    def raw(self) -> str:
        return b"".join(chunk for _, chunk in self.chunks).decode("utf-8", "replace")

    @property
    def plain(self) -> str:
        return ANSI.sub("", self.raw)

    def first_output(self) -> float | None:
        for at, chunk in self.chunks:
            if ANSI.sub("", chunk.decode("utf-8", "replace")).strip():
                return at
        return None

    def output_before(self, moment: float) -> str:
        return ANSI.sub("", b"".join(c for at, c in self.chunks if at < moment).decode("utf-8", "replace"))

    def screen_lines(self) -> list[str]:
        """Lines as they finally stand on the screen: a carriage return rewrites the line."""
        lines = []
        for line in self.raw.replace("\r\n", "\n").split("\n"):
            visible = ANSI.sub("", line.split("\r")[-1])
            lines.append(visible)
        return lines


def run_in_terminal(
    args: list[str],
    *,
    watch: Mapping[str, Callable[[], bool]] | None = None,
    columns: int = 80,
    rows: int = 40,
    env: Mapping[str, str] | None = None,
    timeout: float = 600,
) -> TerminalRun:
    """Run ``args`` from the repository root with a pty as stdin/stdout/stderr, ``columns`` wide.

    ``watch`` maps event names to predicates polled every 20 ms: ``events`` says when each first held.
    """
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    environment = clean_env({"TERM": "xterm-256color", "COLUMNS": str(columns), "LINES": str(rows), **(env or {})})
    environment.pop("NO_COLOR", None)
    started = time.perf_counter()
    proc = subprocess.Popen(
        args, cwd=REPO, env=environment, stdin=slave, stdout=slave, stderr=slave, close_fds=True, start_new_session=True
    )
    os.close(slave)
    result = TerminalRun(returncode=-1, started=started)
    pending = dict(watch or {})
    try:
        while True:
            now = time.perf_counter()
            for name, predicate in list(pending.items()):
                if predicate():
                    result.events[name] = now
                    del pending[name]
            if now - started > timeout:
                raise AssertionError(f"{args} did not finish in {timeout} s:\n{result.plain[-3000:]}")
            ready, _, _ = select.select([master], [], [], 0.02)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every writer closed the terminal
                    data = b""
                if data:
                    result.chunks.append((time.perf_counter(), data))
                    continue
                break
            if proc.poll() is not None and not select.select([master], [], [], 0.2)[0]:
                break
        result.returncode = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return result


def records_written(ws: Workspace) -> Callable[[], bool]:
    """True once setup recorded a finished node (records are written as dbt reports each node done)."""

    def predicate() -> bool:
        from setup_tasks.store.records import JOURNAL_FILE, RECORDS_FILE, BuildRecords

        folders = {p.parent for name in (RECORDS_FILE, JOURNAL_FILE) for p in ws.root.glob(f".planwise/**/{name}")}
        return any(BuildRecords.load(folder / RECORDS_FILE).records for folder in folders)

    return predicate


def manifest_written(ws: Workspace) -> Callable[[], bool]:
    """True once dbt wrote a manifest.json for the project (its parse finished)."""
    return lambda: any(ws.project.glob("target/**/manifest.json"))


def send_after_query_started(
    proc: subprocess.Popen, db_path: Path, sig: int, *, held: float = 1.0, timeout: float = 240
) -> None:
    """Send ``sig`` once ``proc`` has had the database open for ``held`` seconds on end (a check's long query)."""
    if not held_open_for(proc.pid, db_path, held, timeout):
        stop(proc)
        raise AssertionError("the validation query never started")
    proc.send_signal(sig)
