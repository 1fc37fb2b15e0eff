"""Tests for setup_tasks.census: deterministic generation, provenance, user-file protection, defects, inspection."""

from __future__ import annotations

import csv
import re
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from setup_tasks.engine.census import (
    DEFAULT_JOB_LEVEL_BANDS,
    DEFAULT_PLAN_YEAR,
    REQUIRED_CENSUS_COLUMNS,
    CensusDefects,
    census_contract_problem,
    census_needs_generation,
    generate_census,
    inspect_census,
    load_job_level_bands,
    main,
    read_census_provenance,
)
from setup_tasks.store.database import memory_connection
from setup_tasks.errors import CensusError

DBT_PROJECT = Path(__file__).resolve().parents[1] / "dbt"
NO_DEFECTS = CensusDefects(0, 0, 0)


@pytest.fixture
def census_path(tmp_path: Path) -> Path:
    """Where a test writes its census (the directory does not exist yet)."""
    return tmp_path / "data" / "census.parquet"


def query(path: Path, sql: str) -> list[tuple[Any, ...]]:
    """Run ``sql`` with the census file available as the view ``census``."""
    with memory_connection() as con:
        con.execute(f"CREATE VIEW census AS SELECT * FROM read_parquet('{path}')")
        return con.execute(sql).fetchall()


def content_hash(path: Path) -> tuple[Any, ...]:
    """Order-independent fingerprint of the rows."""
    return query(path, "SELECT count(*), bit_xor(hash(c)), sum(hash(c) % 1000003) FROM census AS c")[0]


