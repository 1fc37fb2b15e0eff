"""The census contract: synthetic census generation, its provenance, and inspection of census files.

The generator writes one parquet file with a single streaming DuckDB
``COPY (SELECT ... FROM range(n))``: every pseudo-random draw is a hash of the
row number and a (seed, salt) offset, so the same parameters give the same
content on any number of threads. The parameters are stored in the file's
key-value metadata under ``planwise_census``; a file without them is the
user's and is never overwritten unless forced.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..config.schema import default_of, limits
from ..errors import CensusError, Problem
from ..files import sweep_temps, temp_path
from ..store.database import duckdb, memory_connection  # duckdb (lazy) only for duckdb.Error

GENERATOR_VERSION = 1
PROVENANCE_KEY = "planwise_census"

# These mirror the vars in dbt/dbt_project.yml that stg_census_data reads.
DEFAULT_PLAN_YEAR = 2024  # var plan_year
IRS_COMPENSATION_LIMIT = 345_000  # var irs_compensation_limit (401(a)(17), 2024)
IRS_DEFERRAL_LIMIT = 23_000  # 402(g) elective deferral limit, 2024

TERMINATION_RATE = 0.12  # share of records that leave during the plan year
MEAN_TENURE_YEARS = 6.0
PARTICIPATION_RATE = 0.82
CORE_CONTRIBUTION_RATE = 0.02
# Deferral rates elected by participants, with their shares (sum to 1).
DEFERRAL_RATE_SHARES = (
    (0.01, 0.05),
    (0.02, 0.05),
    (0.03, 0.15),
    (0.04, 0.10),
    (0.05, 0.15),
    (0.06, 0.20),
    (0.08, 0.10),
    (0.10, 0.10),
    (0.12, 0.05),
    (0.15, 0.05),
)

REQUIRED_CENSUS_COLUMNS: tuple[str, ...] = (
    "employee_id",
    "employee_ssn",
    "employee_birth_date",
    "employee_hire_date",
    "employee_termination_date",
    "employee_gross_compensation",
    "employee_plan_year_compensation",
    "active",
    "employee_deferral_rate",
    "employee_contribution",
    "pre_tax_contribution",
    "roth_contribution",
    "after_tax_contribution",
    "employer_core_contribution",
    "employer_match_contribution",
)


# The type each required column must have, by family (DuckDB type names): stg_census_data uses them as they are.
TEXT, DATE, NUMBER, BOOLEAN = "text", "DATE", "number", "BOOLEAN"
CENSUS_COLUMN_TYPES: Mapping[str, str] = {
    "employee_id": TEXT,
    "employee_ssn": TEXT,
    "employee_birth_date": DATE,
    "employee_hire_date": DATE,
    "employee_termination_date": DATE,
    "active": BOOLEAN,
    **{name: NUMBER for name in REQUIRED_CENSUS_COLUMNS if name.endswith(("compensation", "contribution", "rate"))},
}
TYPE_FAMILIES: Mapping[str, tuple[str, ...]] = {
    TEXT: ("VARCHAR",),
    DATE: ("DATE",),
    NUMBER: (
        "DOUBLE",
        "FLOAT",
        "REAL",
        "DECIMAL",
        "INTEGER",
        "BIGINT",
        "SMALLINT",
        "TINYINT",
        "HUGEINT",
        "UBIGINT",
        "UINTEGER",
        "USMALLINT",
        "UTINYINT",
    ),
    BOOLEAN: ("BOOLEAN",),
}
TYPE_FIXES: Mapping[str, str] = {
    TEXT: "text",
    DATE: "dates (parquet DATE; from text, ISO YYYY-MM-DD)",
    NUMBER: "numbers (DOUBLE or DECIMAL, no thousands separators or currency signs)",
    BOOLEAN: "true/false (parquet BOOLEAN)",
}


@dataclass(frozen=True)
class CensusDefects:
    """Share of records carrying each defect real HR extracts have (defaults and limits: the census.* keys)."""

    duplicate_id_rate: float = default_of("census.duplicate_id_rate")
    missing_ssn_rate: float = default_of("census.missing_ssn_rate")
    hire_after_termination_rate: float = default_of("census.hire_after_termination_rate")

    def __post_init__(self) -> None:
        for name, rate in asdict(self).items():
            bounds = limits(f"census.{name}")
            if not bounds.allows(rate):
                raise CensusError(
                    f"census defect rate {name}={rate} is outside {bounds}", "use a fraction such as 0.002"
                )


@dataclass(frozen=True)
class JobLevelBand:
    """One job level's pay band [min_compensation, max_compensation) and its headcount share."""

    level_id: int
    min_compensation: float
    max_compensation: float
    target_distribution: float


