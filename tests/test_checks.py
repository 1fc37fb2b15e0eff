"""Built-in checks on crafted DuckDB tables: each passes on clean data, fails with its severity and message on a
defect."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import duckdb
import pytest

from setup_tasks.config import ValidationSettings, load_settings
from setup_tasks.project.manifest import manifest_from_dict
from setup_tasks.store.database import Database
from setup_tasks.validation.catalog import custom_check, discover_builtin
from setup_tasks.validation.framework import REGISTRY, Environment
from setup_tasks.validation.project_view import ProjectView
from setup_tasks.validation.results import CheckResult

discover_builtin()

CLEAN_TABLES = {
    "stg_census_data": (
        "employee_id varchar, active boolean, employee_gross_compensation double, employee_birth_date date,"
        " employee_hire_date date, employee_termination_date date",
        [
            ("E01", True, 45000, "1990-03-01", "2015-01-10", None),
            ("E02", True, 52000, "1985-07-15", "2010-05-01", None),
            ("E03", True, 61000, "1995-11-30", "2020-02-01", None),
            ("E04", True, 70000, "1980-01-01", "2005-09-01", None),
            ("E05", True, 80000, "1978-06-12", "2012-03-15", None),
            ("E06", True, 90000, "1988-02-02", "2018-08-08", None),
            ("E07", True, 100000, "1975-12-24", "2001-04-01", None),
            ("E08", True, 120000, "1970-05-05", "1999-10-10", None),
            ("E09", True, 140000, "1982-09-09", "2008-07-07", None),
            ("E10", False, 55000, "1992-04-04", "2019-01-01", "2024-06-30"),
        ],
    ),
    "stg_census_duplicates_audit": (
        "employee_id varchar, duplicate_rank integer",
        [("E02", 1), ("E02", 2), ("E05", 1), ("E05", 2), ("E05", 3)],
    ),
    "stg_config_job_levels": (
        "level_id integer, min_compensation decimal(10,2), max_compensation decimal(10,2)",
        [(1, 40000, 75000), (2, 75000, 110000), (3, 110000, 160000)],
    ),
    "stg_scenario_meta": ("scenario_id varchar", [("default",), ("high_growth",)]),
    "stg_comp_levers": (
        "scenario_id varchar, fiscal_year integer, job_level integer",
        [(s, 2025, lvl) for s in ("default", "high_growth") for lvl in (1, 2, 3)],
    ),
    "stg_config_cola_by_year": ("year integer, cola_rate decimal(6,4)", [(y, 0.02) for y in range(2024, 2031)]),
}
AGE_BANDS = [("<25", 18, 25), ("25-44", 25, 45), ("45+", 45, 121)]
TENURE_BANDS = [("<2", 0, 2), ("2-9", 2, 10), ("10+", 10, 100)]
for _kind in ("promotion", "termination"):
    CLEAN_TABLES[f"stg_config_{_kind}_hazard_age_multipliers"] = (
        "age_band varchar, min_age integer, max_age integer, multiplier double",
        [(*band, 1.0) for band in AGE_BANDS],
    )
    CLEAN_TABLES[f"stg_config_{_kind}_hazard_tenure_multipliers"] = (
        "tenure_band varchar, min_tenure integer, max_tenure integer, multiplier double",
        [(*band, 1.0) for band in TENURE_BANDS],
    )


_TEMPLATE: list[Path] = []


def make_db(path: Path, tables: dict[str, tuple[str, list[tuple[Any, ...]]]] | None = None, sql: str = "") -> Path:
    """A database of ``tables`` (default: the clean PlanWise-shaped ones, copied from a template), then ``sql``."""
    if tables is None:
        if not _TEMPLATE:
            _TEMPLATE.append(make_db(Path(tempfile.mkdtemp()) / "clean.duckdb", CLEAN_TABLES))
        shutil.copyfile(_TEMPLATE[0], path)
    con = duckdb.connect(str(path))
    try:
        for name, (columns, rows) in (tables or {}).items():
            con.execute(f'create table "{name}" ({columns})')
            if rows:
                marks = ", ".join("?" for _ in rows[0])
                con.executemany(f'insert into "{name}" values ({marks})', rows)
        if sql:
            con.execute(sql)
    finally:
        con.close()
    return path


def settings(tmp_path: Path, text: str = "") -> ValidationSettings:
    config = tmp_path / "setup.yaml"
    default = "" if "min_baseline_workforce_count" in text else "  min_baseline_workforce_count: 5\n"
    config.write_text("validation:\n" + default + text)
    return load_settings(config, root=tmp_path, environ={}).validation


def run(name: str, validation: ValidationSettings, db: Path, project: ProjectView | None = None) -> CheckResult:
    check = REGISTRY.get(name)
    assert check is not None, name
    [result] = check.run(Environment(validation, Database(db), project))
    return result


SQL_CHECKS = [
    c.name
    for c in REGISTRY.checks()
    if c.group in ("baseline_workforce", "census_data_quality", "configuration_consistency")
]


@pytest.fixture
def clean(tmp_path: Path) -> Path:
    return make_db(tmp_path / "clean.duckdb")


@pytest.mark.parametrize("name", SQL_CHECKS)
def test_every_sql_check_passes_on_clean_data(name: str, clean: Path, tmp_path: Path) -> None:
    result = run(name, settings(tmp_path), clean)
    assert result.status == "passed", result.one_line()
    assert result.severity == REGISTRY.get(name).severity


def test_duplicate_employee_fails_as_error_and_counts_raw_duplicates(tmp_path: Path) -> None:
    db = make_db(
        tmp_path / "d.duckdb", sql="insert into stg_census_data select * from stg_census_data where employee_id = 'E03'"
    )
    result = run("census_data_quality.duplicate_ids", settings(tmp_path), db)
    assert (result.status, result.severity) == ("failed", "error")
    assert result.message == "1 employee id occurring more than once in stg_census_data"
    assert result.details["sample"] == [{"employee_id": "E03", "records": 2}]
    assert result.details["raw_duplicate_ids"] == 2 and result.details["resolved_by_staging"] == 3
    assert "de-duplication" in result.guidance


def test_raw_duplicates_resolved_by_staging_pass_with_the_count(clean: Path, tmp_path: Path) -> None:
    result = run("census_data_quality.duplicate_ids", settings(tmp_path), clean)
    assert result.passed
    assert "staging resolved 2 duplicate ids of the raw census (3 records dropped)" in result.message


def test_orphan_job_level_in_comp_levers(tmp_path: Path) -> None:
    db = make_db(
        tmp_path / "d.duckdb", sql="insert into stg_comp_levers values ('default', 2025, 9), ('ghost', 2025, 1)"
    )
    result = run("configuration_consistency.comp_lever_references", settings(tmp_path), db)
    assert (result.status, result.severity) == ("failed", "error")
    assert (
        result.message
        == "comp levers in stg_comp_levers refer to undefined scenario_id ghost (1 levers), job_level 9 (1 levers)"
    )
    assert result.details["unknown"] == {"scenario_id": {"ghost": 1}, "job_level": {"9": 1}}


def test_missing_cola_year(tmp_path: Path) -> None:
    db = make_db(tmp_path / "d.duckdb", sql="delete from stg_config_cola_by_year where year = 2027")
    result = run("configuration_consistency.cola_years", settings(tmp_path), db)
    assert (result.status, result.severity) == ("failed", "error")
    assert result.message == "no COLA rate in stg_config_cola_by_year for 2027 (simulation years 2025-2029)"
    assert "validation.simulation_start_year" in result.guidance
    assert result.details["missing_years"] == [2027]


def test_cola_years_follow_the_configured_simulation_years(clean: Path, tmp_path: Path) -> None:
    result = run(
        "configuration_consistency.cola_years",
        settings(tmp_path, "  simulation_start_year: 2029\n  simulation_end_year: 2032\n"),
        clean,
    )
    assert result.failed and result.details["missing_years"] == [2031, 2032]


def test_negative_compensation(tmp_path: Path) -> None:
    db = make_db(
        tmp_path / "d.duckdb",
        sql="update stg_census_data set employee_gross_compensation = -500 where employee_id = 'E04'",
    )
    result = run("baseline_workforce.compensation", settings(tmp_path), db)
    assert (result.status, result.severity) == ("failed", "error")
    assert result.message == "1 active employee without a positive compensation"
    assert result.details["sample"] == [{"employee_id": "E04", "compensation": -500.0}]
    assert "census.path" in result.guidance


def test_gap_between_job_level_bands(tmp_path: Path) -> None:
    db = make_db(
        tmp_path / "d.duckdb", sql="update stg_config_job_levels set max_compensation = 105000 where level_id = 2"
    )
    result = run("configuration_consistency.job_level_bands", settings(tmp_path), db)
    assert (result.status, result.severity) == ("failed", "error")
    assert (
        result.message
        == "job-level bands in stg_config_job_levels: gap between level 2 (up to 105,000) and level 3 (from 110,000)"
    )


def test_overlapping_and_inverted_job_level_bands(tmp_path: Path) -> None:
    db = make_db(
        tmp_path / "d.duckdb",
        sql="update stg_config_job_levels set max_compensation = 120000 where level_id = 2;"
        "insert into stg_config_job_levels values (4, 200000, 150000)",
    )
    problems = run("configuration_consistency.job_level_bands", settings(tmp_path), db).details["problems"]
    assert "level 2 (up to 120,000) overlaps level 3 (from 110,000)" in problems
    assert "level 4 is empty or inverted (200,000 to 150,000)" in problems


def test_headcount_below_minimum_is_critical_and_names_the_setting(clean: Path, tmp_path: Path) -> None:
    result = run("baseline_workforce.headcount", settings(tmp_path, "  min_baseline_workforce_count: 1000\n"), clean)
    assert (result.status, result.severity) == ("failed", "critical")
    assert result.message == "9 active employees in stg_census_data, fewer than the minimum 1,000"
    assert "validation.min_baseline_workforce_count" in result.guidance
    assert result.details == {"active_employees": 9, "census_rows": 10, "minimum": 1000}


def test_suspicious_compensation_is_a_warning(clean: Path, tmp_path: Path) -> None:
    validation = settings(tmp_path, "  min_reasonable_compensation: 50000\n  max_reasonable_compensation: 130000\n")
    result = run("baseline_workforce.compensation_range", validation, clean)
    assert (result.status, result.severity) == ("failed", "warning")
    assert result.message == (
        "suspicious active compensation: 1 below 50,000 (lowest 45,000); 1 above 130,000 (highest 140,000)"
    )


def test_census_quality_defects_are_reported(tmp_path: Path) -> None:
    db = make_db(
        tmp_path / "d.duckdb",
        sql=(
            "update stg_census_data set employee_hire_date = date '2025-01-01' where employee_id = 'E10';"
            "update stg_census_data set employee_birth_date = date '2015-01-01' where employee_id = 'E01';"
            "update stg_census_data set employee_birth_date = null where employee_id = 'E02'"
        ),
    )
    validation = settings(tmp_path)
    late = run("census_data_quality.hire_after_termination", validation, db)
    assert (late.status, late.severity, late.message) == (
        "failed",
        "warning",
        "1 employee hired after their termination date",
    )
    young = run("census_data_quality.implausible_ages", validation, db)
    assert (young.status, young.severity) == ("failed", "warning")
    assert young.message == "1 employee aged outside 16-80 on 1 January 2025"
    assert young.details["sample"][0]["age"] == 10
    nulls = run("census_data_quality.required_nulls", validation, db)
    assert (nulls.status, nulls.severity) == ("failed", "error")
    assert nulls.message == "nulls in required census columns: employee_birth_date (1)"


def test_compensation_outlier_within_its_job_level(tmp_path: Path) -> None:
    rows = [(f"X{i:02}", True, 60000 + i, "1990-01-01", "2015-01-01", None) for i in range(30)]
    rows.append(("X99", True, 74999, "1990-01-01", "2015-01-01", None))
    tables = dict(CLEAN_TABLES, stg_census_data=(CLEAN_TABLES["stg_census_data"][0], rows))
    db = make_db(tmp_path / "d.duckdb", tables)
    result = run(
        "census_data_quality.compensation_outliers", settings(tmp_path, "  compensation_outlier_zscore: 3\n"), db
    )
    assert (result.status, result.severity) == ("failed", "warning")
    assert result.details["sample"][0]["employee_id"] == "X99"
    assert result.details["grouped_by"] == "job level (stg_config_job_levels bands)"


def test_active_pay_outside_every_band(tmp_path: Path) -> None:
    db = make_db(
        tmp_path / "d.duckdb",
        sql="update stg_census_data set employee_gross_compensation = 500000 where employee_id = 'E09'",
    )
    result = run("configuration_consistency.active_pay_in_job_level", settings(tmp_path), db)
    assert (result.status, result.severity) == ("failed", "error")
    assert result.message == "1 active employee paid outside every job level band of stg_config_job_levels"


def test_hazard_band_gap_mismatch_and_uncovered_employees(tmp_path: Path) -> None:
    db = make_db(
        tmp_path / "d.duckdb",
        sql=(
            "update stg_config_termination_hazard_age_multipliers set min_age = 26 where age_band = '25-44';"
            "delete from stg_config_promotion_hazard_tenure_multipliers where tenure_band = '10+'"
        ),
    )
    result = run("configuration_consistency.hazard_bands", settings(tmp_path), db)
    assert (result.status, result.severity) == ("failed", "error")
    problems = result.details["problems"]
    assert "stg_config_termination_hazard_age_multipliers: gap between <25 (up to 25) and 25-44 (from 26)" in problems
    assert (
        "stg_config_promotion_hazard_age_multipliers and stg_config_termination_hazard_age_multipliers "
        "define different age bands"
    ) in problems
    assert "stg_config_promotion_hazard_tenure_multipliers: 6 active employees' tenure in no band" in problems


# -- other projects: names from config, absent tables and columns skip ---------------------------


def test_missing_table_is_skipped_with_the_setting_to_change(tmp_path: Path) -> None:
    db = make_db(tmp_path / "d.duckdb", sql="drop table stg_config_cola_by_year")
    result = run("configuration_consistency.cola_years", settings(tmp_path), db)
    assert result.status == "skipped"
    assert result.message == "table stg_config_cola_by_year (validation.tables.cola) is not in the database"


def test_missing_column_is_skipped_with_the_setting_to_change(tmp_path: Path) -> None:
    db = make_db(tmp_path / "d.duckdb", sql="alter table stg_census_data rename column active to is_active")
    result = run("baseline_workforce.headcount", settings(tmp_path), db)
    assert result.status == "skipped"
    assert result.message == "column active (validation.columns.census.active) is not in table stg_census_data"


def test_renamed_tables_and_columns_come_from_config(tmp_path: Path) -> None:
    db = make_db(
        tmp_path / "d.duckdb",
        sql=(
            "create schema hr; create table hr.people as select employee_id as emp, active as is_active,"
            " employee_gross_compensation as pay from stg_census_data; drop table stg_census_data"
        ),
    )
    validation = settings(
        tmp_path,
        "  tables: {census: hr.people}\n"
        "  columns: {census: {employee_id: emp, active: is_active, compensation: pay}}\n",
    )
    assert run("baseline_workforce.headcount", validation, db).passed
    assert run("baseline_workforce.compensation", validation, db).passed
    hired = run("census_data_quality.hire_after_termination", validation, db)
    assert hired.status == "skipped" and "validation.columns.census.hire_date" in hired.message


def test_partly_absent_inputs_are_checked_and_noted(tmp_path: Path) -> None:
    db = make_db(
        tmp_path / "d.duckdb",
        sql="drop table stg_scenario_meta; drop table stg_config_promotion_hazard_age_multipliers",
    )
    validation = settings(tmp_path)
    levers = run("configuration_consistency.comp_lever_references", validation, db)
    assert levers.passed and levers.details["not_checked"] == ["scenario_id"]
    bands = run("configuration_consistency.hazard_bands", validation, db)
    assert bands.passed and bands.details["not_checked"] == ["stg_config_promotion_hazard_age_multipliers"]


def test_a_column_of_the_wrong_type_fails_pointing_at_the_settings(tmp_path: Path) -> None:
    db = make_db(
        tmp_path / "d.duckdb",
        sql="alter table stg_census_data alter active type varchar;update stg_census_data set active = 'maybe'",
    )
    result = run("baseline_workforce.headcount", settings(tmp_path), db)
    assert (result.status, result.severity, result.incomplete) == ("failed", "critical", True)
    assert result.message.startswith("could not run: query failed: Conversion Error")
    assert "validation.columns" in result.guidance


def test_no_database_fails_with_the_fix(tmp_path: Path) -> None:
    result = run("baseline_workforce.headcount", settings(tmp_path), tmp_path / "none.duckdb")
    assert (result.status, result.severity) == ("failed", "critical")
    assert result.message.startswith("could not run: database") and "doit setup" in result.guidance


# -- custom SQL checks ---------------------------------------------------------------------------


def test_failing_custom_sql_check(clean: Path, tmp_path: Path) -> None:
    check = custom_check(
        0,
        "no_low_earners",
        "select employee_id from stg_census_data where employee_gross_compensation < 60000;",
        "warning",
        "pay under 60k",
    )
    [result] = check.run(Environment(settings(tmp_path), Database(clean)))
    assert (result.name, result.status, result.severity) == ("no_low_earners", "failed", "warning")
    assert result.message == "3 offending rows (pay under 60k)"
    assert result.details["offending_rows"] == 3
    assert "validation.custom_checks[0]" in result.guidance
    assert check.reads == ("stg_census_data",)


def test_passing_custom_sql_check(clean: Path, tmp_path: Path) -> None:
    check = custom_check(
        1,
        "positive_pay",
        "with c as (select * from stg_census_data) select * from c where employee_gross_compensation <= 0",
        "error",
        "",
    )
    [result] = check.run(Environment(settings(tmp_path), Database(clean)))
    assert result.passed and result.message == "no offending rows"


def test_custom_sql_that_does_not_run_fails_with_the_key_to_fix(clean: Path, tmp_path: Path) -> None:
    check = custom_check(2, "typo", "select * from stg_cnesus_data", "critical", "")
    [result] = check.run(Environment(settings(tmp_path), Database(clean)))
    assert (result.status, result.severity) == ("failed", "critical")
    assert "stg_cnesus_data does not exist" in result.message
    assert result.guidance == "fix the SQL of validation.custom_checks[2].sql"


# -- seeds and models, with a hand-made project ----------------------------------------------------


def project(tmp_path: Path, seeds: dict[str, str], models: list[str]) -> ProjectView:
    (tmp_path / "proj" / "seeds").mkdir(parents=True, exist_ok=True)
    nodes: dict[str, Any] = {}
    for name, text in seeds.items():
        (tmp_path / "proj" / "seeds" / f"{name}.csv").write_text(text)
        nodes[f"seed.p.{name}"] = {
            "unique_id": f"seed.p.{name}",
            "resource_type": "seed",
            "name": name,
            "original_file_path": f"seeds/{name}.csv",
            "schema": "main",
            "config": {},
        }
    for name in models:
        nodes[f"model.p.{name}"] = {
            "unique_id": f"model.p.{name}",
            "resource_type": "model",
            "name": name,
            "schema": "main",
            "config": {"materialized": "table"},
        }
    manifest = manifest_from_dict({"nodes": nodes})
    return ProjectView(tmp_path / "proj", manifest.nodes, tuple(nodes))


SEEDS = {"levels": 'id,label\n1,"multi\nline"\n2,b\n', "cola": "year,rate\n2025,0.02\n2026,0.02\n\n"}


def test_seed_integrity_passes_when_tables_match_their_csv(tmp_path: Path) -> None:
    db = make_db(
        tmp_path / "s.duckdb",
        {
            "levels": ("id integer, label varchar", [(1, "multi\nline"), (2, "b")]),
            "cola": ("year integer, rate double", [(2025, 0.02), (2026, 0.02)]),
        },
    )
    proj, validation = project(tmp_path, SEEDS, []), settings(tmp_path)
    for name in ("present", "row_counts", "null_columns"):
        assert run(f"seed_data_integrity.{name}", validation, db, proj).passed, name


def test_seed_integrity_defects(tmp_path: Path) -> None:
    db = make_db(tmp_path / "s.duckdb", {"levels": ("id integer, label varchar", [(1, None)])})
    proj = project(tmp_path, SEEDS, [])
    validation = settings(tmp_path)
    present = run("seed_data_integrity.present", validation, db, proj)
    assert (present.status, present.severity, present.message) == (
        "failed",
        "critical",
        "1 of 2 required seed tables missing: cola",
    )
    counts = run("seed_data_integrity.row_counts", validation, db, proj)
    assert (counts.status, counts.severity) == ("failed", "error")
    assert counts.message == "seed row counts differ from their CSV files: levels has 1 row, seeds/levels.csv has 2"
    nulls = run("seed_data_integrity.null_columns", validation, db, proj)
    assert (nulls.status, nulls.severity, nulls.message) == (
        "failed",
        "warning",
        "1 seed columns entirely null: levels.label",
    )


def test_required_seed_tables_from_config(tmp_path: Path) -> None:
    db = make_db(tmp_path / "s.duckdb", {"cola": ("year integer, rate double", [(2025, 0.02), (2026, 0.02)])})
    proj = project(tmp_path, SEEDS, [])
    assert run("seed_data_integrity.present", settings(tmp_path, "  required_seed_tables: [cola]\n"), db, proj).passed


def test_staging_models_materialized_and_non_empty(tmp_path: Path) -> None:
    db = make_db(tmp_path / "m.duckdb", {"stg_a": ("x integer", [(1,)]), "stg_audit": ("x integer", [])})
    proj = project(tmp_path, {}, ["stg_a", "stg_audit", "stg_b"])
    validation = settings(tmp_path, "  allow_empty_models: []\n")
    missing = run("staging_models.materialized", validation, db, proj)
    assert (missing.status, missing.severity, missing.message) == (
        "failed",
        "critical",
        "1 of 3 selected models not in the database: stg_b",
    )
    empty = run("staging_models.non_empty", validation, db, proj)
    assert (empty.status, empty.severity, empty.message) == ("failed", "error", "1 models have no rows: stg_audit")
    assert run("staging_models.non_empty", settings(tmp_path, "  allow_empty_models: [stg_audit]\n"), db, proj).passed


def test_project_checks_skip_without_a_project(clean: Path, tmp_path: Path) -> None:
    result = run("staging_models.materialized", settings(tmp_path), clean)
    assert result.status == "skipped" and "no models selected" in result.message


# ---------------------------------------------------------------- issue 25: a project without seeds, a list cut short


@pytest.mark.parametrize(
    "name", ["seed_data_integrity.present", "seed_data_integrity.row_counts", "seed_data_integrity.null_columns"]
)
def test_seed_checks_skip_a_project_without_seeds_even_before_its_database_exists(name: str, tmp_path: Path) -> None:
    """Issue 25: 'fail (critical): could not run: database ... does not exist' on a project with no seeds."""
    from factories import make_manifest, manifest_node

    nodes = manifest_from_dict(make_manifest(manifest_node("model.p.returns"))).nodes
    result = run(
        name, settings(tmp_path), tmp_path / "not_built_yet.duckdb", ProjectView(tmp_path, nodes, ("model.p.returns",))
    )
    assert result.status == "skipped", result.one_line()
    assert "no seeds" in result.message


def test_a_message_cut_short_shows_every_item_where_samples_show(tmp_path: Path) -> None:
    """Issue 25: a message ending 'and 1 more' must show that item somewhere: -v 2 and `doit info` show the
    result's sample line (``CheckResult.sample_line``)."""
    from factories import make_manifest, manifest_node

    names = ["stg_a", "stg_b", "stg_c", "stg_d"]
    nodes = manifest_from_dict(make_manifest(*(manifest_node(f"model.p.{n}") for n in names))).nodes
    project = ProjectView(tmp_path, nodes, tuple(f"model.p.{n}" for n in names))
    result = run("staging_models.materialized", settings(tmp_path), make_db(tmp_path / "d.duckdb", {}), project)
    assert result.failed and result.message.endswith("and 1 more"), result.message
    assert all(n in result.sample_line() for n in names), result.sample_line()
    assert CheckResult.from_dict(result.as_dict()).sample_line() == result.sample_line()  # what doit info reads back


