"""The no-op shortcut end to end: `doit setup` in a folder with its dodo.py, as people run it (subprocesses).

A no-op answered from the witness of the last full check says, reports and exits as that
check does; every kind of change in between goes the full way and rebuilds what a full
check would (incremental == clean is the property tests' business: here, that the
shortcut never hides a change); and the witness watches every file a full no-op reads,
as an audit hook sees them.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import site
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from factories import REPO, EVENTS_CSV, SHOP_MODELS, Workspace, clean_env
from setup_tasks.cli.shortcut import SHORTCUT_ENV
from setup_tasks.files import RACY_NS
from setup_tasks.config.problems import VALID_CACHE
from setup_tasks.config.yaml_cache import CACHE_FILE as YAML_CACHE
from setup_tasks.keys import key_path
from setup_tasks.store.witness import RUN_SLOTS, Witness, WitnessStore
from setup_tasks.user_folders import cache_folder

pytestmark = pytest.mark.slow

DODO = "from setup_tasks.cli import dodo_namespace\n\nglobals().update(dodo_namespace(__file__))\n"
AUDITED = Path(__file__).with_name("audited_doit.py")
BYTECODE_ENV = "PYTHONDONTWRITEBYTECODE"  # set on these machines, not on most: tests that watch files run both ways
TIMES = re.compile(r"\b\d+(\.\d+)?s\b")


def in_its_folder(ws: Workspace) -> Workspace:
    """The workspace as a team keeps it: dodo.py beside setup.yaml, doit run there with no arguments but the task."""
    (ws.root / "dodo.py").write_text(DODO)
    return ws


@functools.lru_cache(maxsize=1)
def installed_here() -> bool:
    """Does a process started without PYTHONPATH import this repository's package (an editable install of it)?"""
    found = subprocess.run(
        [sys.executable, "-c", "import setup_tasks; print(setup_tasks.__file__)"],
        cwd=tempfile.gettempdir(),
        env={k: v for k, v in clean_env().items() if k != "PYTHONPATH"},
        capture_output=True,
        text=True,
    )
    return found.returncode == 0 and Path(found.stdout.strip()).resolve().parent.parent == REPO.resolve()


def env(extra: dict[str, str] | None = None, bytecode: bool | None = None) -> dict[str, str]:
    """The test's environment; ``bytecode``: True as on most machines (Python writes ``__pycache__``),
    False as on these (PYTHONDONTWRITEBYTECODE=1), None as this process has it. The repository goes on
    PYTHONPATH only when the package is not installed from it: a folder on sys.path is watched, and other
    tests' runs in the repository (the README's) write their reports there, which would void a witness."""
    environ = clean_env(extra)
    if not installed_here():
        environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), environ.get("PYTHONPATH")]))
    if bytecode is not None:
        environ.pop(BYTECODE_ENV, None)
        environ.update({} if bytecode else {BYTECODE_ENV: "1"})
    return environ


def doit(
    ws: Workspace,
    *args: str,
    extra: dict[str, str] | None = None,
    program: list[str] | None = None,
    bytecode: bool | None = None,
) -> subprocess.CompletedProcess[str]:
    command = [*(program or [sys.executable, "-m", "doit"]), *(args or ("setup",))]
    return subprocess.run(command, cwd=ws.root, env=env(extra, bytecode), capture_output=True, text=True, timeout=300)


def report(ws: Workspace) -> dict[str, Any]:
    return json.loads((ws.root / "warehouse.setup_report.json").read_text())


def settle() -> None:
    """Let the files this test wrote age past the racy margin, so a no-op may witness them."""
    time.sleep(RACY_NS / 1e9 + 0.1)


def full_no_op(ws: Workspace) -> subprocess.CompletedProcess[str]:
    """A full check that finds everything up to date, and leaves its witness."""
    settle()
    run = doit(ws)
    assert run.returncode == 0, run.stdout + run.stderr
    assert report(ws)["shortcut"] is None and set(report(ws)["counts"]) == {"up-to-date"}, run.stdout
    assert WitnessStore.for_root(ws.root).get(["setup"]) is not None, run.stdout + run.stderr
    return run


