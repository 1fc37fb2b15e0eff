"""Build records: per node, the fingerprint and table its last successful build had, kept per dbt project.

Build records say, per node, which fingerprint its table was last built from. They
are written the moment dbt reports a node done, so a Ctrl-C or crash never loses work
already completed: doit's own dependency file is only written when a run closes. A change
is one line appended to the journal beside the records (``records.journal``), never a
rewrite of every record: a run's writes grow with what it built, not with the project.
Loading replays the journal over the records; once it has grown past a share of them, the
end of a run folds it in (one atomic rewrite, then the journal goes). ``doit forget`` marks a record forced: the next
setup rebuilds it. Each
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

import json
import os
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Collection, Iterable, Iterator, Mapping

from ..errors import cannot_write
from ..files import PRIVATE, discarded, read_json, write_json_atomic, write_text_atomic

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
        if (
            not isinstance(self.fingerprint, str)
            or not isinstance(self.parts, Mapping)
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in self.parts.items())
        ):
            raise TypeError("fingerprint and parts must be strings")
        if self.relation is not None:  # JSON gives a list
            if not (isinstance(self.relation, (list, tuple)) and len(self.relation) == 3):
                raise TypeError("relation must be (catalog, schema, name)")
            object.__setattr__(self, "relation", tuple(self.relation))


@dataclass
class BuildRecords:
    """Build records of one database, persisted in its state directory (records and their journal)."""

    path: Path
    records: dict[str, BuildRecord] = field(default_factory=dict)
    dirty: bool = False  # unused: every change is journaled at once (kept for callers that set it)
    # Tables a build was about to write, per node, until dbt reported the node.
    intents: dict[str, list[Relation]] = field(default_factory=dict)
    # Schemas (catalog, schema) a build of setup created (or was about to).
    schemas: set[tuple[str, str]] = field(default_factory=set)
    # The dbt project these records are of (None: any, as in tests of one project).
    project: str | None = None
    # Relations moved aside while dbt built their node afresh, until put back or dropped (engine._move_aside):
    # a run killed meanwhile leaves them here for the next one to settle.
    aside: set[Relation] = field(default_factory=set)
    # Changes in the journal, not yet folded into the records file.
    journaled: int = 0

    @property
    def journal(self) -> Path:
        return journal_path(self.path)

    @classmethod
    def load(cls, path: Path, project: str | None = None, packages: Collection[str] = ()) -> "BuildRecords":
        """The records in ``path``, with its journal replayed. A record without a project (written before
        records named one) is ``project``'s when its node belongs to it or to one of its ``packages``;
        any other stays foreign."""
        raw = read_json(path, {})
        if raw and raw.get("version") not in READABLE_VERSIONS:
            discarded(path, f"version {raw.get('version')!r}, not {RECORDS_VERSION}")
            raw = {}
        stored = raw.get("records") or {}
        if not isinstance(stored, dict):
            discarded(path, "wrong shape")
            stored = {}
        try:
            intents = {uid: [_relation(r) for r in keys] for uid, keys in (raw.get("intents") or {}).items()}
            schemas = {(str(c), str(s)) for c, s in raw.get("schemas") or ()}
            aside = {_relation(r) for r in raw.get("aside") or ()}
        except (TypeError, ValueError, AttributeError):
            discarded(path, "intents or schemas of the wrong shape")
            intents, schemas, aside = {}, set(), set()
        stored = dict(stored)
        journaled = _replay(journal_path(path), stored, intents, schemas, aside)
        records = {}
        for uid, rec in stored.items():
            record = _record(rec)
            if record is None:
                continue  # of the wrong shape: treat as never built
            if record.project is None and project is not None:
                owner = uid.split(".")[1] if uid.count(".") >= 2 else ""
                record = replace(record, project=project if owner in {project, *packages} else UNKNOWN_PROJECT)
            records[uid] = record
        if len(records) < len(stored):
            discarded(path, f"{len(stored) - len(records)} record(s) of the wrong shape")
        return cls(path, records, intents=intents, schemas=schemas, project=project, aside=aside, journaled=journaled)

    def of_project(self, project: str) -> dict[str, BuildRecord]:
        """The records of nodes ``project`` built (not those it only holds from an older layout)."""
        return {uid: rec for uid, rec in self.records.items() if rec.project in (None, project)}

    def get(self, uid: str) -> BuildRecord | None:
        return self.records.get(uid)

    def put(self, uid: str, record: BuildRecord) -> None:
        """A node built: its record, and its intent settled, in one write."""
        self.records[uid] = record
        settled = self.intents.pop(uid, None) is not None
        self._append([{"record": [uid, _record_dict(record)]}, *([{"intent": [uid, None]}] if settled else [])])

    def intend(self, relations: Mapping[str, list[Relation]], schemas: Iterable[tuple[str, str]]) -> None:
        """Before dbt builds: which tables each node is about to write, which schemas the build creates."""
        changes: list[dict[str, Any]] = []
        for uid, keys in relations.items():
            self.intents[uid] = sorted({*self.intents.get(uid, ()), *keys})
            changes.append({"intent": [uid, [list(k) for k in self.intents[uid]]]})
        new = set(schemas) - self.schemas
        if new:
            self.schemas.update(new)
            changes.append({"schemas": sorted(list(s) for s in new), "add": True})
        self._append(changes)

    def set_aside(self, relations: Iterable[Relation], moved: bool) -> None:
        """Relations about to be moved aside (``moved``), or settled again (one write each way)."""
        keys = set(relations) - self.aside if moved else set(relations) & self.aside
        if keys:
            self.aside = self.aside | keys if moved else self.aside - keys
            self._append([{"aside": sorted(list(k) for k in keys), "add": moved}])

    def settle(self, uids: Iterable[str]) -> None:
        """dbt never started these nodes: their intents are void."""
        settled = [uid for uid in uids if uid in self.intents]
        for uid in settled:
            del self.intents[uid]
        self._append([{"intent": [uid, None]} for uid in settled])

    def forget_schemas(self, schemas: Iterable[tuple[str, str]]) -> None:
        gone = self.schemas & set(schemas)
        if gone:
            self.schemas -= gone
            self._append([{"schemas": sorted(list(s) for s in gone), "add": False}])

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
        self._put_all(forced)
        return forced

    def taint(self, marks: Mapping[str, Mapping[str, str]], digest: str) -> None:
        """Builds whose inputs changed while they ran: ``digest`` replaces their fingerprint and
        ``marks`` the parts concerned, so they equal nothing current (one write)."""
        tainted = []
        for uid, parts in marks.items():
            rec = self.records.get(uid)
            if rec is not None:
                self.records[uid] = replace(rec, fingerprint=digest, parts={**rec.parts, **parts})
                tainted.append(uid)
        self._put_all(tainted)

    def amend(self, fingerprints: Mapping[str, tuple[str, Mapping[str, str]]]) -> None:
        """Records whose fingerprint is now said otherwise (the same inputs): their digest and parts (one write)."""
        amended = []
        for uid, (digest, parts) in fingerprints.items():
            rec = self.records.get(uid)
            if rec is not None:
                self.records[uid] = replace(rec, fingerprint=digest, parts=dict(parts))
                amended.append(uid)
        self._put_all(amended)

    def sign(self, signatures: Mapping[str, str | None]) -> None:
        """Record the content signatures of freshly built tables (one write)."""
        signed = []
        for uid, signature in signatures.items():
            rec = self.records.get(uid)
            if rec and signature and rec.signature != signature:
                self.records[uid] = replace(rec, signature=signature)
                signed.append(uid)
        self._put_all(signed)

    def flush(self) -> None:
        """At the end of a run: fold the journal into the records once it has grown past a share of them
        (reading it costs more than rewriting them then), or when there is no records file yet."""
        if self.journaled > FOLD_AFTER + len(self.records) // 4 or (self.journaled and not self.path.exists()):
            self.save()

    def drop(self, uids: list[str]) -> None:
        """Forget nodes: their records and intents."""
        changes: list[dict[str, Any]] = []
        for uid in uids:
            if self.records.pop(uid, None) is not None:
                changes.append({"record": [uid, None]})
            if self.intents.pop(uid, None) is not None:
                changes.append({"intent": [uid, None]})
        self._append(changes)

    def save(self) -> None:
        """Write every record (the journal folded in, then removed); WriteError (one line, with the fix)
        when the disk refuses."""
        lines = ",\n".join(
            f"{json.dumps(uid)}: {json.dumps(_record_dict(rec), sort_keys=True)}"
            for uid, rec in sorted(self.records.items())
        )
        rest = json.dumps(
            {
                "intents": {k: [list(r) for r in v] for k, v in sorted(self.intents.items())},
                "schemas": sorted(list(s) for s in self.schemas),
                "version": RECORDS_VERSION,
                "aside": sorted(list(r) for r in self.aside),
            },
            sort_keys=True,
        )
        text = '{"records": {\n' + lines + "\n},\n" + rest[1:] + "\n"  # one record per line: people read it
        try:
            write_text_atomic(self.path, text)
            self.journal.unlink(missing_ok=True)
        except OSError as exc:
            raise cannot_write(
                "setup's build records", self.path, exc, "set database.path (or DUCKDB_PATH) elsewhere"
            ) from None
        self.journaled = 0
        self.dirty = False

    def _put_all(self, uids: list[str]) -> None:
        self._append([{"record": [uid, _record_dict(self.records[uid])]} for uid in uids])

    def _append(self, changes: list[dict[str, Any]]) -> None:
        """Journal these changes: one append (a killed run leaves at most a torn last line, skipped when read)."""
        if not changes:
            return
        data = "".join(json.dumps(change, sort_keys=True) + "\n" for change in changes).encode()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        except OSError as exc:
            raise cannot_write(
                "setup's build records", self.journal, exc, "set database.path (or DUCKDB_PATH) elsewhere"
            ) from None
        self.journaled += len(changes)


FOLD_AFTER = 64  # journal entries kept before folding, beyond a quarter of the records


def journal_path(records: Path) -> Path:
    return records.with_name(JOURNAL_FILE)


def _record_dict(record: BuildRecord) -> dict[str, Any]:
    data = {f.name: getattr(record, f.name) for f in fields(BuildRecord)}
    data["parts"] = dict(record.parts)
    if record.relation is not None:
        data["relation"] = list(record.relation)
    return data


def _record(data: Any) -> BuildRecord | None:
    known = {f.name for f in fields(BuildRecord)}
    try:
        return BuildRecord(**{k: v for k, v in data.items() if k in known})
    except (TypeError, AttributeError):
        return None


def _replay(
    journal: Path,
    records: dict[str, Any],
    intents: dict[str, list[Relation]],
    schemas: set[tuple[str, str]],
    aside: set[Relation],
) -> int:
    """Apply the journal's changes in order; returns how many. A line that does not parse (torn by a kill,
    or damaged) is skipped: its node is rebuilt, as with a damaged records file."""
    try:
        lines = journal.read_bytes().splitlines()
    except FileNotFoundError:
        return 0
    except OSError as exc:
        discarded(journal, f"unreadable ({type(exc).__name__})")
        return 0
    skipped = 0
    for line in lines:
        try:
            change = json.loads(line)
            if "record" in change:
                uid, record = change["record"]
                if record is None:
                    records.pop(uid, None)
                else:
                    records[str(uid)] = dict(record)
            elif "intent" in change:
                uid, keys = change["intent"]
                if keys is None:
                    intents.pop(uid, None)
                else:
                    intents[str(uid)] = [_relation(k) for k in keys]
            elif "schemas" in change:
                found = {(str(c), str(s)) for c, s in change["schemas"]}
                if change.get("add"):
                    schemas |= found
                else:
                    schemas -= found
            elif "aside" in change:
                moved = {_relation(k) for k in change["aside"]}
                if change.get("add"):
                    aside |= moved
                else:
                    aside -= moved
            else:
                skipped += 1
        except (ValueError, TypeError, AttributeError, KeyError):
            skipped += 1
    if skipped:
        discarded(journal, f"{skipped} line(s) unreadable")
    return len(lines)


UNKNOWN_PROJECT = "(unknown project)"
# The name a relation takes (its own + this) while moved aside for its node to build afresh (``BuildRecords.aside``).
ASIDE_SUFFIX = "__setup_prev"
PROJECTS_DIR = "projects"
RECORDS_FILE = "records.json"
JOURNAL_FILE = "records.journal"  # changes since records.json was last written (BuildRecords.load replays it)
# What one project keeps in its state folder; in the single-project layout (records version 1)
# these sat in the database's state folder itself.
TEST_OUTCOMES_FILE = "test_outcomes.json"  # each dbt test's last outcome (engine.test_gate)
PROJECT_STATE = (
    RECORDS_FILE,
    JOURNAL_FILE,
    "doit.sqlite",
    "file_hashes.json",
    "db_contents.json",
    "failed_checks",
    "check_failures.json",
    TEST_OUTCOMES_FILE,
)


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
        if folder.name != project and ((folder / RECORDS_FILE).is_file() or (folder / JOURNAL_FILE).is_file()):
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
            isinstance(v, dict) and all(isinstance(d, str) for d in v.values()) for v in files.values()
        ):
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
            raise cannot_write(
                "the record of the census setup wrote", self.path, exc, "set database.path (or DUCKDB_PATH) elsewhere"
            ) from None


def _relation(key: Any) -> Relation:
    catalog, schema, name = key
    return (str(catalog), str(schema), str(name))


def new_build_id() -> str:
    return f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