def write_user_census(path: Path) -> bytes:
    """A census parquet the generator did not write (no provenance)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with memory_connection() as con:
        con.execute(f"COPY (SELECT 'A1' AS employee_id) TO '{path}' (FORMAT parquet)")
    return path.read_bytes()


# --- determinism and shape -------------------------------------------------


def test_same_parameters_give_the_same_file(tmp_path: Path) -> None:
    first = generate_census(tmp_path / "a.parquet", 2_000, seed=3)
    second = generate_census(tmp_path / "b.parquet", 2_000, seed=3)
    assert content_hash(first.path) == content_hash(second.path)
    assert first.path.read_bytes() == second.path.read_bytes()


def test_another_seed_gives_other_content(tmp_path: Path) -> None:
    first = generate_census(tmp_path / "a.parquet", 2_000, seed=3)
    second = generate_census(tmp_path / "b.parquet", 2_000, seed=4)
    assert content_hash(first.path) != content_hash(second.path)


def test_writes_the_requested_rows_with_the_required_columns(census_path: Path) -> None:
    generate_census(census_path, 1_234)
    info = inspect_census(census_path)
    assert info.rows == 1_234
    assert tuple(info.columns) == REQUIRED_CENSUS_COLUMNS
    assert info.missing_columns == ()
    assert info.columns["employee_id"] == "VARCHAR"
    assert info.columns["employee_gross_compensation"] == "DOUBLE"
    assert info.columns["active"] == "BOOLEAN"


def test_leaves_only_the_census_in_its_directory(census_path: Path) -> None:
    generate_census(census_path, 100)
    generate_census(census_path, 200)
    assert [p.name for p in census_path.parent.iterdir()] == [census_path.name]


def test_required_columns_are_the_columns_of_the_dbt_source() -> None:
    sources = yaml.safe_load((DBT_PROJECT / "models" / "staging" / "sources.yml").read_text())
    (table,) = sources["sources"][0]["tables"]
    assert tuple(column["name"] for column in table["columns"]) == REQUIRED_CENSUS_COLUMNS


def test_built_in_bands_equal_the_demo_seed() -> None:
    assert load_job_level_bands(DBT_PROJECT / "seeds" / "config_job_levels.csv") == DEFAULT_JOB_LEVEL_BANDS


# --- provenance and regeneration -------------------------------------------


def test_provenance_records_the_parameters(census_path: Path) -> None:
    defects = CensusDefects(0.01, 0.02, 0.003)
    summary = generate_census(census_path, 500, seed=9, defects=defects)
    stored = read_census_provenance(census_path)
    assert stored == summary.provenance
    assert (stored["employees"], stored["seed"], stored["plan_year"]) == (500, 9, DEFAULT_PLAN_YEAR)
    assert stored["defects"] == {
        "duplicate_id_rate": 0.01,
        "missing_ssn_rate": 0.02,
        "hire_after_termination_rate": 0.003,
    }


def test_missing_census_needs_generation(census_path: Path) -> None:
    assert census_needs_generation(census_path, 1_000, 42) == "missing"


def test_current_census_needs_no_generation(census_path: Path) -> None:
    generate_census(census_path, 1_000, seed=42)
    assert census_needs_generation(census_path, 1_000, 42) is None


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"employees": 2_000}, "parameters changed: employees 1000 -> 2000"),
        ({"seed": 7}, "parameters changed: seed 42 -> 7"),
        ({"plan_year": 2025}, "parameters changed: plan_year 2024 -> 2025"),
        (
            {"defects": CensusDefects(missing_ssn_rate=0.01)},
            "parameters changed: defects.missing_ssn_rate 0.001 -> 0.01",
        ),
        ({"employees": 5, "seed": 1}, "parameters changed: employees 1000 -> 5, seed 42 -> 1"),
    ],
)
def test_changed_parameters_are_named(census_path: Path, change: dict[str, Any], reason: str) -> None:
    generate_census(census_path, 1_000, seed=42)
    wanted = {"employees": 1_000, "seed": 42, **change}
    assert census_needs_generation(census_path, **wanted) == reason


def test_changed_job_level_bands_need_generation(census_path: Path, tmp_path: Path) -> None:
    generate_census(census_path, 1_000)
    bands = write_bands(tmp_path / "levels.csv", [(1, 30_000, 60_000, 0.7), (2, 60_000, 90_000, 0.3)])
    assert (
        census_needs_generation(census_path, 1_000, 42, job_levels_csv=bands)
        == "parameters changed: job_levels changed"
    )


# --- user files are never overwritten --------------------------------------


def test_user_census_is_not_overwritten(census_path: Path) -> None:
    original = write_user_census(census_path)
    with pytest.raises(CensusError) as raised:
        generate_census(census_path, 100)
    assert str(census_path) in raised.value.cause and "force" in raised.value.fix
    assert census_path.read_bytes() == original


def test_user_census_never_needs_generation(census_path: Path) -> None:
    write_user_census(census_path)
    assert read_census_provenance(census_path) is None
    assert census_needs_generation(census_path, 100, 42) is None


def test_unreadable_user_file_is_not_overwritten(census_path: Path) -> None:
    census_path.parent.mkdir(parents=True)
    census_path.write_text("employee_id\nA1\n")
    with pytest.raises(CensusError):
        generate_census(census_path, 100)
    assert census_path.read_text() == "employee_id\nA1\n"


def test_force_overwrites_a_user_census(census_path: Path) -> None:
    write_user_census(census_path)
    generate_census(census_path, 100, force=True)
    assert read_census_provenance(census_path)["employees"] == 100


def test_own_census_is_regenerated_in_place(census_path: Path) -> None:
    generate_census(census_path, 100)
    generate_census(census_path, 300)
    assert inspect_census(census_path).rows == 300


# --- defects ---------------------------------------------------------------


def test_defects_appear_at_their_configured_rates(census_path: Path) -> None:
    employees = 50_000
    defects = CensusDefects(duplicate_id_rate=0.02, missing_ssn_rate=0.01, hire_after_termination_rate=0.005)
    generate_census(census_path, employees, defects=defects)
    ((duplicates, missing_ssn, hire_after_termination),) = query(
        census_path,
        """SELECT count(*) - count(DISTINCT employee_id),
                  count(*) - count(employee_ssn),
                  count(*) FILTER (WHERE employee_termination_date < employee_hire_date)
           FROM census""",
    )
    assert duplicates == pytest.approx(employees * 0.02, rel=0.2)
    assert missing_ssn == pytest.approx(employees * 0.01, rel=0.2)
    assert hire_after_termination == pytest.approx(employees * 0.005, rel=0.25)


def test_no_defects_when_rates_are_zero(census_path: Path) -> None:
    generate_census(census_path, 20_000, defects=NO_DEFECTS)
    assert query(
        census_path,
        """SELECT count(*) - count(DISTINCT employee_id), count(*) - count(employee_ssn),
                  count(*) FILTER (WHERE employee_termination_date < employee_hire_date)
           FROM census""",
    ) == [(0, 0, 0)]


def test_duplicate_records_repeat_the_person(census_path: Path) -> None:
    generate_census(census_path, 20_000, defects=CensusDefects(0.02, 0, 0))
    assert query(
        census_path,
        """SELECT count(*) FROM (
               SELECT employee_id FROM census GROUP BY employee_id
               HAVING count(*) > 1 AND (count(DISTINCT employee_ssn) > 1 OR count(DISTINCT employee_birth_date) >
               1))""",
    ) == [(0,)]


@pytest.mark.parametrize("field", ["duplicate_id_rate", "missing_ssn_rate", "hire_after_termination_rate"])
@pytest.mark.parametrize("rate", [-0.1, 0.6])
def test_defect_rates_outside_range_are_refused(field: str, rate: float) -> None:
    with pytest.raises(CensusError, match=field):
        replace(CensusDefects(), **{field: rate})


# --- realistic content (properties over seeds and sizes) -------------------

INVARIANTS = """
SELECT
    count(*) FILTER (WHERE NOT employee_gross_compensation BETWEEN {low} AND {high}) AS pay_outside_bands,
    count(*) FILTER (WHERE date_diff('year', employee_birth_date, DATE '2024-12-31') NOT BETWEEN 22 AND 65) AS bad_age,
    count(*) FILTER (WHERE date_diff('year', employee_birth_date, employee_hire_date) < 18) AS hired_under_18,
    count(*) FILTER (WHERE employee_hire_date > DATE '2024-12-31') AS hired_after_plan_year,
    count(*) FILTER (WHERE active <> (employee_termination_date IS NULL)) AS active_mismatch,
    count(*) FILTER (WHERE employee_termination_date >= employee_hire_date
                     AND year(employee_termination_date) <> 2024) AS left_outside_plan_year,
    count(*) FILTER (WHERE employee_plan_year_compensation > employee_gross_compensation + 0.01
                     OR employee_plan_year_compensation < 0) AS bad_plan_year_pay,
    count(*) FILTER (WHERE abs(employee_contribution - pre_tax_contribution - roth_contribution
                               - after_tax_contribution) > 0.01) AS sources_do_not_add_up,
    count(*) FILTER (WHERE employee_contribution > least(employee_plan_year_compensation, 345000)
                     * employee_deferral_rate + 0.01 OR employee_contribution > 23000) AS contribution_over_rate,
    count(*) FILTER (WHERE least(pre_tax_contribution, roth_contribution, after_tax_contribution,
                     employer_core_contribution, employer_match_contribution) < 0) AS negative_amount,
    count(*) FILTER (WHERE employee_deferral_rate NOT BETWEEN 0 AND 0.15) AS bad_deferral_rate