def without_times(text: str) -> str:
    return TIMES.sub("<t>", text)


def test_a_no_op_from_its_witness_says_reports_and_exits_as_the_full_check(built_shop: Workspace) -> None:
    ws = in_its_folder(built_shop)
    full = full_no_op(ws)
    full_report = report(ws)
    short = doit(ws)
    short_report = report(ws)
    assert short.returncode == 0 and short.stderr == full.stderr == ""
    assert short_report["shortcut"]["witness_of"] == full_report["run_id"] != short_report["run_id"]
    assert without_times(short.stdout) == without_times(full.stdout) and "up to date" in short.stdout
    assert {k: v for k, v in short_report.items() if k not in RUN_SLOTS} == {
        k: v for k, v in full_report.items() if k not in RUN_SLOTS
    }
    history = [json.loads(line) for line in (ws.root / "warehouse.setup_history.jsonl").read_text().splitlines()]
    assert [h["run_id"] for h in history[-2:]] == [full_report["run_id"], short_report["run_id"]]
    assert {k: v for k, v in history[-1].items() if k not in RUN_SLOTS} == {
        k: v for k, v in history[-2].items() if k not in RUN_SLOTS
    }
    # The `doit` script (its shebang names the interpreter otherwise) finds the same witness.
    script = Path(sysconfig.get_path("scripts")) / "doit"  # this Python's console script (not a shim on PATH)
    if script.is_file():
        assert doit(ws, program=[str(script)]).returncode == 0
        assert report(ws)["shortcut"]["witness_of"] == full_report["run_id"]
    # Other command lines load the tasks: doit's own commands, another verbosity, another task.
    assert "seed:customers" in doit(ws, "list").stdout
    status = doit(ws, "status")
    assert status.returncode == 0 and "ready" in status.stdout.lower(), status.stdout
    verbose = doit(ws, "setup", "-v", "2")
    assert verbose.returncode == 0 and report(ws)["shortcut"] is None and "up to date" in verbose.stdout
    assert doit(ws, "quick").returncode == 0 and report(ws)["shortcut"] is None  # its own witness, once it has one
    # Turned off, the same answer the full way.
    off = doit(ws, extra={SHORTCUT_ENV: "0"})
    assert off.returncode == 0 and report(ws)["shortcut"] is None
    assert without_times(off.stdout) == without_times(full.stdout)


def edit_seed_same_size_same_mtime(ws: Workspace) -> None:
    seed = ws.project / "seeds" / "customers.csv"
    before = seed.stat()
    seed.write_text(seed.read_text().replace("Ada", "Ava"))
    os.utime(seed, ns=(before.st_atime_ns, before.st_mtime_ns))


def forget_a_model(ws: Workspace) -> None:
    assert doit(ws, "forget", "model:stg_orders").returncode == 0


CHANGES: dict[str, tuple[Callable[[Workspace], None], set[str]]] = {
    "seed edited (size and mtime kept)": (edit_seed_same_size_same_mtime, {"seed:customers", "model:stg_customers"}),
    "table dropped by another program": (lambda ws: ws.execute("drop table stg_regions"), {"model:stg_regions"}),
    "doit forget": (forget_a_model, {"model:stg_orders"}),
    "setup.yaml var changed": (lambda ws: ws.set_vars(fx_rate=3), {"model:stg_orders"}),
    "external file edited": (
        lambda ws: (ws.root / "events.csv").write_text(EVENTS_CSV + "view,2024-01-04\n"),
        {"model:stg_events"},
    ),
}


