"""Tests for setup_tasks.config: loading, validation, overrides, immutability, the schema and its reference."""

from __future__ import annotations

import dataclasses
import json
import re
import textwrap
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Iterator

import jsonschema
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from setup_tasks import config
from setup_tasks.config import (
    CustomCheck,
    Settings,
    ValidationSettings,
    check_readme_reference,
    config_reference_markdown,
    limits,
    load_schema,
    load_settings,
    replace_readme_reference,
)
from setup_tasks.config.__main__ import main
from setup_tasks.config.schema import resolve_ref, with_defaults
from setup_tasks.config.codegen import CLASSES_PATH, WRITE_COMMAND, classes_source, write_classes
from setup_tasks.engine.census import CensusDefects, generate_census
from setup_tasks.errors import CensusError, ConfigError

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "setup.example.yaml"


def write(directory: Path, text: str, name: str = "setup.yaml") -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load(root: Path, text: str | None = None, env: dict[str, str] | None = None) -> Settings:
    """Load with ``text`` as <root>/setup.yaml (if given) and only ``env`` as the environment."""
    if text is not None:
        write(root, text)
    return load_settings(root=root, environ=env or {})


def error_of(root: Path, text: str | None, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(root, text, env)
    return info.value


def problems_of(root: Path, text: str, env: dict[str, str] | None = None) -> str:
    return error_of(root, text, env).cause


# ---------------------------------------------------------------- resolution and defaults


def test_defaults_without_a_file(tmp_path: Path) -> None:
    settings = load(tmp_path)
    assert settings.source is None
    assert settings.root == tmp_path
    assert settings.database.path is None  # the file dbt's profile writes (the engine reads it)
    assert settings.database.threads is None
    assert settings.dbt.project_dir == settings.dbt.profiles_dir == tmp_path / "dbt"
    assert settings.dbt.target is None
    assert settings.dbt.setup_selection == "resource_type:seed path:models/staging"
    assert settings.setup.clear_table_patterns == ("stg_", "int_", "fct_")
    assert settings.validation.fail_on == ("critical", "error")
    assert settings.validation.tables["census"] == "stg_census_data"
    assert len(settings.validation.tables) == 10
    assert settings.validation.custom_checks == ()
    assert settings.validation.required_seed_tables is None
    assert settings.census.path == tmp_path / "data" / "census.parquet"
    assert settings.report.path is None and settings.report.history_path is None
    with pytest.raises(ValueError):
        settings.state_dir
    resolved = settings.with_database(tmp_path / "simulation.duckdb")  # as dbt's profile names it
    assert resolved.report.path == tmp_path / "simulation.setup_report.json"
    assert resolved.report.history_path == tmp_path / "simulation.setup_history.jsonl"
    assert resolved.state_dir == tmp_path / ".planwise" / "simulation.duckdb"


def test_a_root_holding_dbt_project_yml_is_the_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A team's repository: dodo.py beside dbt_project.yml; profiles.yml there, else in ~/.dbt as dbt looks."""
    (tmp_path / "dbt_project.yml").write_text("name: team\n")
    home = tmp_path / "home"
    (home / ".dbt").mkdir(parents=True)
    (home / ".dbt" / "profiles.yml").write_text("team: {}\n")
    monkeypatch.setenv("HOME", str(home))
    settings = load(tmp_path)
    assert settings.dbt.project_dir == tmp_path
    assert settings.dbt.profiles_dir == home / ".dbt"
    (tmp_path / "profiles.yml").write_text("team: {}\n")
    assert load(tmp_path).dbt.profiles_dir == tmp_path


def test_profiles_are_found_where_dbt_finds_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 25: a repository running `dbt build --project-dir dbt_project` from its root keeps profiles.yml
    there: dbt.profiles_dir (DBT_PROFILES_DIR), then where dbt runs (the folder of setup.yaml), then the
    project folder, then ~/.dbt."""
    home = tmp_path / "home"
    (home / ".dbt").mkdir(parents=True)
    (home / ".dbt" / "profiles.yml").write_text("mine: {}\n")
    monkeypatch.setenv("HOME", str(home))
    repo = tmp_path / "repo"
    (repo / "dbt_project").mkdir(parents=True)
    (repo / "dbt_project" / "dbt_project.yml").write_text("name: p\n")
    write(repo, "dbt: {project_dir: dbt_project}\n")
    assert load(repo).dbt.profiles_dir == home / ".dbt"
    (repo / "dbt_project" / "profiles.yml").write_text("p: {}\n")
    assert load(repo).dbt.profiles_dir == repo / "dbt_project"
    (repo / "profiles.yml").write_text("p: {}\n")
    assert load(repo).dbt.profiles_dir == repo  # dbt's current folder comes first
    assert load(repo, env={"DBT_PROFILES_DIR": "elsewhere"}).dbt.profiles_dir == repo / "elsewhere"
    from setup_tasks.project.context import dbt_context

    assert dbt_context(load(repo)).profiles_searched == (repo, repo / "dbt_project", home / ".dbt")
    assert dbt_context(load(repo, env={"DBT_PROFILES_DIR": "x"})).profiles_searched == (repo / "x",)


def test_settings_know_which_keys_the_user_set(tmp_path: Path) -> None:
    """A default is not the user's choice: setup passes census.path to dbt only when the user set it (issue 25)."""
    assert not load(tmp_path).set_by_user("census.path")
    assert load(tmp_path, "census: {path: mine.parquet}").set_by_user("census.path")
    assert load(tmp_path, env={"CENSUS_PATH": "env.parquet"}).set_by_user("census.path")
    assert not load(tmp_path, "census: {generate: false}").set_by_user("census.path")
    assert not load(tmp_path, "dbt: {profiles_dir: null}").set_by_user("dbt.profiles_dir")  # null: the default
    assert load(tmp_path, "census: {path: data/census.parquet}").digest() == load(tmp_path).digest()


def test_a_set_database_path_derives_the_report_paths(tmp_path: Path) -> None:
    settings = load(tmp_path, "database: {path: w/warehouse.duckdb}")
    assert settings.report.path == tmp_path / "w" / "warehouse.setup_report.json"
    assert settings.with_database(tmp_path / "w" / "warehouse.duckdb").report == settings.report


@pytest.mark.parametrize("text", ["", "# only a comment\n", "database:\n  # path: x.duckdb\n"])
def test_empty_file_and_empty_section_mean_defaults(tmp_path: Path, text: str) -> None:
    settings = load(tmp_path, text)
    assert settings.source == tmp_path / "setup.yaml"
    assert settings.database.path is None


def test_file_values_are_typed(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        """
        database: {path: warehouse/sim.duckdb, threads: 4, memory_limit: 4GB}
        dbt: {target: ci, vars: {scenario: base, years: [2025, 2026]}}
        setup: {clear_tables: true, clear_table_patterns: ["tmp_*"]}
        validation:
          min_reasonable_compensation: 20000
          required_seed_tables: [config_job_levels]
          tables: {census: my_census}
        census: {employees: 500, seed: 7}
        """,
    )
    assert settings.database.path == tmp_path / "warehouse" / "sim.duckdb"
    assert settings.database.threads == 4 and settings.database.memory_limit == "4GB"
    assert settings.dbt.target == "ci"
    assert settings.dbt.vars_dict() == {"scenario": "base", "years": [2025, 2026]}
    assert settings.setup.clear_tables is True
    assert settings.setup.clear_table_patterns == ("tmp_*",)
    min_comp = settings.validation.min_reasonable_compensation
    assert min_comp == 20000.0 and isinstance(min_comp, float)
    assert settings.validation.required_seed_tables == ("config_job_levels",)
    assert settings.census.employees == 500 and settings.census.seed == 7
    # a partial tables mapping keeps the other defaults
    assert settings.validation.tables["census"] == "my_census"
    assert settings.validation.tables["job_levels"] == "stg_config_job_levels"
    assert settings.report.path == tmp_path / "warehouse" / "sim.setup_report.json"


def test_resolution_order(tmp_path: Path) -> None:
    write(tmp_path, "census: {seed: 1}")
    write(tmp_path, "census: {seed: 2}", "env.yaml")
    write(tmp_path, "census: {seed: 3}", "explicit.yaml")
    env = {"SETUP_CONFIG": "env.yaml"}
    assert load_settings(root=tmp_path, environ={}).census.seed == 1
    assert load_settings(root=tmp_path, environ=env).census.seed == 2
    assert load_settings("explicit.yaml", root=tmp_path, environ=env).census.seed == 3
    assert load_settings(tmp_path / "explicit.yaml", root=tmp_path, environ=env).source == tmp_path / "explicit.yaml"


def test_env_overrides_win_and_resolve_against_root(tmp_path: Path) -> None:
    write(tmp_path, "database: {path: a.duckdb}\ndbt: {target: dev, project_dir: p}\n", "conf/setup.yaml")
    env = {
        "SETUP_CONFIG": "conf/setup.yaml",
        "DUCKDB_PATH": "env.duckdb",
        "DBT_TARGET": "prod",
        "DBT_PROFILES_DIR": "profiles",
        "DBT_PROJECT_DIR": "/abs/project",
        "CENSUS_PATH": "~/census.parquet",
    }
    settings = load_settings(root=tmp_path, environ=env)
    assert settings.database.path == tmp_path / "env.duckdb"
    assert settings.dbt.target == "prod"
    assert settings.dbt.profiles_dir == tmp_path / "profiles"
    assert settings.dbt.project_dir == Path("/abs/project")
    assert settings.census.path == Path("~/census.parquet").expanduser()


def test_profiles_dir_follows_project_dir_from_env(tmp_path: Path) -> None:
    settings = load(tmp_path, env={"DBT_PROJECT_DIR": "other"})
    assert settings.dbt.profiles_dir == tmp_path / "other"


def test_relative_paths_resolve_against_the_file_directory(tmp_path: Path) -> None:
    source = write(tmp_path, "database: {path: ../db/sim.duckdb}\ndbt: {project_dir: proj}\n", "conf/setup.yaml")
    settings = load_settings(source, root=tmp_path, environ={})
    assert settings.database.path == tmp_path / "db" / "sim.duckdb"
    assert settings.dbt.project_dir == settings.dbt.profiles_dir == tmp_path / "conf" / "proj"
    # keys the file does not set keep resolving against the root
    assert settings.census.path == tmp_path / "data" / "census.parquet"
    assert settings.report.path == tmp_path / "db" / "sim.setup_report.json"
    assert all(p.is_absolute() for p in (settings.root, settings.source, settings.report.history_path))


# ---------------------------------------------------------------- file errors


def test_explicit_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings("missing.yaml", root=tmp_path, environ={})
    assert str(tmp_path / "missing.yaml") in info.value.cause
    assert "does not exist" in info.value.cause
    assert "setup.example.yaml" in info.value.fix


def test_setup_config_naming_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(root=tmp_path, environ={"SETUP_CONFIG": "nope.yaml"})
    assert "SETUP_CONFIG" in info.value.cause and "unset SETUP_CONFIG" in info.value.fix
    with pytest.raises(ConfigError, match="path \\(named by SETUP_CONFIG\\) is empty"):
        load_settings(root=tmp_path, environ={"SETUP_CONFIG": ""})


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    write(tmp_path, "database:\n  path: x.duckdb\n  threads: [1, 2\n")
    with pytest.raises(ConfigError) as info:
        load(tmp_path)
    assert re.match(r"setup\.yaml:4:\d+: invalid YAML", info.value.cause)


def test_duplicate_key_is_an_error_with_line(tmp_path: Path) -> None:
    write(tmp_path, "census:\n  seed: 1\n  seed: 2\n")
    with pytest.raises(ConfigError, match=r"setup\.yaml:3:3: invalid YAML: duplicate key 'seed'"):
        load(tmp_path)


def test_dates_stay_strings(tmp_path: Path) -> None:
    settings = load(tmp_path, "dbt: {vars: {start: 2025-01-01}}")
    assert settings.dbt.vars["start"] == "2025-01-01"
    json.dumps(settings.as_dict())


# ---------------------------------------------------------------- validation problems


def test_all_problems_at_once_with_paths_and_suggestion(tmp_path: Path) -> None:
    cause = problems_of(
        tmp_path,
        """
        database: {thraeds: 4}
        census: {employees: -5, missing_ssn_rate: 2}
        dbt: {threads: four}
        """,
    )
    lines = cause.splitlines()
    assert lines[0].startswith("4 problems in the setup configuration (setup.yaml)")
    assert "  setup.yaml: database.thraeds: unknown key (did you mean 'threads'?)" in lines
    assert "  setup.yaml: census.employees: -5 is less than the minimum of 1" in lines
    assert "  setup.yaml: census.missing_ssn_rate: 2 is greater than the maximum of 0.5" in lines
    assert "  setup.yaml: dbt.threads: expected integer or null, got string 'four'" in lines


@pytest.mark.parametrize(
    ("text", "env", "cause", "fix"),
    [
        ("databse: {}", {}, "setup.yaml: databse: unknown key (did you mean 'database'?)", "--reference"),
        (None, {"CENSUS_PATH": ""}, "CENSUS_PATH: census.path: '' should be non-empty", "environment variables"),
    ],
)
def test_single_problem_is_one_line_with_a_fix(
    tmp_path: Path, text: str | None, env: dict[str, str], cause: str, fix: str
) -> None:
    error = error_of(tmp_path, text, env)
    assert error.cause == cause
    assert fix in error.fix


def test_nested_unknown_keys(tmp_path: Path) -> None:
    cause = problems_of(
        tmp_path,
        """
        validation:
          tables: {censsu: x}
          custom_checks: [{name: a, sql: select 1, sevrity: info}]
        setup: {zzz: 1}
        """,
    )
    assert "setup.yaml: validation.tables.censsu: unknown key (did you mean 'census'?)" in cause
    assert "setup.yaml: validation.custom_checks[0].sevrity: unknown key (did you mean 'severity'?)" in cause
    assert "setup.yaml: setup.zzz: unknown key (valid keys: clear_tables," in cause


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("setup: {load_seeds: maybe}", "setup.load_seeds: expected boolean, got string 'maybe'"),
        ("database: 5", "database: expected mapping, got integer 5"),
        ("- a\n- b", "(top level): expected mapping, got a list"),
        ("validation: {fail_on: error}", "validation.fail_on: expected list, got string 'error'"),
        (
            "database: {memory_limit: lots}",
            "database.memory_limit: 'lots' is not valid (expected a value like '4GB' or '512MiB')",
        ),
        ("census: {employees: 1.5}", "census.employees: expected integer, got number 1.5"),
        ("dbt: {vars: {1: x}}", "dbt.vars: key 1 must be a string (quote it)"),
        (
            "validation: {compensation_outlier_zscore: .nan}",
            "validation.compensation_outlier_zscore: nan is not a finite number",
        ),
    ],
)
def test_type_errors(tmp_path: Path, text: str, expected: str) -> None:
    assert f"setup.yaml: {expected}" in problems_of(tmp_path, text)


