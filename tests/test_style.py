"""The code is as `ruff format` writes it (pyproject.toml: line length 120), and no line is longer."""

from __future__ import annotations

import subprocess
import sys

from factories import REPO

CHECKED = ["setup_tasks", "tests", "benchmarks", "dodo.py"]


def ruff(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ruff", *args, *CHECKED], cwd=REPO, capture_output=True, text=True)


def test_the_code_is_formatted() -> None:
    run = ruff("format", "--check")
    assert run.returncode == 0, f"{run.stdout}{run.stderr}\nfix: ruff format {' '.join(CHECKED)}"


def test_no_line_is_over_the_limit() -> None:
    run = ruff("check", "--output-format", "concise")
    assert run.returncode == 0, f"{run.stdout}{run.stderr}\nfix: split the lines ruff names (strings and comments)"