@pytest.mark.parametrize("change", CHANGES)
def test_every_change_after_a_witness_goes_the_full_way_and_rebuilds(built_shop: Workspace, change: str) -> None:
    """Each kind of change people make between two runs (a file added anywhere in the project changes its
    folder's key: test_witness and the audit test below prove that)."""
    ws = in_its_folder(built_shop)
    full_no_op(ws)
    make, rebuilt = CHANGES[change]
    make(ws)
    run = doit(ws)
    built = {n["task"] for n in report(ws)["nodes"] if n["status"] == "built"}
    assert run.returncode == 0 and report(ws)["shortcut"] is None, run.stdout + run.stderr
    assert rebuilt <= built, run.stdout


# -- every file a full no-op reads is watched -----------------------------------------------------


def not_inputs(ws: Workspace) -> tuple[str, ...]:
    """What a full no-op opens that is no input of its answer: installed code, the system, setup's outputs
    and caches (derived from watched inputs: losing one costs time only), the lock (the shortcut checks it)."""
    state = ws.root / ".planwise" / ws.db_path.name
    project_state = state / "projects" / "shop"
    installed = {
        *sysconfig.get_paths().values(),
        sys.prefix,
        sys.base_prefix,
        sys.exec_prefix,
        sys.base_exec_prefix,
        *site.getsitepackages(),
        site.getusersitepackages(),
    }
    return (
        *{os.path.join(p, "") for p in installed},
        "/proc/",
        "/dev/",
        "/sys/",
        "/etc/",
        str(ws.root / "warehouse.setup_report.json"),
        str(ws.root / "warehouse.setup_history.jsonl"),
        str(ws.project / "target" / "planwise") + os.sep,
        str(state / "run.lock"),
        str(project_state / "db_contents.json"),
        str(project_state / "file_hashes.json"),
        os.path.join(os.environ["XDG_CACHE_HOME"], ""),
    )


@pytest.mark.parametrize("bytecode", [True, False], ids=["bytecode written", "PYTHONDONTWRITEBYTECODE"])
def test_the_witness_watches_every_file_and_folder_a_full_no_op_reads(
    built_shop: Workspace, tmp_path: Path, bytecode: bool
) -> None:
    """Python's bytecode cache (``__pycache__``, its temporary ``.pyc.<id>`` files) is no input: Python
    checks it against the source, which is watched. A module beside dodo.py is (next test)."""
    ws = in_its_folder(built_shop)
    settle()
    seen_file = tmp_path / "seen.json"
    run = doit(ws, program=[sys.executable, str(AUDITED), str(seen_file)], bytecode=bytecode)
    assert run.returncode == 0, run.stdout + run.stderr
    witness = WitnessStore.for_root(ws.root).get(["setup"])
    assert witness is not None, run.stdout + run.stderr
    seen = json.loads(seen_file.read_text())
    watched = set(witness.keys)
    skip = not_inputs(ws)
    import_dirs = {os.path.abspath(p) for p in [str(AUDITED.parent), str(ws.root), *sys.path] if p}

    def input_path(path: str) -> bool:
        name = os.path.basename(path)
        temp = name.startswith(".") and name.endswith(".tmp")  # setup's own atomic writes
        metadata = ".egg-info/" in path or ".dist-info/" in path  # installed packages' entry points
        # tempfile's probe of the temporary folder (a random name, removed at once)
        probe = os.path.dirname(path) == tempfile.gettempdir() and not os.path.exists(path)
        cache = f"{os.sep}__pycache__{os.sep}" in path  # Python's bytecode, checked against its source
        return not (
            path.startswith(skip) or cache or temp or metadata or probe or path in import_dirs or path == str(seen_file)
        )

    # Setup's private files are opened relative to their verified folder (a descriptor, user_folders): the
    # audit event has only their names, the user's key's, the witness store's and folder's, the valid
    # configs' and the parsed YAML's.
    store = WitnessStore.for_root(ws.root).path
    by_name = {
        "key": str(key_path()),
        store.name: str(store),
        store.parent.name: str(store.parent),
        VALID_CACHE: str(cache_folder().path / VALID_CACHE),
        YAML_CACHE: str(cache_folder().path / YAML_CACHE),
    }
    opened = {p for p in (by_name.get(p, p) for p in seen["open"]) if input_path(p) and not os.path.isdir(p)}
    listed = {p for p in seen["list"] if input_path(p) and not p.endswith("__pycache__")}
    state = ws.root / ".planwise" / ws.db_path.name / "projects" / "shop"
    listed -= {str(state)}  # swept for a killed run's temporary files: its entries decide nothing
    assert opened - watched == set() and listed - watched == set()
    assert str(ws.project / "seeds" / "customers.csv") in watched and str(ws.db_path) in watched


