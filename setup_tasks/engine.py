"""The setup engine of one process: staleness of every node, and batched builds.

Definitions (manifest, graph, selections) are computed when the engine is made and
never run dbt unless the project changed. The database is read once, lazily, before
anything is built. Building a stale node builds, in one dbt invocation, every stale
node of the groups doit was asked to run, and records each one durably the moment
dbt reports it done.
"""

from __future__ import annotations

import csv
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from . import database
from .errors import CensusError, DatabaseError, DatabaseLockedError, SetupError
from .fingerprints import FileHasher, Fingerprint, FingerprintCalculator, effective_vars, explain
from .graph import GraphMemo, SetupGraph
from .runner import Runner
from .manifest import DbtContext, Manifest, Node, load_manifest, manifest_cache, read_project_yaml
from .state import BuildRecord, BuildRecords, RunLock, new_build_id, read_json, write_json_atomic

CENSUS_VAR = "census_parquet_path"
Key = tuple[str, str, str]


@dataclass(frozen=True)
class NodeStatus:
    """Whether a node's table is up to date, and if not, why (in words)."""

    unique_id: str
    stale: bool
    reasons: tuple[str, ...] = ()
    error: SetupError | None = None

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons) if self.reasons else "up to date"


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
    """What this process has done so far."""

    build_id: str = field(default_factory=new_build_id)
    started: float = field(default_factory=time.time)
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    scope: set[str] = field(default_factory=set)
    invocations: int = 0
    # Staleness doit saw for each node it considered (reasons go into the run report).
    checked: dict[str, "NodeStatus"] = field(default_factory=dict)
    # Validation results of this run, by check name (written by the validation tasks).
    checks: dict[str, Any] = field(default_factory=dict)
    callback_errors: list[str] = field(default_factory=list)
    # Tables dropped because their node left the project.
    retired: list[str] = field(default_factory=list)


def _digest(values: Iterable[Any]) -> str:
    import hashlib

    return hashlib.sha256(repr(sorted(values)).encode()).hexdigest()[:16]


def dbt_context(settings: Any) -> DbtContext:
    variables = dict(settings.dbt.vars_dict())
    variables.setdefault(CENSUS_VAR, str(settings.census.path))
    return DbtContext(
        project_dir=settings.dbt.project_dir,
        profiles_dir=settings.dbt.profiles_dir,
        target=settings.dbt.target,
        vars=variables,
        threads=settings.dbt.threads,
        database_path=settings.database.path,
        duckdb_threads=settings.database.threads,
        duckdb_memory_limit=settings.database.memory_limit,
    )


def first_ragged_row(path: Path, delimiter: str = ",") -> str | None:
    """'line N: k fields, expected m' for the first malformed row of a CSV, else None."""
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh, delimiter=delimiter, strict=True)
            header = next(reader, None)
            if header is None:
                return "line 1: the file is empty (a header row is required)"
            for row in reader:
                if row and len(row) != len(header):
                    return f"line {reader.line_num}: {len(row)} fields, expected {len(header)}"
    except UnicodeDecodeError as exc:
        return f"byte {exc.start}: not UTF-8 text"
    except csv.Error as exc:
        return f"line {reader.line_num}: {exc}"
    except OSError as exc:
        return f"cannot read: {exc.strerror}"
    return None


