"""Hints that name the real cause (issue 13): each failure's one line points at the file or key to change.

Each test breaks a fresh 'shop' project (nothing built) one way and runs setup once through the
Python API, in this process (dbt is imported once for the module): the failed task's message and
the result's error are the lines the console prints (tests/test_operator.py drives the console).
"""

from __future__ import annotations

import re

import pytest
import yaml

from factories import Workspace
from operator_support import set_config
from setup_tasks.api import SetupResult, run_setup

pytestmark = pytest.mark.slow


def failed(ws: Workspace) -> tuple[SetupResult, str]:
    """The run's result, and every line it has to say about what failed."""
    result = run_setup(ws.config_path)
    assert not result.success, result
    lines = [result.error, *(f"{t.name} {t.message}" for t in result.tasks if t.status == "failed")]
    text = "\n".join(line for line in lines if line)
    assert "Traceback" not in text, text
    return result, text


def first_failure(result: SetupResult) -> str:
    return next((t.message for t in result.tasks if t.status == "failed"), result.error)


def test_a_bad_setup_selection_names_the_key_with_dbts_message(shop: Workspace) -> None:
    set_config(shop, "dbt", setup_selection="resource_type:seed path:models/stagin")  # a typo
    result, text = failed(shop)
    assert result.exit_code == 1 and "Task dependency" not in text, text
    assert "dbt.setup_selection" in text and "path:models/stagin" in text, text
    assert "does not match any" in text, f"dbt's own message about the selection is missing:\n{text}"


def test_a_cycle_is_not_blamed_on_the_selection_syntax(shop: Workspace) -> None:
    shop.model("stg_a", "select * from {{ ref('stg_b') }}")
    shop.model("stg_b", "select * from {{ ref('stg_a') }}")
    result, text = failed(shop)
    assert result.exit_code == 1, text
    assert "cycle" in text.lower() and "stg_a" in text and "stg_b" in text, text
    assert "selection syntax" not in text and "setup_selection" not in text, text


def test_a_quote_in_the_database_file_name_points_at_the_database_path(shop: Workspace) -> None:
    set_config(shop, "database", path="ware'house.duckdb")
    result, text = failed(shop)
    failure = first_failure(result)
    assert result.exit_code == 1 and "correct seeds/" not in failure, f"a database problem blamed on a seed file:\n{failure}"
    assert "database.path" in failure and "ware'house.duckdb" in failure, failure


def test_a_bad_duckdb_setting_points_at_the_profile(shop: Workspace) -> None:
    profiles = shop.project / "profiles.yml"
    profile = yaml.safe_load(profiles.read_text())
    profile["shop"]["outputs"]["dev"]["settings"] = {"not_a_real_setting": 1}
    profiles.write_text(yaml.safe_dump(profile))
    result, text = failed(shop)
    failure = first_failure(result)
    assert result.exit_code == 1 and "correct seeds/" not in failure, f"a profile problem blamed on a seed file:\n{failure}"
    assert "profiles.yml" in failure and "not_a_real_setting" in failure, failure


def test_a_non_utf8_seed_in_a_new_project_names_the_file_and_the_encoding(shop: Workspace) -> None:
    (shop.project / "seeds" / "regions.csv").write_bytes("region,tax_rate\nnorth,0.2\nsüd,0.1\n".encode("latin-1"))
    result, text = failed(shop)
    assert result.exit_code == 1, text
    assert "seeds/regions.csv" in text, f"the file is not named:\n{text}"
    assert re.search(r"utf-8", text, re.I) and "encoding" in text.lower(), text
    assert "number of fields" not in text, text


def test_disk_full_during_dbt_points_at_the_space_not_the_sql(shop: Workspace) -> None:
    # The model is fine; the write fails with ENOSPC (/dev/full), as on a full disk.
    shop.model("stg_disk", "{{ config(pre_hook=\"COPY (SELECT range AS x FROM range(1000)) TO '/dev/full' (FORMAT csv)\") }}\n"
                           "select 1 as x")
    result, _ = failed(shop)
    failure = next(t.message for t in result.tasks if t.name == "model:stg_disk")
    assert "correct models/staging/stg_disk.sql" not in failure, f"a full disk blamed on the SQL:\n{failure}"
    assert re.search(r"(disk|device).*(full|space)|free (disk )?space", failure, re.I), failure
