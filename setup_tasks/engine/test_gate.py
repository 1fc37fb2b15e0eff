"""dbt build's rule for failing tests: what is downstream of a failing error-severity test is not built.

`dbt build` runs each test right after the nodes it reads, and a node waits for every test whose
nodes are all among its ancestors (dbt's ``add_test_edges``): when such a test fails (or errors) with
severity error, the node is skipped, and with it everything downstream. Setup follows the same rule:
the tests of a batch's nodes run inside the batch (dbt runs them in its build; setup's own builds run
them after their nodes), and a stale node downstream of a test that fails now, or failed on inputs
that are still what they were, is not built (its table, if any, stays as it was, as with dbt).

``TestOutcomes`` keeps each test's last outcome with the state of its inputs (its fingerprint and
its tables' contents): a stored failure counts only while that state holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from ..files import discarded, read_json, write_json_atomic
from ..project.graph import SetupGraph
from ..project.manifest import Node
from ..store.records import TEST_OUTCOMES_FILE

OUTCOMES_FILE = TEST_OUTCOMES_FILE
OUTCOMES_VERSION = 1
BLOCKING = frozenset({"fail", "error"})  # with severity error: dbt skips what depends on the test


@dataclass(frozen=True)
class TestOutcome:
    """A test's outcome, and the state of its inputs when it ran."""

    status: str  # dbt's: pass | warn | fail | error | skipped
    state: str

    def blocks(self, node: Node) -> bool:
        """Does this outcome make dbt build skip what depends on the test ``node``?"""
        return self.status in BLOCKING and (node.test_severity or "error") == "error"


class TestOutcomes:
    """Each test's last outcome (``TestOutcome``), kept with this project's build records."""

    __test__ = False  # not a pytest test class

    def __init__(self, path: Path, outcomes: dict[str, TestOutcome] | None = None) -> None:
        self.path = path
        self.outcomes = outcomes or {}
        self.dirty = False

    @classmethod
    def load(cls, path: Path) -> "TestOutcomes":
        stored = read_json(path, {}, version=OUTCOMES_VERSION).get("tests") or {}
        outcomes = {
            uid: TestOutcome(str(entry["status"]), str(entry["state"]))
            for uid, entry in stored.items()
            if isinstance(entry, dict) and isinstance(entry.get("status"), str) and isinstance(entry.get("state"), str)
        }
        if len(outcomes) < len(stored):
            discarded(path, f"{len(stored) - len(outcomes)} entries of the wrong shape")
        return cls(path, outcomes)

    def put(self, uid: str, status: str, state: str) -> None:
        outcome = TestOutcome(status, state)
        if self.outcomes.get(uid) != outcome:
            self.outcomes[uid] = outcome
            self.dirty = True

    def current(self, uid: str, state: str) -> TestOutcome | None:
        """The stored outcome of the test while its inputs are still in ``state``."""
        outcome = self.outcomes.get(uid)
        return outcome if outcome is not None and outcome.state == state else None

    def save(self) -> None:
        """Best effort: a lost outcome costs a re-run of the test, never a wrong skip (it is keyed)."""
        if not self.dirty:
            return
        try:
            write_json_atomic(
                self.path,
                {
                    "version": OUTCOMES_VERSION,
                    "tests": {u: {"status": o.status, "state": o.state} for u, o in self.outcomes.items()},
                },
            )
            self.dirty = False
        except OSError:
            pass


def gating_tests(graph: SetupGraph, nodes: Mapping[str, Node], uid: str, tests: Iterable[str]) -> list[str]:
    """The tests ``uid`` waits for in `dbt build`: those whose every parent is among its ancestors."""
    ancestors = graph.ancestors([uid])
    return [t for t in tests if nodes[t].depends_on and set(nodes[t].depends_on) <= ancestors]


def batch_tests(graph: SetupGraph, tests: Iterable[str], batch: Iterable[str]) -> list[str]:
    """The tests a batch runs: those reading (through ephemeral models) a node it builds."""
    built = set(batch)
    return [t for t in tests if built & set(graph.built_parents(t))]