# A module of this name beside dodo.py: the folder doit puts first on sys.path, so it would be
# imported instead of the installed one. It says so, then hands over to the installed module.
SHADOW = """import importlib.machinery, importlib.util, os, sys
print("shadow module imported", file=sys.stderr)
here = os.path.dirname(os.path.abspath(__file__))
spec = importlib.machinery.PathFinder.find_spec(__name__, [p for p in sys.path if os.path.abspath(p or ".") != here])
module = importlib.util.module_from_spec(spec)
sys.modules[__name__] = module
spec.loader.exec_module(module)
"""


def test_a_module_added_beside_dodo_py_that_shadows_an_import_goes_the_full_way(built_shop: Workspace) -> None:
    """The dodo's folder is not watched as a folder (the run report is written there), but a module
    dropped into it with the name of one a run imports changes what the next run runs."""
    ws = in_its_folder(built_shop)
    full_no_op(ws)
    assert doit(ws).returncode == 0 and report(ws)["shortcut"] is not None  # the witness answers
    (ws.root / "difflib.py").write_text(SHADOW)  # imported by every full run (config's "did you mean")
    run = doit(ws)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "shadow module imported" in run.stderr and report(ws)["shortcut"] is None


# -- a building run leaves the witness of the run after it ----------------------------------------


def edit_customers(ws: Workspace) -> None:
    seed = ws.project / "seeds" / "customers.csv"
    seed.write_text(seed.read_text().replace("Brian", "Bryan"))


def same_content_downstream(ws: Workspace) -> None:
    """A name's case: stg_customers upper-cases it, so its readers are kept (early cutoff)."""
    seed = ws.project / "seeds" / "customers.csv"
    seed.write_text(seed.read_text().replace("Chen", "CHEN"))


def edit_model(ws: Workspace) -> None:
    ws.model("stg_regions", SHOP_MODELS["stg_regions"].replace("* 100", "* 100.0"))


def edit_events(ws: Workspace) -> None:
    (ws.root / "events.csv").write_text(EVENTS_CSV + "view,2024-01-04\n")


def forget_everything(ws: Workspace) -> None:
    """The database and the state beside it (records, doit's state) gone: everything builds, and doit's
    state is new (no rows to compare with)."""
    ws.db_path.unlink()
    shutil.rmtree(ws.root / ".planwise")


BUILDS: dict[str, tuple[Callable[[Workspace], None], tuple[str, ...]]] = {
    "seed edited": (edit_customers, ("setup",)),
    "seed edited, readers come out the same": (same_content_downstream, ("setup",)),
    "model SQL edited": (edit_model, ("setup",)),
    "external file edited": (edit_events, ("setup",)),
    "table dropped by another program": (lambda ws: ws.execute("drop table stg_regions"), ("setup",)),
    "seed edited, quick": (edit_customers, ("quick",)),
    "database deleted (SQL kept)": (lambda ws: ws.db_path.unlink(), ("setup",)),
    "database and setup's state deleted": (forget_everything, ("setup",)),
}


def template_of(witness: Witness) -> dict[str, Any]:
    return {k: v for k, v in json.loads(witness.report).items() if k not in RUN_SLOTS}


