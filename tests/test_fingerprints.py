"""Fingerprints: what each node's content derives from, and the words for what changed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from factories import make_manifest, manifest_node as n
from setup_tasks.project import fingerprints as fingerprint_module
from setup_tasks.project.context import effective_vars
from setup_tasks.project.fingerprints import FileHasher, FingerprintCalculator, explain
from setup_tasks.store.database import reader_paths
from setup_tasks.project.graph import SetupGraph
from setup_tasks.project.manifest import manifest_from_dict


def project(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return tmp_path


NODES = (
    n("seed.p.levels"),
    n("source.p.raw.census", external_location="data/census_*.parquet"),
    n(
        "model.p.stg_levels",
        ("seed.p.levels",),
        raw_code="select * from {{ ref('levels') }} where y = {{ var('year') }}",
    ),
    n(
        "model.p.stg_census",
        ("source.p.raw.census",),
        raw_code="select {{ scale('pay') }} from x",
        macros=("macro.p.scale",),
    ),
    n("model.p.report", ("model.p.stg_levels", "model.p.stg_census"), raw_code="select 1"),
)
FILES = {
    "seeds/levels.csv": "id\n1\n",
    "models/stg_levels.sql": "v1",
    "models/stg_census.sql": "v1",
    "models/report.sql": "v1",
    "data/census_1.parquet": "A",
    "data/census_2.parquet": "B",
}


def fingerprints(root: Path, variables: dict | None = None, macro_sql: str = "{{ var('factor') }} * pay"):
    manifest = manifest_from_dict(make_manifest(*NODES, macros={"macro.p.scale": macro_sql}))
    calc = FingerprintCalculator(
        manifest,
        SetupGraph.from_manifest(manifest),
        root,
        {"year": 2025, "factor": 2, **(variables or {})},
        FileHasher(),
        readers=reader_paths,
    )
    return calc.compute(manifest.nodes)


def test_parts_name_files_vars_macros_externals_and_upstreams(tmp_path: Path) -> None:
    fp = fingerprints(project(tmp_path, FILES))
    levels = fp["model.p.stg_levels"].parts
    assert "file:models/stg_levels.sql" in levels and levels["var:year"] == "2025"
    assert "var:factor" not in levels
    census = fp["model.p.stg_census"].parts
    assert census["var:factor"] == "2" and "macro:macro.p.scale" in census  # var read through a macro
    source = fp["source.p.raw.census"].parts
    assert {"external:data/census_1.parquet", "external:data/census_2.parquet"} <= set(source)  # a glob
    assert fp["model.p.report"].parts["upstream:model.p.stg_census"] == fp["model.p.stg_census"].digest


def test_a_change_propagates_downstream_and_only_there(tmp_path: Path) -> None:
    root = project(tmp_path, FILES)
    before = fingerprints(root)
    (root / "data" / "census_2.parquet").write_text("changed")
    after = fingerprints(root)
    changed = {uid for uid in before if before[uid].digest != after[uid].digest}
    assert changed == {"source.p.raw.census", "model.p.stg_census", "model.p.report"}


def test_vars_change_only_their_readers(tmp_path: Path) -> None:
    root = project(tmp_path, FILES)
    before, after = fingerprints(root), fingerprints(root, {"year": 2026})
    changed = {uid for uid in before if before[uid].digest != after[uid].digest}
    assert changed == {"model.p.stg_levels", "model.p.report"}


def test_environment_variables_read_by_code_or_its_macros_are_inputs(tmp_path: Path) -> None:
    root = project(tmp_path, FILES)
    manifest = manifest_from_dict(
        make_manifest(*NODES, macros={"macro.p.scale": "pay * {{ env_var('PAY_FACTOR', '1') }}"})
    )

    def digests(environ: dict) -> dict:
        calc = FingerprintCalculator(
            manifest,
            SetupGraph.from_manifest(manifest),
            root,
            {"year": 2025},
            FileHasher(),
            environ=environ,
            readers=reader_paths,
        )
        return calc.compute(manifest.nodes)

    unset, one, two = digests({}), digests({"PAY_FACTOR": "s3cr3t", "OTHER": "x"}), digests({"PAY_FACTOR": "2"})
    assert unset["model.p.stg_census"].parts["env:PAY_FACTOR"] == "<unset>"
    assert "s3cr3t" not in str(one["model.p.stg_census"].parts)  # recorded as a digest, never the value
    changed = {uid for uid in one if one[uid].digest != two[uid].digest}
    assert changed == {"model.p.stg_census", "model.p.report"}
    assert explain(one["model.p.stg_census"].parts, two["model.p.stg_census"].parts) == [
        "environment variable changed: PAY_FACTOR"
    ]
    assert digests({"PAY_FACTOR": "2", "OTHER": "y"})["model.p.report"].digest == two["model.p.report"].digest


def test_a_var_naming_a_file_makes_the_file_an_input(tmp_path: Path) -> None:
    root = project(tmp_path, {**FILES, "extra.csv": "x"})
    fp = fingerprints(root, {"year": "extra.csv"})
    assert "external:extra.csv" in fp["model.p.stg_levels"].parts


def test_explain_says_what_changed_in_words(tmp_path: Path) -> None:
    root = project(tmp_path, FILES)
    before = fingerprints(root)
    (root / "seeds" / "levels.csv").write_text("id\n2\n")
    after = fingerprints(root, {"year": 2030})
    names = {"seed.p.levels": "seed levels"}
    assert explain(before["model.p.stg_levels"].parts, after["model.p.stg_levels"].parts, names) == [
        "upstream changed: seed levels",
        "var changed: year (2025 -> 2030)",
    ]
    assert explain(before["seed.p.levels"].parts, after["seed.p.levels"].parts) == ["file changed: seeds/levels.csv"]
    assert explain({"a": "1"}, {"a": "1", "var:x": "2"}) == ["new input: var x"]


def test_a_checks_reasons_use_the_same_words() -> None:
    from setup_tasks.validation.scope import stale_reasons

    names = {"model.p.stg_levels": "model stg_levels"}
    old = {"definition": "a", "input:model.p.stg_levels": "1", "setting:validation.min": "10", "absent:t": "x"}
    new = {"definition": "b", "input:model.p.stg_levels": "2", "untracked:raw": "y"}
    assert stale_reasons(old, new, names) == [
        "reads raw, which setup does not track",
        "table t appeared in the database",
        "check definition changed",
        "input changed: model stg_levels",
        "setting changed: validation.min (10 -> unset)",
    ]
    assert stale_reasons({}, new, names) == ["no stored result (never checked, failed last time, or forgotten)"]
    assert stale_reasons(old, dict(old), names) == []
    # A table setup does not build cannot be tracked: a check reading one always runs.
    assert stale_reasons(new, dict(new), names) == ["reads raw, which setup does not track"]


def test_file_hasher_reuses_hashes_of_unchanged_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fingerprint_module, "RACY_NS", 0)  # files written by the test count as settled
    path = tmp_path / "big.bin"
    path.write_bytes(b"x" * 3_000_000)  # beyond the 1 MiB where dbt stops hashing seeds
    cache: dict = {}
    first = FileHasher(cache).hash(path)
    assert FileHasher(cache).hash(path) == first and cache
    path.write_bytes(b"x" * 2_999_999 + b"y")
    assert FileHasher(cache).hash(path) != first


def test_file_hasher_sees_a_same_length_edit_whose_mtime_was_restored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fingerprint_module, "RACY_NS", 0)
    path = tmp_path / "orders.csv"
    path.write_text("id,amount\n10,20.5\n")
    before = path.stat()
    cache: dict = {}
    first = FileHasher(cache).hash(path)
    path.write_text("id,amount\n10,90.5\n")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # as `touch -r` does
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert FileHasher(cache).hash(path) != first


def test_file_hasher_does_not_cache_a_file_changed_a_moment_ago(tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text("id\n1\n")
    cache: dict = {}
    FileHasher(cache).hash(path)
    assert cache == {}  # an edit in the same clock tick would otherwise be missed for good
    cache[str(path.resolve())] = [[0, 0, path.stat().st_size, path.stat().st_mtime_ns], "stale"]  # an old-style key
    assert FileHasher(cache).hash(path) != "stale"


def test_effective_vars_follow_dbt_precedence() -> None:
    project_yaml = {"vars": {"a": 1, "b": 1, "proj": {"b": 2, "c": 2}}}
    assert effective_vars(project_yaml, "proj", {"c": 3}) == {"a": 1, "b": 2, "c": 3}


def test_env_var_names_are_found_as_yaml_and_jinja_write_them() -> None:
    from setup_tasks.project.manifest import ENV_VAR_RE

    written = (
        "{{ env_var('A') }}",
        '{{ env_var("B", "x") }}',
        "- '{% if env_var(''C'', '''') %}select 1{% endif %}'",
    )  # a hook in single-quoted YAML
    assert [name for text in written for name in ENV_VAR_RE.findall(text)] == ["A", "B", "C"]
