"""What a node's dbt failure means for the user: the real cause, and the file or setting to change.

dbt reports every failure of a node the same way; most are the node's own SQL or
CSV, but a full disk, a profile DuckDB rejects or a database held by someone else
fail every node alike and have nothing to do with the node's file. And a value a
model trips over often comes from a seed: one ``abc`` among numbers makes dbt load
the whole column as text, and the model that computes with it fails far from the
cell. So a failure names the seed, line, column and value when one carries it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from ..errors import Problem, ProfileError
from ..project.context import DbtContext, DbtProfile
from ..project.inputs import Cell, odd_cells, seed_cells
from ..store.database import ProfileProblem, first_uncastable, locked_error

DISK_FULL_RE = re.compile(r"No space left on device|ENOSPC|disk is full|Disk full|Disk quota exceeded", re.I)
PROFILE_RE = re.compile(
    r"unrecognized configuration parameter|Could not find profile|Env var required but not provided"
    r"|Invalid (Input|Configuration) Error: .*(setting|configuration|option)|Cannot open (database|file) .*profile",
    re.I,
)
# An extension the profile lists that DuckDB cannot install or load (offline, a typo, another platform).
EXTENSION_RE = re.compile(
    r'(?:Failed to (?:download|install|load) extension|Extension) "?(?P<name>[\w.-]+)"?'
    r".*?(?:Could not establish connection|not found|Failed to|could not be loaded|ERROR)",
    re.I,
)
# The database file name with a character dbt-duckdb cannot use: it names its catalog after the
# file, unquoted in some statements (a quote or backslash breaks them, ; and # end or comment them).
UNQUOTABLE = ("'", '"', "\\", ";", "#")
# A failure over a value's type (where a seed's cell may be the cause), and the values it quotes.
TYPE_FAILURE_RE = re.compile(
    r"Conversion Error|Could not convert|out of range|VARCHAR|Could not parse|invalid input syntax", re.I
)
QUOTED_VALUE_RE = re.compile(r"""(?:"([^"\n]{1,200})"|'([^'\n]{1,200})')""")
# DuckDB's CSV errors end in the reader's settings, a dozen lines of them: the cause is before.
CSV_NOISE_RE = re.compile(
    r"\s(?:\* Check whether|Possible fixes:|file = |Column .* is being converted as type).*", re.S
)


@dataclass(frozen=True)
class SeedFile:
    """A seed the failed node is built from (itself, or upstream): what to search for the value."""

    name: str
    relative: str  # its path in the project, as the user knows it
    path: Path
    delimiter: str = ","
    column_types: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class NodeFailure:
    """A failed node as dbt reported it."""

    label: str  # 'model stg_orders'
    path: str | None  # its file in the project
    message: str  # dbt's message, one line
    seed: SeedFile | None = None  # the node itself, when it is a seed
    upstream_seeds: tuple[SeedFile, ...] = ()  # the seeds it is built from, nearest first


def explain(failure: NodeFailure, ctx: DbtContext, database: Path | None = None) -> Problem:
    """The cause in the user's terms and the fix (never 'correct the SQL' for a full disk).

    ``database``: the file dbt writes (when the profile, not setup, names it).
    """
    database = database or ctx.database_path
    locked = locked_error(str(database), Exception(failure.message))
    if locked is not None:  # someone took the file between our check and dbt's connection
        return locked.problem
    if DISK_FULL_RE.search(failure.message):
        return Problem(
            f"{failure.label} failed: the disk is full ({failure.message})",
            f"free disk space where the database ({database.parent if database else ctx.project_dir}) and dbt's "
            "target folder live, or set database.path elsewhere, then run again; the table built before is kept",
        )
    extension = EXTENSION_RE.search(failure.message)
    if extension:
        profiles = ctx.profiles_dir / "profiles.yml"
        target = f"outputs.{ctx.target}" if ctx.target else "the default target's output"
        name = extension["name"]
        return Problem(
            f"{failure.label} failed: the DuckDB extension {name} that dbt's profile {profiles} loads is not "
            f"available ({failure.message})",
            f'install it once while online (duckdb -c "INSTALL {name}"), '
            f"or remove it from extensions: in {target} of {profiles}; then run again",
        )
    if PROFILE_RE.search(failure.message):
        profiles = ctx.profiles_dir / "profiles.yml"
        target = f"outputs.{ctx.target}" if ctx.target else "the default target's output"
        return Problem(
            f"{failure.label} failed: dbt's profile {profiles} does not work with DuckDB: {failure.message}",
            f"correct {target} in {profiles} (its settings, path and type), then run again",
        )
    message = short_message(failure.message)
    cell = seed_cell_problem(failure.seed) if failure.seed is not None else None
    if cell is not None:
        return cell.about(f"{failure.label} ({failure.path}) failed")
    carried = carried_value(failure) if TYPE_FAILURE_RE.search(failure.message) else None
    if carried is not None:
        return Problem(
            f"{failure.label} ({failure.path}) failed: {message}", f"{carried}, or {failure.path} if the value is right"
        )
    return Problem(
        f"{failure.label} ({failure.path}) failed: {message}",
        f"correct {failure.path} and run again; the table built before is kept",
    )


