"""Any team's dbt project: `python -m setup_tasks init`, then doit in the team's own repository (issue 14).

One cold `doit setup` per fixture project, run as the team runs it (a subprocess whose
working directory is the team's repository, with the dodo.py init wrote); the stories of
that project share it. Later steps whose point is the engine (a seed edit, a macro edit)
run the same tasks in this process through ``setup_tasks.api``, so dbt starts once.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import duckdb
import pytest
import yaml

import team_projects as tp
from factories import REPO, DoitRun
from team_projects import TeamRepo

PLANWISE_AREAS = {"baseline_workforce", "census_data_quality", "configuration_consistency"}


def output(run: DoitRun | subprocess.CompletedProcess[str]) -> str:
    return run.stdout + run.stderr


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def code_lines(path: Path) -> list[str]:
    """Statements of a Python file: no blank lines, comments or module docstring."""
    import ast

    tree = ast.parse(path.read_text())
    body = (
        tree.body[1:]
        if tree.body
        and isinstance(tree.body[0], ast.Expr)
        and isinstance(getattr(tree.body[0], "value", None), ast.Constant)
        else tree.body
    )
    return [ast.unparse(node) for node in body]


def up_to_date(run: DoitRun) -> set[str]:
    return {name for name, result in run.results.items() if result == "up-to-date"}


def nodes_built(result: Any) -> set[str]:
    """Seeds and models an API run built."""
    return {name for name in result.built if name.startswith(("seed:", "model:"))}


def built_ok(result: Any, expected: set[str]) -> None:
    assert result.success, (result.error, result.failed, [t for t in result.tasks if t.message])
    assert nodes_built(result) == expected


def initialised(repo: TeamRepo) -> subprocess.CompletedProcess[str]:
    proc = repo.init()
    assert proc.returncode == 0, f"`python -m setup_tasks init` failed:\n{output(proc)[-2000:]}"
    return proc


def nothing_stale(status_text: str) -> bool:
    """`doit status` lists no stale node ("0 stale" is fine)."""
    return not re.search(r"^\s+stale\s", status_text, re.M) and not re.search(r"\b[1-9]\d* stale\b", status_text)


def repo_entries() -> set[str]:
    """What the top of this checkout holds: running in a team's repository must write nothing here."""
    return {p.name for p in REPO.iterdir() if p.name not in (".pytest_cache", "__pycache__")}


def config_of(repo: TeamRepo) -> dict[str, Any]:
    return yaml.safe_load((repo.home / "setup.yaml").read_text()) or {}


# ================================================================ init (no dbt)