# ----------------------------------------------------- issue 21: checks over many tables read the changed ones


class _Fingerprint:
    def __init__(self, digest: str) -> None:
        self.digest = digest


class _Records:
    def get(self, uid: str) -> None:
        return None


class _Engine:
    """What a check's per-table memo asks of the engine: each node's fingerprint, its build record."""

    def __init__(self, digests: dict[str, str]) -> None:
        self.digests = digests
        self.records = _Records()

    def fingerprints(self) -> dict[str, _Fingerprint]:
        return {uid: _Fingerprint(d) for uid, d in self.digests.items()}


@pytest.mark.parametrize(
    "name", ["staging_models.non_empty", "seed_data_integrity.row_counts", "seed_data_integrity.null_columns"]
)
def test_a_check_over_many_tables_reads_again_only_the_tables_that_changed(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 21: one seed edited in a project of 1,000 models re-ran every model's count. A check keeps what
    it measured of each table with the table's state; its next run reads only the tables whose state moved,
    and its verdict still covers every table (a changed table's new defect is found)."""
    from setup_tasks.store.database import Reader

    tables = {f"t{i}": ("id integer, v integer", [(1, 1)]) for i in range(20)}
    db = make_db(tmp_path / "many.duckdb", tables)
    seeds = {name_: "id,v\n1,1\n" for name_ in tables} if name.startswith("seed") else {}
    proj = project(tmp_path, seeds, [] if seeds else list(tables))
    check = REGISTRY.get(name)
    assert check is not None
    digests = {uid: "d1" for uid in proj.setup_nodes}
    queried: list[str] = []
    real_query = Reader.query

    def counting(self: Reader, sql: str, params: Any = None) -> Any:
        queried.append(sql)
        return real_query(self, sql, params)

    monkeypatch.setattr(Reader, "query", counting)
    validation = settings(tmp_path)
    first = Environment(validation, Database(db), proj, _Engine(digests))  # type: ignore[arg-type]
    [result] = check.run(first)
    assert result.passed and len(first.tables) == 20
    assert len(queried) == (1 if name == "staging_models.non_empty" else 20)  # counts: one query for all

    first.db.close_reader()
    changed = proj.setup_nodes[3]
    table = proj.nodes[changed].name
    edit = f"delete from {table}" + (f"; insert into {table} values (1, null)" if seeds else "")  # a defect
    duckdb.connect(str(db)).execute(edit).close()
    if seeds:
        (tmp_path / "proj" / "seeds" / f"{table}.csv").write_text("id,v\n1,\n2,\n")
    queried.clear()
    again = Environment(
        validation,
        Database(db),
        proj,
        _Engine({**digests, changed: "d2"}),  # type: ignore[arg-type]
        previous={"tables": first.tables},
    )
    [result] = check.run(again)
    assert len(queried) == 1 and f'"{table}"' in queried[0] and queried[0].upper().count(" FROM ") == 1, queried
    assert not result.passed and table in result.message, result.message
    assert again.tables.keys() == first.tables.keys()
