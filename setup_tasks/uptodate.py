"""doit uptodate checks whose target is a DuckDB table (doit's ``(task, values)`` protocol)."""

from __future__ import annotations

from typing import Any, Mapping

from .engine import Engine, NodeStatus


class TableTarget:
    """Up to date when the node's table exists and was built from its current fingerprint.

    Its repr says why the task will run, so ``doit info <task>`` explains itself.
    """

    def __init__(self, engine: Engine, unique_id: str) -> None:
        self.engine = engine
        self.unique_id = unique_id
        self.last: NodeStatus | None = None

    def __call__(self, task: Any, values: Mapping[str, Any]) -> bool:
        self.last = self.engine.status(self.unique_id, values)
        return not self.last.stale

    def __repr__(self) -> str:
        node = self.engine.node(self.unique_id)
        target = f"table {node.relation}" if node.relation else node.unique_id
        if self.last is None:
            return f"TableTarget({target})"
        return f"TableTarget({target}): {self.last.reason}"
