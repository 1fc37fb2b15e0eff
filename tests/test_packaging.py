"""The package as pip installs it: every subpackage and the schema inside it, the console script, the schema copy."""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import sysconfig
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
        "python -m setup_tasks.config --schema > schemas/setup_config.schema.json"
    )


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
    proc = subprocess.run(
        [sys.executable, "-c", "import setuptools; setuptools.setup()", "build", "--build-base", "build"],
        cwd=source,
        capture_output=True,
        text=True,
        env=clean_env(),
    )
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
    where = subprocess.run(
        [sys.executable, "-c", "import setup_tasks; print(setup_tasks.__file__)"],
        cwd=repo.project,
        env=env,
        capture_output=True,
        text=True,
    )
    assert where.stdout.startswith(str(built)), where.stdout + where.stderr  # the built copy, not this checkout
    init = subprocess.run(
        [sys.executable, "-m", "setup_tasks", "init"], cwd=repo.project, env=env, capture_output=True, text=True
    )
    assert init.returncode == 0, init.stderr[-3000:]
    check = subprocess.run(
        [sys.executable, "-m", "setup_tasks.config", "--check"],
        cwd=repo.project,
        env=env,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0 and check.stdout.strip() == "ok", check.stdout + check.stderr


# -- the README's install command, as a team runs it -----------------------------------------------

CHECKOUT = "/path/to/planwise-setup"  # what the README calls the clone


def readme_install_command() -> str:
    """The first command of the README's "Use it on your own dbt project": install, then init."""
    section = (REPO / "README.md").read_text().split("## Use it on your own dbt project", 1)[1]
    block = section.split("```bash", 1)[1].split("```", 1)[0]
    return next(line.split("#", 1)[0].strip() for line in block.splitlines() if line.startswith("pip install"))


def test_the_readme_installs_from_a_clone_not_from_an_index_that_lacks_the_package() -> None:
    """`pip install planwise-setup` finds nothing: the package is not on PyPI."""
    command = readme_install_command()
    assert command.startswith(f"pip install {CHECKOUT} && "), command


@pytest.mark.slow
def test_the_readme_install_and_upgrade_commands_work_as_written(tmp_path: Path) -> None:
    """In a fresh virtualenv (its dependencies reached through this one's site-packages: offline),
    the README's command installs the package from a clone and runs `init` in a team's repository;
    after the clone changed, the same command installs the new code (the README's upgrade)."""
    from team_projects import write_jaffle_shop

    clone = tmp_path / "planwise-setup"
    clone.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, clone / name)
    shutil.copytree(PACKAGE, clone / "setup_tasks", ignore=shutil.ignore_patterns("__pycache__"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    site = next((venv / "lib").glob("python*/site-packages"))
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    python = venv / "bin" / "python"
    env = {k: v for k, v in clean_env().items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    ours = {
        "pip install": f"{python} -m pip install --no-deps --quiet",
        "python -m": f"{python} -m",
        CHECKOUT: str(clone),
    }
    command = re.sub("|".join(map(re.escape, ours)), lambda m: ours[m[0]], readme_install_command())
    repo = write_jaffle_shop(tmp_path)

    def install() -> subprocess.CompletedProcess[str]:
        run = subprocess.run(
            command, shell=True, cwd=repo.project, env=env, capture_output=True, text=True, timeout=600
        )
        if run.returncode != 0 and "satisfies the requirement setuptools" in run.stdout + run.stderr:
            pytest.skip("no package index to build the package with (setuptools)")
        return run

    first = install()
    assert first.returncode == 0, first.stdout + first.stderr
    assert (repo.project / "dodo.py").is_file() and (repo.project / "setup.yaml").is_file()
    where = subprocess.run(
        [str(python), "-c", "import setup_tasks; print(setup_tasks.__file__)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert where.stdout.startswith(str(site)), where.stdout + where.stderr  # installed, not this checkout
    listed = subprocess.run(
        [str(python), "-m", "doit", "list"], cwd=repo.project, env=env, capture_output=True, text=True, timeout=300
    )
    assert "seed:raw_customers" in listed.stdout, listed.stdout + listed.stderr
    # The upgrade: the clone changed (a pull), the same command again (init refuses: its files exist).
    with open(clone / "setup_tasks" / "__init__.py", "a") as fh:
        fh.write("UPGRADED = True\n")
    (repo.project / "dodo.py").unlink()
    (repo.project / "setup.yaml").unlink()
    second = install()
    assert second.returncode == 0, second.stdout + second.stderr
    upgraded = subprocess.run(
        [str(python), "-c", "import setup_tasks; print(setup_tasks.UPGRADED)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert upgraded.stdout.strip() == "True", upgraded.stdout + upgraded.stderr
