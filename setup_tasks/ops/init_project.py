"""`python -m setup_tasks init`: set up a team's dbt repository, a dodo.py and a commented setup.yaml where the team
runs dbt.

init reads files only: it neither runs dbt nor opens a database, so it works before
`dbt deps` and without a profile. It only ever creates its two files, both or neither, and
refuses (writing nothing) when either exists. They go where the team runs dbt: beside
dbt_project.yml, or in the folder above it that holds the profiles.yml with the
project's profile (dbt finds profiles.yml in the folder it runs in, so that team runs
`dbt build --project-dir <folder>` from there). What it writes fits what the project has:

- a PlanWise-shaped project (a staging folder and the foundation models the simulation
  starts from) keeps the defaults: seeds and staging models, every check;
- any other project gets a selection of everything `dbt build` materialises, and the
  check areas whose tables it does not have are disabled;
- the census: a project whose dbt_project.yml sets the census var reads its own file
  (setup uses it as is: no generation, no var passed over it); one that reads the var
  but sets none gets a synthetic census only when its config_job_levels seed carries
  what the generator needs; a project that never reads the var gets none.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path
from typing import AbstractSet, Iterable, Iterator

import yaml

from ..config import DEFAULT_CONFIG_NAME, PROFILES_FILE, default_of
from ..engine.census import load_job_level_bands
from ..engine.census_owner import JOB_LEVELS_SEED
from ..errors import PlanwiseError, cannot_write
from ..files import temp_path
from ..project.context import CENSUS_VAR, effective_vars, read_project_yaml
from ..project.manifest import PATH_KEYS
from ..validation.catalog import discover_builtin
from ..validation.framework import REGISTRY

PROJECT_FILE = "dbt_project.yml"
DODO_NAME = "dodo.py"
SEARCH_DEPTH = 3
SKIPPED_FOLDERS: AbstractSet[str] = {
    "target",
    "dbt_packages",
    "logs",
    "venv",
    "node_modules",
    "site-packages",
    "__pycache__",
}
NODE_KINDS = ("seed", "model", "snapshot")  # what `dbt build` materialises
DODO_LINES = ("from setup_tasks.cli import dodo_namespace", "globals().update(dodo_namespace(__file__))")
DODO_TEXT = (
    "# planwise-setup tasks for this dbt project: `doit list` shows them, `doit setup` builds what is stale.\n"
    + "\n".join(DODO_LINES)
    + "\n"
)
# What setup (and dbt, for it) writes beside the project that no repository wants: its state, run
# reports, graphs, dbt's target and log folders, Python's bytecode of dodo.py.
IGNORED = (
    ".planwise/",
    "*.setup_report.json",
    "*.setup_history.jsonl",
    "*.setup_graph.*",
    "target/",
    "logs/",
    "__pycache__/",
)
DEFAULT_CENSUS = str(default_of("census.path"))


@dataclass(frozen=True)
class ProjectScan:
    """What init learns of a dbt project from its files alone."""

    directory: Path
    name: str
    profile: str
    seeds: tuple[str, ...]
    models: tuple[str, ...]
    snapshots: tuple[str, ...]
    has_staging: bool
    profiles_in: Path | None  # the folder whose profiles.yml holds the project's profile (None: ~/.dbt, or none)
    runs_in: Path  # where the team runs dbt, and init writes: the project, or the folder of that profiles.yml
    reads_census: bool  # a model or source reads the census var
    census_var: str | None  # the census var's value in dbt_project.yml: the project's own census
    generator_problem: str | None  # why the synthetic census cannot be generated from the seeds (None: it can)

    @property
    def tables(self) -> set[str]:
        """Names of the tables the project builds (file names: an alias would escape this)."""
        return {name.lower() for name in (*self.seeds, *self.models, *self.snapshots)}

    @property
    def planwise_shaped(self) -> bool:
        """A staging folder and the foundation models of the simulation: the demo's defaults fit."""
        foundation = set(str(default_of("dbt.foundation_selection")).lower().split())
        return self.has_staging and foundation <= self.tables


def _files(directory: Path, folders: list[str], suffixes: tuple[str, ...]) -> Iterator[Path]:
    for folder in folders:
        base = directory / folder
        if base.is_dir():
            yield from (p for p in sorted(base.rglob("*")) if p.suffix in suffixes and p.is_file())


