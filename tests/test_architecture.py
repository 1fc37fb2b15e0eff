"""The house rules of setup_tasks/: layers import only downward, no cycles, no process globals or module-level
mutable state (but the few listed with their reasons), one owner per library."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Iterator

import grimp
import networkx as nx
import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "setup_tasks"


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("setup_tasks", include_external_packages=True)


def test_layers_contract_is_kept() -> None:
    """The import-linter contract in pyproject.toml (function-level imports included)."""
    proc = subprocess.run(
        [sys.executable, "-c", "from importlinter.cli import lint_imports; raise SystemExit(lint_imports())"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_no_import_cycle_between_modules(graph: grimp.ImportGraph) -> None:
    modules = {m for m in graph.modules if m.startswith("setup_tasks")}
    edges = nx.DiGraph()
    for module in modules:
        for imported in graph.find_modules_directly_imported_by(module):
            # A package's __init__ importing its own submodules is how packages expose their API.
            if imported in modules and not imported.startswith(module + "."):
                edges.add_edge(module, imported)
    cycles = list(nx.simple_cycles(edges))
    assert not cycles, " ; ".join(" -> ".join(c + [c[0]]) for c in cycles[:5])


def test_no_global_statement() -> None:
    offenders = [
        f"{path.relative_to(REPO)}:{node.lineno}"
        for path in PACKAGE.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Global)
    ]
    assert not offenders


# Module-level state kept on purpose, by "path:name", and why it is the process's and no object's.
PROCESS_STATE = {
    "setup_tasks/validation/framework.py:REGISTRY": (
        "the checks @register_check adds as their modules import (built-ins and a team's check_modules): an "
        "import happens once per process, so what it registers is the process's"
    ),
    "setup_tasks/dbt/invoke.py:_INVOCATION": (
        "the compile reads of the dbt invocation running: the dbt and Jinja hooks that fill it are patched "
        "into dbt's classes, once per process, and dbt runs one invocation at a time"
    ),
    "setup_tasks/dbt/invoke.py:_THREAD": (
        "each compile thread's node (threading.local), filled by the same process-wide hooks"
    ),
    "setup_tasks/store/database.py:duckdb": (
        "the duckdb module, imported on first use (a module, as `import duckdb` would bind)"
    ),
    "setup_tasks/files.py:log": (
        "setup's logger: logging keeps its loggers process-wide (getLogger returns the same one)"
    ),
    # Module-level caches (functools.cache / lru_cache): none can serve a stale answer, as their reasons say.
    "setup_tasks/config/schema.py:document": (
        "the schema file shipped in the package, read once: it does not change under a running process"
    ),
    "setup_tasks/config/problems.py:_validator": (
        "the jsonschema validator of that schema (building it costs more than a validation)"
    ),
    "setup_tasks/project/context.py:_read_project_yaml": (
        "dbt_project.yml parsed, keyed by the file's version: an edited file is another key"
    ),
    "setup_tasks/store/database.py:_reader_paths": (
        "a pure function of the SQL text (DuckDB's parse of it), for the same SQL asked for by many nodes"
    ),
    "setup_tasks/validation/framework.py:_file_digest": (
        "the digest of an imported check module's source: Python does not import it again, so the code the "
        "process runs is the code digested"
    ),
    "setup_tasks/keys.py:_key": (
        "setup's private key, read or created once: every seal and unseal of a run must use the same key"
    ),
}
# Types whose values may change: an annotation naming one is no read-only one (nor is Any or object).
MUTABLE_TYPES = re.compile(
    r"\b(dict|list|set|Dict|List|Set|DefaultDict|MutableMapping|MutableSequence|MutableSet|"
    r"defaultdict|OrderedDict|Counter|deque|bytearray)\b|^(Any|object)$"
)
# Calls that make an immutable value (or a module-level constant by every convention).
IMMUTABLE_CALLS = {
    "frozenset",
    "tuple",
    "str",
    "int",
    "re.compile",
    "types.MappingProxyType",
    "MappingProxyType",
    "TypeVar",
    "Path",
    "inspect.signature",
}
CACHES = {"cache", "lru_cache", "functools.cache", "functools.lru_cache"}


def _module_statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """The statements that run at import: the module's own, and those in its if/try/with blocks."""
    for node in body:
        yield node
        if isinstance(node, (ast.If, ast.Try, ast.With)):
            for block in ("body", "orelse", "finalbody"):
                yield from _module_statements(getattr(node, block, []))
            for handler in getattr(node, "handlers", []):
                yield from _module_statements(handler.body)