# Equal to dbt/seeds/config_job_levels.csv.
DEFAULT_JOB_LEVEL_BANDS: tuple[JobLevelBand, ...] = (
    JobLevelBand(1, 40_000.0, 75_000.0, 0.40),
    JobLevelBand(2, 75_000.0, 110_000.0, 0.28),
    JobLevelBand(3, 110_000.0, 160_000.0, 0.18),
    JobLevelBand(4, 160_000.0, 250_000.0, 0.10),
    JobLevelBand(5, 250_000.0, 450_000.0, 0.04),
)


@dataclass(frozen=True)
class CensusSummary:
    """What generate_census wrote."""

    path: Path
    rows: int
    provenance: dict[str, Any]
    seconds: float


@dataclass(frozen=True)
class CensusInfo:
    """What a census parquet file holds, compared with the staging contract."""

    path: Path
    rows: int
    columns: dict[str, str]  # column name -> DuckDB type
    missing_columns: tuple[str, ...]

    def wrong_types(self) -> dict[str, str]:
        """Required columns whose type is not what stg_census_data needs: column -> needed type family."""
        return {
            name: family
            for name, family in CENSUS_COLUMN_TYPES.items()
            if name in self.columns and not self.columns[name].upper().startswith(TYPE_FAMILIES[family])
        }


# --- job level bands -------------------------------------------------------


def load_job_level_bands(csv_path: Path | None = None) -> tuple[JobLevelBand, ...]:
    """Bands from a config_job_levels seed CSV, or the built-in demo bands."""
    if csv_path is None:
        return DEFAULT_JOB_LEVEL_BANDS
    try:
        with open(csv_path, newline="") as handle:
            bands = tuple(_band_from_row(row) for row in csv.DictReader(handle))
    except OSError as exc:
        raise CensusError(
            f"cannot read job levels {csv_path}: {exc.strerror}", "check the job levels CSV path"
        ) from None
    except (KeyError, TypeError, ValueError) as exc:
        raise CensusError(
            f"job levels {csv_path} lack a usable column ({exc})",
            "give level_id, min_compensation, max_compensation and target_distribution on every row",
        ) from None
    _check_bands(bands, csv_path)
    return tuple(sorted(bands, key=lambda band: band.min_compensation))


def _band_from_row(row: dict[str, str]) -> JobLevelBand:
    return JobLevelBand(
        level_id=int(row["level_id"]),
        min_compensation=float(row["min_compensation"]),
        max_compensation=float(row["max_compensation"]),
        target_distribution=float(row["target_distribution"]),
    )


def _check_bands(bands: tuple[JobLevelBand, ...], source: Path) -> None:
    if not bands:
        raise CensusError(f"job levels {source} has no rows", "add the levels 1-5 of the demo seed")
    narrow = [b.level_id for b in bands if b.max_compensation - b.min_compensation < 100]
    if narrow:
        raise CensusError(f"job levels {source}: levels {narrow} have bands under 100 wide", "widen their pay bands")
    if sum(b.target_distribution for b in bands) <= 0 or any(b.target_distribution < 0 for b in bands):
        raise CensusError(f"job levels {source}: target_distribution must be >= 0 and not all 0", "fix the shares")


# --- provenance ------------------------------------------------------------


def census_provenance(
    employees: int,
    seed: int,
    defects: CensusDefects,
    bands: Sequence[JobLevelBand],
    plan_year: int,
) -> dict[str, Any]:
    """The generator parameters that determine a census file's content."""
    return {
        "generator": "setup_tasks.census",  # a provenance label: files written before the move still match
        "generator_version": GENERATOR_VERSION,
        "employees": employees,
        "seed": seed,
        "plan_year": plan_year,
        "defects": asdict(defects),
        "job_levels": [asdict(band) for band in bands],
    }