def scan_project(directory: Path, start: Path | None = None) -> ProjectScan:
    """What the project has, from dbt_project.yml and a file scan: its name, profile, seeds, models and
    snapshots, where its profile is (and so where the team runs dbt: ``start`` bounds the search above
    the project), whether it reads the census var, sets it, and whether its seeds can feed the generator."""
    data = read_project_yaml(directory)
    name = str(data.get("name") or directory.name)
    profile = str(data.get("profile") or data.get("name") or "")

    def folders(key: str) -> list[str]:
        return [str(f) for f in (data.get(key) or PATH_KEYS[key])]

    models = list(_files(directory, folders("model-paths"), (".sql", ".py")))
    seeds = list(_files(directory, folders("seed-paths"), (".csv",)))
    profiles_in = profile_folder(directory, profile, start or directory)
    census_var = effective_vars(data, name, {}).get(CENSUS_VAR)
    return ProjectScan(
        directory=directory,
        name=name,
        profile=profile,
        seeds=tuple(p.stem for p in seeds),
        models=tuple(p.stem for p in models),
        snapshots=tuple(p.stem for p in _files(directory, folders("snapshot-paths"), (".sql",))),
        has_staging=any("staging" in p.relative_to(directory).parts[1:-1] for p in models),
        profiles_in=profiles_in,
        runs_in=profiles_in if profiles_in is not None and directory.is_relative_to(profiles_in) else directory,
        reads_census=census_var is not None or _mentions(directory, folders("model-paths"), CENSUS_VAR),
        census_var=None if census_var is None else str(census_var),
        generator_problem=_generator_problem(next((p for p in seeds if p.stem == JOB_LEVELS_SEED), None)),
    )


def _has_profile(path: Path, profile: str) -> bool:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and profile in data


def profile_folder(project: Path, profile: str, start: Path) -> Path | None:
    """The folder whose profiles.yml holds ``profile``, as the team's dbt finds it: the project folder
    (dbt run there), else a folder above it up to ``start`` (where init was pointed) or, from the
    project itself, up to its repository's root (dbt run there with --project-dir), else ~/.dbt."""
    above: list[Path] = []
    for folder in project.parents:
        if len(above) == SEARCH_DEPTH or not (folder.is_relative_to(start) or start == project):
            break
        above.append(folder)
        if (folder / ".git").exists():
            break
    home = Path.home() / ".dbt"
    return next((f for f in (project, *above, home) if _has_profile(f / PROFILES_FILE, profile)), None)


def _mentions(directory: Path, folders: list[str], word: str) -> bool:
    """Does a model or a YAML file among them name ``word`` (a var they read)?"""
    return any(word in p.read_text(errors="replace") for p in _files(directory, folders, (".sql", ".yml", ".yaml")))


def _generator_problem(job_levels: Path | None) -> str | None:
    """Why the census generator cannot draw from the project's seeds, or None when it can."""
    if job_levels is None:
        return f"the project has no {JOB_LEVELS_SEED} seed to take the pay bands from"
    try:
        load_job_level_bands(job_levels)
    except PlanwiseError as err:
        return err.cause
    return None


def areas_without_tables(tables: set[str]) -> list[str]:
    """Check areas every check of which reads a table (validation.tables) the project does not build."""
    discover_builtin()
    names = default_of("validation.tables")
    absent: dict[str, list[bool]] = {}
    for check in REGISTRY.checks():
        if check.group is None:
            continue
        reads = check.read_names(None, None)  # type: ignore[arg-type]  # fixed reads only: no project needed
        missing = bool(reads) and any(str(names.get(r, r)).lower() not in tables for r in reads)
        absent.setdefault(check.group, []).append(missing)
    return sorted(area for area, flags in absent.items() if all(flags))


# -- finding the project -----------------------------------------------------------------------


def _candidates(directory: Path, depth: int) -> Iterator[Path]:
    if depth == 0:
        return
    try:
        children = sorted(p for p in directory.iterdir() if p.is_dir())
    except OSError:
        return
    for child in children:
        if child.name.startswith(".") or child.name in SKIPPED_FOLDERS:
            continue
        if (child / PROJECT_FILE).is_file():
            yield child
        else:
            yield from _candidates(child, depth - 1)


def find_project(directory: Path) -> Path:
    """``directory`` when it holds dbt_project.yml, else the one dbt project below it (a few levels down)."""
    if (directory / PROJECT_FILE).is_file():
        return directory
    found = list(_candidates(directory, SEARCH_DEPTH))
    if not found:
        raise PlanwiseError(
            f"init: no {PROJECT_FILE} in {directory} or below",
            "run init in your dbt project's folder (python -m setup_tasks init PATH)",
        )
    if len(found) > 1:
        raise PlanwiseError(
            f"init: several dbt projects below {directory}: {', '.join(str(p) for p in found)}",
            "run init in one of them (python -m setup_tasks init PATH)",
        )
    return found[0]


# -- what init writes ----------------------------------------------------------------------


def _counted(n: int, what: str) -> str:
    return f"{n} {what}{'s' * (n != 1)}"


