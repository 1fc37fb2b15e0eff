"""setup_tasks/ type-checks: mypy, configured in pyproject.toml's [tool.mypy], finds no error."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# What [tool.mypy] turns off of --strict, and why (the comments there say more): doit and agate ship
# no types, so classes setup derives from theirs are Any; a value read from JSON or dbt is returned as
# the declared type.
RELAXED = {"disallow_subclassing_any": False, "warn_return_any": False}


def test_setup_tasks_type_checks() -> None:
    """About 10 s the first time (mypy caches what it learned in .mypy_cache/), under a second after."""
    proc = subprocess.run([sys.executable, "-m", "mypy"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0 and "Success: no issues found" in proc.stdout, proc.stdout + proc.stderr


def test_the_type_checker_stays_strict() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["mypy"]
    assert config["files"] == ["setup_tasks"] and config["strict"] is True
    assert {key: value for key, value in config.items() if value is False} == RELAXED
    overrides = config.get("overrides", [])
    assert all(set(o) == {"module", "ignore_missing_imports"} for o in overrides), "only untyped libraries are excused"
