"""doit task definitions: one task per seed and model, the census, the groups and their plans.

Task creators only describe; building happens in the actions, through the engine.
Names and docs come from the app's ``naming.Translator``.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Mapping

from doit import get_var
from doit.exceptions import InvalidDodoFile, TaskFailed

from ..engine.census import CensusRequest
from ..engine.engine import Engine
from ..errors import PlanwiseError, one_line
from ..config import default_of
from ..naming import (
    CENSUS_TASK,
    CLEAR_DERIVED_TASK,
    DEPS_TASK,
    MODELS_TASK,
    QUICK_TASK,
    SEEDS_TASK,
    SETUP_TASK,
    STAGING_TASK,
)
from ..project.manifest import Node
from .app import App
from .command_line import RUN_OPTIONS
from .checks import ValidationTasks
from .commands import VERIFY_DOC, clear_tasks, dbt_task, graph_task, status_task, verify_task
from .uptodate import CensusUpToDate, DepsUpToDate, TableUpToDate

TaskDict = dict[str, Any]


class DbtCommand:
    """What setup passes to dbt when it builds a node: `doit info` shows it as one line (its repr)."""

    def __init__(self, line: str) -> None:
        self.line = line

    def __repr__(self) -> str:
        return self.line


GROUP_DOCS: Mapping[str, str] = {
    SETUP_TASK: "Build everything stale, then validate: the default task",
    QUICK_TASK: "Build only the foundation (dbt.foundation_selection) and what it needs",
    SEEDS_TASK: "Load every stale seed",
    STAGING_TASK: "Build every stale staging model (the models/staging folder) and the seeds they need",
    MODELS_TASK: "Build every stale model setup builds, and the seeds they need",
}
# Groups that fail when their selection is empty: (the setting that selects, how to fix it).
EMPTY_GROUP_FIXES: Mapping[str, tuple[str, str]] = {
    SETUP_TASK: (
        "setup_selection",
        "select the seeds and models to build in dbt.setup_selection (setup.yaml), "
        'e.g. "resource_type:seed resource_type:model"',
    ),
    QUICK_TASK: (
        "foundation_selection",
        "list the models the simulation needs first in dbt.foundation_selection (setup.yaml), or run doit setup",
    ),
}
DEPS_DOC = (
    "Install the dbt packages (dbt deps) when packages.yml, dependencies.yml or package-lock.yml "
    "changed or a package is missing"
)
CENSUS_DOC = (
    "Generate the synthetic census when missing or its parameters changed (never over a file setup did not write): "
    "doit census employees=N"
)


def build_action(engine: Engine, unique_id: str) -> dict[str, Any] | TaskFailed:
    """Task action: build (batched) and report this node's outcome in doit's terms."""
    outcome = engine.builder.build(unique_id)
    if not outcome.ok:
        return TaskFailed(outcome.message)
    record = engine.records.get(unique_id)
    return {"fingerprint": record.fingerprint if record else "", "build_id": engine.run.build_id}


def plan_action(engine: Engine, uids: list[str]) -> TaskFailed | None:
    engine.builder.add_scope(uids)
    # Before any build: a node renamed in this change frees its old table's name.
    try:
        engine.retirement.retire_leftovers()
    except PlanwiseError as err:  # the database is locked, or a setup run holds it: the run stops here
        engine.run.fatal = err
        return TaskFailed(err.one_line())
    return None


def deps_action(engine: Engine) -> None:
    """Task action: say what `dbt deps` installed while the project loaded (it must, before dbt parses)."""
    installed = engine.definitions.packages_installed
    if installed is not None:
        print(installed.line())


def census_action(engine: Engine, request: CensusRequest) -> dict[str, Any] | TaskFailed:
    refused = engine.census.refusal()
    if refused is not None:
        return TaskFailed(refused.one_line())
    engine.step(f"generating the census: {request.employees:,} employees")
    try:
        summary = request.generate()
        engine.census_written()
    except PlanwiseError as err:
        return TaskFailed(err.one_line())
    finally:
        engine.step(None)
    print(f"census: wrote {summary.rows:,} employees to {summary.path} in {summary.seconds:.1f}s")
    return {"rows": summary.rows, "seconds": round(summary.seconds, 3)}


def census_overrides() -> dict[str, int]:
    """`employees=N seed=S` from the command line; a value that is no whole number is doit's one-line stop."""
    found = {}
    for key in ("employees", "seed"):
        value = get_var(key)
        if value is None:
            continue
        try:
            found[key] = int(str(value).replace("_", ""))
        except ValueError:
            example = "2000" if key == "employees" else "7"
            raise InvalidDodoFile(
                one_line(f"{key}={value} is not a whole number", f"e.g. {key}={example}, or census.{key} in setup.yaml")
            ) from None
    return found


