"""What a check may ask of the engine (``CheckEngine``): the project, the state of its nodes, file hashes, the
tests' runner and a read-only look at the database; never the builder, retirement or a writing connection.

A structural type: ``engine.Engine`` is one, and so is a test's stand-in with these members. The
``validation.scope.ValidationScope`` that drives the checks of a run keeps the whole engine.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Mapping, Protocol

from ..config import Settings
from ..dbt.invoke import NodeOutcome
from ..project.context import DbtContext
from ..project.fingerprints import Fingerprint
from ..project.graph import SetupGraph
from ..project.manifest import Manifest, Node
from ..store.database import DatabaseContents, Reader
from ..store.records import BuildRecord


class ProjectDefinitions(Protocol):
    """The project's definitions as checks read them: the tests setup runs, and the files a query reads."""

    def tests(self) -> list[str]: ...

    def test_scope(self) -> set[str]: ...

    def reader_paths(self, sql: str) -> list[str]: ...


class BuildRecordLookup(Protocol):
    def get(self, uid: str) -> BuildRecord | None: ...


class FileHashes(Protocol):
    def hash(self, path: Path) -> str: ...


class TestOutcomes(Protocol):
    """This run's outcome of each dbt test its builds ran."""

    @property
    def test_outcomes(self) -> Mapping[str, NodeOutcome]: ...


class ReadOnlyDatabase(Protocol):
    def read_only(self, keep_open: bool = False) -> AbstractContextManager[Reader]: ...


class CheckEngine(Protocol):
    """The engine as a check sees it."""

    @property
    def settings(self) -> Settings: ...

    @property
    def ctx(self) -> DbtContext: ...

    @property
    def manifest(self) -> Manifest: ...

    @property
    def graph(self) -> SetupGraph: ...

    @property
    def definitions(self) -> ProjectDefinitions: ...

    @property
    def setup_nodes(self) -> list[str]: ...

    @property
    def foundation_nodes(self) -> list[str]: ...

    @property
    def records(self) -> BuildRecordLookup: ...

    @property
    def hasher(self) -> FileHashes: ...

    @property
    def run(self) -> TestOutcomes: ...

    @property
    def db(self) -> ReadOnlyDatabase: ...

    def node(self, uid: str) -> Node: ...

    def fingerprints(self) -> Mapping[str, Fingerprint]: ...

    def database_contents(self, live: bool = False) -> DatabaseContents: ...

    def test_state(self, uid: str) -> str: ...

    def run_tests(self, uids: list[str], what: str) -> dict[str, Any]: ...
