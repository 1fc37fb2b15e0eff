"""Shared fixtures: fixture dbt projects built in temporary folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# dbt runs inside each process under test, unless a test asks for the warm worker
# (tests/test_worker.py): no worker outlives the suite.
os.environ["PLANWISE_SETUP_WORKER"] = "0"

from factories import Workspace, write_shop_project


@pytest.fixture
def shop(tmp_path: Path) -> Workspace:
    """A fresh copy of the small 'shop' dbt project with its setup config (nothing built)."""
    return write_shop_project(tmp_path)
