"""Shared fixtures: fixture dbt projects built in temporary folders."""

from __future__ import annotations

import compileall
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

from setup_tasks.files import RACY_NS
from tempdirs import short_temp_dir

# One warm dbt worker per test session (per xdist worker), as a person's shell would have
# after their first build: doit subprocesses then skip dbt's start-up (seconds each). Tests
# about the worker itself, or about dbt in process, set their own PLANWISE_SETUP_WORKER*.
# The directory is private and short (socket paths are limited); no worker outlives the session.
SUITE_WORKER_DIR = short_temp_dir("pw-suite-")
# Setup's modules compiled once for the session: the doit subprocesses of the slow tier import them
# hundreds of times, and with PYTHONDONTWRITEBYTECODE set (as on these machines) a checkout without
# __pycache__ would compile every module in every one of them (0.15 s each).
compileall.compile_dir(str(Path(__file__).resolve().parent.parent / "setup_tasks"), quiet=1)
# Setup's per-user caches (valid config documents, ...) are the session's own: another suite
# running on the machine must not evict what this one's no-op tests rely on.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="pw-suite-cache-")
os.environ["PLANWISE_SETUP_WORKER"] = os.environ.get("PLANWISE_SUITE_WORKER", "1")
os.environ["PLANWISE_SETUP_WORKER_DIR"] = str(SUITE_WORKER_DIR)
# A suite started in the background of a shell without job control (`pytest &` in a script, nohup) has
# SIGINT ignored, and every doit the tests start inherits that: the Ctrl-C tests would then see a run
# that ignores Ctrl-C. A handler (not SIG_IGN) here gives each child Python's default Ctrl-C again.
signal.signal(signal.SIGINT, signal.default_int_handler)

from factories import Workspace, stop_workers, write_shop_project  # noqa: E402


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: one worker more than the machine has cores. Most tests spend their time waiting on
    doit and dbt subprocesses, sleeps and timeouts, so a third worker on two cores finishes the
    suite about a minute sooner (--maxprocesses caps it)."""
    return (os.cpu_count() or 1) + 1


@pytest.fixture(scope="session", autouse=True)
def suite_worker() -> Iterator[Path]:
    """The session's worker directory; its workers are stopped when the session ends."""
    yield SUITE_WORKER_DIR
    stop_workers(SUITE_WORKER_DIR)
    shutil.rmtree(SUITE_WORKER_DIR, ignore_errors=True)  # the suite leaves nothing behind in TMPDIR
    shutil.rmtree(os.environ["XDG_CACHE_HOME"], ignore_errors=True)


@pytest.fixture
def shop(tmp_path: Path) -> Workspace:
    """A fresh copy of the small 'shop' dbt project with its setup config (nothing built)."""
    return write_shop_project(tmp_path)


@pytest.fixture(scope="session")
def shop_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The shop project after one cold `doit setup`, built once per session: (where tests use it, pristine copy).

    Tests get it back at the same absolute path, with every file's modification time kept:
    the manifest stamp, dbt's manifest and setup's saved database contents all hold absolute
    paths or file times, so a copy elsewhere would cost a re-parse (seconds) per test.
    """
    root = tmp_path_factory.getbasetemp() / "built-shop"
    ws = write_shop_project(root)
    # Files as old as a user's: setup trusts a file's cached hash only once the file is older than
    # RACY_NS, so on a fast machine a build right after writing would leave no file_hashes.json.
    time.sleep(RACY_NS / 1e9 + 0.1)
    first = ws.doit("setup")
    assert first.returncode == 0, first.stdout + first.stderr
    pristine = tmp_path_factory.mktemp("built-shop-pristine") / "ws"
    shutil.copytree(root, pristine, symlinks=True)
    return root, pristine


@pytest.fixture
def built_shop(shop_template: tuple[Path, Path]) -> Workspace:
    """The shop project already set up (every seed and model built), restored in place for this test."""
    root, pristine = shop_template
    if root.exists():
        shutil.rmtree(root)
    shutil.copytree(pristine, root, symlinks=True)
    return Workspace(root)