def test_init_writes_a_two_line_dodo_and_a_commented_setup_yaml_next_to_dbt_project(tmp_path: Path) -> None:
    repo = tp.write_jaffle_shop(tmp_path)
    before = {p.name for p in repo.project.iterdir()}
    proc = repo.init()
    assert proc.returncode == 0, output(proc)
    assert {p.name for p in repo.project.iterdir()} - before == {"dodo.py", "setup.yaml"}
    dodo = repo.project / "dodo.py"
    statements = code_lines(dodo)
    assert len(statements) <= 2 and "setup_tasks" in dodo.read_text(), dodo.read_text()
    text = (repo.project / "setup.yaml").read_text()
    assert sum(line.lstrip().startswith("#") for line in text.splitlines()) >= 3, text  # commented for the team
    check = subprocess.run(
        [sys.executable, "-m", "setup_tasks.config", "--check", "setup.yaml"],
        cwd=repo.project,
        env=tp.team_env(),
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0 and check.stdout.strip() == "ok", output(check)
    # init reads files only: it neither parses with dbt nor touches a database
    assert not (repo.project / "target").exists() and not list(repo.project.glob("*.duckdb"))
    # a project without the PlanWise tables: everything dbt build makes, and no PlanWise checks
    config = config_of(repo)
    # (only the kinds it has: a criterion that matches nothing stops the run, and jaffle_shop has no snapshot)
    assert config["dbt"]["setup_selection"] == "resource_type:seed resource_type:model"
    assert PLANWISE_AREAS == set(config["validation"]["disabled_checks"]), config


def test_init_hints_the_gitignore_lines_the_repository_lacks_and_doit_k_for_a_folder_below(tmp_path: Path) -> None:
    """jaffle's .gitignore has target/, logs/, dbt_packages/ and *.duckdb: the hint names only what setup
    writes besides (its state, reports, graphs, bytecode), and how to run from a folder below."""
    repo = tp.write_jaffle_shop(tmp_path)
    said = output(initialised(repo))
    hint = next(line for line in lines(said) if line.startswith("next:"))
    assert "doit -k setup" in hint, hint
    for pattern in (".planwise/", "*.setup_report.json", "*.setup_history.jsonl", "*.setup_graph.*", "__pycache__/"):
        assert pattern in hint, (pattern, hint)
    assert "target/" not in hint and "logs/" not in hint, hint  # the team ignores them already
    (repo.project / ".gitignore").write_text("\n".join(["*", ""]))
    from setup_tasks.ops.init_project import not_ignored

    assert "target/" in not_ignored(repo.project)  # a .gitignore that names none of them: all of them


def test_init_from_a_parent_directory_writes_next_to_dbt_project(tmp_path: Path) -> None:
    repo = tp.write_jaffle_shop(tmp_path / "team_repo")
    proc = repo.init(cwd=tmp_path / "team_repo")
    assert proc.returncode == 0, output(proc)
    assert (repo.project / "dodo.py").is_file() and (repo.project / "setup.yaml").is_file()
    assert not (tmp_path / "team_repo" / "dodo.py").exists()
    assert f"{repo.project.name}/dodo.py" in output(proc) and "doit setup" in output(proc)  # where, and what next


@pytest.mark.parametrize("existing", ["dodo.py", "setup.yaml"])
def test_init_refuses_to_overwrite_in_one_line_and_writes_nothing(tmp_path: Path, existing: str) -> None:
    repo = tp.write_jaffle_shop(tmp_path)
    mine = "# the team's own file\n"
    (repo.project / existing).write_text(mine)
    proc = repo.init()
    assert proc.returncode == 1
    assert len(lines(output(proc))) == 1 and str(repo.project / existing) in output(proc), output(proc)
    assert "Traceback" not in output(proc)
    assert (repo.project / existing).read_text() == mine
    other = ({"dodo.py", "setup.yaml"} - {existing}).pop()
    assert not (repo.project / other).exists()


def _init_left(project: Path) -> set[str]:
    """What init may have left in the project folder: its files, or temporary ones."""
    return {p.name for p in project.iterdir() if p.name in ("dodo.py", "setup.yaml") or p.name.endswith(".tmp")}


@pytest.mark.parametrize("why", ["a read-only file system", "another user's folder"])
def test_init_where_it_cannot_write_says_so_in_one_line_and_writes_nothing(tmp_path: Path, why: str) -> None:
    """Issue 24: a PermissionError traceback on dodo.py."""
    from other_user import as_nobody, shared_dir, small_disk

    if why == "another user's folder":
        shared = shared_dir()
        repo = tp.write_jaffle_shop(shared)
        for folder in (shared, *[p for p in shared.rglob("*") if p.is_dir()]):
            folder.chmod(0o755)  # root's: uid 65534 may read the project, not write beside it

        import contextlib
        import io

        from setup_tasks.__main__ import main
        from setup_tasks.validation.catalog import discover_builtin

        discover_builtin()  # imported here: the child may not read what it has yet to import

        def as_them() -> tuple[int, str]:
            said = io.StringIO()
            with contextlib.redirect_stderr(said), contextlib.redirect_stdout(said):
                code = main(["init", str(repo.project)])
            return code, said.getvalue()

        try:
            (code, text), _ = as_nobody(as_them)
            left = _init_left(repo.project)
        finally:
            subprocess.run(["rm", "-rf", str(shared)], check=False)
    else:
        with small_disk(tmp_path / "ro", "1m") as mount:
            repo = tp.write_jaffle_shop(mount)
            subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
            proc = repo.init()
            code, text, left = proc.returncode, output(proc), _init_left(repo.project)
    assert code == 1 and "Traceback" not in text and len(lines(text)) == 1, text
    assert str(repo.project) in text and "fix:" in text, text
    assert left == set()


def test_init_on_a_disk_that_fills_between_its_files_writes_neither_and_the_next_init_works(tmp_path: Path) -> None:
    """Issue 24: a traceback, dodo.py written and setup.yaml empty, and the next init refused (dodo.py exists)."""
    from other_user import small_disk

    with small_disk(tmp_path / "disk", "256k") as disk:
        repo = tp.write_jaffle_shop(disk)
        room = os.statvfs(disk)
        filler = disk / "filler"
        filler.write_bytes(b"\0" * (room.f_bavail * room.f_frsize - 4096))  # one page left: dodo.py fits, not both
        full = repo.init()
        assert full.returncode == 1 and "Traceback" not in output(full) and len(lines(output(full))) == 1, output(full)
        assert "No space left on device" in output(full) and "fix: free space" in output(full), output(full)
        assert _init_left(repo.project) == set()
        filler.unlink()
        again = repo.init()
        assert again.returncode == 0, output(again)
        assert _init_left(repo.project) == {"dodo.py", "setup.yaml"}
        assert "setup_tasks" in (repo.project / "dodo.py").read_text() and config_of(repo)["dbt"]


def test_init_writes_neither_file_when_the_second_cannot_be_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same, where no disk can be mounted: the second file's write raises ENOSPC."""
    import errno

    import setup_tasks.ops.init_project as init_module
    from setup_tasks.errors import WriteError

    repo = tp.write_jaffle_shop(tmp_path)
    opened: list[str] = []

    class Full:
        def __init__(self, fh: Any) -> None:
            self.fh = fh

        def __enter__(self) -> "Full":
            return self

        def __exit__(self, *exc: Any) -> None:
            self.fh.close()

        def write(self, text: str) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    def filling(path: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(str(path))
        fh = open(path, *args, **kwargs)
        return Full(fh) if len(opened) == 2 else fh

    monkeypatch.setattr(init_module, "open", filling, raising=False)
    with pytest.raises(WriteError) as err:
        init_module.init(repo.project)
    assert "No space left on device" in err.value.cause and len(opened) == 2
    assert _init_left(repo.project) == set()
    monkeypatch.undo()
    init_module.init(repo.project)
    assert _init_left(repo.project) == {"dodo.py", "setup.yaml"}


def test_init_names_the_projects_when_it_cannot_choose_one(tmp_path: Path) -> None:
    from setup_tasks.errors import PlanwiseError
    from setup_tasks.ops.init_project import init

    with pytest.raises(PlanwiseError, match="no dbt_project.yml"):
        init(tmp_path)
    tp.write_jaffle_shop(tmp_path / "a")
    tp.write_source_seed_project(tmp_path / "b")
    with pytest.raises(PlanwiseError) as error:
        init(tmp_path)
    assert "jaffle_shop" in error.value.cause and "shop_src" in error.value.cause and "fix:" in str(error.value)
    assert not list(tmp_path.rglob("dodo.py"))


def test_init_keeps_the_defaults_on_a_planwise_project(tmp_path: Path) -> None:
    """The issue's staging rule, for PlanWise-shaped projects only: seeds and staging (the simulation
    builds the marts), every check, the synthetic census."""
    repo = tp.write_planwise_project(tmp_path)
    initialised(repo)
    config = config_of(repo)
    assert "setup_selection" not in config["dbt"], config  # the default: resource_type:seed path:models/staging
    assert not (config.get("validation") or {}).get("disabled_checks"), config
    assert "census" not in config, config


def test_init_leaves_a_planwise_project_its_own_census(tmp_path: Path) -> None:
    """Issue 25, item 1: init saw the PlanWise shape and left synthetic census generation on; the project's
    config_job_levels has no target_distribution, so the generator stopped the run (0 of 28 built)."""
    from setup_tasks.config import load_settings
    from setup_tasks.project.context import CENSUS_VAR, dbt_context, with_project_census

    repo = tp.write_planwise_own_census(tmp_path)
    initialised(repo)
    config = config_of(repo)
    assert config["census"] == {"generate": False}, config
    assert tp.OWN_CENSUS in (repo.home / "setup.yaml").read_text()  # names the project's file
    settings = with_project_census(load_settings(root=repo.home, environ={}))
    assert settings.census.path == repo.project / tp.OWN_CENSUS  # status and the census checks look at it
    # item 2: setup passes no census var over the one dbt_project.yml sets
    assert CENSUS_VAR not in dbt_context(settings).vars
    assert "--vars" not in dbt_context(settings).described()


def test_setup_overrides_the_projects_census_var_only_when_the_user_asked(tmp_path: Path) -> None:
    """Issue 25, item 2: with census.generate false, setup still passed census_parquet_path (its default
    data/census.parquet) over the project's own value: the census models read a file that is not there."""
    from setup_tasks.config import load_settings
    from setup_tasks.project.context import CENSUS_VAR, dbt_context, with_project_census

    repo = tp.write_planwise_own_census(tmp_path)
    (repo.home / "setup.yaml").write_text("census: {generate: false}\n")
    assert CENSUS_VAR not in dbt_context(load_settings(root=repo.home, environ={})).vars
    (repo.home / "setup.yaml").write_text("census: {path: data/other.parquet}\n")  # the user's own choice
    chosen = with_project_census(load_settings(root=repo.home, environ={}))
    assert dbt_context(chosen).vars[CENSUS_VAR] == str(repo.home / "data" / "other.parquet")
    assert chosen.census.path == repo.home / "data" / "other.parquet"
    env = load_settings(root=repo.home, environ={"CENSUS_PATH": "/x/c.parquet"})
    assert dbt_context(env).vars[CENSUS_VAR] == "/x/c.parquet"
    (repo.home / "setup.yaml").write_text(f"dbt: {{vars: {{{CENSUS_VAR}: data/v.parquet}}}}\n")  # dbt.vars as given
    given = with_project_census(load_settings(root=repo.home, environ={}))
    assert dbt_context(given).vars[CENSUS_VAR] == "data/v.parquet" and given.census.path == repo.home / "data/v.parquet"
    # a project that leaves the var to setup (the demo) still gets census.path, as before
    demo = tp.write_planwise_project(tmp_path / "demo")
    assert CENSUS_VAR in dbt_context(load_settings(root=demo.home, environ={})).vars


def test_init_turns_the_census_off_when_the_seeds_cannot_feed_the_generator(tmp_path: Path) -> None:
    """A project that reads the census var, sets none, and whose job levels lack target_distribution."""
    repo = tp.write_planwise_project(tmp_path)
    tp._drop_target_distribution(repo.project)
    initialised(repo)
    assert config_of(repo)["census"] == {"generate": False}
    text = (repo.home / "setup.yaml").read_text()
    assert "target_distribution" in text and "data/census.parquet" in text  # why, and where to put one


@pytest.mark.parametrize("where", ["root", "project"])
def test_init_writes_where_the_team_runs_dbt(tmp_path: Path, where: str) -> None:
    """Issue 25, items 4-5: the project in dbt_project/, profiles.yml and the data at the root, where the team
    runs `dbt build --project-dir dbt_project`: dodo.py and setup.yaml go there, so dbt runs there."""
    repo = tp.write_subfolder_project(tmp_path)
    proc = repo.init(cwd=repo.root if where == "root" else repo.project)
    assert proc.returncode == 0, output(proc)
    assert (repo.root / "dodo.py").is_file() and (repo.root / "setup.yaml").is_file()
    assert not (repo.project / "dodo.py").exists() and not (repo.project / "setup.yaml").exists()
    assert config_of(repo)["dbt"]["project_dir"] == "dbt_project"
    assert config_of(repo)["dbt"]["setup_selection"] == "resource_type:model"  # it has no seeds
    if where == "project":
        assert f"cd {repo.root}" in output(proc) or "cd .." in output(proc), output(proc)


def test_init_names_what_to_keep_out_of_git() -> None:
    """Issue 25, item 7: the hint left out __pycache__/ and the graph files."""
    from setup_tasks.ops.init_project import IGNORED

    for entry in (
        ".planwise/",
        "*.setup_report.json",
        "*.setup_history.jsonl",
        "*.setup_graph.*",
        "__pycache__/",
        "target/",
        "logs/",
    ):
        assert entry in IGNORED


def test_a_missing_profile_names_every_place_looked_in(tmp_path: Path) -> None:
    """Issue 25, item 5: 'Could not find profile named 'uss_duckdb' -- fix: fix the file named above' (none named)."""
    from setup_tasks.config import load_settings
    from setup_tasks.engine.definitions import _named_file
    from setup_tasks.errors import ProjectError
    from setup_tasks.project.context import dbt_context

    repo = tp.write_subfolder_project(tmp_path)
    initialised(repo)
    (repo.root / "profiles.yml").rename(repo.root / "old_profiles.yml")
    (repo.project / "profiles.yml").write_text("other_team: {target: dev, outputs: {dev: {type: duckdb}}}\n")
    ctx = dbt_context(load_settings(root=repo.home, environ={}))
    dbt_says = ProjectError(
        "dbt could not parse the project in x: Runtime Error Could not find profile named 'uss_duckdb'",
        "fix the file named above, then run again",
    )
    line = str(_named_file(dbt_says, ctx))
    assert "uss_duckdb" in line and "fix:" in line
    for place in (repo.root / "profiles.yml", repo.project / "profiles.yml", Path.home() / ".dbt" / "profiles.yml"):
        assert str(place) in line, line
    assert "holds other_team" in line and "absent" in line, line


# ================================================================ stories: init, then doit in the team's repository


def cold_story(tmp_path_factory: pytest.TempPathFactory, name: str, write: Callable[[Path], TeamRepo]) -> Any:
    """A fixture project after `init` and a cold `doit setup` in its repository (each test asserts on them)."""
    base = tmp_path_factory.mktemp(name)
    repo = write(base)
    entries = repo_entries()
    init = repo.init()
    cold = repo.doit("setup") if init.returncode == 0 else None
    return SimpleNamespace(repo=repo, base=base, init=init, cold=cold, repo_entries=entries)


def started(state: Any) -> None:
    assert state.init.returncode == 0, f"init failed:\n{output(state.init)[-2000:]}"
    assert state.cold is not None and state.cold.returncode == 0, output(state.cold)[-4000:]


@pytest.fixture(scope="class")
def jaffle(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """jaffle_shop (in a folder of the team's repository) after `init` and a cold `doit setup`."""
    return cold_story(tmp_path_factory, "jaffle", lambda base: tp.write_jaffle_shop(base / "team"))


@pytest.mark.slow
class TestJaffleShop:
    """Seeds, staging views, marts; a profile with a fixed `path: 'jaffle_shop.duckdb'`."""

    def test_cold_build_equals_dbt_build_in_the_profile_database(self, jaffle: Any) -> None:
        started(jaffle)
        assert jaffle.cold.ran() == tp.JAFFLE_NODES  # marts included: init's selection covers the project
        reference = jaffle.repo.dbt_reference(jaffle.base / "dbt_build")
        assert tp.tables(jaffle.repo.db_path) == tp.tables(reference)
        # the one database: the file the team's profile names, nothing beside it
        assert [p.name for p in jaffle.repo.project.glob("*.duckdb")] == ["jaffle_shop.duckdb"]

    def test_checks_fit_the_project(self, jaffle: Any) -> None:
        started(jaffle)
        planwise = {n for n in jaffle.cold.results if n.split(":", 1)[-1].split(".")[0] in PLANWISE_AREAS}
        assert not planwise, sorted(planwise)
        assert jaffle.cold.results.get("validate:dbt_tests") == "success"  # the project's own tests still run
        assert not (jaffle.repo.project / "data").exists()  # no synthetic census for a project that reads none

    def test_second_setup_builds_nothing_and_imports_no_dbt(self, jaffle: Any) -> None:
        started(jaffle)
        again = jaffle.repo.doit("setup")
        assert again.returncode == 0 and again.ran() == set(), output(again)[-3000:]
        assert tp.JAFFLE_NODES <= up_to_date(again)
        # the profile's database came from the parse cache: no dbt, even to learn which file it is
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "doit", "setup"],
            cwd=jaffle.repo.project,
            env=tp.team_env(),
            capture_output=True,
            text=True,
        )
        imported = {
            line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")
        }
        assert proc.returncode == 0 and "dbt" not in imported and "dbt.cli" not in imported, proc.stdout[-2000:]

    def test_list_info_status_forget_work_in_the_team_repository(self, jaffle: Any) -> None:
        started(jaffle)
        repo = jaffle.repo
        listed = repo.doit("list")
        assert listed.returncode == 0 and all(n in listed.stdout for n in tp.JAFFLE_NODES), output(listed)
        info = repo.doit("info", "model:customers")
        assert info.returncode == 0 and "status     up to date" in info.stdout, output(info)
        status = repo.doit("status", json_report=False)
        assert status.returncode == 0, output(status)
        assert str(repo.db_path) in status.stdout and nothing_stale(status.stdout), status.stdout
        assert "profile jaffle_shop" in status.stdout  # says whose file it is
        forget = repo.doit("forget", "model:customers")
        assert forget.returncode == 0, output(forget)
        # setup's forget (an installed entry point) forced the build, not only doit's values
        forced = repo.doit("info", "model:customers")
        assert "forced (doit forget)" in forced.stdout, output(forced)
        built_ok(repo.setup(), {"model:customers"})  # the same doit state, from this process
        assert repo_entries() == jaffle.repo_entries  # nothing written into the planwise-setup checkout

    def test_a_database_path_the_profile_does_not_write_is_refused_before_building(self, jaffle: Any) -> None:
        started(jaffle)
        elsewhere = jaffle.repo.project / "elsewhere.duckdb"
        run = jaffle.repo.doit("setup", json_report=False, env={"DUCKDB_PATH": str(elsewhere)})
        text = output(run)
        assert run.returncode == 1 and "Traceback" not in text, text
        assert not re.search(r"✓ (seed|model):", text), text
        assert any(
            str(elsewhere) in line and str(jaffle.repo.db_path) in line and "fix:" in line for line in lines(text)
        ), text
        assert not elsewhere.exists()

    def test_the_team_sees_only_its_own_kinds_of_node_and_the_tasks_that_apply(self, jaffle: Any) -> None:
        """No census, no foundation, marts beside its staging folder: no `census`, no `quick`, no "staging
        models" for everything; `staging` is the staging folder and `models` every model."""
        started(jaffle)
        repo = jaffle.repo
        listed = repo.doit("list").stdout
        tasks = {line.split()[0] for line in listed.splitlines() if line.strip()}
        assert not {"census", "quick"} & tasks and {"setup", "seeds", "staging", "models"} <= tasks, listed
        assert "staging models" not in listed and "census" not in listed, listed
        assert {"validate:models.materialized", "validate:models.non_empty"} <= tasks, listed
        assert not any(t.startswith("validate:staging_models") for t in tasks), listed
        status = repo.doit("status", json_report=False).stdout
        assert not any(line.startswith("census") for line in status.splitlines()), status
        quick = repo.doit("quick", json_report=False)
        assert quick.returncode == 3 and "Traceback" not in output(quick), output(quick)
        con = duckdb.connect(str(repo.db_path))  # a staging view and the mart it feeds are gone
        con.execute("drop view stg_orders")
        con.execute("drop table orders")
        con.close()
        staging = repo.doit("staging")
        assert staging.ran() == {"model:stg_orders"}, output(staging)  # not the mart it feeds
        models = repo.doit("models")
        assert models.ran() == {"model:orders"}, output(models)

    def test_doit_k_runs_from_a_folder_below_the_project(self, jaffle: Any) -> None:
        """What the README and init say for a folder below dodo.py (doit alone looks for dodo.py where it runs)."""
        started(jaffle)
        below = jaffle.repo.project / "models" / "staging"
        for args in (("status",), ("setup",)):
            run = subprocess.run(
                [sys.executable, "-m", "doit", "-k", *args],
                cwd=below,
                env=tp.team_env(),
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert run.returncode == 0 and "Traceback" not in run.stderr, output(run)
        assert str(jaffle.repo.db_path) in run.stdout or "up to date" in run.stdout, run.stdout

    def test_one_seed_edit_rebuilds_only_its_subtree(self, jaffle: Any) -> None:
        started(jaffle)
        jaffle.repo.seed("raw_customers", tp.JAFFLE_SEEDS["raw_customers"] + "5,Katherine,R.\n")
        built_ok(jaffle.repo.setup(), {"seed:raw_customers", "model:stg_customers", "model:customers"})
        assert len(tp.tables(jaffle.repo.db_path)["customers"]) == 5


@pytest.fixture(scope="class")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The local-package project after `init` and a cold `doit setup` (no `dbt deps` run by hand)."""
    return cold_story(tmp_path_factory, "packages", tp.write_package_project)


@pytest.mark.slow
class TestLocalPackage:
    """packages.yml with `- local: ../my_pkg`; stg_payments calls my_pkg.cents_to_dollars."""

    def test_setup_installs_the_packages_and_builds_what_dbt_build_builds(self, packaged: Any) -> None:
        started(packaged)
        assert packaged.cold.ran() == tp.PACKAGE_NODES
        assert packaged.cold.results.get("deps") == "success"
        assert (packaged.repo.project / "dbt_packages" / "my_pkg").exists()
        reference = packaged.repo.dbt_reference(packaged.base / "dbt_build")
        assert tp.tables(packaged.repo.db_path) == tp.tables(reference)

    def test_second_setup_neither_installs_nor_builds(self, packaged: Any) -> None:
        started(packaged)
        installed = (packaged.repo.project / "dbt_packages" / "my_pkg").lstat()
        again = packaged.repo.doit("setup")
        assert again.returncode == 0 and again.ran() == set(), output(again)[-3000:]
        assert again.results.get("deps") == "up-to-date"
        after = (packaged.repo.project / "dbt_packages" / "my_pkg").lstat()
        assert (after.st_ino, after.st_mtime_ns) == (installed.st_ino, installed.st_mtime_ns)  # dbt deps did not run

    def test_editing_the_package_macro_rebuilds_the_model_that_calls_it(self, packaged: Any) -> None:
        started(packaged)
        (packaged.base / "my_pkg" / "macros" / "cents_to_dollars.sql").write_text(tp.CENTS_MACRO_ROUNDED)
        built_ok(packaged.repo.setup(), {"model:stg_payments", "model:payment_totals"})
        assert sorted(r[2] for r in tp.tables(packaged.repo.db_path)["stg_payments"]) == [3.0, 8.0, 11.0]

    def test_one_seed_edit_rebuilds_only_its_subtree(self, packaged: Any) -> None:
        started(packaged)
        packaged.repo.seed("raw_methods", "method,label\ncard,Card\ncash,Cash\n")
        built_ok(packaged.repo.setup(), {"seed:raw_methods", "model:stg_methods"})

    def test_a_changed_packages_yml_runs_dbt_deps_again(self, packaged: Any) -> None:
        started(packaged)
        tp.add_local_package(packaged.repo, "other_pkg")
        run = packaged.repo.setup()
        assert run.success, run.error
        assert "deps" in run.built and (packaged.repo.project / "dbt_packages" / "other_pkg").exists()
        assert nodes_built(run) == set()  # a new package whose macros no model calls rebuilds nothing


@pytest.fixture(scope="class")
def sourced(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The project reading its seeds through source(), after `init` and a cold `doit setup`."""
    return cold_story(tmp_path_factory, "sources", tp.write_source_seed_project)


def says_source_is_seed(text: str, seed: str) -> bool:
    """A line that names the source and the seed whose table it is."""
    return any("source" in line and re.search(rf"seed[: ]{seed}\b", line) for line in text.splitlines())


@pytest.mark.slow
class TestSeedsReadThroughSources:
    """sources.yml lists the seed tables; stg_* read them with source(); an incremental model downstream."""

    def test_cold_build_orders_the_seeds_first_and_equals_dbt_seed_then_build(self, sourced: Any) -> None:
        started(sourced)  # `dbt build` alone fails on this project cold: it does not know the order
        assert sourced.cold.ran() == tp.SOURCE_NODES
        reference = sourced.repo.dbt_reference(sourced.base / "dbt_build", (("seed",), ("build",)))
        assert tp.tables(sourced.repo.db_path) == tp.tables(reference)

    def test_second_setup_builds_nothing(self, sourced: Any) -> None:
        started(sourced)
        again = sourced.repo.doit("setup")
        assert again.returncode == 0 and again.ran() == set(), output(again)[-3000:]

    def test_info_says_the_source_is_the_seed_table(self, sourced: Any) -> None:
        started(sourced)
        info = sourced.repo.doit("info", "model:stg_orders")
        assert info.returncode == 0 and says_source_is_seed(info.stdout, "raw_orders"), output(info)
        assert re.search(r"^(runs after|\s+) seed:raw_orders$", info.stdout, re.M), (
            info.stdout
        )  # and doit builds it first

    def test_one_seed_edit_rebuilds_its_readers_in_the_same_run(self, sourced: Any) -> None:
        started(sourced)
        sourced.repo.seed("raw_orders", tp.SOURCE_SEEDS["raw_orders"] + "4,2,2024-01-04,7.0\n")
        info = sourced.repo.doit("info", "model:orders_incremental")
        assert "will run:" in info.stdout, info.stdout  # stale before the seed is rebuilt, not a run later
        built_ok(sourced.repo.setup(), {"seed:raw_orders", "model:stg_orders", "model:orders_incremental"})
        assert len(tp.tables(sourced.repo.db_path)["orders_incremental"]) == 4
        built_ok(sourced.repo.setup(), set())
        sourced.repo.seed("raw_orders", tp.SOURCE_SEEDS["raw_orders"] + "4,2,2024-01-04,8.0\n")
        run = sourced.repo.doit("setup", json_report=False)
        # the run says it builds in an order a plain `dbt build` does not know (issue 20, item 14)
        assert run.returncode == 0 and re.search(
            r"model stg_orders reads seed raw_orders through source\(\): .*a plain "
            r"`dbt build` does not know that order",
            " ".join(output(run).split()),
        ), output(run)[-3000:]


@pytest.mark.slow
def test_two_projects_share_a_database_and_never_drop_each_others_tables(tmp_path: Path) -> None:
    """Issue 14: on jaffle_shop the first run dropped all 28 demo tables as leftovers."""
    from setup_tasks.api import get_system_status

    sales, hr = tp.write_shared_projects(tmp_path)
    initialised(sales)
    initialised(hr)
    cold = sales.doit("setup")
    assert cold.returncode == 0 and cold.ran() == {"seed:sales_raw", "model:sales_total"}, output(cold)[-3000:]
    built_ok(hr.setup(), {"seed:hr_raw", "model:hr_headcount"})
    shared = tmp_path / "shared.duckdb"
    assert tp.tables(shared) == {  # what `dbt build` in each project makes
        "hr_headcount": [("it", 1), ("ops", 2)],
        "hr_raw": [(1, "ops"), (2, "ops"), (3, "it")],
        "sales_raw": [(1, 10), (2, 32)],
        "sales_total": [(2, 42)],
    }
    built_ok(sales.setup(), set())
    built_ok(hr.setup(), set())
    sales.seed("sales_raw", "id,amount\n1,10\n2,32\n3,8\n")
    built_ok(sales.setup(), {"seed:sales_raw", "model:sales_total"})
    assert {"hr_raw", "hr_headcount"} <= set(tp.tables(shared))
    assert "main.hr_raw (project hr)" in get_system_status(sales.project / "setup.yaml").others
    # a project still retires its own leftovers, and only those
    models = hr.project / "models"
    (models / "hr_headcount.sql").rename(models / "hr_heads.sql")  # its only model: renamed, not removed
    assert hr.setup().success
    assert set(tp.tables(shared)) == {"sales_raw", "sales_total", "hr_raw", "hr_heads"}


@pytest.mark.slow
def test_a_project_drops_only_the_tables_it_built_last(tmp_path: Path) -> None:
    """Issue 24: hr removes its model m_common, which sales also defines and built last: hr dropped sales'
    current table ("no node of the project builds it now"); `doit clear` in sales dropped hr's stg_hr (it
    matches sales' clear pattern stg_)."""
    sales, hr = tp.write_shared_projects(tmp_path)
    hr.write("models/m_common.sql", "select 'hr' as who\n")
    hr.write("models/stg_hr.sql", "select 1 as x\n")
    sales.write("models/m_common.sql", "select 'sales' as who\n")
    sales.write("models/stg_sales.sql", "select 2 as x\n")
    initialised(sales)
    initialised(hr)
    built_ok(hr.setup(), {"seed:hr_raw", "model:hr_headcount", "model:m_common", "model:stg_hr"})
    built_ok(sales.setup(), {"seed:sales_raw", "model:sales_total", "model:m_common", "model:stg_sales"})
    shared = tmp_path / "shared.duckdb"
    assert tp.tables(shared)["m_common"] == [("sales",)]
    (hr.project / "models" / "m_common.sql").unlink()
    assert hr.setup().success
    assert tp.tables(shared).get("m_common") == [("sales",)], "hr dropped the table sales built last"
    cleared = sales.doit("clear", json_report=False)
    assert cleared.returncode == 0, output(cleared)
    left = tp.tables(shared)
    assert "stg_hr" in left and "stg_sales" not in left, output(cleared)
    assert "kept 1 matching table(s) another project built: main.stg_hr" in cleared.stdout, output(cleared)
    assert {"m_common", "sales_total", "hr_headcount"} <= set(left)
    # each project still drops what is its own: hr's stg_hr, once hr no longer builds it
    (hr.project / "models" / "stg_hr.sql").unlink()
    assert hr.setup().success
    assert "stg_hr" not in tp.tables(shared) and tp.tables(shared)["m_common"] == [("sales",)]


@pytest.mark.slow
def test_a_package_host_out_of_reach_is_one_line_with_the_fix_at_once(tmp_path: Path) -> None:
    """dbt deps itself retries for about 19 s, then prints a traceback."""
    repo = tp.write_unreachable_package_project(tmp_path)
    initialised(repo)
    run = repo.doit("setup", json_report=False, timeout=60)
    text = output(run).replace(str(tmp_path), "<tmp>")  # the folder is named after this test
    assert run.returncode == 1 and "Traceback" not in text, text[-3000:]
    failure = [line for line in lines(text) if "dbt deps" in line]
    assert failure and all("packages.invalid" in line and "fix:" in line for line in failure), text[-3000:]


# ================================================================ pieces, without dbt


def test_package_entries_name_the_host_dbt_deps_needs(tmp_path: Path) -> None:
    from setup_tasks.project.packages import HUB_HOST, declared

    (tmp_path / "packages.yml").write_text(
        yaml.safe_dump(
            {
                "packages": [
                    {"package": "dbt-labs/dbt_utils", "version": "1.3.0"},
                    {"local": "../mine"},
                    {"git": "https://github.example/team/macros.git", "revision": "v1"},
                    {"git": "git@gitlab.example:team/other.git"},
                ]
            }
        )
    )
    assert [(p.label, p.host) for p in declared(tmp_path)] == [
        ("dbt-labs/dbt_utils 1.3.0", HUB_HOST),
        ("local ../mine", None),
        ("https://github.example/team/macros.git", "github.example"),
        ("git@gitlab.example:team/other.git", "gitlab.example"),
    ]


def test_a_model_naming_a_table_no_node_built_yet_is_told_which_node_builds_it() -> None:
    """Issue 14: 'Table with name orders does not exist ... fix: correct models/...sql' (the SQL was right)."""
    from setup_tasks.engine.recording import BuildRecorder
    from setup_tasks.engine.run_state import Outcome
    from setup_tasks.project.manifest import manifest_from_dict
    from factories import make_manifest, manifest_node

    manifest = manifest_from_dict(
        make_manifest(
            manifest_node("seed.p.raw_customers"), manifest_node("model.p.stg_direct"), manifest_node("model.p.stg_ok")
        )
    )
    view = SimpleNamespace(
        manifest=manifest,
        node=manifest.nodes.__getitem__,
        run=SimpleNamespace(outcomes={}),
        label=lambda uid: f"{manifest.nodes[uid].resource_type} {manifest.nodes[uid].name}",
    )
    recorder = SimpleNamespace(view=view)
    duckdb_says = (
        'Catalog Error: Table with name raw_customers does not exist! Did you mean "pragma_database_list"? '
        "LINE 10: select count(*) as n from raw_customers"
    )
    hint = BuildRecorder.unbuilt_input(recorder, "model.p.stg_direct", duckdb_says)  # type: ignore[arg-type]
    assert hint and "seed raw_customers" in hint.fix and "ref('raw_customers')" in hint.one_line(), hint
    assert "correct models/stg_direct.sql" not in hint.one_line()
    view.run.outcomes["seed.p.raw_customers"] = Outcome("seed.p.raw_customers", "error", "bad CSV")
    again = BuildRecorder.unbuilt_input(recorder, "model.p.stg_direct", duckdb_says)  # type: ignore[arg-type]
    assert again and "failed in this run" in again.one_line(), again
    # any other failure: the SQL's own hint (engine.hints.explain)
    assert BuildRecorder.unbuilt_input(recorder, "model.p.stg_ok", "Parser Error: syntax error at or near x") is None  # type: ignore[arg-type]


def test_the_database_is_the_profiles_file_and_a_configured_path_must_agree(tmp_path: Path) -> None:
    from setup_tasks.errors import DatabaseError
    from setup_tasks.project.context import DbtProfile

    profile = DbtProfile.rendered("jaffle_shop", "dev", "duckdb", "jaffle_shop.duckdb", tmp_path)
    assert profile.database_file(None) == tmp_path / "jaffle_shop.duckdb"  # relative to the project: dbt runs there
    assert profile.database_file(tmp_path / "x" / ".." / "jaffle_shop.duckdb") == tmp_path / "jaffle_shop.duckdb"
    with pytest.raises(DatabaseError) as refused:
        profile.database_file(tmp_path / "elsewhere.duckdb")
    line = str(refused.value)
    assert str(tmp_path / "elsewhere.duckdb") in line and str(tmp_path / "jaffle_shop.duckdb") in line
    assert "env_var('DUCKDB_PATH', 'jaffle_shop.duckdb')" in line  # the fix keeps the profile's own default
    for written, adapter in ((":memory:", "duckdb"), ("md:my_db", "duckdb"), ("x.duckdb", "postgres")):
        with pytest.raises(DatabaseError, match="fix:"):
            DbtProfile.rendered("p", "dev", adapter, written, tmp_path).database_file(None)


# ================================================================ issue 25: the projects that broke, unchanged


@pytest.fixture(scope="class")
def own_census(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The PlanWise project that ships its own census: `init`, `doit status`, then a cold `doit setup`."""
    base = tmp_path_factory.mktemp("own_census")
    repo = tp.write_planwise_own_census(base)
    init = repo.init()
    status = repo.doit("status", json_report=False) if init.returncode == 0 else None
    cold = repo.doit("setup") if init.returncode == 0 else None
    return SimpleNamespace(repo=repo, base=base, init=init, status=status, cold=cold)


PLANWISE_NODES = {f"seed:{p.stem}" for p in (REPO / "dbt" / "seeds").glob("*.csv")} | {
    f"model:{p.stem}" for p in (REPO / "dbt" / "models" / "staging").glob("*.sql")
}


@pytest.mark.slow
class TestPlanWiseProjectWithItsOwnCensus:
    """Issue 25, items 1-2: dbt_project.yml sets census_parquet_path to the file the repository ships."""

    def test_status_before_the_first_run_is_ready_and_names_the_projects_census(self, own_census: Any) -> None:
        started(own_census)
        status = own_census.status
        assert status.returncode == 0 and "ready to set up" in status.stdout, output(status)[-3000:]
        census = [line for line in status.stdout.splitlines() if line.startswith("census")]
        assert census and str(own_census.repo.project / tp.OWN_CENSUS) in census[0], status.stdout
        assert f"{tp.OWN_CENSUS_EMPLOYEES} rows" in census[0] and "your own file" in census[0]

    def test_the_first_setup_builds_every_node_equal_to_dbt_build(self, own_census: Any) -> None:
        started(own_census)
        assert own_census.cold.ran() == PLANWISE_NODES and len(PLANWISE_NODES) == 28
        assert not (own_census.repo.project / "data" / "census.parquet").exists()  # nothing generated
        reference = own_census.repo.dbt_reference(own_census.base / "dbt_build")
        assert tp.described(own_census.repo.db_path) == tp.described(reference)

    def test_info_and_dbt_show_what_setup_passes_to_dbt(self, own_census: Any) -> None:
        started(own_census)
        repo = own_census.repo
        info = repo.doit("info", "model:stg_census_data")
        assert info.returncode == 0 and f"in {repo.home}" in info.stdout, output(info)
        assert "--project-dir" in info.stdout and "census_parquet_path" not in info.stdout, info.stdout
        debug = repo.doit("dbt", "args=debug --config-dir", json_report=False)
        shown = [line for line in debug.stdout.splitlines() if line.startswith("setup runs dbt")]
        assert shown and "--vars" not in shown[0] and f"in {repo.home}" in shown[0], output(debug)[-2000:]


@pytest.mark.slow
def test_status_is_not_ready_when_setup_cannot_generate_the_census(tmp_path: Path) -> None:
    """Issue 25, item 1: `doit status` said "ready to set up", then the census generator stopped the run: status
    runs setup's own pre-flight."""
    repo = tp.write_planwise_project(tmp_path)
    tp._drop_target_distribution(repo.project)
    initialised(repo)
    off = repo.doit("status", json_report=False)  # init turned generation off: the census is missing
    assert off.returncode == 1 and "NOT READY: census" in off.stdout and "missing" in off.stdout, output(off)[-3000:]
    (repo.home / "setup.yaml").write_text("census: {generate: true}\n")  # as before: setup would generate one
    on = repo.doit("status", json_report=False)
    assert on.returncode == 1, output(on)[-3000:]
    verdict = on.stdout.splitlines()[0]
    assert "NOT READY: setup would fail: census" in verdict and "target_distribution" in verdict, on.stdout[-3000:]
    run = repo.doit("setup", json_report=False)  # and setup fails exactly there
    assert run.returncode == 1 and "target_distribution" in output(run), output(run)[-3000:]


@pytest.fixture(scope="class")
def subfolder(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """khozzy/dbt-duckdb-recipies in small, after `init` and a cold `doit setup` at its root."""
    return cold_story(tmp_path_factory, "subfolder", tp.write_subfolder_project)


@pytest.mark.slow
class TestProjectInASubfolder:
    """Issue 25, items 3-5 and 7: the project in dbt_project/, profiles.yml and data at the root; sources read
    `read_csv('data/x.csv', columns={...})` and a glob; a model reads a file itself; no seeds."""

    def test_setup_at_the_root_equals_dbt_build_from_the_root(self, subfolder: Any) -> None:
        started(subfolder)
        assert subfolder.cold.ran() == tp.SUBFOLDER_NODES
        assert not (subfolder.repo.project / "dev.duckdb").exists()  # the profile's path, from where dbt runs
        reference = subfolder.repo.dbt_reference(subfolder.base / "dbt_build")
        assert tp.described(subfolder.repo.db_path) == tp.described(reference)

    def test_seed_checks_are_skipped_for_a_project_without_seeds(self, subfolder: Any) -> None:
        started(subfolder)
        seeds = {n: r for n, r in subfolder.cold.results.items() if n.startswith("validate:seed_data_integrity.")}
        assert seeds and all(r == "success" for r in seeds.values()), seeds
        report = json.loads(subfolder.repo.db_path.with_suffix(".setup_report.json").read_text())
        verdicts = {
            name: c["status"]
            for name, c in report["validation"]["checks"].items()
            if name.startswith("seed_data_integrity.")
        }
        assert set(verdicts.values()) == {"skipped"}, verdicts

    def test_a_file_the_glob_matches_rebuilds_its_readers(self, subfolder: Any) -> None:
        started(subfolder)
        again = subfolder.repo.doit("setup")
        assert again.returncode == 0 and again.ran() == set(), output(again)[-3000:]
        (subfolder.repo.root / "data" / "products" / "products_3.json").write_text(
            '[{"id": 4, "name": "pot", "sku": "T"}]\n'
        )
        (subfolder.repo.root / "data" / "returns.csv").write_text(
            tp.SUBFOLDER_DATA["data/returns.csv"] + "3,1,2024-03-01,1\n"
        )
        built_ok(
            subfolder.repo.setup(),
            {"model:products", "model:stg_products", "model:returns", "model:stg_returns", "model:returns_bridge"},
        )
        assert len(tp.tables(subfolder.repo.db_path)["stg_products"]) == 4


@pytest.mark.slow
def test_a_missing_profile_stops_setup_in_one_line_naming_the_places_looked_in(tmp_path: Path) -> None:
    repo = tp.write_subfolder_project(tmp_path)
    initialised(repo)
    (repo.root / "profiles.yml").unlink()
    run = repo.doit("setup", json_report=False)
    text = output(run)
    assert run.returncode == 1 and "Traceback" not in text, text[-3000:]
    failure = [line for line in lines(text) if "uss_duckdb" in line]
    assert failure and all("fix:" in line for line in failure), text[-3000:]
    assert str(repo.root / "profiles.yml") in failure[0] and str(repo.project / "profiles.yml") in failure[0]
