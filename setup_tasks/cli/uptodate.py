"""doit up-to-date checks (doit's ``(task, values)`` protocol): a node's table, the census, the packages, a check.

Each one's repr says why its task will run, so ``doit info <task>`` explains itself.
"""

from __future__ import annotations

import inspect
from typing import Any, Mapping, Sequence

from ..engine.census import CensusRequest
from ..engine.engine import Engine
from ..engine.staleness import NodeStatus
from ..errors import PlanwiseError
from ..project.packages import packages_dir
from ..validation.framework import Check
from ..validation.scope import ValidationScope


# doit asks each task's check for its signature (inspect.signature of a callable object: 70 us, a
# twelfth of a no-op's check at 1,000 models); each check here takes doit's (task, values).
DOIT_SIGNATURE = inspect.signature(lambda task, values: None)


class TableUpToDate:
    """Up to date when the node's table exists and was built from its current fingerprint."""

    __signature__ = DOIT_SIGNATURE

    def __init__(self, engine: Engine, unique_id: str) -> None:
        self.engine = engine
        self.unique_id = unique_id
        self.last: NodeStatus | None = None

    def __call__(self, task: Any, values: Mapping[str, Any]) -> bool:
        self.last = self.engine.status(self.unique_id)
        self.engine.builder.recorder.note_checked(self.last)  # doit asked: this node is part of the run
        return not self.last.stale

    def __repr__(self) -> str:
        node = self.engine.node(self.unique_id)
        target = f"table {node.relation}" if node.relation else node.unique_id
        if self.last is None:
            return f"TableUpToDate({target})"
        return f"TableUpToDate({target}): {self.last.reason}"

    def in_words(self) -> str:
        """Why the node will be built (``doit info``)."""
        return self.last.reason if self.last is not None else "not checked yet"


class CensusUpToDate:
    """Up to date when the census file exists with the requested parameters, or is the user's own."""

    def __init__(self, engine: Engine, request: CensusRequest) -> None:
        self.engine = engine
        self.request = request

    def __call__(self, task: Any, values: Mapping[str, Any]) -> bool:
        # An explicit request a user's file cannot meet runs the task, which says so and fails.
        return self.engine.census.refusal() is None and self.engine.census.why() is None

    def __repr__(self) -> str:
        return f"CensusUpToDate({self.request.path}): {self.engine.census.describe()}"

    def in_words(self) -> str:
        """Whose file the census is and what setup will do with it (``doit info census``)."""
        refused = self.engine.census.refusal()
        said = self.engine.census.describe() or "used as it is"
        return f"{self.request.path}: {refused.cause if refused is not None else said}"


class DepsUpToDate:
    """Up to date unless `dbt deps` ran in this run: the project loads (and installs what changed or
    is missing) before doit checks any task, as dbt cannot parse without the packages."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.checked = False

    def __call__(self, task: Any, values: Mapping[str, Any]) -> bool:
        self.checked = True
        return self.engine.definitions.packages_installed is None

    def __repr__(self) -> str:
        installed = self.engine.definitions.packages_installed
        folder = packages_dir(self.engine.ctx.project_dir).name
        if not self.checked:
            return f"DepsUpToDate({folder}/)"
        return f"DepsUpToDate({folder}/): " + (
            f"installed in this run: {installed.reason}" if installed else "installed"
        )

    def in_words(self) -> str:
        installed = self.engine.definitions.packages_installed
        return f"dbt deps ran as the project loaded: {installed.reason}" if installed else "the packages are installed"


class CheckUpToDate:
    """Up to date when a check's inputs are unchanged, none of them is stale, and its last result is stored.

    When up to date, the stored result becomes this run's result (marked up_to_date).
    ``inputs`` are the nodes it reads that setup builds: a stale one is built before the check runs.
    """

    def __init__(self, scope: ValidationScope, check: Check, task_name: str, inputs: Sequence[str] = ()) -> None:
        self.scope = scope
        self.check = check
        self.task_name = task_name
        self.inputs = list(inputs)
        self.reasons: list[str] | None = None
        self.values: Mapping[str, Any] = {}

    def __call__(self, task: Any, values: Mapping[str, Any]) -> bool:
        self.values = dict(values or {})
        self.reasons = self.compute_reasons(self.values)
        if self.reasons:
            return False
        self.scope.reuse(self.values, self.check)
        return True

    def compute_reasons(self, values: Mapping[str, Any]) -> list[str]:
        try:
            parts = self.scope.parts(self.check)
        except PlanwiseError as err:
            return [f"cannot check: {err.cause}"]
        reasons = self.scope.stale_reasons(values.get("parts") or {}, parts)
        if not reasons and self.runs_again(values):
            reasons = ["last result not stored"]
        return reasons or self.stale_inputs()

    @staticmethod
    def runs_again(stored: Mapping[str, Any]) -> bool:
        """Does a check that just ran and stored ``stored`` run again next time, nothing it reads changed? Its
        parts are those it read, and what it reads was built before it ran: only a missing result does."""
        return not stored.get("results")

    def stale_inputs(self) -> list[str]:
        """Inputs this run has not built yet and will (doit no longer orders them first: see cli.checks)."""
        engine = self.scope.engine
        return [
            f"reads {engine.label(u)}, which is stale: {status.reason}"
            for u in self.inputs
            if u not in engine.run.outcomes and (status := engine.status(u)).stale
        ]

    def __repr__(self) -> str:
        state = "" if self.reasons is None else ": " + ("; ".join(self.reasons) if self.reasons else "up to date")
        return f"CheckUpToDate({self.task_name}){state}"

    def in_words(self) -> str:
        """Why the check will run (``doit info validate:<check>``)."""
        return "; ".join(self.reasons) if self.reasons else "up to date"
