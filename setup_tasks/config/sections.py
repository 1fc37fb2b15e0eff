"""The typed settings classes, one per section of the configuration schema: generated from it.

Do not edit: after changing setup_config.schema.json, run
`python -m setup_tasks.config --write-classes` (tests/test_config.py fails while this
file and the schema differ). Each class is a frozen, slotted dataclass whose fields are its keys in
schema order; methods come from its base in behaviour.py.
"""

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .behaviour import (
    DbtBehaviour,
    ReportBehaviour,
    SettingsBehaviour,
    SetupBehaviour,
    ValidationBehaviour,
)


@dataclasses.dataclass(frozen=True, slots=True)
class DatabaseSettings:
    """The DuckDB warehouse file the setup builds."""

    path: Path | None
    """Path of the DuckDB database file; null means the file dbt's profile writes to (setup reads
    it from dbt). When set, setup passes it to dbt as DUCKDB_PATH and stops if the profile writes
    another file."""
    threads: int | None
    """DuckDB worker threads; null lets DuckDB choose (one per core)."""
    memory_limit: str | None
    """DuckDB memory limit such as 4GB or 512MiB; null keeps DuckDB's default (80% of RAM)."""


@dataclasses.dataclass(frozen=True, slots=True)
class DbtSettings(DbtBehaviour):
    """The dbt project that defines the seeds and models."""

    project_dir: Path | None
    """Directory holding dbt_project.yml; null means the root (the folder of dodo.py) when it
    holds dbt_project.yml, else its dbt/ folder."""
    profiles_dir: Path | None
    """Directory holding profiles.yml; null means the first of these that holds one, as dbt
    looks: the folder dbt runs in (of setup.yaml, else of dodo.py), the project directory,
    ~/.dbt. A profile found in none names every place looked in."""
    target: str | None
    """dbt target (profile output) to use; null uses the profile's default target."""
    threads: int | None
    """dbt threads; null uses the profile's setting."""
    vars: Mapping[str, Any]
    """Variables passed to dbt as --vars (free-form mapping with string keys)."""
    setup_selection: str
    """dbt selection syntax for the nodes the setup builds."""
    foundation_selection: str
    """dbt selection syntax for the foundation models the simulation cannot start without."""
    worker_idle_seconds: int
    """Keep a warm dbt process for this many idle seconds between runs, so a rebuild skips dbt's
    start-up (about 4 s); 0 runs dbt inside each doit process. Environment:
    PLANWISE_SETUP_WORKER=0 turns it off."""


@dataclasses.dataclass(frozen=True, slots=True)
class SetupOptions(SetupBehaviour):
    """Which setup steps run and how."""

    clear_tables: bool
    """When a setup run rebuilt any input, drop the tables matching clear_table_patterns that
    setup does not build (simulation output derived from the old inputs). `doit clear` drops
    every match, but a table another dbt project sharing the database built last."""
    clear_table_patterns: tuple[str, ...]
    """Tables `doit clear` (and clear_tables) drop: a name prefix, or a glob if it contains * ?
    or [."""
    load_seeds: bool
    """Load the dbt seeds (CSV configuration tables)."""
    run_staging_models: bool
    """Build the staging models."""
    validate_results: bool
    """Run the validation checks after building."""
    fail_fast: bool
    """After a failed node, start no further dbt run (the current one still builds what does not
    depend on it); false (or doit --continue) builds everything that does not depend on a
    failure. Validations always all run."""


@dataclasses.dataclass(frozen=True, slots=True)
class CustomCheck:
    """A user-defined validation: SQL selecting the offending rows; zero rows passes."""

    name: str
    """Unique check name: lower case letters, digits and underscores, starting with a letter."""
    description: str
    """What the check guards against, shown in the report."""
    severity: str
    """Severity when the query returns rows: critical, error, warning or info."""
    sql: str
    """SQL selecting the offending rows; must not be blank."""