def test_cross_field_problems_are_reported_with_schema_problems(tmp_path: Path) -> None:
    cause = problems_of(
        tmp_path,
        """
        validation:
          simulation_start_year: 2030
          simulation_end_year: 2026
          min_employee_age: 70
          max_employee_age: 20
          fail_on: [critical, fatal]
        census: {employees: 0}
        """,
    )
    assert "validation.simulation_end_year: 2026 is less than simulation_start_year (2030)" in cause
    assert "validation.max_employee_age: 20 is less than min_employee_age (70)" in cause
    assert "validation.fail_on[1]: 'fatal' is not one of ['critical', 'error', 'warning', 'info']" in cause
    assert "census.employees: 0 is less than the minimum of 1" in cause


def test_env_problems_name_the_variable(tmp_path: Path) -> None:
    cause = problems_of(tmp_path, "census: {seed: x}", env={"DUCKDB_PATH": "", "DBT_TARGET": "prod"})
    assert "  DUCKDB_PATH: database.path: '' should be non-empty" in cause.splitlines()
    assert "setup.yaml: census.seed: expected integer, got string 'x'" in cause
    assert "DBT_TARGET" not in cause


def test_custom_checks_valid(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        """
        validation:
          custom_checks:
            - {name: no_negative_pay, sql: "select * from t where pay < 0"}
            - {name: few_interns, description: Interns are rare, severity: warning, sql: select 1}
        """,
    )
    first, second = settings.validation.custom_checks
    assert first == CustomCheck("no_negative_pay", "", "error", "select * from t where pay < 0")
    assert second.severity == "warning" and second.description == "Interns are rare"
    assert settings.validation.is_blocking(first.severity)
    assert not settings.validation.is_blocking(second.severity)


