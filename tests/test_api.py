"""The Python API: the same doit tasks, driven in process, with a result object."""

from __future__ import annotations

import duckdb
import pytest

from factories import Workspace
from setup_tasks.api import get_system_status, run_setup

pytestmark = pytest.mark.slow


def assert_closed(ws: Workspace) -> None:
    """The run closed every connection it had: the caller may open the file as it likes (a connection
    left open in this process refuses one of another configuration)."""
    duckdb.connect(str(ws.db_path)).close()
    duckdb.connect(str(ws.db_path), read_only=True).close()


def test_run_setup_reports_built_up_to_date_and_failed(shop: Workspace) -> None:
    first = run_setup(shop.config_path)
    assert first.success and first.exit_code == 0, first.error
    assert {"seed:customers", "model:stg_customer_orders"} <= set(first.built)
    assert first.validation and all(r.status in ("passed", "skipped") for r in first.validation.values())

    assert_closed(shop)

    again = run_setup(shop.config_path)
    assert again.success and not [t for t in again.built if t.startswith(("seed:", "model:"))]
    assert "model:stg_customer_orders" in again.up_to_date

    shop.model("stg_regions", "select nope from {{ ref('regions') }}")
    failed = run_setup(shop.config_path)
    assert not failed.success and failed.exit_code == 1
    assert failed.failed == ["model:stg_regions"]
    assert_closed(shop)
    message = next(t.message for t in failed.tasks if t.name == "model:stg_regions")
    assert "models/staging/stg_regions.sql" in message and "fix:" in message


def test_quick_and_status_through_the_api(shop: Workspace) -> None:
    assert get_system_status(shop.config_path).ready
    result = run_setup(shop.config_path, quick=True)
    assert result.success, result.error
    assert not any(t.startswith("seed:regions") for t in result.built)
    status = get_system_status(shop.config_path)
    assert "seed:regions" in status.stale and "seed:customers" not in status.stale


def test_an_invalid_config_is_an_error_not_an_exception(shop: Workspace) -> None:
    shop.config_path.write_text("database:\n  thraeds: 2\n")
    result = run_setup(shop.config_path)
    assert not result.success and result.exit_code == 3
    assert "did you mean 'threads'" in result.error


def test_a_profile_duckdb_accepted_is_not_tried_again_until_it_changes(
    shop: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 21: trying the profile's settings costs a DuckDB connection per build run; once accepted, the
    same settings are not tried again -- changed ones are (issue 22's one-line refusal still holds)."""
    import yaml

    import setup_tasks.engine.view as view

    assert run_setup(shop.config_path).success
    tried: list[object] = []
    real = view.profile_problem
    monkeypatch.setattr(view, "profile_problem", lambda *parts: tried.append(parts) or real(*parts))
    shop.seed("regions", "region,tax_rate\nnorth,0.25\nsouth,0.1\n")
    assert run_setup(shop.config_path).success and tried == []
    path = shop.project / "profiles.yml"
    profiles = yaml.safe_load(path.read_text())
    profiles["shop"]["outputs"]["dev"]["settings"] = {"memory_limit": "lots"}
    path.write_text(yaml.safe_dump(profiles))
    shop.seed("regions", "region,tax_rate\nnorth,0.3\nsouth,0.1\n")
    refused = run_setup(shop.config_path)
    assert not refused.success and len(tried) == 1 and "memory_limit" in refused.error, refused.error