def short_message(message: str) -> str:
    """dbt's (DuckDB's) message without the CSV reader's settings DuckDB appends to a CSV error."""
    return CSV_NOISE_RE.sub("", message).strip()


def seed_cell_problem(seed: SeedFile) -> Problem | None:
    """'line 9, column rate holds 'abc', which is not a decimal(8,4) ...' and its fix, for the first cell of a
    seed that its ``column_types`` cannot hold, else None."""
    if not seed.column_types:
        return None
    by_column: dict[str, list[Cell]] = {}
    for cell in seed_cells(seed.path, seed.delimiter):
        by_column.setdefault(cell.column, []).append(cell)
    for column, sql_type in seed.column_types.items():
        cells = by_column.get(column, [])
        index = first_uncastable([c.value for c in cells], str(sql_type))
        if index is not None:
            cell = cells[index]
            return Problem(
                f"line {cell.line}, column {column} holds {cell.value!r}, which is not a {sql_type} (the "
                "column's type in column_types)",
                f"correct that value in {seed.relative}, or the column's type in the seed's column_types; the "
                "table built before is kept",
            )
    return None


def carried_value(failure: NodeFailure) -> str | None:
    """'correct seeds/x.csv line 7, column amount ("abc") ...' when an upstream seed's cell carries the value
    the node failed on: the value the message quotes, or else a cell that made its column text."""
    quoted = {a or b for a, b in QUOTED_VALUE_RE.findall(failure.message)}
    words = set(re.findall(r"\w+", failure.message))
    for seed in failure.upstream_seeds:
        cells = seed_cells(seed.path, seed.delimiter)
        cell = next((c for c in cells if c.value.strip() in quoted), None)
        if cell is not None:
            return (
                f"correct {seed.relative} line {cell.line}, column {cell.column} ({cell.value!r}), "
                "where the value comes from"
            )
        for column, (odd, kind) in odd_cells(cells).items():
            if column in words and column not in seed.column_types:
                return (
                    f"correct {seed.relative} line {odd.line}, column {column} ({odd.value!r}): its other values "
                    f"are {kind}s, so dbt loaded the column as text"
                )
    return None


def profile_error(profile: DbtProfile, problem: ProfileProblem, ctx: DbtContext) -> ProfileError:
    """The profile's part DuckDB refuses, named where the user wrote it (``outputs.dev.settings.memory_limit``)."""
    profiles = ctx.profiles_dir / "profiles.yml"
    where = f"{profile.name}.outputs.{profile.target}.{problem.key}"
    if problem.key.startswith("settings."):
        value = profile.settings.get(problem.key.split(".", 1)[1])
        where += f" ({value!r})"
    fix = f"correct {where.split(' (')[0]} in {profiles}"
    if problem.key.startswith("extensions"):
        name = problem.key.split("(", 1)[1].rstrip(")")
        fix = (
            f"let DuckDB download {name} once (it needs the network: INSTALL {name}), or remove it from "
            f"{profile.name}.outputs.{profile.target}.extensions in {profiles}"
        )
    return ProfileError(
        f"dbt's profile {profiles}: {where} does not work with DuckDB: {problem.error}", f"{fix}, then run again"
    )


def database_name_problem(path: Path) -> Problem | None:
    """Why dbt-duckdb cannot use this database file, by its name alone (it names its catalog after the file)."""
    bad = [c for c in UNQUOTABLE if c in path.stem]
    if not bad:
        return None
    return Problem(
        f"the database file name {path.name} holds {' and '.join(repr(c) for c in bad)}: dbt-duckdb names its "
        f"catalog after the file and cannot quote it",
        "set database.path (or DUCKDB_PATH) to a file named with letters, digits and underscores, e.g. "
        "simulation.duckdb",
    )