def test_custom_checks_invalid(tmp_path: Path) -> None:
    cause = problems_of(
        tmp_path,
        """
        validation:
          custom_checks:
            - {name: Bad-Name, sql: select 1}
            - {name: dup, sql: select 1}
            - {name: dup, sql: "   "}
            - {name: no_sql, severity: fatal}
        """,
    )
    assert "validation.custom_checks[0].name: 'Bad-Name' is not valid" in cause
    assert "validation.custom_checks[2].name: duplicate check name 'dup' (first used by custom_checks[1])" in cause
    assert "validation.custom_checks[2].sql: SQL is blank" in cause
    assert "validation.custom_checks[3].sql: required key is missing" in cause
    assert "validation.custom_checks[3].severity: 'fatal' is not one of" in cause


# ---------------------------------------------------------------- immutability and helpers


def test_settings_are_immutable(tmp_path: Path) -> None:
    settings = load(tmp_path, "dbt: {vars: {nested: {a: [1, 2]}}}")
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.database = None  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.census.seed = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        settings.dbt.vars["x"] = 1  # type: ignore[index]
    with pytest.raises(TypeError):
        settings.dbt.vars["nested"]["a"] = 1  # type: ignore[index]
    with pytest.raises(TypeError):
        settings.validation.tables["census"] = "x"  # type: ignore[index]
    assert settings.dbt.vars["nested"]["a"] == (1, 2)
    plain = settings.dbt.vars_dict()
    plain["nested"]["a"].append(3)
    assert settings.dbt.vars_dict() == {"nested": {"a": [1, 2]}}


