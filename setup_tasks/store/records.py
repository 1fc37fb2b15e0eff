"""Build records: per node, the fingerprint and table its last successful build had, kept per dbt project.

Build records say, per node, which fingerprint its table was last built from. They
are written (atomically) the moment dbt reports a node done, so a Ctrl-C or crash
never loses work already completed: doit's own dependency file is only written when
a run closes. Each dbt project writing a database keeps its records (and doit's state)
in its own folder, ``<state dir>/projects/<project>/``: projects sharing a file never
take each other's tables for their own.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Collection, Iterator, Mapping

from ..errors import cannot_write
from ..files import discarded, read_json, write_json_atomic

RECORDS_VERSION = 2  # 2: records name their dbt project
READABLE_VERSIONS = (1, RECORDS_VERSION)  # version 1: adopted by BuildRecords.load


@dataclass(frozen=True)
class BuildRecord:
    """The last successful build of one node."""

    fingerprint: str
    parts: Mapping[str, str]
    built_at: float
    seconds: float
    build_id: str
    rows: int | None = None
    # Row count and content hash right after the build, to notice later edits.
    signature: str | None = None
    # Set once doit has recorded the task as done; a record doit has forgotten
    # since then was forgotten on purpose (`doit forget`).
    acknowledged: bool = False
    # The table it built (catalog, schema, name): dropped by setup if the node leaves the project.
    relation: tuple[str, str, str] | None = None
    # The dbt project that built it (records of version 1 had none: see BuildRecords.load).
    project: str | None = None

    def __post_init__(self) -> None:
        """Refuse (TypeError) a record of the wrong shape read from a damaged file."""
        if not isinstance(self.fingerprint, str) or not isinstance(self.parts, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in self.parts.items()):
            raise TypeError("fingerprint and parts must be strings")
        if self.relation is not None:  # JSON gives a list
            if not (isinstance(self.relation, (list, tuple)) and len(self.relation) == 3):
                raise TypeError("relation must be (catalog, schema, name)")
            object.__setattr__(self, "relation", tuple(self.relation))


@dataclass
class BuildRecords:
    """Build records of one database, persisted in its state directory."""

    path: Path
    records: dict[str, BuildRecord] = field(default_factory=dict)
    dirty: bool = False

    @classmethod
    def load(cls, path: Path, project: str | None = None, packages: Collection[str] = ()) -> "BuildRecords":
        """The records in ``path``. A record without a project (written before records named one) is
        ``project``'s when its node belongs to it or to one of its ``packages``; any other stays foreign."""
        raw = read_json(path, {})
        if raw and raw.get("version") not in READABLE_VERSIONS:
            discarded(path, f"version {raw.get('version')!r}, not {RECORDS_VERSION}")
            raw = {}
        stored = raw.get("records") or {}
        if not isinstance(stored, dict):
            discarded(path, "wrong shape")
            stored = {}
        records = {}
        for uid, rec in stored.items():
            try:
                record = BuildRecord(**rec)
            except TypeError:
                continue  # of the wrong shape: treat as never built
            if record.project is None and project is not None:
                owner = uid.split(".")[1] if uid.count(".") >= 2 else ""
                record = replace(record, project=project if owner in {project, *packages} else UNKNOWN_PROJECT)
            records[uid] = record
        if len(records) < len(stored):
            discarded(path, f"{len(stored) - len(records)} record(s) of the wrong shape")
        return cls(path, records)

    def of_project(self, project: str) -> dict[str, BuildRecord]:
        """The records of nodes ``project`` built (not those it only holds from an older layout)."""
        return {uid: rec for uid, rec in self.records.items() if rec.project in (None, project)}

    def get(self, uid: str) -> BuildRecord | None:
        return self.records.get(uid)

    def put(self, uid: str, record: BuildRecord) -> None:
        self.records[uid] = record
        self.save()

    def acknowledge(self, uid: str) -> None:
        """doit has the task as done. Written by ``flush`` when the run ends, as doit's own state is."""
        rec = self.records.get(uid)
        if rec and not rec.acknowledged:
            self.records[uid] = BuildRecord(**{**asdict(rec), "acknowledged": True})
            self.dirty = True

    def sign(self, signatures: Mapping[str, str | None]) -> None:
        """Record the content signatures of freshly built tables (one write)."""
        for uid, signature in signatures.items():
            rec = self.records.get(uid)
            if rec and signature and rec.signature != signature:
                self.records[uid] = BuildRecord(**{**asdict(rec), "signature": signature})
                self.dirty = True
        self.flush()

    def flush(self) -> None:
        if self.dirty:
            self.save()

    def drop(self, uids: list[str]) -> None:
        for uid in uids:
            self.records.pop(uid, None)
        self.save()

    def save(self) -> None:
        """Write the records; WriteError (one line, with the fix) when the disk refuses."""
        try:
            write_json_atomic(self.path, {"version": RECORDS_VERSION, "records": {k: asdict(v) for k, v in self.records.items()}})
        except OSError as exc:
            raise cannot_write("setup's build records", self.path, exc, "set database.path (or DUCKDB_PATH) elsewhere") from None
        self.dirty = False


UNKNOWN_PROJECT = "(unknown project)"
PROJECTS_DIR = "projects"
RECORDS_FILE = "records.json"
# What one project keeps in its state folder; in the single-project layout (records version 1)
# these sat in the database's state folder itself.
PROJECT_STATE = (RECORDS_FILE, "doit.sqlite", "file_hashes.json", "db_contents.json", "failed_checks")


def project_state_dir(state_dir: Path, project: str) -> Path:
    """``<state dir>/projects/<project>``: this project's records and doit state for the database.

    The first project to run after an upgrade takes over the single-project layout's files
    (its records are adopted by ``BuildRecords.load``), so no build is lost.
    """
    folder = state_dir / PROJECTS_DIR / project
    if not folder.exists() and (state_dir / RECORDS_FILE).exists():
        folder.mkdir(parents=True, exist_ok=True)
        for name in PROJECT_STATE:
            try:
                os.replace(state_dir / name, folder / name)
            except FileNotFoundError:
                pass  # never written, or another run moved it first
    return folder


def other_projects(state_dir: Path, project: str) -> Iterator[tuple[str, BuildRecords]]:
    """The records of every other project that built into this database."""
    for folder in sorted((state_dir / PROJECTS_DIR).glob("*")):
        if folder.name != project and (folder / RECORDS_FILE).is_file():
            yield folder.name, BuildRecords.load(folder / RECORDS_FILE, folder.name)


def new_build_id() -> str:
    return f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