def _mutable(value: ast.expr | None, annotation: ast.expr | None) -> bool:
    """Is this module-level value changeable through its name? A literal container or a call not known to
    make an immutable value is, unless annotated read-only (Mapping, Sequence, ...: mypy then rejects any
    change through the name; tests/test_typing.py runs it)."""
    if annotation is not None:
        return bool(MUTABLE_TYPES.search(ast.unparse(annotation)))
    if isinstance(value, (ast.Dict, ast.List, ast.Set, ast.DictComp, ast.ListComp, ast.SetComp)):
        return True
    if isinstance(value, ast.Tuple):
        return any(_mutable(element, None) for element in value.elts)
    return isinstance(value, ast.Call) and ast.unparse(value.func) not in IMMUTABLE_CALLS


def module_state(path: Path, root: Path = REPO) -> list[str]:
    """``path:name`` of each module-level name bound to mutable state, and of each module-level cache."""
    found = []
    for node in _module_statements(ast.parse(path.read_text()).body):
        where = str(path.relative_to(root))
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            names = [
                t.id
                for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
                if isinstance(t, ast.Name)
            ]
            if names != ["__all__"] and _mutable(node.value, getattr(node, "annotation", None)):
                found += [f"{where}:{name}" for name in names]
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            decorators = {ast.unparse(d.func if isinstance(d, ast.Call) else d) for d in node.decorator_list}
            if decorators & CACHES:
                found.append(f"{where}:{node.name}")
    return found


def test_no_module_level_mutable_state_but_the_listed() -> None:
    """A module's dict, list or set, its threading.local, its registry or its cache is shared by every run in
    the process (the Python API runs several): state belongs to an object. Constant tables are read-only
    (annotated Mapping, Sequence, AbstractSet, or immutable); each exception is listed with its reason."""
    found = sorted(entry for path in PACKAGE.rglob("*.py") for entry in module_state(path))
    unlisted, gone = [f for f in found if f not in PROCESS_STATE], [a for a in PROCESS_STATE if a not in found]
    assert not unlisted, f"module-level mutable state (make it read-only, or an object's): {', '.join(unlisted)}"
    assert not gone, f"no longer mutable state: take it off PROCESS_STATE: {', '.join(gone)}"


def test_the_mutable_state_rule_sees_each_kind(tmp_path: Path) -> None:
    module = tmp_path / "module.py"
    module.write_text(
        textwrap.dedent("""
        import functools, re, threading
        from typing import Any, Mapping, Sequence
        TABLE = {"a": 1}
        NAMES = ["a"]
        SEEN = set()
        LOCAL = threading.local()
        PAIR = ([], ())
        ANNOTATED: dict[str, int] = {}
        NESTED: Mapping[str, list[str]] = {}
        LOOSE: Any = {}
        if True:
            INNER = {}
        try:
            import json
        except ImportError:
            FALLBACK = []
        READ_ONLY: Mapping[str, int] = {"a": 1}
        ORDERED: Sequence[str] = ["a"]
        PATTERN = re.compile("x")
        FROZEN = frozenset({"a"})
        __all__ = ["TABLE"]

        @functools.lru_cache(maxsize=2)
        def cached(x: int) -> int:
            return x

        def plain() -> None:
            local_table = {}
    """)
    )
    names = [entry.rsplit(":", 1)[1] for entry in module_state(module, tmp_path)]
    assert names == [
        "TABLE",
        "NAMES",
        "SEEN",
        "LOCAL",
        "PAIR",
        "ANNOTATED",
        "NESTED",
        "LOOSE",
        "INNER",
        "FALLBACK",
        "cached",
    ]


@pytest.mark.parametrize(
    "library, owner",
    [
        ("networkx", "setup_tasks.project.graph"),
        ("dbt", "setup_tasks.dbt.invoke"),
        ("jsonschema", "setup_tasks.config.problems"),
    ],
)
def test_one_module_owns_each_heavy_library(graph: grimp.ImportGraph, library: str, owner: str) -> None:
    assert graph.find_modules_that_directly_import(library) == {owner}


def test_only_the_database_module_loads_duckdb() -> None:
    pattern = re.compile(r'^\s*(import duckdb|from duckdb import)|_lazy_module\("duckdb"\)', re.M)
    loaders = sorted(str(path.relative_to(REPO)) for path in PACKAGE.rglob("*.py") if pattern.search(path.read_text()))
    assert loaders == ["setup_tasks/store/database.py"]


def test_doit_is_only_used_by_the_cli_and_api(graph: grimp.ImportGraph) -> None:
    users = {m for m in graph.find_modules_that_directly_import("doit")}
    assert all(m == "setup_tasks.api" or m.startswith("setup_tasks.cli") for m in users), users


def test_every_module_says_what_it_owns() -> None:
    missing = [
        str(p.relative_to(REPO)) for p in PACKAGE.rglob("*.py") if ast.get_docstring(ast.parse(p.read_text())) is None
    ]
    assert not missing