@pytest.mark.parametrize(
    ("patterns", "table", "expected"),
    [
        (("stg_",), "stg_census_data", True),
        (("stg_",), "STG_census", True),
        (("stg_",), "int_x", False),
        (("*_audit",), "stg_census_duplicates_audit", True),
        (("fct_[ab]*",), "fct_b_events", True),
        (("fct_[ab]*",), "fct_c_events", False),
        ((), "stg_x", False),
    ],
)
def test_clear_table_patterns_match(tmp_path: Path, patterns: tuple[str, ...], table: str, expected: bool) -> None:
    options = dataclasses.replace(load(tmp_path).setup, clear_table_patterns=patterns)
    assert options.matches(table) is expected


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=10,
)


@given(json_values)
def test_freeze_then_thaw_round_trips(value: Any) -> None:
    assert config.thaw(config.freeze(value)) == value


def test_as_dict_is_json_and_digest_is_stable(tmp_path: Path) -> None:
    settings = load(tmp_path, "validation: {custom_checks: [{name: a, sql: select 1}]}")
    data = json.loads(json.dumps(settings.as_dict()))
    assert data["database"]["path"] is None
    assert data["validation"]["custom_checks"][0]["severity"] == "error"
    assert settings.digest() == load(tmp_path).digest()
    assert re.fullmatch(r"[0-9a-f]{64}", settings.digest())