class NodeTasks:
    """The build tasks of one engine: a task per node, the census, the groups and their plans."""

    def __init__(self, app: App, engine: Engine) -> None:
        self.app = app
        self.engine = engine
        self.translator = app.translator

    def name(self, uid: str) -> str:
        return self.translator.task_name(self.engine.node(uid))

    def task_dep(self, node: Node) -> list[str]:
        engine = self.engine
        parents = engine.graph.built_parents(node.unique_id)
        deps = [self.name(p) for p in parents if engine.node(p).is_buildable]
        if engine.settings.census.generate and engine.reads_census(node.unique_id):
            deps.append(CENSUS_TASK)
        if not engine.settings.setup.load_seeds:
            deps = [
                d for d in deps if d not in {self.name(p) for p in parents if engine.node(p).resource_type == "seed"}
            ]
        return deps

    def node_task(self, node: Node) -> TaskDict:
        built_sources = [
            (self.engine.node(source).display_name, self.name(builder))
            for source, builder in self.engine.graph.built_sources(node.unique_id)
        ]
        return {
            "basename": self.translator.task_name(node),
            "doc": self.translator.doc(node, built_sources),
            "actions": [self.app.action(build_action, self.engine, node.unique_id)],
            "uptodate": [TableUpToDate(self.engine, node.unique_id)],
            "task_dep": self.task_dep(node),
            # `doit info` shows what setup passes to dbt (its vars never override one the project sets).
            "meta": {"dbt": DbtCommand(self.engine.ctx.described("build"))},
            "verbosity": 1,
        }

    def node_tasks(self) -> Iterator[TaskDict]:
        for uid in self.engine.task_nodes:
            yield self.node_task(self.engine.node(uid))

    def census_task(self) -> TaskDict:
        self.engine.census.override(census_overrides())
        request = self.engine.census.request()
        target = CensusUpToDate(self.engine, request)
        return {
            "basename": CENSUS_TASK,
            "doc": CENSUS_DOC,
            "actions": [self.app.action(census_action, self.engine, request)],
            "uptodate": [target],
            # `doit info census` shows it, up to date or not: whose file it is, what setup will do.
            "meta": {"census": target},
            "verbosity": 2,
        }

    def deps_task(self) -> TaskDict:
        return {
            "basename": DEPS_TASK,
            "doc": DEPS_DOC,
            "actions": [self.app.action(deps_action, self.engine)],
            "uptodate": [DepsUpToDate(self.engine)],
            "verbosity": 2,
        }

    def groups(self) -> dict[str, list[str]]:
        """Group name -> nodes it builds, in build order: only the groups this project has nodes for.

        `setup` always; `quick` when the foundation selects nodes (or was set: it then says it selects
        none); `seeds`, `staging` (models in a staging folder) and `models` (every model setup builds,
        when some are not staging models) when they have any. A team's project without a census,
        foundation or staging folder lists none of those words.
        """
        engine = self.engine
        options = engine.settings.setup
        models = [u for u in engine.setup_nodes if engine.node(u).resource_type != "seed"]
        seeds = [u for u in engine.setup_nodes if engine.node(u).resource_type == "seed"]
        staging = [u for u in models if engine.node(u).in_staging_folder]
        setup = [
            u
            for u in engine.setup_nodes
            if (u in seeds and options.load_seeds) or (u in models and options.run_staging_models)
        ]
        found = {SETUP_TASK: setup}
        if engine.foundation_nodes or engine.settings.dbt.foundation_selection != default_of(
            "dbt.foundation_selection"
        ):
            found[QUICK_TASK] = list(engine.foundation_nodes)
        if seeds:
            found[SEEDS_TASK] = seeds
        if staging:
            found[STAGING_TASK] = engine.graph.buildable(engine.graph.with_ancestors(staging))
        if set(models) - set(staging):
            found[MODELS_TASK] = engine.graph.buildable(engine.graph.with_ancestors(models))
        return found

    def census_applies(self) -> bool:
        """Does a node of this project read the census file (census.path)? Else there is no census task."""
        return any(self.engine.reads_census(u) for u in self.engine.task_nodes)

    def group_doc(self, group: str) -> str:
        """`setup`'s doc names the kinds of node this project has ("seeds, models"), nothing else."""
        if group != SETUP_TASK:
            return GROUP_DOCS[group]
        nodes = [self.engine.node(u) for u in self.engine.setup_nodes]
        kinds = ["the census"] if self.census_applies() else []
        kinds += ["seeds"] if any(n.resource_type == "seed" for n in nodes) else []
        built = [n for n in nodes if n.resource_type != "seed"]
        if built:
            kinds.append("staging models" if all(n.in_staging_folder for n in built) else "models")
        if any(n.resource_type == "snapshot" for n in built):
            kinds.append("snapshots")
        return f"Build everything stale ({', '.join(kinds) or 'nothing selected'}), then validate: the default task"

    def empty_selection(self, group: str) -> TaskFailed | None:
        """`setup` / `quick` whose selection holds no node: say so (a silent success built nothing)."""
        key, fix = EMPTY_GROUP_FIXES[group]
        settings = self.engine.settings
        expression = getattr(settings.dbt, key)
        return TaskFailed(
            one_line(
                f"{group}: dbt.{key} ({expression!r}) selects no seed or model of project {self.engine.project}", fix
            )
        )

    def group_tasks(self, extra_deps: dict[str, list[str]]) -> Iterator[TaskDict]:
        for group, uids in self.groups().items():
            if not uids and group in EMPTY_GROUP_FIXES:
                yield {
                    "basename": group,
                    "doc": self.group_doc(group),
                    "actions": [self.app.action(self.empty_selection, group)],
                    "verbosity": 1,
                }
                continue
            plan = self.translator.plan_task_name(group)
            # doit runs dependency-free tasks in list order: the census first (so its readers
            # can build in the same dbt run as the rest), then the plan, then the nodes.
            census = self.engine.settings.census.generate and any(self.engine.reads_census(u) for u in uids)
            deps = [DEPS_TASK] if self.engine.definitions.declares_packages else []
            yield {
                "basename": plan,
                "doc": f"Tell the engine which nodes `{group}` builds, so stale ones build in one dbt run",
                "actions": [self.app.action(plan_action, self.engine, uids)],
                "verbosity": 0,
            }
            yield {
                "basename": group,
                "doc": self.group_doc(group),
                "actions": None,
                "params": list(RUN_OPTIONS),  # `doit setup -v 2` works as `doit -v 2 setup` does
                "task_dep": [
                    *deps,
                    *([CENSUS_TASK] if census else []),
                    plan,
                    *(self.name(u) for u in uids),
                    *extra_deps.get(group, []),
                ],
            }


