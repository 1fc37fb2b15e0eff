"""dbt's selection of a batch's nodes, answered from an index (issue 21): the same nodes as dbt's own walk, for every
selector setup writes and for the others dbt users write (folders, yml files, fqn prefixes, packages)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

from factories import REPO
from team_projects import write_jaffle_shop, write_package_project

sys.path.insert(0, str(REPO / "benchmarks"))
from generated import generate  # noqa: E402

from setup_tasks.dbt.invoke import indexed_selection  # noqa: E402

pytestmark = pytest.mark.slow


def _parsed(project: Path) -> Any:
    from dbt.cli.main import dbtRunner

    saved = os.getcwd()
    os.chdir(project)
    try:
        flags = ["--profiles-dir", ".", "--project-dir", ".", "--quiet", "--no-send-anonymous-usage-stats"]
        if (project / "packages.yml").exists():
            assert dbtRunner().invoke(["deps", *flags]).success
        result = dbtRunner().invoke(["parse", *flags])
    finally:
        os.chdir(saved)
    assert result.success, result.exception
    return result.result


def _searches(manifest: Any, project: Path, selectors: list[tuple[str, str]]) -> dict[tuple[str, str], set[str]]:
    from dbt.graph.selector_methods import MethodManager, MethodName
    from dbt_common.events.contextvars import set_task_contextvars

    set_task_contextvars(project_root=str(project))
    every = set(manifest.nodes) | set(manifest.sources) | set(manifest.exposures) | set(manifest.metrics)
    methods = MethodManager(manifest, None)
    return {
        (method, value): set(methods.get_method(MethodName(method), []).search(every, value))
        for method, value in selectors
    }


@pytest.mark.parametrize("kind", ["generated", "jaffle_shop", "package"])
def test_the_index_selects_what_dbt_selects(kind: str, tmp_path: Path) -> None:
    if kind == "generated":
        project = generate(tmp_path / "gen", 20).root  # every model patched by models/schema.yml
    else:
        project = (write_jaffle_shop if kind == "jaffle_shop" else write_package_project)(tmp_path).project
    manifest = _parsed(project)
    nodes = [*manifest.nodes.values(), *manifest.sources.values()]
    selectors = [("path", n.original_file_path) for n in nodes] + [("fqn", ".".join(n.fqn)) for n in nodes]
    selectors += [("fqn", n.name) for n in nodes] + [("fqn", ".".join(n.fqn[1:])) for n in nodes if len(n.fqn) > 2]
    selectors += [
        ("path", p)
        for p in (
            "models",
            "seeds",
            "models/schema.yml",
            "models/layer_1",
            "models/staging",
            "models/*.sql",
            "nowhere.sql",
            "models/../models",
        )
    ]
    selectors += [("fqn", f) for f in (manifest.metadata.project_name or "", "staging", "layer_0", "m_*", "nothing")]
    expected = _searches(manifest, project, selectors)
    with indexed_selection():
        indexed = _searches(manifest, project, selectors)
    assert indexed == expected
    assert any(found for found in expected.values())
