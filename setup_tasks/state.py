"""Durable build state beside the database: build records, the run lock, caches.

Build records say, per node, which fingerprint its table was last built from. They
are written (atomically) the moment dbt reports a node done, so a Ctrl-C or crash
never loses work already completed: doit's own dependency file is only written when
a run closes.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .errors import DatabaseError, RunInProgressError


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so that readers see the old or the new file, never half of one.

    No fsync: this guards against a killed process, not a lost machine, and
    fsync per node would cost more than the node itself.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w") as fh:
        json.dump(data, fh, indent=1, sort_keys=True, default=str)
    os.replace(tmp, path)


def read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


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

    def __post_init__(self) -> None:
        if self.relation is not None:  # JSON gives a list
            object.__setattr__(self, "relation", tuple(self.relation))


@dataclass
class BuildRecords:
    """Build records of one database, persisted in its state directory."""

    path: Path
    records: dict[str, BuildRecord] = field(default_factory=dict)
    dirty: bool = False

    @classmethod
    def load(cls, path: Path) -> "BuildRecords":
        raw = read_json(path, {})
        records = {}
        for uid, rec in (raw.get("records") or {}).items():
            try:
                records[uid] = BuildRecord(**rec)
            except TypeError:
                continue  # written by an incompatible version: treat as never built
        return cls(path, records)

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
        write_json_atomic(self.path, {"version": 1, "records": {k: asdict(v) for k, v in self.records.items()}})
        self.dirty = False


class RunLock:
    """An exclusive lock on a database's state: one building setup run at a time.

    The OS releases it when the process dies, so a crash never leaves it stuck.
    """

    def __init__(self, path: Path, database: Path) -> None:
        self.path = path
        self.database = database
        self._fh: Any = None

    def holder(self) -> int | None:
        """PID of the process holding the lock, or None when it is free (or ours)."""
        if self._fh is not None:
            return None
        try:
            with self.path.open("r") as fh:
                try:
                    fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:
                    text = fh.read().strip()
                    pid = int(text) if text.isdigit() else -1
                    return None if pid == os.getpid() else pid
                fcntl.flock(fh, fcntl.LOCK_UN)
        except FileNotFoundError:
            return None
        return None

    def acquire(self) -> None:
        if self._fh is not None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fh = self.path.open("a+")
        except OSError as exc:
            raise DatabaseError(
                f"cannot write the setup state directory {self.path.parent}: {exc.strerror}",
                "make the database's directory writable or set database.path elsewhere",
            ) from None
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            text = fh.read().strip()
            fh.close()
            raise RunInProgressError(str(self.database), int(text) if text.isdigit() else None) from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


def new_build_id() -> str:
    return f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