@dataclasses.dataclass(frozen=True, slots=True)
class ValidationSettings(ValidationBehaviour):
    """The checks that decide whether the warehouse is simulation-ready."""

    fail_on: tuple[str, ...]
    """Severities that fail the setup; checks of other severities are only reported."""
    min_baseline_workforce_count: int
    """Fewest active employees the baseline census may have."""
    required_seed_tables: tuple[str, ...] | None
    """Seed tables that must exist and be non-empty; null means every seed in setup_selection."""
    min_reasonable_compensation: float
    """Annual compensation below this is flagged as unreasonable."""
    max_reasonable_compensation: float
    """Annual compensation above this is flagged as unreasonable."""
    min_employee_age: int
    """Employees younger than this are flagged."""
    max_employee_age: int
    """Employees older than this are flagged."""
    compensation_outlier_zscore: float
    """Compensation further than this many standard deviations from its job level's mean is an
    outlier."""
    simulation_start_year: int
    """First simulated year; configuration tables must cover it."""
    simulation_end_year: int
    """Last simulated year (not before simulation_start_year); configuration tables must cover
    it."""
    tables: Mapping[str, str]
    """Which table each check reads; set only the names you change, the rest keep their defaults."""
    columns: Mapping[str, Mapping[str, str]]
    """Which column each check reads, by table; set only the names you change, the rest keep
    their defaults."""
    custom_checks: tuple[CustomCheck, ...]
    """Extra checks: each is a SQL query selecting the offending rows (zero rows passes)."""
    census_required_columns: tuple[str, ...]
    """Census columns that must have no nulls; those absent from the census table are reported,
    not checked."""
    allow_empty_models: tuple[str, ...]
    """Models that may legitimately have no rows; every other selected model must have some."""
    run_dbt_tests: bool
    """Run the dbt project's own tests on the selected nodes as the check validate:dbt_tests."""
    disabled_checks: tuple[str, ...]
    """Checks not to run at all, by name (configuration_consistency.hazard_bands) or by area
    (census_data_quality): for a project that lacks their tables, instead of one skip per check."""
    check_modules: tuple[str, ...]
    """Python modules imported when tasks are defined; each function they register with
    @register_check becomes a validate:<name> task."""


@dataclasses.dataclass(frozen=True, slots=True)
class CensusSettings:
    """The baseline census file and the synthetic generator that can create it."""

    path: Path
    """Path of the census Parquet file. Set here (or by CENSUS_PATH), setup passes it to dbt as
    the census_parquet_path var; unset, a project whose dbt_project.yml sets that var keeps its
    own value (setup never overrides it) and its file, relative to where dbt runs, is the census."""
    generate: bool
    """Generate a synthetic census when the file is missing."""
    employees: int
    """Number of employees in a generated census; ids (EMP_ and 8 digits) and SSNs stay unique
    below 10^8."""
    seed: int
    """Random seed of the generator; the same seed gives the same file."""
    duplicate_id_rate: float
    """Share of generated rows that repeat an employee id (exercises the duplicate audit); at
    most half, as duplicates are drawn on odd rows only."""
    missing_ssn_rate: float
    """Share of generated rows without an SSN."""
    hire_after_termination_rate: float
    """Share of generated rows whose hire date is after their termination date."""


@dataclasses.dataclass(frozen=True, slots=True)
class ReportSettings(ReportBehaviour):
    """Where each run writes its report."""

    path: Path | None
    """JSON report of the latest run; null means the database path with its suffix replaced by
    .setup_report.json."""
    history_path: Path | None
    """JSON Lines history of all runs; null means the database path with its suffix replaced by
    .setup_history.jsonl."""


@dataclasses.dataclass(frozen=True, slots=True)
class Settings(SettingsBehaviour):
    """The effective setup configuration: file, environment and defaults merged."""

    root: Path
    """The folder of dodo.py: relative paths from the environment and defaults resolve against
    it."""
    source: Path | None
    """The configuration file read; None when there was none (all defaults)."""
    database: DatabaseSettings
    """The DuckDB warehouse file the setup builds."""
    dbt: DbtSettings
    """The dbt project that defines the seeds and models."""
    setup: SetupOptions
    """Which setup steps run and how."""
    validation: ValidationSettings
    """The checks that decide whether the warehouse is simulation-ready."""
    census: CensusSettings
    """The baseline census file and the synthetic generator that can create it."""
    report: ReportSettings
    """Where each run writes its report."""
    explicit: tuple[str, ...] = ()
    """The dotted keys the file or the environment set to a value (a default is not the user's
    choice)."""
