"""Built-in validation checks: seeds, staging models, baseline workforce, census quality, configuration.

Each check is a query selecting what is wrong, over tables and columns named in
``validation.tables`` / ``validation.columns`` (PlanWise names by default, always
quoted). A table or column a project does not have skips the check with the
reason. The dbt project's own tests are the check ``dbt_tests`` (``dbt_tests``).
"""

from __future__ import annotations

from typing import Any, Mapping

from ...config import ValidationSettings
from ...project.inputs import csv_data_rows
from ...project.manifest import Node
from ..framework import CheckContext, Table, register_check
from ..project_view import ProjectView
from ..results import LISTED, CheckResult, SkipCheck, plural

# Logical tables whose rows the hazard-band check compares, by dimension.
HAZARD_TABLES: Mapping[str, tuple[str, str]] = {
    "age": ("promotion_age_multipliers", "termination_age_multipliers"),
    "tenure": ("promotion_tenure_multipliers", "termination_tenure_multipliers"),
}
SHOWN = 3  # problems spelled out in a message; the rest are in the details


def _listed(items: list[str], shown: int = SHOWN) -> str:
    text = ", ".join(items[:shown])
    return text + (f" and {len(items) - shown} more" if len(items) > shown else "")


def _every(*lists: list[str], shown: int = SHOWN) -> dict[str, Any]:
    """The items of the lists a message cut short (``_listed``), as the result's detail that -v 2 and
    `doit info` show: 'and 1 more' is never the last word on a failure."""
    cut = [item for items in lists if len(items) > shown for item in items]
    return {LISTED: cut} if cut else {}


def _money(value: Any) -> str:
    return f"{float(value):,.0f}" if value is not None else "none"


# -- seed data integrity ---------------------------------------------------------------


def required_seeds(project: ProjectView | None, validation: ValidationSettings) -> list[tuple[str, Node | None]]:
    """(name, seed node or None) for every required seed: the list in config, else every selected seed."""
    if validation.required_seed_tables is None:
        return [(n.name, n) for n in project.selected("seed")] if project else []
    seeds = {n.name.lower(): n for n in (project.nodes.values() if project else ()) if n.resource_type == "seed"}
    return [(name, seeds.get(name.lower())) for name in validation.required_seed_tables]


def _seed_reads(project: ProjectView, validation: ValidationSettings) -> list[str]:
    return [node.unique_id if node else name for name, node in required_seeds(project, validation)]


def _present_seeds(ctx: CheckContext) -> tuple[list[tuple[str, Node | None, Table]], list[str]]:
    seeds = required_seeds(ctx.project, ctx.validation)
    if not seeds:
        raise SkipCheck("no seeds to check (none selected and validation.required_seed_tables unset)")
    present, missing = [], []
    for name, node in seeds:
        table = ctx.find_table(node.unique_id if node else name)
        if table is None:
            missing.append(name)
        else:
            present.append((name, node, table))
    return present, missing


@register_check(
    "seed_data_integrity.present", severity="critical", reads=_seed_reads, thresholds=["required_seed_tables"]
)
def seeds_present(ctx: CheckContext) -> CheckResult:
    """Every required seed table is loaded"""
    present, missing = _present_seeds(ctx)
    total = len(present) + len(missing)
    if missing:
        return ctx.failed(
            f"{len(missing)} of {total} required seed tables missing: {_listed(missing)}",
            "run `doit seeds` to load them, or take them out of validation.required_seed_tables",
            missing=missing,
            required=total,
            **_every(missing),
        )
    return ctx.passed(f"all {total} required seed tables present", required=total)


