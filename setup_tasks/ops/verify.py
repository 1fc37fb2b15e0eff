"""`doit verify`: the database setup keeps, compared with a fresh `dbt build` of the same files.

A build tool's first promise is that its result equals a clean build. This makes the
promise checkable: dbt itself builds the current project (the nodes setup builds, and the
tests `dbt build` runs on them) into a scratch database beside nothing of setup's, in its
own process, with setup's context (project, profile and target, vars, environment, the
folder dbt runs in); then every relation either database holds for the project is compared
(kind, column names and types, rows as a multiset, comments) and every test outcome.

The scratch database has the name of setup's (in a private temporary folder), so SQL that
names the database means the same to both. Snapshots are compared by columns only: their
rows carry the time they were taken.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import yaml

from ..engine.engine import Engine
from ..errors import ProjectError, PlanwiseError
from ..project.compile_context import VOLATILE
from ..project.context import DbtContext, DbtProfile
from ..project.manifest import Manifest, Node
from ..store.database import RelationProfile, relation_names, relation_profiles

Key = tuple[str, str, str]
# dbt's test statuses, and what setup's dbt_tests results say of the same outcome.
TEST_STATUSES = ("pass", "warn", "fail", "error", "skipped")


@dataclass(frozen=True)
class Difference:
    """One way setup's database differs from dbt's fresh build."""

    what: str  # the relation (schema.name) or test
    detail: str
    # "kept": a table setup keeps from an earlier build where dbt's fresh build skipped its node (a test
    # upstream fails: dbt skips what is downstream, and on a database that has the table keeps it too).
    kind: str = "differs"

    def line(self) -> str:
        return f"{self.what}: {self.detail}"


@dataclass(frozen=True)
class ReferenceBuild:
    """What the fresh `dbt build` left: its database, and each node's status (tests included)."""

    database: Path
    statuses: Mapping[str, str]  # unique id -> success | error | skipped | pass | warn | fail
    messages: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Verification:
    """The comparison: what was compared, and every difference found."""

    relations: int = 0
    tests: int = 0
    differences: list[Difference] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        return not self.differences

    def lines(self) -> list[str]:
        head = (
            f"equal to a fresh `dbt build`: {self.relations} relations (columns, types, rows) and "
            f"{self.tests} test outcomes compared"
        )
        if self.equal:
            return [head]
        return [
            f"differs from a fresh `dbt build` in {len(self.differences)} place(s) "
            f"({self.relations} relations and {self.tests} test outcomes compared):",
            *(f"  {d.line()}" for d in self.differences),
        ]


# -- the fresh build --------------------------------------------------------------------------------


def scratch_profiles(profiles_file: Path, profile: DbtProfile, database: Path, folder: Path) -> Path:
    """A copy of the project's profiles.yml whose target writes ``database``: the folder holding it."""
    try:
        profiles = yaml.safe_load(profiles_file.read_text()) or {}
        output = profiles[profile.name]["outputs"][profile.target]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise ProjectError(
            f"cannot read target {profile.target} of profile {profile.name} in {profiles_file}: {exc}",
            "fix profiles.yml so that dbt itself can use it",
        ) from None
    output["path"] = str(database)
    profiles[profile.name]["target"] = profile.target
    (folder / "profiles.yml").write_text(yaml.safe_dump(profiles, sort_keys=False))
    return folder


def reference_build(
    ctx: DbtContext,
    profile: DbtProfile,
    selectors: list[str],
    folder: Path,
    name: str,
    environ: Mapping[str, str] | None = None,
    seeds_first: list[str] | None = None,
) -> ReferenceBuild:
    """`dbt build` of ``selectors`` (and the tests dbt selects with them) into ``folder/name``, in a
    process of its own: a build that shares nothing with setup's. ``seeds_first``: seeds to load with
    `dbt seed` before (a project reading a seed's table through source(): dbt's build does not know
    to build the seed first, and would race it)."""
    database = folder / name
    profiles = scratch_profiles(ctx.profiles_dir / "profiles.yml", profile, database, folder)
    target = folder / "target"
    common = [
        "--project-dir",
        str(ctx.project_dir),
        "--profiles-dir",
        str(profiles),
        "--target",
        profile.target,
        "--target-path",
        str(target),
        "--log-path",
        str(folder / "logs"),
        "--no-partial-parse",
        "--no-use-colors",
        "--no-send-anonymous-usage-stats",
    ]
    if ctx.vars:
        common += ["--vars", json.dumps(dict(ctx.vars), sort_keys=True, default=str)]
    if ctx.threads:
        common += ["--threads", str(ctx.threads)]
    env = dict(environ if environ is not None else ctx.environ())

    def dbt(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "dbt.cli.main", *args, *common], cwd=ctx.cwd, env=env, capture_output=True, text=True
        )

    results_file = target / "run_results.json"
    if seeds_first:
        dbt("seed", "--select", *seeds_first)
        results_file.unlink(missing_ok=True)  # the build's results, not the seeds'
    # cautious: the tests named, not others on the nodes (one reading a node setup does not build)
    proc = dbt("build", *(["--select", *selectors, "--indirect-selection", "cautious"] if selectors else []))
    if not results_file.exists():
        tail = " ".join((proc.stdout + proc.stderr).split()[-40:])
        raise PlanwiseError(
            f"dbt build into the scratch database {database} did not run (exit {proc.returncode}): {tail}",
            'run `doit dbt args="build"` to see dbt\'s own output',
        )
    results = json.loads(results_file.read_text()).get("results", [])
    return ReferenceBuild(
        database,
        {r["unique_id"]: str(r["status"]) for r in results},
        {r["unique_id"]: " ".join(str(r.get("message") or "").split()) for r in results},
    )


