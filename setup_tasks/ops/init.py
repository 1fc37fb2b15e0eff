"""`python -m setup_tasks init`: set up a team's dbt repository, a dodo.py and a commented setup.yaml beside dbt_project.yml.

init reads files only: it neither runs dbt nor opens a database, so it works before
`dbt deps` and without a profile. It only ever creates its two files, and refuses
(writing nothing) when either exists. What it writes fits the project it finds:

- a PlanWise-shaped project (a staging folder and the foundation models the simulation
  starts from) keeps the defaults: seeds and staging models, every check;
- any other project gets a selection of everything `dbt build` materialises, and the
  check areas whose tables it does not have are disabled.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..config import DEFAULT_CONFIG_NAME, default_of
from ..errors import SetupError
from ..project.context import read_project_yaml
from ..project.manifest import PATH_KEYS
from ..validation.catalog import discover_builtin
from ..validation.framework import REGISTRY

PROJECT_FILE = "dbt_project.yml"
DODO_NAME = "dodo.py"
SEARCH_DEPTH = 3
SKIPPED_FOLDERS = {"target", "dbt_packages", "logs", "venv", "node_modules", "site-packages", "__pycache__"}
NODE_KINDS = ("seed", "model", "snapshot")  # what `dbt build` materialises
DODO_LINES = ("from setup_tasks.cli import dodo_namespace", "globals().update(dodo_namespace(__file__))")
DODO_TEXT = (
    "# planwise-setup tasks for this dbt project: `doit list` shows them, `doit setup` builds what is stale.\n"
    + "\n".join(DODO_LINES) + "\n"
)
# What setup (and dbt, for it) writes beside the project that no repository wants: its state, run
# reports, graphs, dbt's target and log folders, Python's bytecode of dodo.py.
IGNORED = (".planwise/", "*.setup_report.json", "*.setup_history.jsonl", "*.setup_graph.*", "target/", "logs/",
           "__pycache__/")


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
    profiles_here: bool

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


def scan_project(directory: Path) -> ProjectScan:
    """The project's name, profile, seeds, models and snapshots, from dbt_project.yml and a file scan."""
    data = read_project_yaml(directory)

    def folders(key: str) -> list[str]:
        return [str(f) for f in (data.get(key) or PATH_KEYS[key])]

    models = list(_files(directory, folders("model-paths"), (".sql", ".py")))
    return ProjectScan(
        directory=directory,
        name=str(data.get("name") or directory.name),
        profile=str(data.get("profile") or data.get("name") or ""),
        seeds=tuple(p.stem for p in _files(directory, folders("seed-paths"), (".csv",))),
        models=tuple(p.stem for p in models),
        snapshots=tuple(p.stem for p in _files(directory, folders("snapshot-paths"), (".sql",))),
        has_staging=any("staging" in p.relative_to(directory).parts[1:-1] for p in models),
        profiles_here=(directory / "profiles.yml").is_file(),
    )


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
        raise SetupError(f"init: no {PROJECT_FILE} in {directory} or below",
                         "run init in your dbt project's folder (python -m setup_tasks init PATH)")
    if len(found) > 1:
        raise SetupError(f"init: several dbt projects below {directory}: {', '.join(str(p) for p in found)}",
                         "run init in one of them (python -m setup_tasks init PATH)")
    return found[0]


# -- what init writes ----------------------------------------------------------------------


def _counted(n: int, what: str) -> str:
    return f"{n} {what}{'s' * (n != 1)}"


def setup_yaml(scan: ProjectScan) -> str:
    """The commented setup.yaml for this project."""
    where = "profiles.yml here" if scan.profiles_here else "profiles.yml in ~/.dbt"
    lines = [
        f"# planwise-setup configuration for the dbt project '{scan.name}', written by `python -m setup_tasks init`.",
        "# Every key is optional: `python -m setup_tasks.config --reference` lists them all with their defaults,",
        f"# `python -m setup_tasks.config --check {DEFAULT_CONFIG_NAME}` checks this file. Relative paths resolve against",
        "# this file's directory.",
        "",
        f"# The database is the file dbt's profile '{scan.profile}' ({where}, its default target) writes:",
        "# setup reads it from dbt, so `dbt build` and `doit setup` always build the same file.",
        "# database:",
        "#   path: warehouse.duckdb   # set it only to insist on a file: setup stops if the profile writes another",
        "",
        "dbt:",
        "  project_dir: .",
    ]
    if scan.planwise_shaped:
        lines += [
            "  # A PlanWise project: setup builds the seeds and the staging models (the simulation builds the",
            "  # marts), and `doit quick` the foundation models the simulation starts from (the defaults).",
            f"  # setup_selection: \"{default_of('dbt.setup_selection')}\"",
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
            + (f"; add resource_type:{' / resource_type:'.join(missing)} once the project has one)." if missing else ")."),
            f"  setup_selection: \"{' '.join(f'resource_type:{kind}' for kind in kinds)}\"",
            "  # `doit quick` builds a foundation subset first; this project names none. To use it, list the models",
            "  # (dbt selection syntax), for example:",
            f"  # foundation_selection: \"{example}\"",
            "",
            "census:",
            "  # No model of this project reads the PlanWise census file: no synthetic census is generated.",
            "  generate: false",
        ]
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
        folder = _shown(scan.directory, cwd)
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
    wanted = [f"{str(project.get('target-path') or 'target').strip('/')}/" if p == "target/" else
              f"{str(project.get('log-path') or 'logs').strip('/')}/" if p == "logs/" else p for p in IGNORED]
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
    """Write dodo.py and setup.yaml beside the project's dbt_project.yml; refuse, writing nothing, if either exists."""
    project = find_project(Path(os.path.abspath(directory)))
    targets = (project / DODO_NAME, project / DEFAULT_CONFIG_NAME)
    for path in targets:
        if path.exists():
            raise SetupError(
                f"init: {path} exists; nothing written",
                f"move it aside and run init again, or add the two lines yourself to {DODO_NAME}: "
                + "; ".join(DODO_LINES),
            )
    scan = scan_project(project)
    texts = (DODO_TEXT, setup_yaml(scan))
    for path, text in zip(targets, texts):
        with path.open("x", encoding="utf-8") as fh:  # "x": never over a file that appeared meanwhile
            fh.write(text)
    return Written(scan, targets)
