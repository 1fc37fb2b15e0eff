"""doit task definitions: one task per seed and model, the groups, and their plans.

Task creators only describe; building happens in the actions, through the engine.
Customise naming or docs by subclassing ``Translator`` and overriding one method.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping

from doit.exceptions import TaskFailed

from .census import CensusRequest
from .engine import Engine
from .errors import SetupError
from .manifest import Node
from .uptodate import TableTarget

TaskDict = dict[str, Any]
DOC_WIDTH = 100
GROUP_DOCS = {
    "setup": "Build everything stale (seeds, staging models), then validate: the default task",
    "quick": "Build only the foundation subset (census, job levels, comp levers) and what it needs",
    "seeds": "Load every stale seed",
    "staging": "Build every stale staging model (and the seeds they need)",
}


class Translator:
    """Turns manifest nodes into doit tasks: one method per aspect."""

    def task_name(self, node: Node) -> str:
        return f"{node.resource_type}:{node.name}"

    def doc(self, node: Node) -> str:
        """What `doit list` shows: the file, then the node's description, cut to one line."""
        what = {"seed": "Load", "model": "Build", "snapshot": "Build"}.get(node.resource_type, "Build")
        line = f"{what} {node.path}"
        summary = " ".join(node.description.split()).split(". ")[0].rstrip(".")
        if summary:
            line = f"{line}: {summary}"
        return line if len(line) <= DOC_WIDTH else line[: DOC_WIDTH - 1] + "…"

    def task_dep(self, engine: Engine, node: Node) -> list[str]:
        parents = engine.graph.built_parents(node.unique_id)
        deps = [self.task_name(engine.node(p)) for p in parents if engine.node(p).is_buildable]
        if engine.settings.census.generate and engine.reads_census(node.unique_id):
            deps.append(CENSUS_TASK)
        if not engine.settings.setup.load_seeds:
            deps = [d for d in deps if not d.startswith("seed:")]
        return deps

    def node_task(self, engine: Engine, node: Node) -> TaskDict:
        return {
            "basename": self.task_name(node),
            "doc": self.doc(node),
            "actions": [(build_action, [engine, node.unique_id])],
            "uptodate": [TableTarget(engine, node.unique_id)],
            "task_dep": self.task_dep(engine, node),
            "verbosity": 1,
        }


def build_action(engine: Engine, unique_id: str) -> dict[str, Any] | TaskFailed:
    """Task action: build (batched) and report this node's outcome in doit's terms."""
    try:
        outcome = engine.build(unique_id)
    except KeyboardInterrupt:
        from . import session

        session.on_keyboard_interrupt()
        raise
    if not outcome.ok:
        return TaskFailed(outcome.message)
    record = engine.records.get(unique_id)
    return {"fingerprint": record.fingerprint if record else "", "build_id": engine.run.build_id}


def plan_action(engine: Engine, uids: list[str]) -> TaskFailed | None:
    engine.add_scope(uids)
    # Before any build: a node renamed in this change frees its old table's name.
    try:
        engine.retire_leftovers()
    except SetupError as err:  # the database is locked, or a setup run holds it
        return TaskFailed(err.one_line())
    return None


# -- the census --------------------------------------------------------------------

CENSUS_TASK = "census"


class CensusTarget:
    """Up to date when the census file exists with the requested parameters, or is the user's own."""

    def __init__(self, engine: Engine, request: CensusRequest) -> None:
        self.engine = engine
        self.request = request
        self.reason: str | None = None

    def __call__(self, task: Any, values: Mapping[str, Any]) -> bool:
        self.reason = self.engine.census_why()
        return self.reason is None

    def __repr__(self) -> str:
        return f"CensusTarget({self.request.path}): {self.reason or 'current'}"


def census_action(engine: Engine, request: CensusRequest) -> dict[str, Any] | TaskFailed:
    try:
        summary = request.generate()
    except SetupError as err:
        return TaskFailed(err.one_line())
    engine.census_written()
    print(f"census: wrote {summary.rows:,} employees to {summary.path} in {summary.seconds:.1f}s")
    return {"rows": summary.rows, "seconds": round(summary.seconds, 3)}


def census_task(engine: Engine) -> TaskDict:
    from doit import get_var

    engine.census_overrides = {k: int(get_var(k)) for k in ("employees", "seed") if get_var(k) is not None}
    request = engine.census_request()
    return {
        "basename": CENSUS_TASK,
        "doc": "Generate the synthetic census when missing or its parameters changed "
               "(never over your own file): doit census employees=N",
        "actions": [(census_action, [engine, request])],
        "uptodate": [CensusTarget(engine, request)],
        "verbosity": 2,
    }


