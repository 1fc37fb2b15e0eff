"""Hints that name the real cause (issue 13): each failure's one line points at the file or key to change.

Each test makes one broken 'shop' project (nothing built) and runs `doit setup` (or `quick`) once, as
a user does, from the repository root.
"""

from __future__ import annotations

import re

import pytest
import yaml

from factories import Workspace
from operator_support import set_config, text_of

pytestmark = pytest.mark.slow


def failure_text(ws: Workspace, *args: str) -> tuple[int, str]:
    run = ws.doit(*(args or ("setup",)), json_report=False)
    text = text_of(run)
    assert "Traceback" not in text, text[-3000:]
    return run.returncode, text


def test_a_bad_setup_selection_names_the_key_with_dbts_message(shop: Workspace) -> None:
    set_config(shop, "dbt", setup_selection="resource_type:seed path:models/stagin")  # a typo
    code, text = failure_text(shop)
    assert code != 0
    assert "Task dependency" not in text, f"doit's own message instead of the cause:\n{text}"
    assert "dbt.setup_selection" in text, text
    assert "does not match any" in text, f"dbt's own message about the selection is missing:\n{text}"


def test_a_cycle_is_not_blamed_on_the_selection_syntax(shop: Workspace) -> None:
    shop.model("stg_a", "select * from {{ ref('stg_b') }}")
    shop.model("stg_b", "select * from {{ ref('stg_a') }}")
    code, text = failure_text(shop)
    assert code == 1, text
    assert "cycle" in text.lower() and "stg_a" in text and "stg_b" in text, text
    assert "selection syntax" not in text and "setup_selection" not in text, text


def test_quick_whose_foundation_selection_matches_nothing_says_so_and_exits_1(shop: Workspace) -> None:
    set_config(shop, "dbt", foundation_selection="stg_does_not_exist")
    code, text = failure_text(shop, "quick")
    assert code == 1, f"`doit quick` with an empty foundation exited {code}:\n{text}"
    assert "dbt.foundation_selection" in text, text
    assert re.search(r"matches nothing|selects nothing|no (seeds?|models?|nodes?)\b|does not match any", text), text


def test_a_quote_in_the_database_file_name_points_at_the_database_path(shop: Workspace) -> None:
    set_config(shop, "database", path="ware'house.duckdb")
    code, text = failure_text(shop)
    assert code == 1, text
    failure = next((l for l in lines_of_text(text) if l.startswith(("✗", "error"))), text)
    assert "correct seeds/" not in failure, f"a database problem blamed on a seed file:\n{failure}"
    assert "database.path" in failure or "profiles.yml" in failure, failure


def test_a_bad_duckdb_setting_points_at_the_profile(shop: Workspace) -> None:
    profiles = shop.project / "profiles.yml"
    profile = yaml.safe_load(profiles.read_text())
    profile["shop"]["outputs"]["dev"]["settings"] = {"not_a_real_setting": 1}
    profiles.write_text(yaml.safe_dump(profile))
    code, text = failure_text(shop)
    assert code == 1, text
    failure = next((l for l in lines_of_text(text) if l.startswith(("✗", "error"))), text)
    assert "correct seeds/" not in failure, f"a profile problem blamed on a seed file:\n{failure}"
    assert "profiles.yml" in failure and "not_a_real_setting" in failure, failure


def test_a_non_utf8_seed_in_a_new_project_names_the_file_and_the_encoding(shop: Workspace) -> None:
    (shop.project / "seeds" / "regions.csv").write_bytes("region,tax_rate\nnorth,0.2\nsüd,0.1\n".encode("latin-1"))
    code, text = failure_text(shop)
    assert code == 1, text
    assert "seeds/regions.csv" in text, f"the file is not named:\n{text}"
    assert re.search(r"utf-8", text, re.I) and "encoding" in text.lower(), text
    assert "number of fields" not in text, text


def test_disk_full_during_dbt_points_at_the_space_not_the_sql(shop: Workspace) -> None:
    # The model is fine; the write fails with ENOSPC (/dev/full), as on a full disk.
    shop.model("stg_disk", "{{ config(pre_hook=\"COPY (SELECT range AS x FROM range(1000)) TO '/dev/full' (FORMAT csv)\") }}\n"
                           "select 1 as x")
    code, text = failure_text(shop)
    assert code == 1, text
    failure = next(l for l in lines_of_text(text) if "stg_disk" in l and l.startswith("✗"))
    assert "correct models/staging/stg_disk.sql" not in failure, f"a full disk blamed on the SQL:\n{failure}"
    assert re.search(r"(disk|device).*(full|space)|free (disk )?space", failure, re.I), failure


def lines_of_text(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]

