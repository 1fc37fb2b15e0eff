"""Shared fixtures: fixture dbt projects built in temporary folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from factories import Workspace, write_shop_project


@pytest.fixture
def shop(tmp_path: Path) -> Workspace:
    """A fresh copy of the small 'shop' dbt project with its setup config (nothing built)."""
    return write_shop_project(tmp_path)
