"""What a node's dbt failure means for the user: the real cause, and the file or setting to change.

dbt reports every failure of a node the same way; most are the node's own SQL or
CSV, but a full disk, a profile DuckDB rejects or a database held by someone else
fail every node alike and have nothing to do with the node's file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..project.context import DbtContext
from ..store.database import locked_error

DISK_FULL_RE = re.compile(r"No space left on device|ENOSPC|disk is full|Disk full|Disk quota exceeded", re.I)
PROFILE_RE = re.compile(
    r"unrecognized configuration parameter|Could not find profile|Env var required but not provided"
    r"|Invalid (Input|Configuration) Error: .*(setting|configuration|option)|Cannot open (database|file) .*profile",
    re.I,
)
# An extension the profile lists that DuckDB cannot install or load (offline, a typo, another platform).
EXTENSION_RE = re.compile(r'(?:Failed to (?:download|install|load) extension|Extension) "?(?P<name>[\w.-]+)"?'
                          r'.*?(?:Could not establish connection|not found|Failed to|could not be loaded|ERROR)', re.I)
# The database file name with a character DuckDB identifiers cannot hold unquoted: dbt-duckdb uses it as is.
UNQUOTABLE = ("'", '"', "\\")


@dataclass(frozen=True)
class NodeFailure:
    """A failed node as dbt reported it."""

    label: str  # 'model stg_orders'
    path: str | None  # its file in the project
    message: str  # dbt's message, one line


def explain(failure: NodeFailure, ctx: DbtContext, database: Path | None = None) -> str:
    """One line: the cause in the user's terms and the fix (never 'correct the SQL' for a full disk).

    ``database``: the file dbt writes (when the profile, not setup, names it).
    """
    database = database or ctx.database_path
    locked = locked_error(str(database), Exception(failure.message))
    if locked is not None:  # someone took the file between our check and dbt's connection
        return locked.one_line()
    if DISK_FULL_RE.search(failure.message):
        return (f"{failure.label} failed: the disk is full ({failure.message}) -- fix: free disk space where the "
                f"database ({database.parent if database else ctx.project_dir}) and dbt's target folder live, or set database.path elsewhere, "
                "then run again; the table built before is kept")
    extension = EXTENSION_RE.search(failure.message)
    if extension:
        profiles = ctx.profiles_dir / "profiles.yml"
        target = f"outputs.{ctx.target}" if ctx.target else "the default target's output"
        name = extension["name"]
        return (f"{failure.label} failed: the DuckDB extension {name} that dbt's profile {profiles} loads is not "
                f"available ({failure.message}) -- fix: install it once while online (duckdb -c \"INSTALL {name}\"), "
                f"or remove it from extensions: in {target} of {profiles}; then run again")
    if PROFILE_RE.search(failure.message):
        profiles = ctx.profiles_dir / "profiles.yml"
        target = f"outputs.{ctx.target}" if ctx.target else "the default target's output"
        return (f"{failure.label} failed: dbt's profile {profiles} does not work with DuckDB: {failure.message} -- fix: "
                f"correct {target} in {profiles} (its settings, path and type), then run again")
    return (f"{failure.label} ({failure.path}) failed: {failure.message} -- fix: correct {failure.path} and run again; "
            "the table built before is kept")


def database_name_problem(path: Path) -> str | None:
    """Why dbt-duckdb cannot use this database file, by its name alone (it names its catalog after the file)."""
    bad = [c for c in UNQUOTABLE if c in path.stem]
    if not bad:
        return None
    return (f"the database file name {path.name} holds {' and '.join(repr(c) for c in bad)}: dbt-duckdb names its "
            f"catalog after the file and cannot quote it")