@register_check(
    "seed_data_integrity.row_counts", severity="error", reads=_seed_reads, thresholds=["required_seed_tables"]
)
def seed_row_counts(ctx: CheckContext) -> CheckResult:
    """Each seed table has as many rows as its CSV has data rows"""
    present, _ = _present_seeds(ctx)
    counts, wrong = {}, []
    for name, node, table in present:
        if node is None or not node.path or ctx.project is None:
            continue
        path, delimiter = ctx.project.project_dir / node.path, node.config.get("delimiter") or ","
        csv_rows, table_rows = ctx.measured(
            table, lambda: [csv_data_rows(path, delimiter), ctx.scalar(f"SELECT count(*) FROM {table}")]
        )
        counts[name] = {"csv_rows": csv_rows, "table_rows": table_rows}
        if csv_rows != table_rows:
            wrong.append(f"{name} has {plural(table_rows, 'rows')}, {node.path} has {csv_rows:,}")
    if not counts:
        raise SkipCheck("no loaded seed has a CSV file in the dbt project")
    if wrong:
        return ctx.failed(
            f"seed row counts differ from their CSV files: {_listed(wrong)}",
            "run `doit setup` to reload them (a table edited outside setup is reloaded)",
            seeds=counts,
            **_every(wrong),
        )
    return ctx.passed(f"{len(counts)} seed tables match their CSV row counts", seeds=counts)


@register_check(
    "seed_data_integrity.null_columns", severity="warning", reads=_seed_reads, thresholds=["required_seed_tables"]
)
def seed_null_columns(ctx: CheckContext) -> CheckResult:
    """No seed column is entirely null"""
    present, _ = _present_seeds(ctx)
    empty: list[str] = []
    for name, _, table in present:
        if table.columns:
            empty += [f"{name}.{c}" for c in ctx.measured(table, lambda: _null_columns(ctx, table))]
    if empty:
        return ctx.failed(
            f"{len(empty)} seed columns entirely null: {_listed(empty)}",
            "fill them in the seed CSV, or check its header and delimiter",
            columns=empty,
            **_every(empty),
        )
    return ctx.passed(f"no entirely null column in {len(present)} seed tables", tables=len(present))


def _null_columns(ctx: CheckContext, table: Table) -> list[str]:
    """The columns of a table with rows that are null in every row."""
    counts = ", ".join(f"count({ctx.existing_column(table, c)})" for c in table.columns)
    row = ctx.query(f"SELECT count(*), {counts} FROM {table}").rows[0]
    return [c for c, n in zip(table.columns, row[1:]) if n == 0] if row[0] else []


# -- staging models ------------------------------------------------------------------------------


def _model_reads(project: ProjectView, validation: ValidationSettings) -> list[str]:
    return [n.unique_id for n in project.selected("model", "snapshot")]


def _models(ctx: CheckContext) -> list[Node]:
    models = ctx.project.selected("model", "snapshot") if ctx.project else []
    if not models:
        raise SkipCheck("no models selected (dbt.setup_selection)")
    return models


@register_check("staging_models.materialized", severity="critical", reads=_model_reads)
def models_materialized(ctx: CheckContext) -> CheckResult:
    """Every selected model exists in the database"""
    models = _models(ctx)
    missing = [n.name for n in models if ctx.find_table(n.unique_id) is None]
    if missing:
        return ctx.failed(
            f"{len(missing)} of {len(models)} selected models not in the database: {_listed(missing)}",
            "run `doit setup` and fix the models that fail",
            missing=missing,
            **_every(missing),
        )
    return ctx.passed(f"all {len(models)} selected models materialised", models=len(models))


@register_check("staging_models.non_empty", severity="error", reads=_model_reads, thresholds=["allow_empty_models"])
def models_non_empty(ctx: CheckContext) -> CheckResult:
    """Every selected model has rows, except those allowed to be empty"""
    allowed = {m.lower() for m in ctx.validation.allow_empty_models}
    found = [(node.name, table) for node in _models(ctx) if (table := ctx.find_table(node.unique_id)) is not None]
    rows = dict(zip((name for name, _ in found), ctx.row_counts([table for _, table in found])))
    empty = [name for name, n in rows.items() if n == 0 and name.lower() not in allowed]
    if empty:
        return ctx.failed(
            f"{len(empty)} models have no rows: {_listed(empty)}",
            "check their inputs; if empty is legitimate, list them in validation.allow_empty_models",
            empty=empty,
            rows=rows,
            **_every(empty),
        )
    return ctx.passed(f"{len(rows)} models checked, none empty that must have rows", rows=rows)


# -- baseline workforce ----------------------------------------------------------------------------


