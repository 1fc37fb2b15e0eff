"""The code is as `ruff format` writes it (pyproject.toml: line length 120), no line is longer, and no function
is too complex to follow (radon rank C or better)."""

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


def test_no_function_is_too_complex_to_follow() -> None:
    """radon's cyclomatic complexity rank C or better (at most 20 paths) for every function and class of setup."""
    from radon.complexity import cc_rank, cc_visit

    too_complex = []
    for path in sorted((REPO / "setup_tasks").rglob("*.py")):
        for block in cc_visit(path.read_text(encoding="utf-8")):
            for item in [block, *getattr(block, "methods", [])]:
                if cc_rank(item.complexity) not in "ABC":
                    where = f"{path.relative_to(REPO)}:{item.lineno}"
                    too_complex.append(f"{where} {item.fullname} {cc_rank(item.complexity)} ({item.complexity})")
    assert not too_complex, (
        "\n".join(too_complex) + "\nfix: split these into named helpers (radon cc -s -n D setup_tasks)"
    )
