"""Shared fixtures: fixture dbt projects built in temporary folders."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# dbt runs inside each process under test, unless a test asks for the warm worker
# (tests/test_worker.py): no worker outlives the suite.
os.environ["PLANWISE_SETUP_WORKER"] = "0"

from factories import Workspace, write_shop_project  # noqa: E402


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
    first = ws.doit("setup")
    assert first.returncode == 0, first.stdout + first.stderr
    pristine = tmp_path_factory.mktemp("built-shop-pristine") / "ws"
    shutil.copytree(root, pristine, symlinks=True)
    return root, pristine


@pytest.fixture
def built_shop(shop_template: tuple[Path, Path]) -> Workspace:
    """The shop project already set up (every seed and model built), restored in place for this test."""
    root, pristine = shop_template
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(pristine, root, symlinks=True)
    return Workspace(root)