@register_check(
    "baseline_workforce.headcount", severity="critical", reads=["census"], thresholds=["min_baseline_workforce_count"]
)
def baseline_headcount(ctx: CheckContext) -> CheckResult:
    """Enough active employees to simulate"""
    census = ctx.table("census")
    active = ctx.column(census, "active")
    count, total = ctx.query(f"SELECT count(*) FILTER (WHERE {active}), count(*) FROM {census}").rows[0]
    minimum = ctx.validation.min_baseline_workforce_count
    numbers: dict[str, Any] = {"active_employees": count, "census_rows": total, "minimum": minimum}
    if count < minimum:
        return ctx.failed(
            f"{count:,} active employees in {census.name}, fewer than the minimum {minimum:,}",
            "load the full census (census.path) or lower validation.min_baseline_workforce_count",
            **numbers,
        )
    return ctx.passed(f"{count:,} active employees (minimum {minimum:,})", **numbers)


@register_check("baseline_workforce.compensation", severity="error", reads=["census"])
def baseline_compensation(ctx: CheckContext) -> CheckResult:
    """Every active employee has a positive compensation"""
    census = ctx.table("census")
    ident, active, pay = (ctx.column(census, k) for k in ("employee_id", "active", "compensation"))
    return ctx.audit(
        f"SELECT {ident} AS employee_id, {pay} AS compensation FROM {census}"
        f" WHERE {active} AND ({pay} IS NULL OR {pay} <= 0)",
        what="active employees without a positive compensation",
        guidance="correct their compensation in the census file (census.path); the sample lists some",
    )


@register_check(
    "baseline_workforce.compensation_range",
    severity="warning",
    reads=["census"],
    thresholds=["min_reasonable_compensation", "max_reasonable_compensation"],
)
def baseline_compensation_range(ctx: CheckContext) -> CheckResult:
    """Active compensation within the reasonable minimum and maximum"""
    census = ctx.table("census")
    active, pay = ctx.column(census, "active"), ctx.column(census, "compensation")
    low, high = ctx.validation.min_reasonable_compensation, ctx.validation.max_reasonable_compensation
    lowest, highest, below, above = ctx.query(
        f"SELECT min({pay}), max({pay}), count(*) FILTER (WHERE {pay} < ?), count(*) FILTER (WHERE {pay} > ?)"
        f" FROM {census} WHERE {active} AND {pay} > 0",
        [low, high],
    ).rows[0]
    numbers: dict[str, Any] = {
        "minimum": lowest,
        "maximum": highest,
        "below_minimum": below,
        "above_maximum": above,
        "min_reasonable_compensation": low,
        "max_reasonable_compensation": high,
    }
    problems = []
    if below:
        problems.append(f"{below:,} below {_money(low)} (lowest {_money(lowest)})")
    if above:
        problems.append(f"{above:,} above {_money(high)} (highest {_money(highest)})")
    if problems:
        return ctx.failed(
            f"suspicious active compensation: {'; '.join(problems)}",
            "check those employees' pay, or change validation.min_reasonable_compensation / "
            "validation.max_reasonable_compensation",
            **numbers,
        )
    return ctx.passed(
        f"active compensation {_money(lowest)} to {_money(highest)}, within {_money(low)}-{_money(high)}", **numbers
    )


# -- census data quality ---------------------------------------------------------------------------


@register_check("census_data_quality.duplicate_ids", severity="error", reads=["census", "census_duplicates"])
def census_duplicate_ids(ctx: CheckContext) -> CheckResult:
    """Employee ids are unique after staging (raw duplicates are counted)"""
    census = ctx.table("census")
    ident = ctx.column(census, "employee_id")
    raw = _raw_duplicates(ctx)
    result = ctx.audit(
        f"SELECT {ident} AS employee_id, count(*) AS records FROM {census}"
        f" WHERE {ident} IS NOT NULL GROUP BY {ident} HAVING count(*) > 1",
        what=f"employee ids occurring more than once in {census.name}",
        guidance="staging must keep one record per employee: fix the de-duplication of the census model "
        "or the duplicate records in the census file",
        **raw,
    )
    if result.passed and raw.get("raw_duplicate_ids"):
        return ctx.passed(
            f"employee ids unique in {census.name}; staging resolved {raw['raw_duplicate_ids']:,} "
            f"duplicate ids of the raw census ({raw['resolved_by_staging']:,} records dropped)",
            **result.details,
        )
    return result


