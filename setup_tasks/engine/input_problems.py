"""Why a node's input files would fail its build (a seed not UTF-8 or malformed, a missing external file, a census
breaking its contract), found without building, in one line with the fix."""

from __future__ import annotations

from pathlib import Path

from ..config import Settings
from ..errors import CensusError, Problem
from ..project.context import DbtContext
from ..project.inputs import first_ragged_row, not_utf8, sql_path_problem
from ..project.manifest import Node
from . import direct_build
from .census import census_contract_problem, inspect_census
from .definitions import Definitions


class InputProblems:
    """Reads a node's input files the way its build will, and says what would fail there."""

    def __init__(self, settings: Settings, ctx: DbtContext, definitions: Definitions) -> None:
        self.settings = settings
        self.ctx = ctx
        self.definitions = definitions

    def of(self, uid: str) -> Problem | None:
        """What would fail the node's build in its input files (its seed's encoding, an external file a source
        of it reads), with the fix; None when nothing would."""
        node = self.definitions.node(uid)
        if node.resource_type == "seed" and node.path:
            path = self.ctx.project_dir / node.path
            encoding = not_utf8(path)
            if encoding:
                return Problem(
                    f"seed {node.name}: {path} is not UTF-8 text ({encoding})",
                    f"save {node.path} with UTF-8 encoding (it looks like Latin-1 or Windows-1252 text)",
                )
        for parent in self.definitions.graph.built_parents(uid):
            source = self.definitions.node(parent)
            if source.resource_type == "source" and source.external_location:
                problem = self._external_input_problem(source)
                if problem:
                    return problem.about(f"{node.resource_type} {node.name}")
        return None

    def malformed_seed(self, uid: str) -> Problem | None:
        """Where a seed's CSV has a row of another length than its header (Python's CSV reader, as agate reads
        it), with the fix; None when none has. Said when a load failed: whether a file with such
        a row loads at all is dbt's (DuckDB's) answer, not a pre-check's."""
        node = self.definitions.node(uid)
        if node.resource_type != "seed" or not node.path:
            return None
        delimiter = node.config.get("delimiter")
        delimiter = "," if delimiter is None else str(delimiter)
        problem = first_ragged_row(self.ctx.project_dir / node.path, delimiter) if len(delimiter) == 1 else None
        if not problem:
            return None
        return Problem(
            f"seed {node.name}: malformed CSV {self.ctx.project_dir / node.path} {problem}",
            "correct that row (every row needs the header's number of fields)",
        )

    def seed_load_problem(self, uid: str) -> Problem | None:
        """Why loading the seed as dbt-duckdb loads it would fail now (tried in a database in memory, the way
        ``direct_build`` loads it), with the fix; None when it loads (or dbt, not setup, would load it)."""
        node = self.definitions.node(uid)
        if node.resource_type != "seed" or not node.path or direct_build.seed_problem(node) is not None:
            return None
        message = direct_build.dry_run_seed(node, self.ctx.project_dir / node.path)
        if message is None:
            return None
        return self.malformed_seed(uid) or Problem(
            f"seed {node.name}: {node.path} does not load: {message}", f"correct {node.path}"
        )

    def _external_input_problem(self, source: Node) -> Problem | None:
        location = source.external_location or ""
        paths = self.definitions.external_inputs(source.unique_id)
        census = Path(self.settings.census.path)
        problem = sql_path_problem(census)
        if problem and any(p.resolve() == census.resolve() for p in paths):
            return Problem(
                f"census path {census} {problem}",
                "rename or move the file so that its path has none of ' ( ) { }, and set census.path "
                "(or CENSUS_PATH) to it",
            )
        if "(" not in location and not location.startswith("'") and "'" in location:
            return Problem(
                f"input location {location} of source {source.name} {sql_path_problem(location)}",
                "rename or move the file so that its path has no quote",
            )
        missing = [p for p in paths if not p.exists()]
        if not paths or missing:
            where = missing[0] if missing else location
            census = Path(self.settings.census.path)
            if missing and missing[0].resolve() == census.resolve():
                return Problem(
                    f"census file {census} does not exist",
                    "run `doit census` to generate one, or set census.path / CENSUS_PATH to your file",
                )
            return Problem(
                f"input file {where} of source {source.name} does not exist",
                "create it or fix the source's external_location",
            )
        return self._census_columns_problem(paths)

    def _census_columns_problem(self, paths: list[Path]) -> Problem | None:
        """The census contract (every required column, each of its type), checked before dbt reads the file."""
        census = Path(self.settings.census.path).resolve()
        if census not in {p.resolve() for p in paths}:
            return None
        try:
            info = inspect_census(census)
            problem = census_contract_problem(info)
        except CensusError as err:
            return err.problem
        except Exception as exc:  # unreadable parquet: name the file, keep the cause
            return Problem(
                f"census file {census} cannot be read: {exc}",
                "replace it with a valid parquet file or run `doit census`",
            )
        if problem is not None:
            return problem
        missing = [c for c in self.settings.validation.census_required_columns if c not in info.columns]
        if missing:
            return Problem(
                f"census file {census} lacks required columns: {', '.join(missing)}",
                "add those columns to the file (docs/census.md), regenerate with `doit census`, "
                "or change validation.census_required_columns",
            )
        return None