class TaskCreators:
    """The task creators doit collects (``task_*``), bound to one app."""

    def __init__(self, app: App) -> None:
        self.app = app

    def creators(self) -> dict[str, Callable[[], Any]]:
        return {name: getattr(self, name) for name in dir(self) if name.startswith("task_")}

    def unavailable(self, name: str, doc: str) -> TaskDict:
        """A task that fails with the reason the project could not be loaded."""
        return {"basename": name, "doc": doc, "actions": [lambda: TaskFailed(self.app.load_error)], "verbosity": 1}

    def task_nodes(self) -> Iterator[TaskDict] | None:
        """One task per seed and staging model: seed:<name>, model:<name>"""
        engine = self.app.task_engine()
        # None, not an empty generator: doit would list an empty "nodes" group.
        return NodeTasks(self.app, engine).node_tasks() if engine is not None else None

    def task_groups(self) -> Iterator[TaskDict]:
        """The groups: setup, quick, seeds, staging, models (those the project has nodes for)"""
        engine = self.app.task_engine()
        if engine is None:
            for group, doc in GROUP_DOCS.items():
                if group != MODELS_TASK:
                    yield self.unavailable(group, doc)
            return
        extra = ValidationTasks(self.app, plan_action).dependencies()
        # Derived simulation tables go last: only a run that rebuilt an input drops them.
        extra[SETUP_TASK] = [*extra.get(SETUP_TASK, []), CLEAR_DERIVED_TASK]
        yield from NodeTasks(self.app, engine).group_tasks(extra)

    def task_deps(self) -> TaskDict | None:
        """Install the project's dbt packages when packages.yml changed or one is missing"""
        engine = self.app.task_engine()
        if engine is None or not engine.definitions.declares_packages:
            return None
        return NodeTasks(self.app, engine).deps_task()

    def task_census(self) -> TaskDict | None:
        """Generate the synthetic census when missing or its parameters changed"""
        engine = self.app.task_engine()
        if engine is None:
            return self.unavailable(CENSUS_TASK, "Generate the synthetic census when missing or its parameters changed")
        tasks = NodeTasks(self.app, engine)
        if tasks.census_applies():
            return tasks.census_task()
        asked = census_overrides()  # no model reads one: no census task, and a request for one says so
        if asked:
            words = " ".join(f"{key}={value}" for key, value in asked.items())
            raise InvalidDodoFile(
                one_line(
                    f"{words}: no model of project {engine.project} reads a census (census.path)", f"leave {words} out"
                )
            )
        return None

    def task_validation(self) -> Iterator[TaskDict]:
        """Validation checks: validate:<name>, and the validate group"""
        if self.app.task_engine() is None:
            yield self.unavailable("validate", "Run every validation check and print the summary")
            return
        yield from ValidationTasks(self.app, plan_action).tasks()

    def task_status(self) -> TaskDict:
        """Report readiness and what is stale (never builds); fails when setup cannot run now"""
        return status_task(self.app)

    def task_clear(self) -> Iterator[TaskDict]:
        """Drop tables matching setup.clear_table_patterns and forget their builds: the next setup rebuilds them"""
        engine = self.app.task_engine()
        if engine is None:
            yield self.unavailable("clear", "Drop tables matching setup.clear_table_patterns and forget their builds")
            return
        yield from clear_tasks(self.app, engine)

    def task_dbt(self) -> TaskDict:
        """Run dbt with setup's context (project, profile, target, vars, database): doit dbt args="..." """
        return dbt_task(self.app)

    def task_verify(self) -> TaskDict:
        """Build the project with `dbt build` in a scratch database, compare it with setup's (exit 1 if they differ)"""
        engine = self.app.task_engine()
        if engine is None:
            return self.unavailable("verify", VERIFY_DOC)
        return verify_task(self.app, engine)

    def task_graph(self) -> TaskDict:
        """Write the setup DAG as Mermaid and DOT files beside the database, stale nodes marked"""
        engine = self.app.task_engine()
        if engine is None:
            return self.unavailable("graph", "Write the setup DAG as Mermaid and DOT files")
        return graph_task(self.app, engine, ValidationTasks(self.app, plan_action).diagram_entries())