def _raw_duplicates(ctx: CheckContext) -> dict[str, Any]:
    audit = ctx.find_table("census_duplicates")
    if audit is None:
        return {"raw_duplicates": f"not counted: table {ctx.table_name('census_duplicates')} is not in the database"}
    ident = ctx.find_column(audit, "employee_id", columns_of="census")
    if ident is None:
        return {"raw_duplicates": f"not counted: {audit.name} has no employee id column"}
    ids, records = ctx.query(f"SELECT count(DISTINCT {ident}), count(*) FROM {audit}").rows[0]
    return {"raw_duplicate_ids": ids, "raw_duplicate_records": records, "resolved_by_staging": records - ids}


@register_check(
    "census_data_quality.required_nulls", severity="error", reads=["census"], thresholds=["census_required_columns"]
)
def census_required_nulls(ctx: CheckContext) -> CheckResult:
    """No nulls in the census's required columns"""
    census = ctx.table("census")
    wanted = list(ctx.validation.census_required_columns)
    present = {c: q for c in wanted if (q := ctx.existing_column(census, c)) is not None}
    absent = [c for c in wanted if c not in present]
    if not present:
        raise SkipCheck(f"none of validation.census_required_columns is in {census.name}: {', '.join(wanted)}")
    counts = ctx.query(f"SELECT {', '.join(f'count(*) - count({q})' for q in present.values())} FROM {census}").rows[0]
    nulls = {c: n for c, n in zip(present, counts) if n}
    numbers: dict[str, Any] = {"null_counts": nulls, "columns_checked": list(present), "columns_absent": absent}
    note = f" ({len(absent)} required columns absent: {_listed(absent)})" if absent else ""
    if nulls:
        shown = [f"{c} ({n:,})" for c, n in nulls.items()]
        return ctx.failed(
            f"nulls in required census columns: {_listed(shown)}{note}",
            "fill them in the census file, or change validation.census_required_columns",
            **numbers,
            **_every(shown, absent),
        )
    return ctx.passed(f"no nulls in {len(present)} required census columns{note}", **numbers)


@register_check("census_data_quality.hire_after_termination", severity="warning", reads=["census"])
def census_hire_after_termination(ctx: CheckContext) -> CheckResult:
    """No employee hired after their termination"""
    census = ctx.table("census")
    ident, hired, left = (ctx.column(census, k) for k in ("employee_id", "hire_date", "termination_date"))
    return ctx.audit(
        f"SELECT {ident} AS employee_id, {hired} AS hire_date, {left} AS termination_date FROM {census}"
        f" WHERE {left} IS NOT NULL AND {hired} > {left}",
        what="employees hired after their termination date",
        guidance="correct the hire or termination dates in the census file",
    )


@register_check(
    "census_data_quality.implausible_ages",
    severity="warning",
    reads=["census"],
    thresholds=["min_employee_age", "max_employee_age", "simulation_start_year"],
)
def census_implausible_ages(ctx: CheckContext) -> CheckResult:
    """Ages at the simulation start within the plausible range"""
    census = ctx.table("census")
    ident, born = ctx.column(census, "employee_id"), ctx.column(census, "birth_date")
    v = ctx.validation
    return ctx.audit(
        f"SELECT * FROM (SELECT {ident} AS employee_id, {born} AS birth_date,"
        f" date_sub('year', {born}, make_date(?, 1, 1)) AS age FROM {census} WHERE {born} IS NOT NULL)"
        f" WHERE age < ? OR age > ?",
        [v.simulation_start_year, v.min_employee_age, v.max_employee_age],
        what=f"employees aged outside {v.min_employee_age}-{v.max_employee_age} on 1 January {v.simulation_start_year}",
        guidance="correct their birth dates, or change validation.min_employee_age / validation.max_employee_age",
    )