def _profile_place(scan: ProjectScan) -> str:
    if scan.profiles_in is None:
        return "no profiles.yml holds it yet: dbt looks where it runs, then in ~/.dbt"
    if scan.profiles_in == scan.runs_in:
        return "profiles.yml here"
    home = Path.home() / ".dbt"
    return "profiles.yml in ~/.dbt" if scan.profiles_in == home else f"{scan.profiles_in / PROFILES_FILE}"


def census_lines(scan: ProjectScan) -> list[str]:
    """The census section: decided by what the project has (its census var, its seeds), not its folders."""
    if not scan.reads_census:
        return [
            "census:",
            f"  # No model of this project reads the PlanWise census ({CENSUS_VAR}): no synthetic census is generated.",
            "  generate: false",
        ]
    if scan.census_var is not None:
        value = scan.census_var
        absent = "{{" not in value and not (scan.runs_in / os.path.expanduser(value)).is_file()
        return [
            "census:",
            f"  # This project reads its own census: {value}",
            f"  # ({CENSUS_VAR} in dbt_project.yml, relative to where dbt runs). setup uses that file as is,",
            "  # never generates one, and passes dbt no census path of its own.",
            *(["  # It is not there yet: put the file there before `doit setup`."] if absent else []),
            f"  # To read another file instead, set path (setup then passes it to dbt as {CENSUS_VAR}):",
            f"  # path: {value}",
            "  generate: false",
        ]
    if scan.generator_problem is not None:
        return [
            "census:",
            f"  # A model reads the census ({CENSUS_VAR}), but setup cannot generate one: {scan.generator_problem}.",
            f"  # Put your census at {DEFAULT_CENSUS} (or set path to it) before `doit setup`.",
            "  generate: false",
        ]
    return [
        f"# census: setup generates a synthetic census at {DEFAULT_CENSUS} (pay bands from "
        f"seeds/{JOB_LEVELS_SEED}.csv)",
        "# when that file is missing; a file of yours there (or at census.path) is used as is, never regenerated.",
    ]


