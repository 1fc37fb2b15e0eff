"""What setup builds, read from the manifest: nodes, their graph, the selections, their labels.

dbt parses the project only when its stamp changed (``project.manifest.project_stamp``), after
`dbt deps` when the project's packages changed or are missing; otherwise the manifest and
graph answers come from the caches beside it.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping

from ..config import Settings
from ..dbt.client import DbtClient
from ..errors import ProjectError
from ..files import read_json, write_json_atomic
from ..project.context import DbtContext, effective_vars, read_project_yaml
from ..project.packages import declared, deps_reason, installed, packages_state
from ..project.graph import SetupGraph
from ..project.inputs import external_paths, glob_folders, not_utf8
from ..project.manifest import (
    Manifest,
    Node,
    file_set,
    manifest_from_dict,
    parse_problems,
    project_files,
    project_stamp,
    stamp_parts,
    why_parse,
)
from ..store.caches import load_graph_memo, manifest_cache, save_graph_memo
from ..store.database import SqlParser

DEPS_RECORD = "deps.json"
FOUND_NO_PROFILE_RE = re.compile(
    r"^dbt found no profile named '([^']+)'"
)  # beside the context's manifest: what the last `dbt deps` by setup left
Step = Callable[[str | None], None]  # a step of the run begins (its words), or ends (None)


@dataclass(frozen=True)
class PackagesInstalled:
    """`dbt deps` ran while the project loaded: why, what it installed, how long it took."""

    reason: str
    packages: tuple[str, ...]
    seconds: float

    def line(self) -> str:
        return f"dbt deps: installed {', '.join(self.packages) or 'nothing'} ({self.reason}) in {self.seconds:.1f}s"


def install_packages(ctx: DbtContext, dbt: DbtClient, reason: str, on_step: Step) -> PackagesInstalled:
    """Run `dbt deps` and record what it left, so that the next load knows whether to run it again."""
    on_step(f"installing the dbt packages ({reason})")
    started = time.perf_counter()
    dbt.install_packages(ctx, declared(ctx.project_dir))
    write_json_atomic(_deps_record(ctx), packages_state(ctx.project_dir))
    return PackagesInstalled(reason, tuple(installed(ctx.project_dir)), time.perf_counter() - started)


def ensure_packages(ctx: DbtContext, dbt: DbtClient, on_step: Step) -> PackagesInstalled | None:
    """`dbt deps` when packages.yml / dependencies.yml / package-lock.yml changed or a package is missing."""
    recorded = read_json(_deps_record(ctx), {})
    reason = deps_reason(ctx.project_dir, recorded)
    if reason is not None:
        return install_packages(ctx, dbt, reason, on_step)
    if not recorded and declared(ctx.project_dir):  # installed by hand: trusted, and recorded from now on
        write_json_atomic(_deps_record(ctx), packages_state(ctx.project_dir))
    return None


def _deps_record(ctx: DbtContext) -> Path:
    """In the context's own dbt folder: setup's dbt folder keeps nothing else (store.caches prunes it)."""
    return ctx.target_path() / DEPS_RECORD


def load_manifest(
    ctx: DbtContext, selections: Mapping[str, str], dbt: DbtClient, on_step: Step | None = None
) -> tuple[Manifest, PackagesInstalled | None, dict[str, str]]:
    """The project's manifest, parsed by dbt only when a project file changed: node for node and
    test for test what a fresh ``dbt parse`` gives (``on_step`` hears that dbt parses, and why).
    Also: what `dbt deps` installed first, when the parse needed it (package macros are the
    project's own inputs), and the parse stamp's parts (what the parse depends on).

    dbt's partial parse re-reads only the files that changed, and loses nodes and tests when
    files were added, removed, renamed or moved (a model renamed and back came back without
    the tests of its unchanged yml). So the project is parsed in full when its file set changed
    since the last parse (or is unknown), and a partial parse whose nodes and files disagree
    is redone in full.
    """
    cache = manifest_cache(ctx)
    env_names = cache.env_names()
    parts = stamp_parts(ctx, selections, env_names)
    stamp = project_stamp(ctx, selections, parts)
    cached = cache.load(stamp)
    if cached is not None:
        return cached, None, parts
    step = on_step or (lambda text: None)
    try:
        packages = ensure_packages(ctx, dbt, step)
        if packages is not None:  # the installed packages' files are part of the stamp
            parts = stamp_parts(ctx, selections, env_names)
            stamp = project_stamp(ctx, selections, parts)
        files = file_set(ctx)
        full = cache.file_set() != files
        phases = {
            "starting": dbt.starting_words(),
            "parsing": f"parsing the dbt project ({why_parse(cache.parts(), parts)})",
        }

        def on_phase(phase: str) -> None:
            step(phases.get(phase, phase))

        try:
            parsed = dbt.parse_project(ctx, selections, full, on_phase)
        except ProjectError as err:
            if packages is not None or "dbt deps" not in err.cause or not declared(ctx.project_dir):
                raise
            # A hand-made install that packages.yml outgrew: dbt says "Run dbt deps".
            packages = install_packages(ctx, dbt, "dbt's parse asked for it", step)
            parts = stamp_parts(ctx, selections, env_names)
            stamp, files, full = project_stamp(ctx, selections, parts), file_set(ctx), True
            parsed = dbt.parse_project(ctx, selections, full, on_phase)
        if not full and parse_problems(parsed.raw, ctx.project_dir):
            parsed = dbt.parse_project(ctx, selections, True, on_phase)
    except ProjectError as err:
        raise _named_file(err, ctx) from None
    finally:
        step(None)
    if set(parsed.env_reads) != set(env_names):  # what the next run counts: what this parse read
        parts = stamp_parts(ctx, selections, parsed.env_reads)
        stamp = project_stamp(ctx, selections, parts)
    digests = cache.save(stamp, parsed.raw, parsed.selections, parsed.profile, files, parts, parsed.env_reads)
    return manifest_from_dict(parsed.raw, parsed.selections, parsed.profile, digests), packages, parts


MISSING_PROFILE_RE = re.compile(r"Could not find profile named '([^']+)'")


def _named_file(err: ProjectError, ctx: DbtContext) -> ProjectError:
    """dbt's parse error, with the file when dbt did not name it (a file that is not UTF-8, the
    profiles.yml files looked in for a profile dbt did not find)."""
    missing = MISSING_PROFILE_RE.search(err.cause) or FOUND_NO_PROFILE_RE.search(err.cause)
    if missing:  # said again here: the worker's context does not know every place looked in
        return ctx.missing_profile(missing[1])
    if "codec can't decode" not in err.cause:
        return err
    project_yaml = read_project_yaml(ctx.project_dir)
    for path in project_files(ctx.project_dir, project_yaml):
        problem = not_utf8(path)
        if problem:
            rel = path.relative_to(ctx.project_dir).as_posix()
            return ProjectError(
                f"dbt could not parse the project in {ctx.project_dir}: {rel} is not UTF-8 text ({problem})",
                f"save {rel} with UTF-8 encoding (it looks like Latin-1 or Windows-1252 text)",
            )
    return err


class Definitions:
    """The manifest's nodes as setup sees them, and the graph over them."""

    def __init__(
        self,
        ctx: DbtContext,
        manifest: Manifest,
        manifest_path: Path,
        root: Path,
        census_path: Path,
        graph: SetupGraph | None = None,
        packages_installed: PackagesInstalled | None = None,
        stamp_parts: Mapping[str, str] | None = None,
    ) -> None:
        self.ctx = ctx
        # What dbt's parse depended on (``project.manifest.stamp_parts``): the compile context is made of it.
        self.stamp_parts = dict(stamp_parts or {})
        self.packages_installed = packages_installed
        self.declares_packages = bool(declared(ctx.project_dir))
        self.manifest = manifest
        self.manifest_path = manifest_path
        self.root = root
        self.census_path = census_path
        self.graph_memo_path = manifest_path.with_name("graph_memo.json")
        self._tests: list[str] | None = None
        self._sql_parser = SqlParser()
        self._names: Mapping[str, str] | None = None
        self.graph = graph or SetupGraph.from_manifest(
            manifest, load_graph_memo(self.graph_memo_path, manifest.invocation_id)
        )
        self.setup_nodes = self.graph.buildable(self.graph.with_ancestors(manifest.selections.get("setup", ())))
        self.foundation_nodes = self.graph.buildable(
            self.graph.with_ancestors(manifest.selections.get("foundation", ()))
        )

    @classmethod
    def load(cls, settings: Settings, ctx: DbtContext, dbt: DbtClient, on_step: Step | None = None) -> "Definitions":
        selections = {"setup": settings.dbt.setup_selection, "foundation": settings.dbt.foundation_selection}
        manifest, packages, parts = load_manifest(ctx, selections, dbt, on_step)
        return cls(
            ctx,
            manifest,
            manifest_cache(ctx).manifest_path,
            settings.root,
            settings.census.path,
            packages_installed=packages,
            stamp_parts=parts,
        )

    def save(self) -> None:
        save_graph_memo(self.graph_memo_path, self.graph.memo)

    # -- nodes ------------------------------------------------------------------------

    def node(self, uid: str) -> Node:
        return self.manifest.nodes[uid]

    def label(self, uid: str) -> str:
        node = self.node(uid)
        return f"{node.resource_type} {node.name}"

    def names(self) -> Mapping[str, str]:
        """unique id -> 'model stg_x', for every node: made once (staleness asks it for each stale node)."""
        if self._names is None:
            self._names = MappingProxyType({uid: self.label(uid) for uid in self.manifest.nodes})
        return self._names

    def test_scope(self) -> set[str]:
        """What setup's tests may read: the selection with everything it needs (ephemeral models and
        sources too, as dbt's ``+selection`` has them) and the sources whose table a node of it builds."""
        scope = self.graph.with_ancestors(self.manifest.selections.get("setup", ())) | set(self.setup_nodes)
        scope |= self.graph.with_ancestors(self.setup_nodes)
        return scope | {s for s, builder in self.manifest.source_builders.items() if builder in scope}

    def tests(self) -> list[str]:
        """The dbt tests setup runs: each whose every parent lies in ``test_scope`` (a test on a source, on an
        ephemeral model, a relationship to one, a singular test reading one: as `dbt build` runs them)."""
        if self._tests is None:
            self._tests = self.graph.tests_of(self.test_scope())
        return list(self._tests)

    def tracked(self) -> list[str]:
        """Everything setup builds, tests, plus the sources those read."""
        nodes = set(self.setup_nodes)
        return sorted(self.graph.with_ancestors(nodes | set(self.tests())))

    def variables(self) -> dict[str, Any]:
        """dbt vars as the project sees them (dbt_project.yml, then the setup config)."""
        return effective_vars(read_project_yaml(self.ctx.project_dir), self.manifest.project_name, self.ctx.vars)

    def external_inputs(self, source_uid: str) -> list[Path]:
        """Files a source with an external location reads (a relative path from where dbt runs)."""
        return external_paths(self.node(source_uid), self.ctx.cwd, self.reader_paths)

    def glob_folders(self, source_uid: str) -> list[Path]:
        """The folders a glob in a source's external location searches (a file added there may match it)."""
        return glob_folders(self.node(source_uid), self.ctx.cwd, self.reader_paths)

    def reader_paths(self, sql: str) -> list[str]:
        """``store.database.reader_paths`` (on one parser), remembered with the graph's answers: they too are a pure
        function of the manifest, and a run over an unchanged project then loads no DuckDB for them."""
        key = f"readers:{hashlib.sha256(sql.encode()).hexdigest()[:20]}"
        answers = self.graph.memo.answers
        if key not in answers:
            answers[key] = self._sql_parser.reader_paths(sql)
            self.graph.memo.dirty = True
        return list(answers[key])

    def reads_census(self, uid: str) -> bool:
        """Does this node read the configured census file through a source?"""
        census = Path(self.census_path).resolve()
        return any(
            census in {p.resolve() for p in self.external_inputs(parent)}
            for parent in self.graph.built_parents(uid)
            if self.node(parent).resource_type == "source" and self.node(parent).external_location
        )

    def node_for_seed(self, name: str) -> Node | None:
        return next(
            (n for n in self.manifest.nodes.values() if n.resource_type == "seed" and n.name == name and n.path), None
        )
