"""The warm dbt worker: reused across runs, cancelled by Ctrl-C, replaced when it dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from factories import REPO, Workspace, clean_env, stop_workers, worker_pids
from tempdirs import short_temp_dir

pytestmark = pytest.mark.slow


@pytest.fixture
def worker_env() -> Iterator[dict[str, str]]:
    """A private worker directory (short: socket paths are limited), torn down after."""
    directory = short_temp_dir("pw-")
    yield {"PLANWISE_SETUP_WORKER": "1", "PLANWISE_SETUP_WORKER_DIR": str(directory)}
    stop_workers(directory)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]


def test_rebuilds_reuse_one_warm_worker(shop: Workspace, worker_env: dict[str, str]) -> None:
    first = shop.doit("setup", env=worker_env)
    assert first.returncode == 0, first.stderr
    shop.seed("regions", "region,tax_rate\nnorth,0.25\nsouth,0.1\n")
    second = shop.doit("setup", env=worker_env)
    assert second.ran() == {"seed:regions", "model:stg_regions"}
    assert sorted(r[1] for r in shop.tables()["stg_regions"]) == [10.0, 25.0]
    pids = worker_pids(Path(worker_env["PLANWISE_SETUP_WORKER_DIR"]))
    assert len(pids) == 1 and alive(pids[0])


def test_ctrl_c_cancels_the_build_in_the_worker_which_serves_on(shop: Workspace, worker_env: dict[str, str]) -> None:
    assert shop.doit("setup", env=worker_env).returncode == 0
    shop.model("stg_slow", "select sum(a.range * b.range) as s from range(60000) a, range(60000) b")
    proc = subprocess.Popen(
        [sys.executable, "-m", "doit", "setup", f"config={shop.config_path}"],
        cwd=REPO,
        env=clean_env(worker_env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen = []
    for line in proc.stdout:  # Ctrl-C once the build runs in the worker (a fixed delay raced the parse under load)
        seen.append(line)
        if "stale node" in line:
            break
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    out = "".join(seen) + out
    assert proc.returncode == 130, out + err
    assert "Traceback" not in out + err
    shop.model("stg_slow", "select 1 as s")
    again = shop.doit("setup", env=worker_env)
    assert again.ran() == {"model:stg_slow"}
    pids = worker_pids(Path(worker_env["PLANWISE_SETUP_WORKER_DIR"]))
    assert len(pids) == 1 and alive(pids[0])


def test_a_dead_worker_is_replaced_or_bypassed(shop: Workspace, worker_env: dict[str, str]) -> None:
    assert shop.doit("setup", env=worker_env).returncode == 0
    (pid,) = worker_pids(Path(worker_env["PLANWISE_SETUP_WORKER_DIR"]))
    os.kill(pid, signal.SIGKILL)
    shop.seed("regions", "region,tax_rate\nnorth,0.3\n")
    run = shop.doit("setup", env=worker_env)
    assert run.returncode == 0, run.stderr
    assert run.ran() == {"seed:regions", "model:stg_regions"}


def test_an_idle_worker_exits(shop: Workspace, worker_env: dict[str, str]) -> None:
    shop.write_config(dbt={"worker_idle_seconds": 2})
    assert shop.doit("setup", env=worker_env).returncode == 0
    (pid,) = worker_pids(Path(worker_env["PLANWISE_SETUP_WORKER_DIR"]))
    deadline = time.time() + 30
    while alive(pid) and time.time() < deadline:
        time.sleep(0.5)
    assert not alive(pid)
    assert not list(Path(worker_env["PLANWISE_SETUP_WORKER_DIR"]).glob("*.sock"))
