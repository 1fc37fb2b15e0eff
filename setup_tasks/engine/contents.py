"""What the database holds, as one run sees it: read once, or taken from the last run's saved copy.

Any write to a DuckDB file changes its stat key (``files.stat_key``: inode, size, modification
and change times) or its WAL's, and restoring the modification time afterwards changes the change
time: a file whose keys equal those of the last run's end needs no DuckDB at all. A copy saved
while the file had changed within ``files.RACY_NS`` (as every building run's is: it saves right
after its last write) is trusted only when the file's headers and WAL are still those it was saved
with (``proofs.database_proof``: a second write in the same clock tick could keep the keys, not those
bytes); nor is one keyed by an older format. `doit status` and a batch dbt builds always open the
file (``live``: is it free?); a batch setup builds itself learns that from its own session.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterable

from ..errors import DatabaseLockedError, RunInProgressError, PlanwiseError
from ..store.database import (
    Database,
    DatabaseContents,
    DbRelation,
    DropResult,
    TableState,
    contents_from_dict,
    contents_to_dict,
    drop_order,
)
from ..files import RACY_NS, read_json, write_json_atomic
from ..proofs import database_proof
from ..store.lock import RunLock

Key = tuple[str, str, str]
SAVED_VERSION = 4  # 3: keyed by the files' full stat keys (change time included); 4: with the content proof


def _digest(values: Iterable[Any]) -> str:
    return hashlib.sha256(repr(sorted(values)).encode()).hexdigest()[:16]


class ContentsView:
    """The database's tables and content signatures, for one run."""

    def __init__(self, db: Database, lock: RunLock, saved_path: Path, signed_keys: Callable[[], list[Key]]) -> None:
        self.db = db
        self.lock = lock
        self.saved_path = saved_path
        self.signed_keys = signed_keys
        self._contents: DatabaseContents | None = None
        self._saved: DatabaseContents | None = None
        self._file_state: list[int] | None = None
        self._proof: str | None = None  # the content proof taken before the last read (database_proof)
        # Tables whose content signature still holds at the next read (nothing wrote them since it was taken).
        self._known: dict[Key, TableState] = {}
        # Read through a build's own session before it closed, with the file's proof and state then.
        self._taken: tuple[DatabaseContents, str, list[int]] | None = None

    def get(self, live: bool = False) -> DatabaseContents:
        """What the database holds; ``live`` opens it even when a saved copy is current
        (to learn whether it can be opened at all). Content signatures are computed only for tables
        written since they were last taken: reading them costs a scan of each table."""
        if live and self._contents is not None and self._contents is self._saved:
            self._known, self._contents = dict(self._saved.tables), None
        if self._contents is None:
            self.lock.share()  # refused while another run builds; none builds while this one reads
            self._proof = database_proof(self.db.path)  # before the read: it is of this content, or later
            self._file_state = self.db.file_state()
            saved = self._load_saved()
            if live and saved is not None:  # the file is unchanged since: its signatures hold
                self._known = {**saved.tables, **self._known}
            self._saved = None if live else saved
            try:
                self._contents = self._saved or self.db.contents(self.signed_keys(), self._known)
            except DatabaseLockedError:
                holder = self.lock.holder()  # another setup run took its lock since we looked: say that
                if holder:
                    raise RunInProgressError(str(self.db.path), holder if holder > 0 else None) from None
                raise
            self._known = {}
        return self._contents

    def invalidate(self, written: Iterable[Key] | None = None) -> None:
        """The database changed (a build): read it again when next asked. ``written``: the only tables that
        may have changed (the signatures of the others hold); None: any of them."""
        self._known = self._still_known(written)
        self._contents = self._saved = self._taken = None

    def _still_known(self, written: Iterable[Key] | None) -> dict[Key, TableState]:
        if written is None:
            return {}
        # since the last read, or since the writes before (moved aside, built, settled)
        changed = set(written)
        base = self._contents.tables if self._contents is not None else self._known
        return {k: state for k, state in base.items() if k not in changed}

    def take_in(self, session: Any, written: Iterable[Key] | None) -> None:
        """At the end of a build's own session (``session``: its writing connection, before it closes):
        what the database holds, read through it, and the file's proof and state, all while the session
        still keeps every other process out. ``adopt_taken`` makes it the run's view once it closed; a
        build that may have written other tables than ``written`` (None: a hook) is read again instead."""
        self._taken = None
        if written is None:
            return
        try:
            session.execute("CHECKPOINT")  # the file complete now: closing writes nothing more
            contents = self.db.contents(self.signed_keys(), self._still_known(written), session=session)
        except Exception:  # noqa: BLE001 - any failure here only costs the read the run makes anyway
            return
        proof, state = database_proof(self.db.path), self.db.file_state()
        if proof is not None and state is not None:
            self._taken = (contents, proof, state)

    def adopt_taken(self) -> bool:
        """After the session closed: what it read is the run's view when the file is still as it was then (no
        program wrote it since); False: read it again when next asked."""
        taken, self._taken = self._taken, None
        if taken is None or (database_proof(self.db.path), self.db.file_state()) != taken[1:]:
            return False
        self._contents, self._proof, self._file_state = taken
        self._saved, self._known = None, {}
        return True

    def view_proof(self) -> str | None:
        """The ``database_proof`` of the content this run's view describes (taken before its last read), while
        the file still has it; None when the run holds no current view."""
        if self._contents is None or self._proof is None or database_proof(self.db.path) != self._proof:
            return None
        return self._proof

    @property
    def read(self) -> bool:
        """Has this run looked at the database yet?"""
        return self._contents is not None

    def has(self, key: Key) -> bool:
        return self.get().has(key)

    def _load_saved(self) -> DatabaseContents | None:
        saved = read_json(self.saved_path, {})
        if not saved or self._file_state is None or saved.get("file") != self._file_state:
            return None
        if saved.get("version") != SAVED_VERSION or not isinstance(saved.get("saved_ns"), int):
            return None
        changed = max(self._file_state[4], self._file_state[9])  # the change times of the file and its WAL
        if saved["saved_ns"] - changed <= RACY_NS:  # saved while it was changing: its keys prove nothing
            proof = saved.get("proof")
            if not isinstance(proof, str) or proof != self._proof:
                return None
        if saved.get("keys") != _digest(self.signed_keys()):
            return None
        try:
            return contents_from_dict(self.db.path, saved["contents"])
        except (KeyError, TypeError, ValueError):
            return None

    def save(self) -> None:
        """At the end of a run: what the database holds now, keyed by its file state."""
        if self._contents is None:
            return
        proof, now = database_proof(self.db.path), self.db.file_state()
        try:
            if now != self._file_state or proof != self._proof:  # written since the last read
                contents = self.db.contents(self.signed_keys())
                if (database_proof(self.db.path), self.db.file_state()) != (proof, now):
                    now = None  # written while being read: the next run reads it itself
            else:
                contents = self._contents
        except PlanwiseError:  # locked by someone meanwhile: the next run reads the database itself
            now = None
        if now is None:
            self.saved_path.unlink(missing_ok=True)
            return
        write_json_atomic(
            self.saved_path,
            {
                "version": SAVED_VERSION,
                "file": now,
                "keys": _digest(self.signed_keys()),
                "saved_ns": time.time_ns(),
                "proof": proof,
                "contents": contents_to_dict(contents),
            },
        )

    def drop(self, wanted: Callable[[DbRelation], bool]) -> DropResult:
        """Drop the wanted tables and views (views first, foreign-key order), holding the run
        lock so no setup builds meanwhile; this run's view forgets what was dropped."""
        self.lock.acquire()
        result = self.db.drop_relations(lambda relations: drop_order(relations, wanted))
        gone = {rel.key for rel in result.dropped}
        if gone and self._contents is not None:
            self._contents = replace(
                self._contents, tables={key: state for key, state in self._contents.tables.items() if key not in gone}
            )
        return result

    def move_aside(self, keys: dict[str, Key], suffix: str) -> dict[str, Key]:
        """Rename these relations to their name + ``suffix`` (their node builds afresh); returns those moved."""
        self.lock.acquire()
        try:
            return self.db.move_aside(keys, suffix)
        finally:
            self.invalidate(_with_aside(keys.values(), suffix))

    def restore_aside(self, keys: list[Key], suffix: str) -> None:
        """Put back (or drop) what a killed run left moved aside for these relations."""
        left = [key for key in keys if (key[0], key[1], key[2] + suffix) in self.get().tables]
        if not left:
            return
        self.lock.acquire()
        try:
            self.db.restore_aside(left, suffix)
        finally:
            self.invalidate(_with_aside(left, suffix))

    def settle_aside(self, entries: dict[str, tuple[Key, bool]], suffix: str) -> None:
        """Drop what was moved aside for built nodes, put it back for the others."""
        try:
            self.db.settle_aside(entries, suffix)
        finally:
            self.invalidate(_with_aside((key for key, _ in entries.values()), suffix))

    def drop_empty_schemas(self, schemas: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """Drop these schemas if empty (holding the run lock); returns those gone now."""
        self.lock.acquire()
        gone = self.db.drop_empty_schemas(schemas)
        if gone and self._contents is not None:
            self._contents = replace(self._contents, schemas=self._contents.schemas - set(gone))
        return gone


def _with_aside(keys: Iterable[Key], suffix: str) -> list[Key]:
    """Relations and their moved-aside names: what moving them aside or back writes."""
    return [k for key in keys for k in (key, (key[0], key[1], key[2] + suffix))]