class SetupTasks:
    """All tasks of one engine: nodes, groups and plans."""

    def __init__(self, engine: Engine, translator: Translator | None = None) -> None:
        self.engine = engine
        self.translator = translator or Translator()

    def name(self, uid: str) -> str:
        return self.translator.task_name(self.engine.node(uid))

    def node_tasks(self) -> Iterator[TaskDict]:
        for uid in self.engine.setup_nodes:
            yield self.translator.node_task(self.engine, self.engine.node(uid))

    def groups(self) -> dict[str, list[str]]:
        """Group name -> nodes it builds, in build order."""
        engine = self.engine
        options = engine.settings.setup
        staging = [u for u in engine.setup_nodes if engine.node(u).resource_type != "seed"]
        seeds = [u for u in engine.setup_nodes if engine.node(u).resource_type == "seed"]
        setup = [u for u in engine.setup_nodes if (u in seeds and options.load_seeds) or (u in staging and options.run_staging_models)]
        return {
            "setup": setup,
            "quick": list(engine.foundation_nodes),
            "seeds": seeds,
            "staging": engine.graph.buildable(engine.graph.with_ancestors(staging)),
        }

    def group_tasks(self, extra_deps: dict[str, list[str]] | None = None) -> Iterator[TaskDict]:
        extra_deps = extra_deps or {}
        for group, uids in self.groups().items():
            plan = f"_plan:{group}"
            # doit runs dependency-free tasks in list order: the census first (so its readers
            # can build in the same dbt run as the rest), then the plan, then the nodes.
            census = self.engine.settings.census.generate and any(self.engine.reads_census(u) for u in uids)
            yield {
                "basename": plan,
                "doc": f"Tell the engine which nodes `{group}` builds, so stale ones build in one dbt run",
                "actions": [(plan_action, [self.engine, uids])],
                "verbosity": 0,
            }
            yield {
                "basename": group,
                "doc": GROUP_DOCS[group],
                "actions": None,
                "task_dep": [*([CENSUS_TASK] if census else []), plan, *(self.name(u) for u in uids),
                             *extra_deps.get(group, [])],
            }


# -- task functions that dodo.py imports ---------------------------------------------


def unavailable(name: str, doc: str) -> TaskDict:
    """A task that fails with the reason the project could not be loaded."""
    from . import session

    return {"basename": name, "doc": doc, "actions": [lambda: TaskFailed(session.load_error())], "verbosity": 1}


def task_nodes() -> Iterator[TaskDict] | None:
    """One task per seed and staging model: seed:<name>, model:<name>"""
    from . import session

    engine = session.task_engine()
    # None, not an empty generator: doit would list an empty "nodes" group.
    return SetupTasks(engine).node_tasks() if engine is not None else None


def task_groups() -> Iterator[TaskDict]:
    """The groups: setup, quick, seeds, staging"""
    from . import session
    from .validation import group_dependencies

    engine = session.task_engine()
    if engine is None:
        for group, doc in GROUP_DOCS.items():
            yield unavailable(group, doc)
        return
    extra = group_dependencies(engine)
    # Derived simulation tables go last: only a run that rebuilt an input drops them.
    extra["setup"] = [*extra.get("setup", []), "_clear_derived"]
    yield from SetupTasks(engine).group_tasks(extra)


def task_validation() -> Iterator[TaskDict]:
    """Validation checks: validate:<name>, and the validate group"""
    from . import session
    from .validation import GROUP_TASK, validation_tasks

    engine = session.task_engine()
    if engine is None:
        yield unavailable(GROUP_TASK, "Run every validation check and print the summary")
        return
    yield from validation_tasks(engine)


def task_census() -> TaskDict:
    """Generate the synthetic census when missing or its parameters changed"""
    from . import session

    engine = session.task_engine()
    if engine is None:
        return unavailable(CENSUS_TASK, "Generate the synthetic census when missing or its parameters changed")
    return census_task(engine)


from .status import task_status  # noqa: E402  (these modules import this one lazily)
from .clear import task_clear  # noqa: E402
from .diagram import task_graph  # noqa: E402

TASK_FUNCTIONS = (task_nodes, task_groups, task_census, task_validation, task_status, task_clear, task_graph)


def namespace() -> dict[str, Any]:
    """What dodo.py exposes to doit: DOIT_CONFIG and the task functions."""
    from . import session

    return {"DOIT_CONFIG": session.doit_config(), **{f.__name__: f for f in TASK_FUNCTIONS}}