# -- the comparison ---------------------------------------------------------------------------------


def _name(key: Key) -> str:
    return ".".join(key[1:])


def _profile_difference(ours: RelationProfile, theirs: RelationProfile, compare_rows: bool) -> str | None:
    if ours.kind != theirs.kind:
        return f"a {ours.kind} in setup's database, a {theirs.kind} in dbt's"
    if ours.columns != theirs.columns:
        mine = ", ".join(f"{c} {t}" for c, t in ours.columns)
        dbts = ", ".join(f"{c} {t}" for c, t in theirs.columns)
        return f"columns differ: setup ({mine}), dbt ({dbts})"
    if ours.error != theirs.error:
        return f"rows cannot be read in {'setup' if ours.error else 'dbt'}'s database: {ours.error or theirs.error}"
    if compare_rows and (ours.rows, ours.digest) != (theirs.rows, theirs.digest):
        return (
            f"rows differ: {ours.rows} in setup's database, {theirs.rows} in dbt's"
            if ours.rows != theirs.rows
            else f"rows differ in content ({ours.rows} rows in each)"
        )
    if (ours.comment, ours.column_comments) != (theirs.comment, theirs.column_comments):
        return "comments differ (persist_docs)"
    return None


def compare_relations(
    ours: Path,
    theirs: Path,
    keys: Iterable[Key],
    catalog: tuple[str, str],
    history: Iterable[Key] = (),
    unbuilt: Mapping[Key, str] | None = None,
) -> tuple[int, list[Difference]]:
    """Each relation of ``keys`` in setup's database ``ours`` against dbt's ``theirs`` (the catalog of
    ``theirs`` is named like ours: ``catalog`` maps our catalog name to theirs). ``history``: relations
    compared by columns only (snapshots); ``unbuilt``: relations whose node dbt's build did not build, and
    how it went ("error", "skipped"): setup keeps what it had there, as dbt does on a database that has it."""
    ours_catalog, theirs_catalog = catalog
    keys = sorted(set(keys))
    mine = relation_profiles(ours, keys)
    dbts = {
        (ours_catalog, *key[1:]): profile
        for key, profile in relation_profiles(
            theirs, [(theirs_catalog, *k[1:]) if k[0] == ours_catalog else k for k in keys]
        ).items()
    }
    history, unbuilt = set(history), dict(unbuilt or {})
    differences = []
    for key in keys:
        a, b = mine.get(key), dbts.get(key)
        if a is None and b is None:
            continue
        if b is None and key in unbuilt:
            how = "failed to build it" if unbuilt[key] == "error" else "skipped it (something upstream failed)"
            differences.append(
                Difference(_name(key), f"kept from an earlier build by setup; dbt's fresh build {how}", "kept")
            )
        elif b is None:
            differences.append(Difference(_name(key), "in setup's database, not in dbt's fresh build"))
        elif a is None:
            differences.append(Difference(_name(key), "built by dbt, missing from setup's database"))
        else:
            problem = _profile_difference(a, b, key not in history)
            if problem:
                differences.append(Difference(_name(key), problem))
    return len(keys), differences


def setup_test_status(dbt_status: str | None) -> str:
    """dbt's word for the outcome setup recorded for a test (its dbt_tests result's ``dbt_status``)."""
    return {"success": "pass", None: "not run"}.get(dbt_status, dbt_status or "not run")


def compare_tests(
    ours: Mapping[str, str], theirs: Mapping[str, str], manifest: Manifest, unbuilt: Iterable[str] = ()
) -> tuple[int, list[Difference]]:
    """Each test dbt's build ran (or setup ran) with its outcome on either side. ``unbuilt``: nodes dbt's build
    did not build (failed, or skipped for what failed upstream): dbt skips their tests, and setup, which keeps
    their tables from an earlier build, keeps those tests' outcomes on them ("kept", as the tables are)."""
    tests = sorted(
        u for u in set(ours) | set(theirs) if u in manifest.nodes and manifest.nodes[u].resource_type == "test"
    )
    unbuilt = set(unbuilt)
    differences = []
    for uid in tests:
        a, b = setup_test_status(ours.get(uid)), theirs.get(uid, "not run")
        if a == b:
            continue
        name = f"test {manifest.nodes[uid].name}"
        if b == "skipped" and set(manifest.nodes[uid].depends_on) & unbuilt:
            differences.append(Difference(name, f"{a} in setup on a table it kept, skipped in dbt's build", "kept"))
        else:
            differences.append(Difference(name, f"{a} in setup, {b} in dbt's build"))
    return len(tests), differences


