"""What one run has done to nodes (``RunState``, each node's ``Outcome``), and how it was asked to run."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..dbt.invoke import NodeOutcome
from ..errors import PlanwiseError
from ..project.fingerprints import CONTENT_PREFIX, Fingerprint
from ..store.records import BuildRecord, new_build_id
from .staleness import NodeStatus


@dataclass(frozen=True)
class EngineOptions:
    """How one run uses its engine, given once when the engine is made."""

    # doit --continue: no ``setup.fail_fast`` stop after a failed node in this run.
    keep_going: bool = False
    # A command that only looks (list, info, status, graph): on a database file that does not exist
    # yet it writes no state (no records, caches or test outcomes beside it).
    looks_only: bool = False


@dataclass(frozen=True)
class Outcome:
    """What happened to a node in this run."""

    unique_id: str
    status: str  # success | error | skipped
    message: str = ""
    seconds: float = 0.0
    rows: int | None = None

    @property
    def ok(self) -> bool:
        return self.status == "success"


@dataclass
class RunState:
    """What this run has done to nodes so far."""

    build_id: str = field(default_factory=new_build_id)
    started: float = field(default_factory=time.time)
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    scope: set[str] = field(default_factory=set)
    invocations: int = 0
    # dbt tests run straight in DuckDB from the SQL dbt compiled for them (engine.direct_tests).
    direct_tests: int = 0
    # Seeds and models built straight in DuckDB, as dbt-duckdb builds them (engine.direct_build).
    direct_builds: int = 0
    # Models and tests dbt compiled without building them, their compile context having changed.
    compiles: int = 0
    # Tests run inside this run's builds (right after the nodes they read, as `dbt build` runs them).
    test_outcomes: dict[str, NodeOutcome] = field(default_factory=dict)
    # Staleness doit saw for each node it considered (reasons go into the run report).
    checked: dict[str, NodeStatus] = field(default_factory=dict)
    callback_errors: list[str] = field(default_factory=list)
    # Tables dropped because their node left the project.
    retired: list[str] = field(default_factory=list)
    # Nodes stale only for an upstream node a batch rebuilt first (``Staleness.waits_on``): those its
    # rebuild left with the same content to read are kept (early cutoff).
    deferred: set[str] = field(default_factory=set)
    kept: list[str] = field(default_factory=list)
    # Why nothing more of this run can work (the database is locked, another setup run holds it).
    fatal: PlanwiseError | None = None
    # The run may build: its lock, the database file and dbt's profile were checked (Builder._ready_to_build).
    ready: bool = False


def input_state_of(fingerprint: Fingerprint | None, record: BuildRecord | None) -> str:
    """What a reader of a node depends on: for a table built under this fingerprint, the content it holds
    (a rebuild to the same content changes nothing for its readers); else its fingerprint, and the content
    it was last built with."""
    digest = fingerprint.digest if fingerprint is not None else "untracked"
    if record is not None and record.signature and record.fingerprint == digest:
        return CONTENT_PREFIX + record.signature
    return f"{digest}:{record.signature if record and record.signature else ''}"
