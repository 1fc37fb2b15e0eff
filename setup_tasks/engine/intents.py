"""What a build may write, noted before it runs, and the relations it moves aside: a run killed at any instant
leaves nothing a later run does not know of, and no table lost."""

from __future__ import annotations

from ..project.manifest import Node
from ..store.records import ASIDE_SUFFIX
from .contents import Key
from .run_state import Outcome
from .view import StateView

# The names dbt gives a table while it builds it, besides its own, and setup's name for a relation it
# moved aside while dbt builds its node afresh.
PREVIOUS = ASIDE_SUFFIX
DBT_INTERMEDIATES = ("", "__dbt_tmp", "__dbt_backup", PREVIOUS)
# Materializations that build their relation from nothing whatever exists (no need to move it aside).
FRESH_MATERIALIZATIONS = ("table", "view", "ephemeral", "snapshot")


class WriteIntents:
    """Writes down what a build may commit before it runs, and moves aside (then settles) what it rebuilds."""

    def __init__(self, view: StateView) -> None:
        self.view = view
        self.records = view.records
        self.contents = view.contents

    def intend(self, nodes: list[Node]) -> None:
        """Write down, before dbt runs, every table it may commit (dbt's intermediate names
        too; a test storing its failures, its audit table) and every schema it may create: a
        run killed at any instant leaves nothing a later run does not know of, and a table
        nothing writes any more (a test that stopped storing failures) is dropped as a leftover."""
        relations = {
            n.unique_id: [
                key[:2] + (key[2] + suffix,) for suffix in (DBT_INTERMEDIATES if n.resource_type != "test" else ("",))
            ]
            for n in nodes
            if n.relation is not None
            for key in [n.relation.key()]
        }
        if not relations:
            return
        existing = self.view.database_contents().schemas
        schemas = {key[:2] for keys in relations.values() for key in keys} - existing
        self.records.intend(relations, {s for s in schemas if s[1] != "main"})

    def move_aside(self, nodes: list[Node]) -> dict[str, Key]:
        """Rename the existing relation of each node whose materialization reads it (seeds, incremental and
        custom materializations) to its ``__setup_prev`` name, as if it was not there: what a fresh build
        sees. Returns node -> the relation moved aside."""
        wanted = {
            n.unique_id: n.relation.key()
            for n in nodes
            if n.relation is not None and n.materialized not in FRESH_MATERIALIZATIONS
        }
        if not wanted:
            return {}
        self.records.set_aside(wanted.values(), True)  # first: a run killed from here on leaves them known
        return self.contents.move_aside(wanted, PREVIOUS)

    def settle_aside(self, aside: dict[str, Key]) -> None:
        """Drop what was moved aside for nodes dbt built; put it back for the others (they keep what they had)."""
        built = {u for u in aside if self.view.run.outcomes.get(u, Outcome(u, "x")).ok}
        self.contents.settle_aside({u: (key, u in built) for u, key in aside.items()}, PREVIOUS)
        self.records.set_aside(aside.values(), False)

    def restore_aside(self) -> None:
        """What a run killed while it had relations moved aside left: each put back where its relation is
        missing (the table it had), dropped where dbt had built it meanwhile."""
        if self.records.aside:
            self.contents.restore_aside(sorted(self.records.aside), PREVIOUS)
            self.records.set_aside(list(self.records.aside), False)
