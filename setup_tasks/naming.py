"""What things are called: the one Translator from project nodes and checks to doit task names and docs.

Everything that shows a task name (task definitions, validation dependencies, the
reporter, run reports, diagrams, status) asks the same ``Translator`` object, so
a subclass that renames tasks renames them everywhere. A leaf: it knows nodes
only by the attributes below.
"""

from __future__ import annotations

from typing import Iterable, Protocol

DOC_WIDTH = 100

# Fixed task names: the commands people type.
SETUP_TASK = "setup"
QUICK_TASK = "quick"
SEEDS_TASK = "seeds"
STAGING_TASK = "staging"
MODELS_TASK = "models"
CENSUS_TASK = "census"
DEPS_TASK = "deps"
VALIDATE_TASK = "validate"
# Hidden helpers (doit does not list names starting with an underscore).
PLAN_PREFIX = "_plan:"
CLEAR_DERIVED_TASK = "_clear_derived"
QUICK_SUMMARY_TASK = "_validate:quick"
CHECK_PREFIX = "validate:"


class NamedNode(Protocol):
    """What naming needs of a node (``project.manifest.Node`` has it)."""

    @property
    def unique_id(self) -> str: ...
    @property
    def resource_type(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def path(self) -> str | None: ...
    @property
    def description(self) -> str: ...


class Translator:
    """Names and one-line docs of tasks: one method per aspect; override one to customise."""

    def task_name(self, node: NamedNode) -> str:
        """``seed:<name>``, ``model:<name>``, ``snapshot:<name>``."""
        return f"{node.resource_type}:{node.name}"

    def doc(self, node: NamedNode, built_sources: Iterable[tuple[str, str]] = ()) -> str:
        """What `doit list` and `doit info` show: the file, the sources it reads that the project
        builds (``(source, task that builds it)``), then the node's description, cut to one line."""
        what = "Load" if node.resource_type == "seed" else "Build"
        line = f"{what} {node.path}"
        reads = [f"{task} through source {source}" for source, task in built_sources]
        if reads:
            line = f"{line} (reads {', '.join(reads)})"
        summary = " ".join(node.description.split()).split(". ")[0].rstrip(".")
        if summary:
            line = f"{line}: {summary}"
        return line if len(line) <= DOC_WIDTH else line[: DOC_WIDTH - 1] + "…"

    def task_names(self, nodes: Iterable[NamedNode]) -> dict[str, str]:
        """unique id -> task name, for each of ``nodes``."""
        return {node.unique_id: self.task_name(node) for node in nodes}

    def check_task_name(self, check_name: str) -> str:
        """``validate:<area>.<check>``; also the task of a whole area (``validate:<area>``)."""
        return CHECK_PREFIX + check_name

    def plan_task_name(self, group: str) -> str:
        return PLAN_PREFIX + group
