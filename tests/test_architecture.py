"""The house rules of setup_tasks/: layers import only downward, no cycles, no process globals, one owner per library."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

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
    proc = subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports; raise SystemExit(lint_imports())"],
                          cwd=REPO, capture_output=True, text=True)
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
    offenders = [f"{path.relative_to(REPO)}:{node.lineno}"
                 for path in PACKAGE.rglob("*.py")
                 for node in ast.walk(ast.parse(path.read_text()))
                 if isinstance(node, ast.Global)]
    assert not offenders


@pytest.mark.parametrize("library, owner", [
    ("networkx", "setup_tasks.project.graph"),
    ("dbt", "setup_tasks.dbt.invoke"),
    ("jsonschema", "setup_tasks.config.problems"),
])
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
    missing = [str(p.relative_to(REPO)) for p in PACKAGE.rglob("*.py") if ast.get_docstring(ast.parse(p.read_text())) is None]
    assert not missing