def test_digest_changes_when_a_value_changes(tmp_path: Path) -> None:
    base = load(tmp_path).digest()
    assert load(tmp_path, "census: {seed: 43}").digest() != base
    assert load(tmp_path, "census: {seed: 42}").digest() == base  # same values, now from a file
    assert load(tmp_path, "", env={"DBT_TARGET": "prod"}).digest() != base


# ---------------------------------------------------------------- example file


def test_example_file_validates_and_starts_with_the_schema_comment() -> None:
    assert EXAMPLE.read_text().splitlines()[0] == "# yaml-language-server: $schema=./schemas/setup_config.schema.json"
    assert (EXAMPLE.parent / "schemas" / "setup_config.schema.json").is_file()
    assert load_settings(EXAMPLE, root=REPO, environ={}).source == EXAMPLE


def test_example_file_documents_the_defaults(tmp_path: Path) -> None:
    defaults = load(tmp_path).digest()
    assert load(tmp_path, EXAMPLE.read_text()).digest() == defaults


def test_example_file_lists_every_key() -> None:
    example = yaml.safe_load(EXAMPLE.read_text())
    assert set(_leaf_keys(example)) == {key for key, _ in _schema_keys() if "[]" not in key}


def test_commented_custom_check_in_example_is_valid(tmp_path: Path) -> None:
    text = EXAMPLE.read_text()
    block = text.split("  # custom_checks:\n", 1)[1].split("\n\n", 1)[0]
    uncommented = "\n".join(line.replace("# ", "", 1) for line in block.splitlines())
    settings = load(tmp_path, "validation:\n  custom_checks:\n" + uncommented + "\n")
    assert settings.validation.custom_checks[0].name == "no_negative_salaries"