def read_census_provenance(path: Path) -> dict[str, Any] | None:
    """The generator parameters stored in a census file; None when the file is
    missing, unreadable, or carries none (a user's own census)."""
    if not Path(path).is_file():
        return None
    try:
        with memory_connection() as con:
            rows = con.execute("SELECT key, value FROM parquet_kv_metadata(?)", [str(path)]).fetchall()
    except duckdb.Error:
        return None
    for key, value in rows:
        if key == PROVENANCE_KEY.encode():
            try:
                return json.loads(value)
            except ValueError:
                return None
    return None


def census_needs_generation(
    path: Path,
    employees: int,
    seed: int,
    defects: CensusDefects = CensusDefects(),
    job_levels_csv: Path | None = None,
    plan_year: int = DEFAULT_PLAN_YEAR,
    provenance: Callable[[Path], dict[str, Any] | None] | None = None,
) -> str | None:
    """Why the census at ``path`` must be (re)generated, or None when it is current.

    A user's own census (no provenance) never needs generation: it is used as is.
    ``provenance`` reads a file's provenance (default ``read_census_provenance``;
    the engine passes a cached one).
    """
    if not Path(path).exists():
        return "missing"
    stored = (provenance or read_census_provenance)(Path(path))
    if stored is None:
        return None
    wanted = census_provenance(employees, seed, defects, load_job_level_bands(job_levels_csv), plan_year)
    changes = _parameter_changes(stored, wanted)
    return "parameters changed: " + ", ".join(changes) if changes else None