@register_check(
    "census_data_quality.compensation_outliers",
    severity="warning",
    reads=["census", "job_levels"],
    thresholds=["compensation_outlier_zscore"],
)
def census_compensation_outliers(ctx: CheckContext) -> CheckResult:
    """Active compensation within the configured z-score of its job level's mean"""
    census = ctx.table("census")
    ident, active, pay = (ctx.column(census, k) for k in ("employee_id", "active", "compensation"))
    level_sql, grouping = "NULL", "all active employees"
    levels = ctx.find_table("job_levels")
    if levels is not None:
        lid, low, high = (ctx.find_column(levels, k) for k in ("level_id", "min_compensation", "max_compensation"))
        if lid and low and high:
            level_sql = f"(SELECT min(l.{lid}) FROM {levels} AS l WHERE c.{pay} >= l.{low} AND c.{pay} < l.{high})"
            grouping = f"job level ({levels.name} bands)"
    limit = ctx.validation.compensation_outlier_zscore
    return ctx.audit(
        f"WITH pay AS (SELECT c.{ident} AS employee_id, c.{pay} AS compensation, {level_sql} AS job_level"
        f" FROM {census} AS c WHERE c.{active} AND c.{pay} IS NOT NULL),"
        f" stats AS (SELECT job_level, avg(compensation) AS mean, stddev_pop(compensation) AS sd"
        f" FROM pay GROUP BY job_level)"
        f" SELECT p.employee_id, p.job_level, p.compensation, round((p.compensation - s.mean) / s.sd, 2) AS zscore"
        f" FROM pay AS p JOIN stats AS s ON p.job_level IS NOT DISTINCT FROM s.job_level"
        f" WHERE s.sd > 0 AND abs(p.compensation - s.mean) / s.sd > ?",
        [limit],
        what=f"active employees paid more than {limit} standard deviations from the mean of their {grouping}",
        guidance="check their pay, or raise validation.compensation_outlier_zscore",
        grouped_by=grouping,
    )


# -- configuration consistency --------------------------------------------------------------------


def band_problems(ctx: CheckContext, table: Table, lower: str, upper: str, label: str) -> list[str]:
    """Inverted bands, gaps and overlaps between consecutive bands [lower, upper), in words."""
    rows = ctx.query(
        f"SELECT * FROM (SELECT {label} AS band, {lower} AS lo, {upper} AS hi,"
        f" lead({label}) OVER w AS next_band, lead({lower}) OVER w AS next_lo FROM {table}"
        f" WINDOW w AS (ORDER BY {lower}, {upper}))"
        f" WHERE lo IS NULL OR hi IS NULL OR hi <= lo OR (next_lo IS NOT NULL AND next_lo <> hi)"
    ).rows
    problems = []
    for band, lo, hi, next_band, next_lo in rows:
        if lo is None or hi is None:
            problems.append(f"{band} has no {'lower' if lo is None else 'upper'} bound")
        elif hi <= lo:
            problems.append(f"{band} is empty or inverted ({_num(lo)} to {_num(hi)})")
        elif next_lo > hi:
            problems.append(f"gap between {band} (up to {_num(hi)}) and {next_band} (from {_num(next_lo)})")
        else:
            problems.append(f"{band} (up to {_num(hi)}) overlaps {next_band} (from {_num(next_lo)})")
    return problems


def _num(value: Any) -> str:
    number = float(value)
    return f"{number:,.0f}" if number.is_integer() else f"{number:,}"


@register_check(
    "configuration_consistency.job_level_bands",
    severity="error",
    reads=["job_levels"],
    thresholds=["columns.job_levels"],
)
def job_level_bands(ctx: CheckContext) -> CheckResult:
    """Job-level pay bands are contiguous and do not overlap"""
    levels = ctx.table("job_levels")
    lid, low, high = (ctx.column(levels, k) for k in ("level_id", "min_compensation", "max_compensation"))
    problems = band_problems(ctx, levels, low, high, f"'level ' || {lid}")
    count = ctx.scalar(f"SELECT count(*) FROM {levels}")
    if problems:
        return ctx.failed(
            f"job-level bands in {levels.name}: {_listed(problems)}",
            f"make each level's max_compensation equal the next level's min_compensation in {ctx.fix_location(levels)}",
            problems=problems,
            levels=count,
            **_every(problems),
        )
    return ctx.passed(f"{count} job-level bands contiguous, no overlap", levels=count)