def project_relations(manifest: Manifest, nodes: Iterable[str], recorded: Iterable[Key]) -> list[Key]:
    """The relations to compare: what the nodes build, and what setup's records say this project built."""
    keys = {
        relation.key()
        for u in nodes
        if manifest.nodes[u].is_buildable and (relation := manifest.nodes[u].relation) is not None
    }
    return sorted(keys | set(recorded))


def verify(
    ctx: DbtContext,
    manifest: Manifest,
    database: Path,
    nodes: list[Node],
    recorded: Iterable[Key],
    setup_tests: Mapping[str, str],
    environ: Mapping[str, str] | None = None,
    keep: Path | None = None,
    tests: list[Node] | None = None,
    volatile: Callable[[str], bool] = lambda uid: False,
) -> Verification:
    """Build the project with `dbt build` into a scratch database and compare setup's ``database`` with it.

    ``nodes``: what setup builds, ``tests``: the tests it runs (dbt builds and runs them); ``volatile``: nodes whose
    SQL reads the clock or the run (compared by columns: their rows differ from run to run); ``recorded``: relations
    setup's records say this project built; ``setup_tests``: each test's outcome in setup (dbt's words).
    ``keep``: a folder for the scratch build to stay in (else a private temporary one, removed after).
    """
    profile = manifest.profile
    if profile is None:
        raise ProjectError("the profile dbt renders for the project is unknown", "run `doit setup` first")
    folder = Path(tempfile.mkdtemp(prefix="planwise-verify-")) if keep is None else keep
    os.chmod(folder, 0o700)
    try:
        selectors = [node.selector for node in [*nodes, *(tests or [])]]
        builders = set(manifest.source_builders.values())  # read through source(): loaded first (see above)
        seeds = [n.selector for n in nodes if n.unique_id in builders and n.resource_type == "seed"]
        reference = reference_build(ctx, profile, selectors, folder, database.name, environ, seeds)
        return _compare(database, reference, manifest, nodes, recorded, setup_tests, volatile)
    finally:
        if keep is None:
            shutil.rmtree(folder, ignore_errors=True)


def _compare(
    database: Path,
    reference: ReferenceBuild,
    manifest: Manifest,
    nodes: list[Node],
    recorded: Iterable[Key],
    setup_tests: Mapping[str, str],
    volatile: Callable[[str], bool],
) -> Verification:
    """Setup's ``database`` against dbt's reference build: every relation either holds, and every test's outcome."""
    ours_catalog, theirs_catalog = database.stem.lower(), reference.database.stem.lower()
    built = project_relations(manifest, [n.unique_id for n in nodes], recorded)
    extra = {k for k in relation_names(reference.database) if k[1] not in ("information_schema", "pg_catalog")}
    keys = set(built) | {(ours_catalog, *k[1:]) for k in extra}
    history = [
        n.relation.key()
        for n in nodes
        if n.relation is not None and (n.resource_type == "snapshot" or volatile(n.unique_id))
    ]
    not_built = [n for n in nodes if reference.statuses.get(n.unique_id) in ("skipped", "error")]
    unbuilt = {n.relation.key(): reference.statuses[n.unique_id] for n in not_built if n.relation is not None}
    result = Verification()
    result.relations, differences = compare_relations(
        database, reference.database, keys, (ours_catalog, theirs_catalog), history, unbuilt
    )
    dbt_tests = {u: s for u, s in reference.statuses.items() if u.startswith("test.")}
    result.tests, test_differences = compare_tests(setup_tests, dbt_tests, manifest, [n.unique_id for n in not_built])
    result.differences = differences + test_differences
    return result


def test_outcomes(results: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Each dbt test's outcome in setup's stored dbt_tests results (``CheckResult.as_dict()`` documents)."""
    outcomes = {}
    for result in results:
        details = result.get("details") or {}
        uid = details.get("unique_id")
        if uid and details.get("dbt_status"):
            outcomes[str(uid)] = str(details["dbt_status"])
        elif uid and result.get("status") == "not run":  # its table did not build: dbt skips it
            outcomes[str(uid)] = "skipped"
    return outcomes


def verify_engine(engine: Engine, setup_results: Iterable[Mapping[str, Any]], keep: Path | None = None) -> Verification:
    """``verify`` for the engine's project and database; ``setup_results``: the dbt_tests check's stored results."""
    recorded = [
        rec.relation
        for rec in engine.records.records.values()
        if rec.relation is not None and rec.project in (None, engine.project)
    ]
    engine.db.close_reader()

    def volatile(uid: str) -> bool:
        compiled = engine.view.compiling.get(uid) if engine.node(uid).is_compiled else None
        return compiled is not None and compiled.kind == VOLATILE

    return verify(
        engine.ctx,
        engine.manifest,
        engine.db_path,
        [engine.node(u) for u in engine.setup_nodes],
        recorded,
        test_outcomes(setup_results),
        keep=keep,
        tests=[engine.node(u) for u in engine.definitions.tests()],
        volatile=volatile,
    )