class Engine:
    """Staleness and builds for one database and one dbt project."""

    def __init__(self, settings: Any, listeners: Iterable[Callable[[str, dict[str, Any]], None]] = ()) -> None:
        self.settings = settings
        self.root = settings.root
        self.ctx = dbt_context(settings)
        database.configure(self.ctx.duckdb_config())
        self.db_path: Path = settings.database.path
        self.project_yaml = read_project_yaml(self.ctx.project_dir)
        selections = {"setup": settings.dbt.setup_selection, "foundation": settings.dbt.foundation_selection}
        self.runner = Runner(settings.dbt.worker_idle_seconds)
        self.manifest: Manifest = load_manifest(self.ctx, selections, self.runner)
        self.manifest_path = manifest_cache(self.ctx).manifest_path
        memo = GraphMemo(self.manifest_path.with_name("graph_memo.json"), self.manifest.invocation_id)
        self.graph = SetupGraph.from_manifest(self.manifest, memo)
        self.setup_nodes = self.graph.buildable(self.graph.with_ancestors(self.manifest.selections["setup"]))
        self.foundation_nodes = self.graph.buildable(self.graph.with_ancestors(self.manifest.selections["foundation"]))
        state_dir: Path = settings.state_dir
        self.records = BuildRecords.load(state_dir / "records.json")
        self.lock = RunLock(state_dir / "run.lock", self.db_path)
        self._hash_cache_path = state_dir / "file_hashes.json"
        self._snapshot_path = state_dir / "db_snapshot.json"
        self._saved: database.Snapshot | None = None
        self._snapshot_state: list[int] | None = None
        self.hasher = FileHasher(read_json(self._hash_cache_path, {}))
        self.run = RunState()
        self.listeners = list(listeners)
        self.quiet = True
        self._snapshot: database.Snapshot | None = None
        self._fingerprints: dict[str, Fingerprint] | None = None
        self._record_lock = threading.Lock()
        # `doit census employees=N seed=S` overrides the config for this run.
        self.census_overrides: dict[str, int] = {}
        self._census_pending: bool | None = None

    def close(self) -> None:
        """Keep what this run learnt, and let other runs build this database again."""
        database.close_shared()
        self.save_caches()
        self.lock.release()

    def save_caches(self) -> None:
        """Acknowledged builds, the database snapshot, graph answers and file hashes, at the end of a run."""
        try:
            self.records.flush()
            self.save_snapshot()
        except OSError:
            pass  # unacknowledged records only make `doit forget` of them a no-op; a lost snapshot costs a read
        self.graph.memo.save()
        if self.hasher.dirty:
            try:
                write_json_atomic(self._hash_cache_path, self.hasher.cache)
                self.hasher.dirty = False
            except OSError:
                pass

    # -- names ------------------------------------------------------------------------

    def node(self, uid: str) -> Node:
        return self.manifest.nodes[uid]

    def label(self, uid: str) -> str:
        node = self.node(uid)
        return f"{node.resource_type} {node.name}"

    def tracked(self) -> list[str]:
        """Everything setup builds, tests, plus the sources those read."""
        nodes = set(self.setup_nodes)
        return sorted(self.graph.with_ancestors(nodes | set(self.graph.tests_of(nodes))))

    # -- what the database holds ------------------------------------------------------------

    def snapshot(self, live: bool = False) -> database.Snapshot:
        """What the database holds; ``live`` opens it even when a saved snapshot is current
        (to learn whether it can be opened at all: `doit status`)."""
        if live and self._snapshot is not None and self._snapshot is self._saved:
            self._snapshot = None
        if self._snapshot is None:
            holder = self.lock.holder()
            if holder:
                from .errors import RunInProgressError

                raise RunInProgressError(str(self.db_path), holder if holder > 0 else None)
            self._snapshot_state = database.file_state(self.db_path)
            self._saved = None if live else self._saved_snapshot()
            self._snapshot = self._saved or database.snapshot(self.db_path, self._signed_keys())
        return self._snapshot

    def _signed_keys(self) -> list[Key]:
        return [self.node(u).relation.key() for u in self.tracked() if self.node(u).relation]

    def _saved_snapshot(self) -> database.Snapshot | None:
        """The snapshot saved when the last run ended, if the file has not been written since.

        Any write to a DuckDB file changes its size or modification time (or its WAL's):
        an unchanged file needs no DuckDB at all, as Make trusts timestamps.
        """
        saved = read_json(self._snapshot_path, None)
        if not saved or self._snapshot_state is None or saved.get("file") != self._snapshot_state:
            return None
        if saved.get("keys") != _digest(self._signed_keys()):
            return None
        return database.snapshot_from_dict(self.db_path, saved["snapshot"])

    def save_snapshot(self) -> None:
        """At the end of a run: what the database holds now, keyed by its file state."""
        if self._snapshot is None:
            return
        now = database.file_state(self.db_path)
        try:
            snap = self._snapshot if now == self._snapshot_state else database.snapshot(self.db_path, self._signed_keys())
            now = database.file_state(self.db_path)
        except SetupError:  # locked by someone meanwhile: next run reads the database itself
            now = None
        if now is None:
            self._snapshot_path.unlink(missing_ok=True)
            return
        write_json_atomic(self._snapshot_path, {"file": now, "keys": _digest(self._signed_keys()),
                                                "snapshot": database.snapshot_to_dict(snap)})

    def drop_tables(self, wanted: Callable[[database.DbRelation], bool]) -> database.DropResult:
        """Drop the wanted tables and views (views first, foreign-key order), holding the run
        lock so no setup builds meanwhile; this run's snapshot forgets what was dropped."""
        self.lock.acquire()
        result = database.drop_relations(self.db_path, lambda relations: database.drop_order(relations, wanted))
        gone = {rel.key for rel in result.dropped}
        if gone and self._snapshot is not None:
            self._snapshot = replace(self._snapshot, tables={
                key: state for key, state in self._snapshot.tables.items() if key not in gone})
        return result

    def table_exists(self, uid: str) -> bool:
        node = self.node(uid)
        return node.relation is not None and self.snapshot().has(node.relation.key())

    # -- fingerprints -----------------------------------------------------------------

    def fingerprints(self) -> dict[str, Fingerprint]:
        if self._fingerprints is None:
            snap = self.snapshot()
            sources = {
                n.relation.key(): snap.signature(n.relation.key()) or "missing"
                for n in self.manifest.nodes.values()
                if n.resource_type == "source" and n.relation and not n.external_location
            }
            calc = FingerprintCalculator(
                self.manifest, self.graph, self.ctx.project_dir, self.root, self.variables(), self.hasher, sources,
                environ=self.ctx.environ(),
            )
            self._fingerprints = calc.compute(self.tracked())
        return self._fingerprints

    def variables(self) -> dict[str, Any]:
        """dbt vars as the project sees them (dbt_project.yml, then the setup config)."""
        return effective_vars(self.project_yaml, self.manifest.project_name, self.ctx.vars)

    def external_inputs(self, source_uid: str) -> list[Path]:
        """Files a source with an external location reads."""
        from .fingerprints import external_paths

        return external_paths(self.node(source_uid), self.root)

    def reads_census(self, uid: str) -> bool:
        """Does this node read the configured census file through a source?"""
        census = Path(self.settings.census.path).resolve()
        return any(
            census in {p.resolve() for p in self.external_inputs(parent)}
            for parent in self.graph.built_parents(uid)
            if self.node(parent).resource_type == "source" and self.node(parent).external_location
        )

    def census_request(self) -> "CensusRequest":
        from .census import DEFAULT_PLAN_YEAR, CensusDefects, CensusRequest

        census = self.settings.census
        bands = next((n for n in self.manifest.nodes.values()
                      if n.resource_type == "seed" and n.name == "config_job_levels" and n.path), None)
        return CensusRequest(
            path=census.path,
            employees=self.census_overrides.get("employees", census.employees),
            seed=self.census_overrides.get("seed", census.seed),
            defects=CensusDefects(census.duplicate_id_rate, census.missing_ssn_rate, census.hire_after_termination_rate),
            job_levels_csv=self.ctx.project_dir / bands.path if bands else None,
            plan_year=int(self.variables().get("plan_year", DEFAULT_PLAN_YEAR)),
        )

    def census_why(self) -> str | None:
        """Why the census must be (re)generated (provenance read once per file version)."""
        from .census import read_census_provenance

        return self.census_request().why(lambda p: self.hasher.derived(p, "census-provenance", read_census_provenance))

    def census_written(self) -> None:
        """The census task wrote the file: fingerprints that hashed the old one are void."""
        self._census_pending = False
        self._fingerprints = None

    def census_pending(self) -> bool:
        """Will the census task (re)write the census before its readers build?"""
        if self._census_pending is None:
            self._census_pending = self.settings.census.generate and self.census_why() is not None
        return self._census_pending

    def names(self) -> dict[str, str]:
        return {uid: self.label(uid) for uid in self.manifest.nodes}

    # -- staleness --------------------------------------------------------------------

    def status(self, uid: str, values: Mapping[str, Any] | None = None) -> NodeStatus:
        """Is the node's table up to date? ``values`` are doit's saved values for its task."""
        outcome = self.run.outcomes.get(uid)
        if outcome is not None:
            why = "built in this run" if outcome.ok else f"{outcome.status} in this run"
            return NodeStatus(uid, True, (why,))
        try:
            status = self._status(uid, values)
        except SetupError as err:
            status = NodeStatus(uid, True, (f"cannot check: {err.cause}",), err)
        if values is not None:  # asked by doit: this node is part of the run
            self.run.checked[uid] = status
        return status

    def _status(self, uid: str, values: Mapping[str, Any] | None) -> NodeStatus:
        record = self.records.get(uid)
        if record is None:
            return NodeStatus(uid, True, ("never built",))
        node = self.node(uid)
        if not self.table_exists(uid):
            return NodeStatus(uid, True, (f"table {node.relation} missing from the database",))
        current = self.fingerprints()[uid]
        if record.fingerprint != current.digest:
            reasons = explain(record.parts, current.parts, self.names()) or ("fingerprint changed",)
            return NodeStatus(uid, True, tuple(reasons))
        if record.signature and self.snapshot().signature(node.relation.key()) != record.signature:
            return NodeStatus(uid, True, (f"table {node.relation} changed outside setup",))
        if values is not None and not values and record.acknowledged:
            return NodeStatus(uid, True, ("forced (doit forget)",))
        return NodeStatus(uid, False)

    # -- tables setup built that a clean build would not have ---------------------------------

    def removed_builds(self) -> dict[str, BuildRecord]:
        """Builds recorded for nodes the project no longer has (file deleted or renamed, node disabled)."""
        return {uid: rec for uid, rec in self.records.records.items() if uid not in self.manifest.nodes}

    def leftover_tables(self, scope: Iterable[str] | None = None) -> dict[str, Key]:
        """Tables setup built that no current node builds: a clean build has none of them.

        Those of nodes removed from the project, and those a node built under its old
        name (alias, schema or database changed) -- the latter only for nodes in
        ``scope`` when given (a run drops them when it rebuilds the node).
        """
        claimed = {n.relation.key() for n in self.manifest.nodes.values() if n.relation is not None}
        tables = self.snapshot().tables
        wanted = None if scope is None else set(scope)
        return {
            uid: rec.relation for uid, rec in self.records.records.items()
            if rec.relation is not None and rec.relation not in claimed and rec.relation in tables
            and (uid not in self.manifest.nodes or wanted is None or uid in wanted)
        }

    def leftover_label(self, uid: str, key: Key) -> str:
        """``main.stg_old (from removed model stg_old)``, or what the node builds now."""
        name = ".".join(key[1:])
        node = self.manifest.nodes.get(uid)
        if node is None:
            kind, _, rest = uid.partition(".")
            return f"{name} (from removed {kind} {rest.rpartition('.')[2]})"
        return f"{name} ({self.label(uid)} now builds {'.'.join(node.relation.key()[1:]) if node.relation else 'no table'})"

    def retire_leftovers(self) -> list[str]:
        """Drop the leftover tables of this run's scope; forget the builds of removed nodes.

        Returns the dropped tables. A table another node now builds (same name) is
        kept. A drop the database refuses keeps its record, so the next run tries again.
        """
        removed = self.removed_builds()
        leftovers = self.leftover_tables(self.run.scope)
        dropped: list[str] = []
        if leftovers:
            keys = set(leftovers.values())
            result = self.drop_tables(lambda rel: rel.key in keys)
            dropped = [str(rel) for rel in result.dropped]
            refused = {rel.key: message for rel, message in result.failed.items()}
            for uid, key in leftovers.items():
                if key in refused:
                    removed.pop(uid, None)
                    self._emit("warning", {"message": f"cannot drop {self.leftover_label(uid, key)}: {refused[key]}"})
        if removed:
            self.records.drop(list(removed))
        self.run.retired.extend(dropped)
        if dropped:
            self._emit("retired", {"tables": dropped})
        return dropped

    # -- building ---------------------------------------------------------------------

    def add_scope(self, uids: Iterable[str]) -> None:
        """Nodes doit will run in this invocation: one stale node builds them all at once."""
        self.run.scope.update(uids)

    def build(self, uid: str) -> Outcome:
        """Make the node's table up to date, building with it every stale node in scope."""
        if uid not in self.run.outcomes:
            try:
                self._build_batch(uid)
            except SetupError as err:
                self._set(Outcome(uid, "error", err.one_line()))
        outcome = self.run.outcomes[uid]
        if outcome.ok:
            self.records.acknowledge(uid)
        return outcome

    def batch_for(self, uid: str) -> list[str]:
        """This node plus every stale node in scope that can build now.

        Readers of a census that the census task has yet to write wait for their own
        task (after it), with everything downstream of them.
        """
        scope = self.run.scope | {uid}
        waiting: set[str] = set()
        if self.census_pending():
            readers = {u for u in scope if self.reads_census(u)}
            waiting = readers | self.graph.descendants(readers)
        batch = []
        for u in self.setup_nodes_and(uid):
            if u not in scope or u in self.run.outcomes or (u != uid and u in waiting):
                continue
            status = self.status(u)
            if u == uid or status.stale:
                self.run.checked.setdefault(u, status)  # its reason, for the run report
                batch.append(u)
        return batch

    def setup_nodes_and(self, uid: str) -> list[str]:
        nodes = self.setup_nodes if uid in self.setup_nodes else self.graph.buildable({*self.setup_nodes, uid})
        return nodes

    def _build_batch(self, uid: str) -> None:
        status = self.status(uid)
        if status.error is not None:
            raise status.error
        self.lock.acquire()
        database.check_writable(self.db_path)
        self.snapshot(live=True)  # a build needs the file: is it free? (a saved snapshot cannot tell)
        self.fingerprints()  # read the database and inputs before dbt holds the file
        batch = self.batch_for(uid)
        blocked = self._preflight(batch)
        runnable = [u for u in batch if u not in blocked]
        self._emit("batch", {"nodes": runnable, "blocked": sorted(blocked)})
        if runnable:
            self.run.invocations += 1
            nodes = [self.node(u) for u in runnable]
            self.runner.build_nodes(
                self.ctx, self.manifest_path, nodes, self._on_dbt_outcome, quiet=self.quiet,
                on_start=lambda started: self._emit("start", {"unique_id": started}),
            )
            self._sign([u for u in runnable if self.run.outcomes.get(u, Outcome(u, "x")).ok])
        for u in runnable:
            if u not in self.run.outcomes:
                self._set(Outcome(u, "skipped", "not built: an upstream node failed"))

    def _preflight(self, batch: list[str]) -> set[str]:
        """Fail nodes whose inputs are unusable before dbt sees them; skip their children."""
        failed: dict[str, str] = {}
        for uid in batch:
            problem = self._input_problem(uid)
            if problem:
                failed[uid] = problem
        blocked = set(failed)
        for uid, message in failed.items():
            self._set(Outcome(uid, "error", message))
            for child in sorted(self.graph.descendants([uid]) & set(batch)):
                if child not in blocked:
                    blocked.add(child)
                    self._set(Outcome(child, "skipped", f"not built: {self.label(uid)} failed"))
        return blocked

    def _input_problem(self, uid: str) -> str | None:
        node = self.node(uid)
        if node.resource_type == "seed" and node.path:
            path = self.ctx.project_dir / node.path
            problem = first_ragged_row(path, node.config.get("delimiter") or ",")
            if problem:
                return f"seed {node.name}: malformed CSV {path} {problem} -- fix: correct that row (every row needs the header's number of fields)"
        for parent in self.graph.built_parents(uid):
            source = self.node(parent)
            if source.resource_type == "source" and source.external_location:
                problem = self._external_input_problem(source)
                if problem:
                    return f"{node.resource_type} {node.name}: {problem}"
        return None

    def _external_input_problem(self, source: Node) -> str | None:
        location = source.external_location or ""
        paths = self.external_inputs(source.unique_id)
        missing = [p for p in paths if not p.exists()]
        if not paths or missing:
            where = missing[0] if missing else location
            census = Path(self.settings.census.path)
            if missing and missing[0].resolve() == census.resolve():
                err = CensusError(f"census file {census} does not exist", "run `doit census` to generate one, or set census.path / CENSUS_PATH to your file")
            else:
                err = CensusError(f"input file {where} of source {source.name} does not exist", "create it or fix the source's external_location")
            return err.one_line()
        return self._census_columns_problem(paths)

    def _census_columns_problem(self, paths: list[Path]) -> str | None:
        census = Path(self.settings.census.path).resolve()
        if census not in {p.resolve() for p in paths}:
            return None
        from .census import inspect_census

        try:
            info = inspect_census(census)
        except Exception as exc:  # unreadable parquet: name the file, keep the cause
            return CensusError(f"census file {census} cannot be read: {exc}", "replace it with a valid parquet file or run `doit census`").one_line()
        missing = [c for c in self.settings.validation.census_required_columns if c not in info.columns]
        if missing:
            return CensusError(
                f"census file {census} lacks required columns: {', '.join(missing)}",
                "add those columns to the file (README: Census), regenerate with `doit census`, "
                "or change validation.census_required_columns",
            ).one_line()
        return None

    def _on_dbt_outcome(self, result: Any) -> None:
        """dbt's callback, on its worker thread: it must never raise into dbt."""
        try:
            self._record_dbt_outcome(result)
        except Exception as exc:  # a failed record only costs a rebuild next run
            self.run.callback_errors.append(f"{result.unique_id}: {exc}")

    def _record_dbt_outcome(self, result: Any) -> None:
        status = result.status if result.status in ("success", "error", "skipped") else "error"
        message = result.message if status != "success" else ""
        holder = database.lock_holder(result.message) if status == "error" else None
        if holder:  # someone took the file between our check and dbt's connection
            message = DatabaseLockedError(str(self.db_path), holder).one_line()
        elif status == "error":
            node = self.node(result.unique_id)
            message = (
                f"{self.label(result.unique_id)} ({node.path}) failed: {result.message} -- fix: correct "
                f"{node.path} and run again; the table built before is kept"
            )
        self._set(Outcome(result.unique_id, status, message, result.seconds, result.rows))

    def _set(self, outcome: Outcome) -> None:
        with self._record_lock:
            self.run.outcomes[outcome.unique_id] = outcome
            if outcome.ok:
                fp = self.fingerprints()[outcome.unique_id]
                relation = self.node(outcome.unique_id).relation
                self.records.put(
                    outcome.unique_id,
                    BuildRecord(fp.digest, dict(fp.parts), time.time(), outcome.seconds, self.run.build_id, outcome.rows,
                                relation=relation.key() if relation is not None else None),
                )
        self._emit("node", {"unique_id": outcome.unique_id, "outcome": outcome})

    def _sign(self, uids: list[str]) -> None:
        """Remember each fresh table's content signature, to notice edits made outside setup."""
        keys = {self.node(u).relation.key(): u for u in uids if self.node(u).relation}
        try:
            signed = database.signatures(self.db_path, keys)
        except DatabaseError:
            return
        self.records.sign({keys[key]: signature for key, signature in signed.items()})

    def _emit(self, kind: str, payload: dict[str, Any]) -> None:
        for listener in self.listeners:
            listener(kind, payload)
