"""The package as pip installs it: every subpackage and the schema inside it, the console script, the schema copy."""

from __future__ import annotations

import importlib
import os
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


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What a non-editable install copies: setuptools' build of the package (offline)."""
    base = tmp_path_factory.mktemp("build")
    proc = subprocess.run([sys.executable, "-c", "import setuptools; setuptools.setup()", "build", "--build-base", str(base)],
                          cwd=REPO, capture_output=True, text=True, env=clean_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    return base / "lib"


def test_a_build_holds_every_subpackage_and_the_schema(built: Path) -> None:
    packages = {p.parent.relative_to(REPO) for p in PACKAGE.rglob("__init__.py")}
    missing = [str(p) for p in packages if not (built / p / "__init__.py").is_file()]
    assert not missing, f"subpackages left out of the build: {missing}"
    assert (built / "setup_tasks" / "config" / "setup_config.schema.json").is_file()


def test_the_built_package_loads_its_settings_outside_the_checkout(built: Path, tmp_path: Path) -> None:
    env = clean_env({"PYTHONPATH": str(built)})
    code = "import setup_tasks, sys; print(setup_tasks.__file__); from setup_tasks.config import load_settings; load_settings()"
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith(str(built)), proc.stdout  # the built copy, not this checkout
    assert not os.path.exists(tmp_path / "setup.yaml")