def _leaf_keys(data: dict[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in data.items():
        if isinstance(value, dict) and value and key != "vars":
            yield from _leaf_keys(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


# ---------------------------------------------------------------- the schema


def _schema_keys(node: dict[str, Any] | None = None, prefix: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """(dotted key, resolved schema) for every leaf key, with [] for list items."""
    node = load_schema() if node is None else node
    for key, sub in node.get("properties", {}).items():
        sub = resolve_ref(sub)
        if "properties" in sub:
            yield from _schema_keys(sub, f"{prefix}{key}.")
            continue
        yield f"{prefix}{key}", sub
        items = sub.get("items", {})
        if "properties" in items:
            yield from _schema_keys(items, f"{prefix}{key}[].")


def _schema_nodes(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(path, property schema, parent schema) for every property, sections included."""
    for key, sub in node.get("properties", {}).items():
        yield f"{path}{key}", resolve_ref(sub), node
        yield from _schema_nodes(sub, f"{path}{key}.")
        if "properties" in sub.get("items", {}):
            yield from _schema_nodes(sub["items"], f"{path}{key}[].")


def test_schema_is_valid_draft_2020_12() -> None:
    schema = load_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_every_key_has_type_default_and_description() -> None:
    schema = load_schema()
    assert schema["additionalProperties"] is False
    for path, node, parent in _schema_nodes(schema):
        assert "type" in node, path
        assert node.get("description"), path
        assert "default" in node or path.rsplit(".", 1)[-1] in parent.get("required", ()), path
        if "properties" in node:
            assert node["additionalProperties"] is False, path
        if "items" in node and "properties" in node["items"]:
            assert node["items"]["additionalProperties"] is False, path


def test_defaults_validate_and_object_defaults_agree_with_their_keys() -> None:
    schema = load_schema()
    for path, node, _ in _schema_nodes(schema):
        if "default" in node:
            assert not list(jsonschema.Draft202012Validator(schema).descend(node["default"], node)), path
        if "properties" in node and node.get("default"):
            assert node["default"] == with_defaults(node, {}), path


def test_derived_classes_have_exactly_the_schema_keys() -> None:
    schema = load_schema()
    # ... and which keys the file or the environment set (issue 25: a default is not the user's choice)
    assert [f.name for f in dataclasses.fields(Settings)] == ["root", "source", *schema["properties"], "explicit"]
    hints = typing.get_type_hints(Settings)
    public = {
        "database": "DatabaseSettings",
        "dbt": "DbtSettings",
        "setup": "SetupOptions",
        "validation": "ValidationSettings",
        "census": "CensusSettings",
        "report": "ReportSettings",
    }
    assert {name: hints[name] for name in schema["properties"]} == {k: getattr(config, v) for k, v in public.items()}
    for section, node in schema["properties"].items():
        cls = hints[section]
        assert [f.name for f in dataclasses.fields(cls)] == list(node["properties"]), section
        assert " ".join(cls.__doc__.split()) == node["description"] and cls.__module__ == "setup_tasks.config.sections"
        assert cls.__dataclass_params__.frozen and cls.__slots__ == tuple(node["properties"]), section
    items = schema["properties"]["validation"]["properties"]["custom_checks"]["items"]
    assert [f.name for f in dataclasses.fields(CustomCheck)] == list(items["properties"])
    assert typing.get_type_hints(ValidationSettings)["custom_checks"] == tuple[CustomCheck, ...]


def test_field_types_follow_the_json_types(tmp_path: Path) -> None:
    settings = load(tmp_path)
    hints = {
        f"{section}.{name}": hint
        for section in load_schema()["properties"]
        for name, hint in typing.get_type_hints(typing.get_type_hints(Settings)[section]).items()
    }
    assert {key for key, hint in hints.items() if Path in (hint, *typing.get_args(hint))} == {
        key for key, node in _schema_keys() if node.get("x-path")
    }
    assert hints["database.threads"] == int | None
    assert hints["validation.min_reasonable_compensation"] is float
    assert hints["validation.required_seed_tables"] == tuple[str, ...] | None
    assert hints["validation.columns"] == Mapping[str, Mapping[str, str]]
    assert hints["dbt.vars"] == Mapping[str, Any]
    assert not hasattr(settings.census, "__dict__")  # slotted: no stray attributes


def test_the_checked_in_classes_are_generated_from_the_schema(tmp_path: Path) -> None:
    """sections.py is what a type checker reads of the settings: it must say what the schema says."""
    assert CLASSES_PATH.read_text(encoding="utf-8") == classes_source(), (
        f"{CLASSES_PATH.name} is out of date with the schema: run `{WRITE_COMMAND}`"
    )
    copy = tmp_path / CLASSES_PATH.name
    assert write_classes(copy) and copy.read_text(encoding="utf-8") == classes_source()
    assert not write_classes(copy)  # unchanged: not written again


def _generated_classes(schema: dict[str, Any]) -> dict[str, Any]:
    """The classes the generated source defines for ``schema`` (the source run as a module of the package)."""
    namespace: dict[str, Any] = {"__name__": "setup_tasks.config.sections_probe", "__package__": "setup_tasks.config"}
    exec(compile(classes_source(schema), "sections_probe.py", "exec", dont_inherit=True), namespace)  # noqa: S102 - our own generated source
    return {name: value for name, value in namespace.items() if dataclasses.is_dataclass(value)}


def test_a_key_added_to_the_schema_becomes_a_field_of_the_generated_classes() -> None:
    schema = load_schema()
    schema["properties"]["census"]["properties"]["region"] = {
        "type": ["string", "null"],
        "default": None,
        "description": "x",
    }
    schema["properties"]["extra"] = {
        "type": "object",
        "description": "A new section.",
        "properties": {"folders": {"type": "array", "items": {"type": "string", "x-path": True}, "description": "y"}},
    }
    classes = _generated_classes(schema)
    assert [f.name for f in dataclasses.fields(classes["CensusSettings"])][-1] == "region"
    assert typing.get_type_hints(classes["CensusSettings"])["region"] == str | None
    assert classes["ExtraSettings"].__doc__ == "A new section."
    assert typing.get_type_hints(classes["ExtraSettings"])["folders"] == tuple[Path, ...]
    assert typing.get_type_hints(classes["Settings"])["extra"] is classes["ExtraSettings"]
    assert (
        classes["SetupOptions"](**{f.name: () for f in dataclasses.fields(classes["SetupOptions"])}).matches("x")
        is False
    )
    schema["properties"]["census"]["properties"]["region"]["type"] = ["string", "integer"]
    with pytest.raises(TypeError, match="one JSON type"):
        classes_source(schema)


def test_loaded_defaults_match_schema_defaults(tmp_path: Path) -> None:
    data = load(tmp_path).as_dict()
    for key, node in _schema_keys():
        if "[]" in key or node.get("default") is None:
            continue
        section, *rest = key.split(".")
        value = data[section]
        for part in rest:
            value = value[part]
        if node.get("x-path"):
            assert value == str(tmp_path / node["default"]), key
        else:
            assert value == node["default"], key


# ---------------------------------------------------------------- limits the census generator shares


def test_defect_rate_the_generator_refuses_is_a_config_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The crash: --check said ok for a rate the generator refuses, and `doit list` printed its traceback."""
    path = write(tmp_path, "census:\n  duplicate_id_rate: 0.7\n")
    assert main(["--check", str(path)]) == 1
    assert "setup.yaml: census.duplicate_id_rate: 0.7 is greater than the maximum of 0.5" in capsys.readouterr().err
    bound = limits("census.duplicate_id_rate")
    assert bound.maximum == 0.5
    with pytest.raises(CensusError, match=re.escape(f"duplicate_id_rate=0.7 is outside 0..{bound.maximum}")):
        CensusDefects(duplicate_id_rate=0.7)


@pytest.mark.parametrize("key", ["duplicate_id_rate", "missing_ssn_rate", "hire_after_termination_rate"])
@pytest.mark.parametrize("rate", [0, 0.25, 0.5, 0.5000001, 0.7, 1])
def test_config_and_generator_accept_the_same_defect_rates(tmp_path: Path, key: str, rate: float) -> None:
    try:
        load(tmp_path, f"census: {{{key}: {rate}}}")
        config_accepts = True
    except ConfigError as error:
        assert f"census.{key}: {rate} is greater than the maximum of" in error.cause
        config_accepts = False
    try:
        CensusDefects(**{key: rate})
        generator_accepts = True
    except CensusError:
        generator_accepts = False
    assert config_accepts == generator_accepts


@pytest.mark.parametrize(("key", "outside"), [("employees", 1), ("employees", -1), ("seed", 1), ("seed", -1)])
def test_generator_refuses_what_the_config_refuses(tmp_path: Path, key: str, outside: int) -> None:
    bound = limits(f"census.{key}")
    edge = bound.maximum if outside > 0 else bound.minimum
    assert load(tmp_path, f"census: {{{key}: {edge}}}").census.employees
    error = error_of(tmp_path, f"census: {{{key}: {edge + outside}}}")
    assert error.cause.startswith(f"setup.yaml: census.{key}: {edge + outside} is ")
    with pytest.raises(CensusError, match=str(edge + outside)):
        generate_census(tmp_path / "census.parquet", **{"employees": 10, "seed": 1, key: edge + outside})
    assert not (tmp_path / "census.parquet").exists()


def test_limits_are_the_schemas_inclusive_bounds() -> None:
    assert (limits("census.employees").minimum, limits("census.employees").maximum) == (1, 99_999_999)
    assert str(limits("census.seed")) == "0..2147483647"
    assert limits("validation.min_baseline_workforce_count").allows(10**9)
    with pytest.raises(ValueError, match="exclusiveMinimum"):
        limits("validation.compensation_outlier_zscore")
    with pytest.raises(KeyError, match="census.employes"):
        limits("census.employes")


# ---------------------------------------------------------------- reference and command line


def test_reference_mentions_every_key_and_section() -> None:
    text = config_reference_markdown()
    for section in load_schema()["properties"]:
        assert f"### `{section}`" in text
    for key, _ in _schema_keys():
        assert f"| `{key.split('.', 1)[1]}` |" in text, key
    for var in config.ENV_OVERRIDES:
        assert f"`{var}`" in text


def test_readme_reference_check_and_replace() -> None:
    stale = f"# Title\n\n{config.REFERENCE_START}\nold\n{config.REFERENCE_END}\n\nmore\n"
    assert not check_readme_reference(stale)
    assert not check_readme_reference("no markers")
    fresh = replace_readme_reference(stale)
    assert check_readme_reference(fresh)
    assert fresh.startswith("# Title\n\n") and fresh.endswith("\n\nmore\n")
    with pytest.raises(ValueError):
        replace_readme_reference("no markers")


def test_cli_check_and_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    for var in (config.CONFIG_ENV_VAR, *config.ENV_OVERRIDES):
        monkeypatch.delenv(var, raising=False)
    assert main(["--check"]) == 0
    assert capsys.readouterr().out == "ok\n"
    bad = write(tmp_path, "database: {thraeds: 1}", "bad.yaml")
    assert main(["--check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "bad.yaml: database.thraeds: unknown key (did you mean 'threads'?)" in err
    assert "\nfix: " in err
    assert main(["--reference"]) == 0
    assert capsys.readouterr().out == config_reference_markdown()


# -- YAML parsed before, by its text (config.yaml_cache) ------------------------------------------------------


def test_a_config_parsed_before_is_loaded_without_pyyaml(tmp_path: Path) -> None:
    """PyYAML's import is a full check's largest: a text parsed before comes from the cache, and a run that
    loads the settings and the dbt project then imports no yaml at all."""
    import os
    import subprocess
    import sys

    (tmp_path / "setup.yaml").write_text("database:\n  threads: 2\ncensus:\n  employees: 50\n")
    (tmp_path / "dbt_project.yml").write_text("name: p\nversion: '1'\nprofile: p\n")
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from setup_tasks.config import load_settings\n"
        "from setup_tasks.project.context import read_project_yaml\n"
        f"settings = load_settings(root=Path({str(tmp_path)!r}))\n"
        f"project = read_project_yaml(Path({str(tmp_path)!r}))\n"
        "print(settings.database.threads, settings.census.employees, project['name'], 'yaml' in sys.modules)\n"
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    runs = [subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True) for _ in range(2)]
    assert [r.stdout.split() for r in runs] == [["2", "50", "p", "True"], ["2", "50", "p", "False"]], runs[0].stderr


def test_the_cache_keeps_each_loaders_answer_apart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A text another loader accepted (PyYAML's safe loader keeps the last of two equal keys) is still refused
    by the config's loader, which rejects duplicate keys: the cache is keyed by loader and text."""
    from setup_tasks.config import yaml_cache
    from setup_tasks.project.context import _parse_safely

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    text = "database:\n  threads: 2\n  threads: 3\n"
    assert yaml_cache.parsed(text, "safe", _parse_safely) == {"database": {"threads": 3}}
    (tmp_path / "setup.yaml").write_text(text)
    with pytest.raises(ConfigError, match="duplicate key 'threads'"):
        load_settings(root=tmp_path)


@pytest.mark.parametrize(
    "value, exact",
    [
        ({"a": [1, 2.5, "x", None, True]}, True),
        ({"when": __import__("datetime").date(2024, 1, 31)}, False),  # a YAML date: JSON would give a string
        ({1: "a"}, False),  # a key JSON would make a string
        ({"s": {1, 2}}, False),
        ({"x": float("nan")}, False),
    ],
)
def test_only_what_json_gives_back_exactly_is_kept(value: Any, exact: bool) -> None:
    from setup_tasks.config.yaml_cache import exact_in_json

    assert exact_in_json(value) is exact
