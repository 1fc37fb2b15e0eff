"""Issue 11: concurrent setup runs sharing one warm worker neither hang, nor see a false
interrupt, nor build with another run's manifest.

Two setups on two databases at once both succeed, identical to clean builds; two setups on one
database give one build and, for the other, success or the one-line "another setup run" refusal
(never rc 130 nobody asked for, never a stall). Every run has a deadline: a hang fails the test.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from factories import REPO, clean_env, write_shop_project

pytestmark = pytest.mark.slow

DEADLINE = 150  # seconds: a cold shop build takes ~10-30 s on these shared machines; the issue saw 15 min


@pytest.fixture
def worker_env() -> Iterator[dict[str, str]]:
    """A private worker directory (short: socket paths are limited), its workers ended after."""
    directory = Path(tempfile.mkdtemp(prefix="pw-", dir="/tmp"))
    yield {"PLANWISE_SETUP_WORKER": "1", "PLANWISE_SETUP_WORKER_DIR": str(directory)}
    needle = str(directory).encode()
    for proc in Path("/proc").iterdir():  # the workers this test started: their command line names the directory
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in argv and b"setup_tasks" in argv:
            try:
                os.kill(int(proc.name), signal.SIGTERM)
            except ProcessLookupError:
                pass
    shutil.rmtree(directory, ignore_errors=True)


def start(config: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "doit", "setup", f"config={config}"], cwd=REPO,
                            env=clean_env(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen[str], deadline: float) -> tuple[int | None, str, float]:
    """(exit code or None on a hang, output, seconds waited)."""
    started = time.monotonic()
    try:
        out, _ = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        return proc.returncode, out, time.monotonic() - started
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        return None, out, time.monotonic() - started


def tail(text: str, lines: int = 12) -> str:
    return "\n".join(text.splitlines()[-lines:])


def test_two_setups_on_two_databases_sharing_one_worker(tmp_path: Path, worker_env: dict[str, str]) -> None:
    """One project, two databases (two configs), one warm worker: both runs at once succeed and
    build what a clean build builds."""
    ws = write_shop_project(tmp_path)
    config = yaml.safe_load(ws.config_path.read_text())
    configs = {}
    for name in ("a", "b"):
        configs[name] = tmp_path / f"{name}.yaml"
        configs[name].write_text(yaml.safe_dump({**config, "database": {"path": f"{name}.duckdb"}}))
    warm = subprocess.run([sys.executable, "-m", "doit", "setup", f"config={configs['a']}"], cwd=REPO,
                          env=clean_env(worker_env), capture_output=True, text=True, timeout=DEADLINE)
    assert warm.returncode == 0, tail(warm.stdout + warm.stderr)
    ws.seed("regions", "region,tax_rate\nnorth,0.3\nsouth,0.1\n")

    procs = {name: start(path, worker_env) for name, path in configs.items()}
    deadline = time.monotonic() + DEADLINE
    results = {name: finish(proc, deadline) for name, proc in procs.items()}
    problems = []
    for name, (code, out, _) in results.items():
        if code is None:
            problems.append(f"{name}: still running after {DEADLINE} s (hang)\n{tail(out)}")
        elif code != 0:
            problems.append(f"{name}: rc {code}\n{tail(out)}")
    assert not problems, "\n".join(problems)
    a, b = (_tables(tmp_path / f"{n}.duckdb") for n in ("a", "b"))
    assert a == b, "the two databases differ although built from the same project"
    assert sorted(r[1] for r in a["stg_regions"]) == [10.0, 30.0]


def _tables(db: Path) -> dict[str, Any]:
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        names = [r[0] for r in con.execute(
            "select table_name from information_schema.tables where table_schema = 'main' order by 1").fetchall()]
        return {n: sorted(con.execute(f'select * from "{n}"').fetchall(), key=repr) for n in names}
    finally:
        con.close()


def test_two_setups_on_one_database_sharing_one_worker(tmp_path: Path, worker_env: dict[str, str]) -> None:
    """Two runs after each project edit, three rounds: each run succeeds or is refused in one line
    because the other is building; never a false interrupt (rc 130), never a stall."""
    ws = write_shop_project(tmp_path)
    first = ws.doit("setup", env=worker_env)
    assert first.returncode == 0, tail(first.stdout + first.stderr)
    problems = []
    for factor in (1000, 10000, 100000):
        ws.model("stg_regions", f"select region, tax_rate * {factor} as tax_scaled from {{{{ ref('regions') }}}}")
        procs = [start(ws.config_path, worker_env) for _ in range(2)]
        deadline = time.monotonic() + DEADLINE
        for i, proc in enumerate(procs):
            code, out, waited = finish(proc, deadline)
            refused = code == 1 and "another setup run" in out
            if code is None:
                problems.append(f"round x{factor} run {i}: hang\n{tail(out)}")
            elif code != 0 and not refused:
                problems.append(f"round x{factor} run {i}: rc {code}\n{tail(out)}")
            elif "Traceback" in out:
                problems.append(f"round x{factor} run {i}: traceback\n{tail(out)}")
        if problems:
            break
        after = ws.doit("setup", env=worker_env)
        assert after.returncode == 0 and after.ran() == set(), f"round x{factor}: not built by either run"
        assert sorted(r[1] for r in ws.tables()["stg_regions"]) == pytest.approx([0.1 * factor, 0.2 * factor])
    assert not problems, "\n".join(problems)


def test_a_finished_request_does_not_cancel_the_next_one(tmp_path: Path, worker_env: dict[str, str]) -> None:
    """The likely cause named in the issue, made deterministic: client A's request is finished but
    its connection stays open; client B (a real setup) starts a build; A hangs up. B must finish
    normally. Today the thread that watched A's request wakes on A's hang-up and interrupts B.

    Client A speaks the worker protocol of main (JSON lines); if the protocol changed, A gets no
    answer and the test still checks that B is unaffected."""
    ws = write_shop_project(tmp_path)
    first = ws.doit("setup", env=worker_env)
    assert first.returncode == 0, tail(first.stdout + first.stderr)
    directory = Path(worker_env["PLANWISE_SETUP_WORKER_DIR"])
    sockets = [p for p in directory.iterdir() if stat.S_ISSOCK(p.lstat().st_mode)]
    assert len(sockets) == 1, sorted(p.name for p in directory.iterdir())

    a = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    a.connect(str(sockets[0]))
    ctx = {"project_dir": str(ws.project), "profiles_dir": str(ws.project), "target": None, "vars": {},
           "threads": None, "database_path": str(ws.db_path), "duckdb_threads": None, "duckdb_memory_limit": None}
    a.sendall(json.dumps({"op": "build", "ctx": ctx, "targets": [], "quiet": True, "env": {}, "cwd": str(tmp_path),
                          "manifest_path": str(ws.project / "target" / "planwise" / "manifest.json")}).encode() + b"\n")
    a.settimeout(30)
    answer = a.makefile("rb").readline()  # A's request is done; A keeps its connection

    ws.model("stg_slow", "select count(*) as n from range(12000) x, range(12000) y where (x.range + y.range) % 97 = 0")
    proc = subprocess.Popen([sys.executable, "-m", "doit", "setup", f"config={ws.config_path}"], cwd=REPO,
                            env=clean_env(worker_env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line)
            if line.startswith("building "):
                break
        time.sleep(0.5)  # B's build request is now in the worker
        a.close()  # A goes away
        code, out, _ = finish(proc, time.monotonic() + DEADLINE)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = "".join(seen) + out
    assert code == 0 and "interrupted" not in out, (
        f"B rc {code} after A (answered {answer[:60]!r}) hung up:\n{tail(out)}")
    assert _tables(ws.db_path)["stg_slow"]
