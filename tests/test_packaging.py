"""The package as pip installs it: every subpackage and the schema inside it, the console script, the schema copy."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from factories import REPO, clean_env

PACKAGE = REPO / "setup_tasks"


def test_the_schema_copy_for_editors_equals_the_packaged_schema() -> None:
    """schemas/ is what editors and setup.example.yaml's $schema link read; the package reads its own."""
    packaged = (PACKAGE / "config" / "setup_config.schema.json").read_text()
    assert (REPO / "schemas" / "setup_config.schema.json").read_text() == packaged, (
        "schemas/setup_config.schema.json differs from the packaged schema -- fix: "
        "python -m setup_tasks.config --schema > schemas/setup_config.schema.json")


def test_the_console_script_names_a_function_that_exists() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, function = scripts["planwise-setup"].partition(":")
    assert callable(getattr(importlib.import_module(module), function))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What a non-editable install copies: setuptools' build of the package (offline).

    Built from a copy of the sources: setuptools leaves an egg-info beside them whose file
    list it trusts on the next build, which would hide a data file pyproject.toml leaves out.
    """
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(PACKAGE, source / "setup_tasks", ignore=shutil.ignore_patterns("__pycache__"))
    proc = subprocess.run([sys.executable, "-c", "import setuptools; setuptools.setup()", "build", "--build-base", "build"],
                          cwd=source, capture_output=True, text=True, env=clean_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    return source / "build" / "lib"


def test_a_build_holds_every_subpackage_and_the_schema(built: Path) -> None:
    packages = {p.parent.relative_to(REPO) for p in PACKAGE.rglob("__init__.py")}
    missing = [str(p) for p in packages if not (built / p / "__init__.py").is_file()]
    assert not missing, f"subpackages left out of the build: {missing}"
    assert (built / "setup_tasks" / "config" / "setup_config.schema.json").is_file()


def test_the_built_package_sets_up_a_team_repository_outside_the_checkout(built: Path, tmp_path: Path) -> None:
    """`python -m setup_tasks init` and the settings it writes, from the build alone (schema included)."""
    from team_projects import write_jaffle_shop

    repo = write_jaffle_shop(tmp_path)
    env = clean_env({"PYTHONPATH": str(built)})
    where = subprocess.run([sys.executable, "-c", "import setup_tasks; print(setup_tasks.__file__)"],
                           cwd=repo.project, env=env, capture_output=True, text=True)
    assert where.stdout.startswith(str(built)), where.stdout + where.stderr  # the built copy, not this checkout
    init = subprocess.run([sys.executable, "-m", "setup_tasks", "init"], cwd=repo.project, env=env,
                          capture_output=True, text=True)
    assert init.returncode == 0, init.stderr[-3000:]
    check = subprocess.run([sys.executable, "-m", "setup_tasks.config", "--check"], cwd=repo.project, env=env,
                           capture_output=True, text=True)
    assert check.returncode == 0 and check.stdout.strip() == "ok", check.stdout + check.stderr