def _parameter_changes(stored: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    changes, before = [], _flatten(stored)
    for key, new in _flatten(wanted).items():
        old = before.get(key)
        if old != new:
            changes.append(f"{key} changed" if key == "job_levels" else f"{key} {old} -> {new}")
    return changes


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


# --- generation ------------------------------------------------------------


def generate_census(
    path: Path,
    employees: int = default_of("census.employees"),
    seed: int = default_of("census.seed"),
    defects: CensusDefects = CensusDefects(),
    job_levels_csv: Path | None = None,
    *,
    plan_year: int = DEFAULT_PLAN_YEAR,
    force: bool = False,
) -> CensusSummary:
    """Write a deterministic synthetic census parquet to ``path`` (atomically).

    Refuses to replace a file the generator did not write unless ``force``.
    """
    path = Path(path)
    _check_generation_request(path, employees, seed, plan_year, force)
    bands = load_job_level_bands(job_levels_csv)
    provenance = census_provenance(employees, seed, defects, bands, plan_year)
    started = time.perf_counter()
    _write_atomically(path, census_select_sql(employees, seed, defects, bands, plan_year), provenance)
    return CensusSummary(path, employees, provenance, time.perf_counter() - started)


def _check_generation_request(path: Path, employees: int, seed: int, plan_year: int, force: bool) -> None:
    employee_limits, seed_limits = limits("census.employees"), limits("census.seed")
    if not employee_limits.allows(employees):
        raise CensusError(
            f"cannot generate a census of {employees} employees",
            f"ask for {employee_limits.minimum:,} to {employee_limits.maximum:,}",
        )
    if not seed_limits.allows(seed):
        raise CensusError(f"census seed {seed} is outside {seed_limits}", "use a smaller non-negative seed")
    if not 1950 <= plan_year <= 2100:
        raise CensusError(f"census plan year {plan_year} is outside 1950..2100", "use the year the census covers")
    if path.exists() and not force and read_census_provenance(path) is None:
        raise CensusError(
            f"{path} exists and was not written by the census generator (no '{PROVENANCE_KEY}' metadata); "
            "refusing to overwrite what looks like a user's census",
            "point the census path at another file, remove this one yourself, or pass force=True (--force)",
        )


def _write_atomically(path: Path, select_sql: str, provenance: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CensusError(
            f"cannot create census directory {path.parent}: {exc.strerror}", "choose a writable census path"
        ) from None
    sweep_temps(path.parent, path.name)  # of generations killed before they finished (kill -9)
    temporary = temp_path(path)
    # Paths and values are bound, never pasted into the SQL.
    copy = (
        f"COPY ({select_sql}) TO $path "
        f"(FORMAT parquet, COMPRESSION snappy, KV_METADATA {{{PROVENANCE_KEY}: $provenance}})"
    )
    try:
        with memory_connection() as con:
            con.execute("SET enable_progress_bar = false")
            con.execute(copy, {"path": str(temporary), "provenance": json.dumps(provenance, sort_keys=True)})
        os.replace(temporary, path)
    except (duckdb.Error, OSError) as exc:
        raise CensusError(
            f"cannot write census {path}: {exc}", "check free space and permissions of its directory"
        ) from None
    finally:
        temporary.unlink(missing_ok=True)


class _Draws:
    """SQL for reproducible pseudo-random draws: one uniform column per salt.

    ``random()`` is not reproducible across threads, and DuckDB's multi-argument
    ``hash(i, seed, salt)`` mixes its arguments so weakly that draws under two
    salts correlate (r = 0.88 measured). So each (seed, salt) becomes a 62-bit
    offset and a draw is ``hash(row + offset)``: one well-mixed 64-bit hash.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def _offset(self, salt: str) -> int:
        digest = hashlib.sha256(f"{self.seed}:{salt}".encode()).digest()
        return int.from_bytes(digest[:8], "big") >> 2

    def uniform(self, salt: str, index: str = "i") -> str:
        """A double in [0, 1): the top 53 bits of the hash over 2**53."""
        return f"((hash({index} + {self._offset(salt)}) >> 11) / 9007199254740992.0)"

    def below(self, modulus: str, salt: str, index: str = "i") -> str:
        """An integer in [0, modulus) for a positive integer SQL expression."""
        return f"CAST(hash({index} + {self._offset(salt)}) % CAST({modulus} AS UBIGINT) AS BIGINT)"


# Uniform draws per record, each a column u_<salt>; those keyed on the person
# repeat on a duplicate record, the others are the record's own.
_PERSON_DRAWS = ("age_a", "age_b")
_RECORD_DRAWS = (
    "level",
    "tenure",
    "pay_a",
    "pay_b",
    "participates",
    "deferral",
    "source",
    "terminated",
    "leave_day",
    "ssn_missing",
    "hire_after_termination",
    "days_before_hire",
)


def census_select_sql(
    employees: int,
    seed: int,
    defects: CensusDefects,
    bands: Sequence[JobLevelBand],
    plan_year: int,
) -> str:
    """The streaming SELECT producing the census rows, in REQUIRED_CENSUS_COLUMNS order.

    Each CTE adds a few columns to the previous one; DuckDB runs the chain as
    one pipeline over range(employees), chunk by chunk.
    """
    draws = _Draws(seed)
    steps = [
        ("spine", _spine_sql(draws, employees, defects)),
        ("draws", _draws_sql(draws)),
        ("people", _people_sql(bands, plan_year, seed)),
        ("spells", _spells_sql(bands, plan_year, defects)),
        ("pay", _pay_sql(plan_year)),
        ("contributions", _contributions_sql()),
    ]
    ctes = ",\n".join(f"{name} AS ({sql}\n)" for name, sql in steps)
    return f"WITH {ctes}\n{_census_columns_sql()}"


def _spine_sql(draws: _Draws, employees: int, defects: CensusDefects) -> str:
    # A duplicate is an odd row that reuses an earlier even row's person (a
    # rehire exported twice); even rows are never duplicates, so chains cannot form.
    return f"""
    SELECT
        i,
        CASE WHEN i % 2 = 1 AND {draws.uniform("duplicate")} < {2 * defects.duplicate_id_rate!r}
            THEN 2 * {draws.below("(i + 1) // 2", "duplicate_of")}
            ELSE i
        END AS person
    FROM range({employees}) AS t(i)"""


def _draws_sql(draws: _Draws) -> str:
    columns = [f"{draws.uniform(salt, 'person')} AS u_{salt}" for salt in _PERSON_DRAWS]
    columns += [f"{draws.uniform(salt)} AS u_{salt}" for salt in _RECORD_DRAWS]
    return "\n    SELECT i, person, " + ",\n        ".join(columns) + "\n    FROM spine"


def _pick(choices: Sequence[tuple[object, float]], draw: str) -> str:
    """A CASE giving each value with its share of the uniform column ``draw``."""
    total = sum(share for _, share in choices)
    cumulative, cases = 0.0, []
    for value, share in choices[:-1]:
        cumulative += share / total
        cases.append(f"WHEN {draw} < {cumulative!r} THEN {value!r}")
    return f"CASE {' '.join(cases)} ELSE {choices[-1][0]!r} END"


def _band_case(bands: Sequence[JobLevelBand], attribute: str) -> str:
    cases = " ".join(f"WHEN {band.level_id} THEN {getattr(band, attribute)!r}" for band in bands)
    return f"CAST(CASE level_id {cases} END AS DOUBLE)"


def _people_sql(bands: Sequence[JobLevelBand], plan_year: int, seed: int) -> str:
    # Age at plan-year end 22-65, peaked in the early forties. The SSN is a
    # bijection of person onto 900-00-0000..999-99-9999 (area numbers never
    # issued as SSNs), so it is unique per person up to 10**8 people.
    ssn = f"((person * 73939133 + {seed}) % 100000000)"
    return f"""
    SELECT
        *,
        DATE '{plan_year}-12-31'
            - CAST(floor((22 + 44 * (u_age_a + u_age_b) / 2) * 365.25) AS INTEGER) AS birth_date,
        {_pick([(band.level_id, band.target_distribution) for band in bands], "u_level")} AS level_id,
        concat(900 + {ssn} // 1000000, '-', lpad(CAST(({ssn} // 10000) % 100 AS VARCHAR), 2, '0'),
            '-', lpad(CAST({ssn} % 10000 AS VARCHAR), 4, '0')) AS ssn
    FROM draws"""


def _spells_sql(bands: Sequence[JobLevelBand], plan_year: int, defects: CensusDefects) -> str:
    # Tenure at plan-year end is exponential (mean MEAN_TENURE_YEARS), hired at
    # 18 or older; pay sits inside the level's band, 10 away from its edges.
    year_end = f"DATE '{plan_year}-12-31'"
    tenure_days = f"floor(-ln(1 - u_tenure) * {MEAN_TENURE_YEARS * 365.25!r})"
    low, high = _band_case(bands, "min_compensation"), _band_case(bands, "max_compensation")
    deferral = _pick(DEFERRAL_RATE_SHARES, "u_deferral")
    # Most defer pre-tax only; some Roth only, some split half and half.
    roth_share = _pick([(0.0, 0.70), (1.0, 0.15), (0.5, 0.10), (0.0, 0.05)], "u_source")
    return f"""
    SELECT
        *,
        {year_end} - CAST(least({tenure_days}, {year_end} - birth_date - 6576) AS INTEGER) AS hire_date,
        {low} + 10 + floor((u_pay_a + u_pay_b) / 2 * ({high} - {low} - 20)) AS pay_rate,
        CAST(CASE WHEN u_participates < {PARTICIPATION_RATE} THEN {deferral} ELSE 0 END AS DOUBLE) AS deferral_rate,
        CAST({roth_share} AS DOUBLE) AS roth_share,
        -- The last 5% of u_source (pre-tax only above) also put 20% after-tax.
        CASE WHEN u_source >= 0.95 THEN 0.2 ELSE 0.0 END AS after_tax_share,
        u_terminated < {TERMINATION_RATE} AS leaves_in_plan_year,
        u_hire_after_termination < {defects.hire_after_termination_rate!r} AS hire_after_termination,
        u_ssn_missing < {defects.missing_ssn_rate!r} AS ssn_missing
    FROM people"""


def _pay_sql(plan_year: int) -> str:
    # Leavers go on a uniform day of their spell inside the plan year; pay
    # earned in the plan year is the annual rate prorated over days employed.
    year_start, year_end = f"DATE '{plan_year}-01-01'", f"DATE '{plan_year}-12-31'"
    return f"""
    SELECT
        *,
        round(pay_rate * (coalesce(termination_date, {year_end}) - spell_start + 1)
            / ({year_end} - {year_start} + 1), 2) AS plan_year_pay
    FROM (
        SELECT
            *,
            CASE WHEN leaves_in_plan_year
                THEN spell_start + CAST(floor(u_leave_day * ({year_end} - spell_start + 1)) AS INTEGER)
            END AS termination_date
        FROM (SELECT *, greatest(hire_date, {year_start}) AS spell_start FROM spells)
    )"""


def _contributions_sql() -> str:
    # Deferrals on pay capped at the 401(a)(17) limit, up to the 402(g) limit.
    return f"""
    SELECT
        *,
        least(round(capped_pay * deferral_rate, 2), {IRS_DEFERRAL_LIMIT}) AS contribution,
        round(contribution * roth_share, 2) AS roth,
        round(contribution * after_tax_share, 2) AS after_tax
    FROM (SELECT *, least(plan_year_pay, {IRS_COMPENSATION_LIMIT}) AS capped_pay FROM pay)"""


def _census_columns_sql() -> str:
    return f"""
SELECT
    'EMP_' || lpad(CAST(person + 1 AS VARCHAR), 8, '0') AS employee_id,
    CASE WHEN ssn_missing THEN NULL ELSE ssn END AS employee_ssn,
    birth_date AS employee_birth_date,
    hire_date AS employee_hire_date,
    CASE WHEN hire_after_termination
        THEN hire_date - CAST(1 + floor(u_days_before_hire * 365) AS INTEGER)
        ELSE termination_date
    END AS employee_termination_date,
    pay_rate AS employee_gross_compensation,
    plan_year_pay AS employee_plan_year_compensation,
    termination_date IS NULL AND NOT hire_after_termination AS active,
    deferral_rate AS employee_deferral_rate,
    contribution AS employee_contribution,
    -- Pre-tax takes the rounding remainder, so the three sources add up exactly.
    round(contribution - roth - after_tax, 2) AS pre_tax_contribution,
    roth AS roth_contribution,
    after_tax AS after_tax_contribution,
    round(capped_pay * {CORE_CONTRIBUTION_RATE}, 2) AS employer_core_contribution,
    -- Safe-harbor match: 100% of the first 3% deferred, 50% of the next 2%.
    round(capped_pay * (least(deferral_rate, 0.03) + 0.5 * greatest(least(deferral_rate, 0.05) - 0.03, 0)), 2)
        AS employer_match_contribution
FROM contributions"""


# --- inspection ------------------------------------------------------------


def inspect_census(path: Path) -> CensusInfo:
    """Rows and columns of a census parquet file and which required columns it lacks."""
    path = Path(path)
    if not path.is_file():
        raise CensusError(
            f"census file {path} does not exist", "generate one (census.generate: true) or set census.path"
        )
    try:
        with memory_connection() as con:
            described = con.execute("DESCRIBE SELECT * FROM read_parquet($path)", {"path": str(path)}).fetchall()
            (rows,) = con.execute("SELECT count(*) FROM read_parquet($path)", {"path": str(path)}).fetchone()  # type: ignore[misc]  # an aggregate: one row
    except duckdb.Error as exc:
        raise CensusError(
            f"census file {path} is not readable parquet: {exc}", "export the census as parquet"
        ) from None
    columns = {row[0]: row[1] for row in described}
    missing = tuple(name for name in REQUIRED_CENSUS_COLUMNS if name not in columns)
    return CensusInfo(path, rows, columns, missing)


def census_contract_problem(info: CensusInfo) -> Problem | None:
    """Whether a census file meets the contract: every required column, each of its type (docs/census.md).

    Reads one value of a mistyped column, for the message; nothing else.
    """
    path = info.path
    wrong = info.wrong_types()
    if not info.missing_columns and not wrong:
        return None
    problems = [f"lacks {', '.join(info.missing_columns)}"] if info.missing_columns else []
    for name, family in wrong.items():
        example = _example_value(path, name)
        shown = f" (e.g. {example!r})" if example is not None else ""
        problems.append(f"{name} is {info.columns[name]}{shown} where {_needs(family)} is needed")
    fixes = [
        f"export {', '.join(sorted(n for n, f in wrong.items() if f == family))} as {TYPE_FIXES[family]}"
        for family in dict.fromkeys(wrong.values())
    ]
    if info.missing_columns:
        fixes.insert(0, f"add {', '.join(info.missing_columns)}")
    return Problem(
        f"census {path}: {'; '.join(problems)}",
        f"{'; '.join(fixes)} in that file, or regenerate it with `doit census` "
        f"(docs/census.md lists the {len(REQUIRED_CENSUS_COLUMNS)} columns and their types)",
    )


def _needs(family: str) -> str:
    return {TEXT: "text (VARCHAR)", NUMBER: "a number (DOUBLE, DECIMAL or an integer)"}.get(family, family)


def _example_value(path: Path, column: str) -> Any:
    try:
        with memory_connection() as con:
            row = con.execute(
                f'SELECT "{column}" FROM read_parquet($path) WHERE "{column}" IS NOT NULL LIMIT 1', {"path": str(path)}
            ).fetchone()
    except duckdb.Error:
        return None
    return row[0] if row else None


# --- command line ----------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m setup_tasks.engine.census``: write a synthetic census by hand."""
    args = _argument_parser().parse_args(argv)
    defects = CensusDefects(args.duplicate_id_rate, args.missing_ssn_rate, args.hire_after_termination_rate)
    try:
        summary = generate_census(
            args.path,
            args.employees,
            args.seed,
            defects,
            args.job_levels_csv,
            plan_year=args.plan_year,
            force=args.force,
        )
    except CensusError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"wrote {summary.rows:,} census rows to {summary.path} in {summary.seconds:.2f} s")
    return 0


def _argument_parser() -> argparse.ArgumentParser:
    defaults = CensusDefects()
    parser = argparse.ArgumentParser(prog="python -m setup_tasks.engine.census", description=main.__doc__)
    parser.add_argument("--path", type=Path, default=Path(default_of("census.path")), help="parquet file to write")
    parser.add_argument(
        "--employees", type=int, default=default_of("census.employees"), help="rows to write (default %(default)s)"
    )
    parser.add_argument(
        "--seed", type=int, default=default_of("census.seed"), help="same seed, same content (default %(default)s)"
    )
    parser.add_argument("--plan-year", type=int, default=DEFAULT_PLAN_YEAR, help="year the census covers")
    parser.add_argument("--job-levels-csv", type=Path, help="config_job_levels seed to take pay bands from")
    parser.add_argument("--duplicate-id-rate", type=float, default=defaults.duplicate_id_rate)
    parser.add_argument("--missing-ssn-rate", type=float, default=defaults.missing_ssn_rate)
    parser.add_argument("--hire-after-termination-rate", type=float, default=defaults.hire_after_termination_rate)
    parser.add_argument("--force", action="store_true", help="overwrite a census the generator did not write")
    return parser


if __name__ == "__main__":
    sys.exit(main())


@dataclass(frozen=True)
class CensusRequest:
    """The census a setup run wants: where, how many employees, which seed, which bands."""

    path: Path
    employees: int
    seed: int
    defects: CensusDefects
    job_levels_csv: Path | None
    plan_year: int = DEFAULT_PLAN_YEAR

    def provenance(self) -> dict[str, Any]:
        """The provenance a file generated for this request carries."""
        return census_provenance(
            self.employees, self.seed, self.defects, load_job_level_bands(self.job_levels_csv), self.plan_year
        )

    def why(self, provenance: Callable[[Path], dict[str, Any] | None] | None = None) -> str | None:
        """Why it must be (re)generated, or None when the file is current or carries no provenance."""
        return census_needs_generation(
            self.path, self.employees, self.seed, self.defects, self.job_levels_csv, self.plan_year, provenance
        )

    def generate(self) -> CensusSummary:
        return generate_census(
            self.path, self.employees, self.seed, self.defects, self.job_levels_csv, plan_year=self.plan_year
        )
