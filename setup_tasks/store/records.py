"""Build records: per node, the fingerprint and table its last successful build had, kept per dbt project.

Build records say, per node, which fingerprint its table was last built from. They
are written (atomically) the moment dbt reports a node done, so a Ctrl-C or crash
never loses work already completed: doit's own dependency file is only written when
a run closes. ``doit forget`` marks a record forced: the next setup rebuilds it. Each
dbt project writing a database keeps its records (and doit's state) in its own folder,
``<state dir>/projects/<project>/``: projects sharing a file never take each other's
tables for their own.

Intent before effect: before dbt builds a batch, the tables it is about to write (and
dbt's intermediate names for them) and the schemas it is about to create are written
down. A node's intent is settled when it is built, in the same write as its record; an
intent still there at the next run is a build that failed, was interrupted or killed, and
whatever it may have committed is known: reconciled (rebuilt, or dropped with its node).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Collection, Iterable, Iterator, Mapping

from ..errors import cannot_write
from ..files import discarded, read_json, write_json_atomic

RECORDS_VERSION = 2  # 2: records name their dbt project
READABLE_VERSIONS = (1, RECORDS_VERSION)  # version 1: adopted by BuildRecords.load
WRITTEN_VERSION = 1

Relation = tuple[str, str, str]  # (catalog, schema, name), lower case


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
    # `doit forget` named its task: rebuilt by the next setup, whatever its fingerprint.
    forced: bool = False
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
    # Tables a build was about to write, per node, until dbt reported the node.
    intents: dict[str, list[Relation]] = field(default_factory=dict)
    # Schemas (catalog, schema) a build of setup created (or was about to).
    schemas: set[tuple[str, str]] = field(default_factory=set)
    # The dbt project these records are of (None: any, as in tests of one project).
    project: str | None = None
    # Relations moved aside while dbt built their node afresh, until put back or dropped (engine._move_aside):
    # a run killed meanwhile leaves them here for the next one to settle.
    aside: set[Relation] = field(default_factory=set)

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
        known = {f.name for f in fields(BuildRecord)}
        for uid, rec in stored.items():
            try:
                record = BuildRecord(**{k: v for k, v in rec.items() if k in known})
            except (TypeError, AttributeError):
                continue  # of the wrong shape: treat as never built
            if record.project is None and project is not None:
                owner = uid.split(".")[1] if uid.count(".") >= 2 else ""
                record = replace(record, project=project if owner in {project, *packages} else UNKNOWN_PROJECT)
            records[uid] = record
        if len(records) < len(stored):
            discarded(path, f"{len(stored) - len(records)} record(s) of the wrong shape")
        try:
            intents = {uid: [_relation(r) for r in keys] for uid, keys in (raw.get("intents") or {}).items()}
            schemas = {(str(c), str(s)) for c, s in raw.get("schemas") or ()}
            aside = {_relation(r) for r in raw.get("aside") or ()}
        except (TypeError, ValueError, AttributeError):
            discarded(path, "intents or schemas of the wrong shape")
            intents, schemas, aside = {}, set(), set()
        return cls(path, records, intents=intents, schemas=schemas, project=project, aside=aside)

    def of_project(self, project: str) -> dict[str, BuildRecord]:
        """The records of nodes ``project`` built (not those it only holds from an older layout)."""
        return {uid: rec for uid, rec in self.records.items() if rec.project in (None, project)}

    def get(self, uid: str) -> BuildRecord | None:
        return self.records.get(uid)

    def put(self, uid: str, record: BuildRecord) -> None:
        """A node built: its record, and its intent settled, in one write."""
        self.records[uid] = record
        self.intents.pop(uid, None)
        self.save()

    def intend(self, relations: Mapping[str, list[Relation]], schemas: Iterable[tuple[str, str]]) -> None:
        """Before dbt builds: which tables each node is about to write, which schemas the build creates."""
        for uid, keys in relations.items():
            self.intents[uid] = sorted({*self.intents.get(uid, ()), *keys})
        self.schemas.update(schemas)
        self.save()

    def set_aside(self, relations: Iterable[Relation], moved: bool) -> None:
        """Relations about to be moved aside (``moved``), or settled again (one write each way)."""
        keys = set(relations)
        before = set(self.aside)
        self.aside = self.aside | keys if moved else self.aside - keys
        if self.aside != before:
            self.save()

    def settle(self, uids: Iterable[str]) -> None:
        """dbt never started these nodes: their intents are void."""
        settled = [uid for uid in uids if uid in self.intents]
        for uid in settled:
            del self.intents[uid]
        if settled:
            self.save()

    def forget_schemas(self, schemas: Iterable[tuple[str, str]]) -> None:
        gone = self.schemas & set(schemas)
        if gone:
            self.schemas -= gone
            self.save()

    def relations(self) -> list[tuple[str, Relation]]:
        """(node, table) for every table setup built or was about to build."""
        own = self.of_project(self.project) if self.project is not None else self.records
        built = [(uid, rec.relation) for uid, rec in own.items() if rec.relation is not None]
        return built + [(uid, key) for uid, keys in self.intents.items() for key in keys]

    def force(self, uids: list[str]) -> list[str]:
        """`doit forget`: the next setup rebuilds these nodes (one write). Returns those that had a record."""
        forced = [uid for uid in uids if uid in self.records]
        for uid in forced:
            self.records[uid] = replace(self.records[uid], forced=True)
        if forced:
            self.save()
        return forced

    def taint(self, marks: Mapping[str, Mapping[str, str]], digest: str) -> None:
        """Builds whose inputs changed while they ran: ``digest`` replaces their fingerprint and
        ``marks`` the parts concerned, so they equal nothing current (one write)."""
        for uid, parts in marks.items():
            rec = self.records.get(uid)
            if rec is not None:
                self.records[uid] = replace(rec, fingerprint=digest, parts={**rec.parts, **parts})
        self.save()

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
        """Forget nodes: their records and intents."""
        for uid in uids:
            self.records.pop(uid, None)
            self.intents.pop(uid, None)
        self.save()

    def save(self) -> None:
        """Write the records; WriteError (one line, with the fix) when the disk refuses."""
        try:
            write_json_atomic(self.path, {
                "version": RECORDS_VERSION,
                "records": {k: asdict(v) for k, v in self.records.items()},
                "intents": {k: [list(r) for r in v] for k, v in self.intents.items()},
                "schemas": sorted(list(s) for s in self.schemas),
                "aside": sorted(list(r) for r in self.aside),
            })
        except OSError as exc:
            raise cannot_write("setup's build records", self.path, exc, "set database.path (or DUCKDB_PATH) elsewhere") from None
        self.dirty = False


UNKNOWN_PROJECT = "(unknown project)"
# The name a relation takes (its own + this) while moved aside for its node to build afresh (``BuildRecords.aside``).
ASIDE_SUFFIX = "__setup_prev"
PROJECTS_DIR = "projects"
RECORDS_FILE = "records.json"
# What one project keeps in its state folder; in the single-project layout (records version 1)
# these sat in the database's state folder itself.
TEST_OUTCOMES_FILE = "test_outcomes.json"  # each dbt test's last outcome (engine.test_gate)
PROJECT_STATE = (RECORDS_FILE, "doit.sqlite", "file_hashes.json", "db_contents.json", "failed_checks", "check_failures.json",
                 TEST_OUTCOMES_FILE)


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
@dataclass
class WrittenFiles:
    """Files setup generated (the census), by path: the digest of each version it wrote, by
    the parameters it wrote it with. A file whose digest is not here is someone else's."""

    path: Path
    files: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> "WrittenFiles":
        stored = read_json(path, {}, version=WRITTEN_VERSION)
        files = stored.get("files", {})
        if not isinstance(files, dict) or not all(
                isinstance(v, dict) and all(isinstance(d, str) for d in v.values()) for v in files.values()):
            discarded(path, "wrong shape")
            files = {}
        return cls(path, files)

    def versions(self, file: Path) -> dict[str, str]:
        """Parameters key -> digest of every version of ``file`` setup wrote."""
        return dict(self.files.get(str(file.resolve()), {}))

    def wrote(self, file: Path, parameters: str, digest: str) -> None:
        """Setup wrote ``file`` with these parameters; WriteError (one line, with the fix) when the disk refuses."""
        self.files.setdefault(str(file.resolve()), {})[parameters] = digest
        try:
            write_json_atomic(self.path, {"version": WRITTEN_VERSION, "files": self.files})
        except OSError as exc:
            raise cannot_write("the record of the census setup wrote", self.path, exc,
                               "set database.path (or DUCKDB_PATH) elsewhere") from None


def _relation(key: Any) -> Relation:
    catalog, schema, name = key
    return (str(catalog), str(schema), str(name))


def new_build_id() -> str:
    return f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