FROM census
"""


@settings(max_examples=12, deadline=None)
@given(employees=st.integers(1, 3_000), seed=st.integers(0, 2**31 - 1))
def test_generated_rows_are_consistent(employees: int, seed: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "census.parquet"
        generate_census(path, employees, seed, NO_DEFECTS)
        low = DEFAULT_JOB_LEVEL_BANDS[0].min_compensation
        high = DEFAULT_JOB_LEVEL_BANDS[-1].max_compensation
        (counts,) = query(path, INVARIANTS.format(low=low, high=high))
    assert counts == (0,) * len(counts)


def test_distributions_are_realistic(census_path: Path) -> None:
    generate_census(census_path, 20_000, defects=NO_DEFECTS)
    ((active, new_hires, participants, median_age, mean_tenure),) = query(
        census_path,
        """SELECT avg(active::INT), avg((employee_hire_date >= DATE '2024-01-01')::INT),
                  avg((employee_deferral_rate > 0)::INT),
                  median(date_diff('year', employee_birth_date, DATE '2024-12-31')),
                  avg(DATE '2024-12-31' - employee_hire_date) / 365.25
           FROM census""",
    )
    assert 0.85 < active < 0.91
    assert 0.10 < new_hires < 0.20
    assert 0.78 < participants < 0.86
    assert 38 <= median_age <= 48
    assert 4 < mean_tenure < 8


def write_bands(path: Path, bands: list[tuple[int, int, int, float]]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["level_id", "name", "min_compensation", "max_compensation", "target_distribution"])
        writer.writerows((level, f"L{level}", low, high, share) for level, low, high, share in bands)
    return path


def test_pay_follows_the_bands_of_a_given_seed_csv(census_path: Path, tmp_path: Path) -> None:
    bands = write_bands(tmp_path / "levels.csv", [(1, 30_000, 60_000, 0.7), (2, 60_000, 90_000, 0.3)])
    generate_census(census_path, 5_000, job_levels_csv=bands)
    ((low, high, in_level_1),) = query(
        census_path,
        "SELECT min(employee_gross_compensation), max(employee_gross_compensation),"
        " avg((employee_gross_compensation < 60000)::INT) FROM census",
    )
    assert 30_000 <= low and high <= 90_000
    assert in_level_1 == pytest.approx(0.7, abs=0.03)


def test_unusable_bands_csv_is_refused(census_path: Path, tmp_path: Path) -> None:
    bad = tmp_path / "levels.csv"
    bad.write_text("level_id,min_compensation\n1,40000\n")
    with pytest.raises(CensusError, match="levels.csv"):
        generate_census(census_path, 10, job_levels_csv=bad)


# --- inspection and command line -------------------------------------------


def test_inspect_names_missing_required_columns(census_path: Path) -> None:
    write_user_census(census_path)
    info = inspect_census(census_path)
    assert info.rows == 1 and info.missing_columns
    assert info.missing_columns == REQUIRED_CENSUS_COLUMNS[1:]


def test_inspect_of_a_missing_file_says_so(census_path: Path) -> None:
    with pytest.raises(CensusError, match="does not exist"):
        inspect_census(census_path)


def test_command_line_writes_a_census(census_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--employees", "250", "--seed", "5", "--path", str(census_path)]) == 0
    assert read_census_provenance(census_path)["seed"] == 5
    assert "250 census rows" in capsys.readouterr().out


def test_command_line_refuses_a_user_census(census_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_user_census(census_path)
    assert main(["--employees", "10", "--path", str(census_path)]) == 1
    assert "--force" in capsys.readouterr().err


# --- the contract --------------------------------------------------------------


def test_a_generated_census_meets_the_contract(census_path: Path) -> None:
    generate_census(census_path, 50)
    assert census_contract_problem(inspect_census(census_path)) is None


def test_the_contract_names_every_missing_column_and_wrong_type_with_an_example(census_path: Path) -> None:
    generate_census(census_path, 50)
    broken = census_path.with_name("broken.parquet")
    with memory_connection() as con:
        con.execute(
            f"COPY (SELECT * EXCLUDE (roth_contribution) REPLACE ("
            f"strftime(employee_hire_date, '%d/%m/%Y') AS employee_hire_date, "
            f"format('{{:,.2f}}', employee_gross_compensation) AS employee_gross_compensation) "
            f"FROM read_parquet('{census_path}')) TO '{broken}' (FORMAT parquet)"
        )
    error = census_contract_problem(inspect_census(broken))
    assert error is not None
    assert error.cause.startswith(f"census {broken}: lacks roth_contribution; ")
    assert re.search(r"employee_hire_date is VARCHAR \(e\.g\. '\d\d/\d\d/\d{4}'\) where DATE is needed", error.cause)
    assert "employee_gross_compensation is VARCHAR (e.g. '" in error.cause and "a number" in error.cause
    assert (
        "add roth_contribution" in error.fix
        and "ISO YYYY-MM-DD" in error.fix
        and "no thousands separators" in error.fix
    )