@pytest.mark.parametrize("change", BUILDS)
def test_a_building_run_leaves_the_witness_a_full_check_after_it_would(built_shop: Workspace, change: str) -> None:
    """Differential: what a building run predicts of the run after it (its witness: what that run says and
    reports, and the files it reads) equals what a full check after it finds, says and reports. The edit
    is made just before the build, as people make them: the inputs it changed are proven by their bytes."""
    ws = in_its_folder(built_shop)
    full_no_op(ws)
    make, argv = BUILDS[change]
    make(ws)
    built = doit(ws, *argv)
    assert built.returncode == 0 and report(ws)["counts"].get("built"), built.stdout + built.stderr
    store = WitnessStore.for_root(ws.root)
    predicted = store.get(list(argv))
    assert predicted is not None, built.stdout
    answered = doit(ws, *argv)
    assert answered.returncode == 0 and report(ws)["shortcut"]["witness_of"] == predicted.run_id, answered.stdout

    store.clear()
    settle()
    checked = doit(ws, *argv)
    assert checked.returncode == 0 and report(ws)["shortcut"] is None, checked.stdout + checked.stderr
    assert set(report(ws)["counts"]) == {"up-to-date"}, checked.stdout
    found = store.get(list(argv))
    assert found is not None, checked.stdout + checked.stderr
    assert without_times(answered.stdout) == without_times(checked.stdout)
    assert predicted.said == found.said
    assert template_of(predicted) == template_of(found)
    assert {k: v for k, v in predicted.history.items() if k not in RUN_SLOTS} == {
        k: v for k, v in found.history.items() if k not in RUN_SLOTS
    }
    assert set(found.keys) <= set(predicted.keys)


def test_a_build_right_after_a_project_file_changed_leaves_no_witness(built_shop: Workspace) -> None:
    """A file only dbt's parse reads (no fingerprint read its bytes) changed within the racy margin: its key
    proves nothing, and setup has no digest of what the run read to prove it by."""
    ws = in_its_folder(built_shop)
    full_no_op(ws)
    settle()
    edit_customers(ws)
    sources = ws.project / "models" / "staging" / "sources.yml"
    sources.write_text(sources.read_text() + "\n")  # same sources, changed bytes: a key within the margin
    built = doit(ws)
    assert built.returncode == 0 and report(ws)["counts"].get("built"), built.stdout + built.stderr
    assert WitnessStore.for_root(ws.root).get(["setup"]) is None
    again = doit(ws)
    assert again.returncode == 0 and report(ws)["shortcut"] is None


def test_the_database_written_after_the_build_voids_its_witness(built_shop: Workspace) -> None:
    """Another program writes the database after the building run: the next run checks in full and sees it."""
    ws = in_its_folder(built_shop)
    full_no_op(ws)
    edit_customers(ws)
    assert doit(ws).returncode == 0
    assert WitnessStore.for_root(ws.root).get(["setup"]) is not None
    ws.execute("delete from stg_regions")
    run = doit(ws)
    assert run.returncode == 0 and report(ws)["shortcut"] is None, run.stdout
    assert "model:stg_regions" in {n["task"] for n in report(ws)["nodes"] if n["status"] == "built"}, run.stdout


SILENT_CHECK = '''
from setup_tasks.validation import register_check

@register_check("team.silent", severity="warning", reads=["stg_customers"])
def silent(ctx):
    """Finds nothing to say: no result, so nothing stored for the next run to reuse."""
    return []
'''


def test_a_build_whose_check_stored_no_result_leaves_no_witness(built_shop: Workspace) -> None:
    """The next run runs such a check again: a witness claiming it up to date would hide that run."""
    from operator_support import set_config

    ws = in_its_folder(built_shop)
    (ws.root / "team_silent.py").write_text(SILENT_CHECK)
    set_config(ws, "validation", check_modules=["team_silent"])
    settle()
    edit_customers(ws)
    built = doit(ws)
    assert built.returncode == 0 and report(ws)["counts"].get("built"), built.stdout + built.stderr
    assert WitnessStore.for_root(ws.root).get(["setup"]) is None
    again = doit(ws, "setup", "-v", "2")
    assert again.returncode == 0 and "validate:team.silent" in again.stdout, again.stdout
    assert "up to date" not in next(line for line in again.stdout.splitlines() if "validate:team.silent" in line)
