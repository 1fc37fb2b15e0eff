"""Which files SQL reads, the way DuckDB reads them (issue 25): ``store.database.reader_paths`` (DuckDB's parser)
over ``project.inputs.reader_call_paths`` (the walk of its syntax tree), and external locations resolved where
dbt runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from factories import make_manifest, manifest_node
from setup_tasks.project.inputs import external_paths, format_location, glob_folders, location_paths
from setup_tasks.project.manifest import manifest_from_dict
from setup_tasks.store.database import reader_paths, syntax_tree

RETURNS = (
    "read_csv('data/returns.csv', columns={'return_id': 'integer', 'sale_id': 'integer', "
    "'return_date': 'date', 'qty_returned': 'integer'}, header=true)"
)


@pytest.mark.parametrize(
    "sql, paths",
    [
        # a map's keys and values are never files (issue 25: 'input file .../return_id does not exist')
        (f"select * from {RETURNS}", ["data/returns.csv"]),
        (
            "select * from read_json('data/products/*.json', columns={id: 'integer', name: 'varchar'})",
            ["data/products/*.json"],
        ),
        ("select * from read_parquet(['a.parquet', 'b/*.parquet'], union_by_name=true)", ["a.parquet", "b/*.parquet"]),
        (
            "with t as (select * from read_csv_auto('x.csv', types={'a': 'VARCHAR'})) "
            "select * from t, (select * from read_ndjson('n.json')) u",
            ["x.csv", "n.json"],
        ),
        (
            "select * from read_json_auto('a.json') union all select * from parquet_scan('p.parquet')",
            ["a.json", "p.parquet"],
        ),
        ("select * from 'data/census.parquet' join 'extra.csv.gz' using (id)", ["data/census.parquet", "extra.csv.gz"]),
        ("select 'x.csv' as name, read_csv_note from t where path = 'y.parquet'", []),  # strings, not reads
        ('select * from "main"."orders" join main.t using (id)', []),  # tables, not files
        ("select * from read_csv('a' || '.csv')", []),  # computed: unknown before DuckDB runs it
        ("select * from read_csv('s3://bucket/x.csv')", ["s3://bucket/x.csv"]),  # as written: the caller skips URLs
        ("select * from read_csv('a.csv'); select * from read_parquet('b.parquet')", ["a.csv", "b.parquet"]),
        ("select * from read_csv('a.csv') join read_csv('a.csv') using (x)", ["a.csv"]),  # each once
    ],
)
def test_reader_paths_are_the_path_arguments_duckdb_reads(sql: str, paths: list[str]) -> None:
    assert reader_paths(sql) == paths


def test_sql_duckdb_cannot_parse_reads_nothing() -> None:
    assert syntax_tree("select * from {{ ref('x') }}") is None  # Jinja left in
    assert reader_paths("select * from {{ ref('x') }}") == []
    assert reader_paths("create table t as select * from read_csv('a.csv')") == []  # not a SELECT


def source(location: str, **meta: str) -> object:
    raw = manifest_node("source.p.returns", external_location=location)
    raw["meta"].update(meta)
    return manifest_from_dict(make_manifest(raw)).nodes["source.p.returns"]


def test_an_external_location_with_a_columns_map_reads_one_file_where_dbt_runs(tmp_path: Path) -> None:
    """khozzy/dbt-duckdb-recipies: the project in dbt_project/, data at the root where dbt runs."""
    (tmp_path / "data" / "products").mkdir(parents=True)
    for name in ("returns.csv", "products/p1.json", "products/p2.json"):
        (tmp_path / "data" / name).write_text("x\n")
    assert external_paths(source(RETURNS, formatter="oldstyle"), tmp_path, reader_paths) == [
        tmp_path / "data/returns.csv"
    ]
    products = source("read_json('data/products/*.json', columns={id: 'integer'})", formatter="oldstyle")
    assert external_paths(products, tmp_path, reader_paths) == [
        tmp_path / "data/products/p1.json",
        tmp_path / "data/products/p2.json",
    ]
    assert tmp_path / "data" / "products" in glob_folders(products, tmp_path, reader_paths)
    assert external_paths(source("data/{name}.csv"), tmp_path, reader_paths) == [tmp_path / "data/returns.csv"]
    assert external_paths(source("'data/returns.csv'"), tmp_path, reader_paths) == [tmp_path / "data/returns.csv"]


def test_locations_are_formatted_as_dbt_duckdb_formats_them() -> None:
    assert format_location("data/{name}.csv", source("x")) == "data/returns.csv"
    assert format_location("data/%(name)s.csv", source("x", formatter="oldstyle")) == "data/returns.csv"
    assert format_location("data/${name}.csv", source("x", formatter="template")) == "data/returns.csv"
    assert format_location("data/{nope}.csv", source("x")) == "data/{nope}.csv"  # dbt-duckdb says what is wrong
    assert location_paths("data/x.parquet", reader_paths) == ["data/x.parquet"]  # a bare path: no parse