@register_check(
    "configuration_consistency.comp_lever_references",
    severity="error",
    reads=["comp_levers", "scenarios", "job_levels"],
)
def comp_lever_references(ctx: CheckContext) -> CheckResult:
    """Every comp lever names an existing scenario and job level"""
    levers = ctx.table("comp_levers")
    orphans: dict[str, dict[str, int]] = {}
    not_checked = []
    for ref, table_name, key in (("scenario_id", "scenarios", "scenario_id"), ("job_level", "job_levels", "level_id")):
        target = ctx.find_table(table_name)
        column = ctx.find_column(levers, ref)
        target_column = ctx.find_column(target, key) if target is not None else None
        if column is None or target_column is None:
            not_checked.append(ref)
            continue
        rows = ctx.query(
            f"SELECT l.{column}, count(*) FROM {levers} AS l WHERE l.{column} IS NOT NULL AND NOT EXISTS"
            f" (SELECT 1 FROM {target} AS t WHERE t.{target_column} = l.{column}) GROUP BY 1 ORDER BY 1"
        ).rows
        orphans[ref] = {str(value): n for value, n in rows}
    if not orphans:
        raise SkipCheck(
            f"neither reference of {levers.name} can be checked (scenario and job level tables or columns absent)"
        )
    problems = [f"{ref} {value} ({n} levers)" for ref, found in orphans.items() for value, n in found.items()]
    numbers: dict[str, Any] = {"unknown": orphans, "not_checked": not_checked}
    if problems:
        return ctx.failed(
            f"comp levers in {levers.name} refer to undefined {_listed(problems)}",
            f"define them in the scenario / job level tables, or remove those levers from {ctx.fix_location(levers)}",
            **numbers,
            **_every(problems),
        )
    checked = " and ".join(orphans)
    return ctx.passed(f"every comp lever's {checked} exists", **numbers)


def _hazard_tables(ctx: CheckContext) -> dict[str, list[tuple[str, Table, str, str, str]]]:
    """Present multiplier tables by dimension: (logical name, table, band, lower, upper columns)."""
    found: dict[str, list[tuple[str, Table, str, str, str]]] = {}
    for dimension, logicals in HAZARD_TABLES.items():
        for logical in logicals:
            table = ctx.find_table(logical)
            if table is None:
                continue
            cols = [
                ctx.find_column(table, k, columns_of=f"{dimension}_multipliers") for k in ("band", "lower", "upper")
            ]
            if all(cols):
                found.setdefault(dimension, []).append((logical, table, *cols))  # type: ignore[arg-type]  # all(cols): three names
    return found


def _coverage_sql(ctx: CheckContext, dimension: str) -> str | None:
    """Active employees' age or tenure in whole years on 1 January of the first simulated year."""
    census = ctx.find_table("census")
    if census is None:
        return None
    key = "birth_date" if dimension == "age" else "hire_date"
    start, active = ctx.find_column(census, key), ctx.find_column(census, "active")
    if start is None or active is None:
        return None
    return (
        f"SELECT date_sub('year', {start}, make_date(?, 1, 1)) AS v FROM {census}"
        f" WHERE {active} AND {start} IS NOT NULL"
    )