def setup_yaml(scan: ProjectScan) -> str:
    """The commented setup.yaml for this project."""
    where = _profile_place(scan)
    lines = [
        f"# planwise-setup configuration for the dbt project '{scan.name}', written by `python -m setup_tasks init`.",
        "# Every key is optional: `python -m setup_tasks.config --reference` lists them all with their defaults,",
        f"# `python -m setup_tasks.config --check {DEFAULT_CONFIG_NAME}` checks this file. Relative paths resolve "
        f"against",
        "# this file's directory.",
        "",
        f"# The database is the file dbt's profile '{scan.profile}' ({where}, its default target) writes:",
        "# setup reads it from dbt, so `dbt build` and `doit setup` always build the same file.",
        "# database:",
        "#   path: warehouse.duckdb   # set it only to insist on a file: setup stops if the profile writes another",
        "",
        "dbt:",
        f"  project_dir: {os.path.relpath(scan.directory, scan.runs_in)}",
    ]
    if scan.runs_in != scan.directory:
        lines.insert(
            -2,
            f"# dbt runs here, as `dbt build --project-dir {os.path.relpath(scan.directory, scan.runs_in)}`: "
            "profiles.yml and relative paths are found from this folder.",
        )
    if scan.planwise_shaped:
        lines += [
            "  # A PlanWise project: setup builds the seeds and the staging models (the simulation builds the",
            "  # marts), and `doit quick` the foundation models the simulation starts from (the defaults).",
            f'  # setup_selection: "{default_of("dbt.setup_selection")}"',
        ]
    else:
        found = {"seed": scan.seeds, "model": scan.models, "snapshot": scan.snapshots}
        counts = ", ".join(_counted(len(found[kind]), kind) for kind in NODE_KINDS if found[kind] or kind != "snapshot")
        # Only the kinds the project has: a selection criterion that matches nothing is an error.
        kinds = [kind for kind in NODE_KINDS if found[kind]] or ["model"]
        missing = [kind for kind in NODE_KINDS if kind not in kinds]
        example = " ".join(scan.models[:2]) or "my_model"
        lines += [
            f"  # Everything `dbt build` materialises (today {counts}; new files of these kinds are picked up"
            + (
                f"; add resource_type:{' / resource_type:'.join(missing)} once the project has one)."
                if missing
                else ")."
            ),
            f'  setup_selection: "{" ".join(f"resource_type:{kind}" for kind in kinds)}"',
            "  # `doit quick` builds a foundation subset first; this project names none. To use it, list the models",
            "  # (dbt selection syntax), for example:",
            f'  # foundation_selection: "{example}"',
        ]
    lines += ["", *census_lines(scan)]
    if not scan.planwise_shaped:
        areas = areas_without_tables(scan.tables)
        if areas:
            lines += [
                "",
                "validation:",
                "  # PlanWise checks whose tables this project does not build (remove an area to run it).",
                f"  disabled_checks: [{', '.join(areas)}]",
            ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Written:
    """What init wrote, and the two lines it says about it."""

    scan: ProjectScan
    files: tuple[Path, ...]

    def lines(self, cwd: Path) -> list[str]:
        shown = [_shown(p, cwd) for p in self.files]
        scan = self.scan
        folder = _shown(scan.runs_in, cwd)
        what = ", ".join(_counted(n, w) for n, w in ((len(scan.seeds), "seed"), (len(scan.models), "model")))
        go = "doit setup" if folder == "." else f"cd {folder} && doit setup"
        missing = not_ignored(scan.directory)
        ignore = f"; add {', '.join(missing)} to .gitignore" if missing else ""
        return [
            f"wrote {' and '.join(shown)} (dbt project {scan.name}: {what}; profile {scan.profile})",
            f"next: {go}   (from a folder below it: doit -k setup{ignore})",
        ]


def not_ignored(directory: Path) -> list[str]:
    """Of ``IGNORED``, what no .gitignore of the project (its folder, or one above it in the repository)
    names yet; ``target/`` and ``logs/`` as dbt_project.yml names them."""
    project = read_project_yaml(directory) if (directory / "dbt_project.yml").is_file() else {}
    wanted = [
        f"{str(project.get('target-path') or 'target').strip('/')}/"
        if p == "target/"
        else f"{str(project.get('log-path') or 'logs').strip('/')}/"
        if p == "logs/"
        else p
        for p in IGNORED
    ]
    present: set[str] = set()
    for folder in [directory, *directory.parents][:6]:
        try:
            present |= {line.strip().strip("/") for line in (folder / ".gitignore").read_text().splitlines()}
        except (OSError, UnicodeDecodeError):
            pass
        if (folder / ".git").exists():
            break  # the repository's root: .gitignore files above it are not its own
    return [p for p in wanted if p.strip("/") not in present]


def _shown(path: Path, cwd: Path) -> str:
    try:
        return os.path.relpath(path, cwd) if path.is_relative_to(cwd) else str(path)
    except ValueError:
        return str(path)


def init(directory: Path) -> Written:
    """Write dodo.py and setup.yaml where the team runs dbt (beside the project's dbt_project.yml, or the
    folder above it holding the project's profiles.yml): both, or (refusing when either exists, or when
    the folder cannot take them) neither."""
    start = Path(os.path.abspath(directory))
    project = find_project(start)
    scan = scan_project(project, start)
    targets = (scan.runs_in / DODO_NAME, scan.runs_in / DEFAULT_CONFIG_NAME)
    for path in targets:
        if path.exists():
            raise _exists(path)
    write_both(dict(zip(targets, (DODO_TEXT, setup_yaml(scan)))))
    return Written(scan, targets)


def _exists(path: Path) -> PlanwiseError:
    return PlanwiseError(
        f"init: {path} exists; nothing written",
        f"move it aside and run init again, or add the two lines yourself to {DODO_NAME}: " + "; ".join(DODO_LINES),
    )


def write_both(texts: dict[Path, str]) -> None:
    """Create every file of ``texts``, or none: each is written in full under a temporary name first (a
    full disk or a read-only folder fails there, before any real name exists), then linked to its name,
    which never replaces a file that appeared meanwhile. A failure removes what this call made."""
    temps: dict[Path, Path] = {}
    made: list[Path] = []
    try:
        for path, text in texts.items():
            temps[path] = temp = temp_path(path)
            temp.unlink(missing_ok=True)  # of this pid: left by a killed run
            with open(temp, "x", encoding="utf-8") as fh:
                fh.write(text)
        for path, temp in temps.items():
            _link(temp, path)
            made.append(path)
    except FileExistsError as exc:
        _remove(made)
        raise _exists(Path(exc.filename2 or exc.filename or next(iter(texts)))) from None
    except OSError as exc:
        _remove(made)
        folder = next(iter(texts)).parent
        raise cannot_write("init's files in", folder, exc, "run init in a folder you can write") from None
    except BaseException:
        _remove(made)
        raise
    finally:
        _remove(temps.values())


def _link(temp: Path, path: Path) -> None:
    """Give the written file ``temp`` its name ``path`` unless that exists (FileExistsError)."""
    try:
        os.link(temp, path)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        # no hard links here (FAT, some network shares): claim the name, then move the full file over it
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        os.replace(temp, path)


def _remove(paths: Iterable[Path]) -> None:
    for path in paths:
        try:
            path.unlink()
        except OSError:
            pass