@register_check(
    "configuration_consistency.hazard_bands",
    severity="error",
    reads=[t for pair in HAZARD_TABLES.values() for t in pair] + ["census"],
    thresholds=["simulation_start_year", "columns.age_multipliers", "columns.tenure_multipliers"],
)
def hazard_bands(ctx: CheckContext) -> CheckResult:
    """Hazard multipliers cover every age and tenure band, alike for promotion and termination"""
    tables = _hazard_tables(ctx)
    if not tables:
        raise SkipCheck("no hazard multiplier table with its band columns is in the database")
    problems: list[str] = []
    uncovered: dict[str, int] = {}
    for dimension, entries in tables.items():
        bands = {}
        for logical, table, band, low, high in entries:
            problems += [f"{table.name}: {p}" for p in band_problems(ctx, table, low, high, band)]
            bands[table.name] = set(ctx.query(f"SELECT {low}, {high} FROM {table}").rows)
            coverage = _coverage_sql(ctx, dimension)
            if coverage is not None:
                n = ctx.scalar(
                    f"SELECT count(*) FROM ({coverage}) AS e WHERE NOT EXISTS"
                    f" (SELECT 1 FROM {table} AS b WHERE e.v >= b.{low} AND e.v < b.{high})",
                    [ctx.validation.simulation_start_year],
                )
                if n:
                    uncovered[table.name] = n
                    problems.append(f"{table.name}: {n:,} active employees' {dimension} in no band")
        if len(bands) > 1 and len({frozenset(b) for b in bands.values()}) > 1:
            problems.append(f"{' and '.join(bands)} define different {dimension} bands")
    checked = [t.name for entries in tables.values() for _, t, *_ in entries]
    numbers: dict[str, Any] = {
        "tables_checked": checked,
        "uncovered_employees": uncovered,
        "not_checked": [
            ctx.table_name(t) for pair in HAZARD_TABLES.values() for t in pair if ctx.table_name(t) not in checked
        ],
    }
    if problems:
        return ctx.failed(
            f"hazard bands: {_listed(problems)}",
            "make the bands contiguous and alike across promotion and termination, covering every "
            "employee's age and tenure (the multiplier seeds)",
            problems=problems,
            **numbers,
            **_every(problems),
        )
    return ctx.passed(f"{len(checked)} hazard multiplier tables cover their bands without gaps", **numbers)


@register_check(
    "configuration_consistency.cola_years",
    severity="error",
    reads=["cola"],
    thresholds=["simulation_start_year", "simulation_end_year"],
)
def cola_years(ctx: CheckContext) -> CheckResult:
    """A COLA rate for every simulation year"""
    cola = ctx.table("cola")
    year, rate = ctx.column(cola, "year"), ctx.column(cola, "rate")
    first, last = ctx.validation.simulation_start_year, ctx.validation.simulation_end_year
    missing = [
        r[0]
        for r in ctx.query(
            f"SELECT y.year FROM range(?, ? + 1) AS y(year) WHERE NOT EXISTS"
            f" (SELECT 1 FROM {cola} AS c WHERE c.{year} = y.year AND c.{rate} IS NOT NULL) ORDER BY 1",
            [first, last],
        ).rows
    ]
    numbers: dict[str, Any] = {"missing_years": missing, "simulation_years": [first, last]}
    if missing:
        return ctx.failed(
            f"no COLA rate in {cola.name} for {_listed([str(y) for y in missing], 10)} "
            f"(simulation years {first}-{last})",
            f"add those years to {ctx.fix_location(cola)}, or change "
            "validation.simulation_start_year / validation.simulation_end_year",
            **numbers,
            **_every([str(y) for y in missing], shown=10),
        )
    return ctx.passed(f"COLA rates for every simulation year {first}-{last}", **numbers)


@register_check("configuration_consistency.active_pay_in_job_level", severity="error", reads=["census", "job_levels"])
def active_pay_in_job_level(ctx: CheckContext) -> CheckResult:
    """Every active employee's compensation falls in some job level's band"""
    census, levels = ctx.table("census"), ctx.table("job_levels")
    ident, active, pay = (ctx.column(census, k) for k in ("employee_id", "active", "compensation"))
    low, high = ctx.column(levels, "min_compensation"), ctx.column(levels, "max_compensation")
    return ctx.audit(
        f"SELECT c.{ident} AS employee_id, c.{pay} AS compensation FROM {census} AS c"
        f" WHERE c.{active} AND c.{pay} IS NOT NULL AND NOT EXISTS"
        f" (SELECT 1 FROM {levels} AS l WHERE c.{pay} >= l.{low} AND c.{pay} <= l.{high})",
        what=f"active employees paid outside every job level band of {levels.name}",
        guidance=f"widen the bands in {ctx.fix_location(levels)} or correct those employees' pay",
    )
