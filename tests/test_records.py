"""Build records: kept per dbt project; the single-project layout of earlier versions is taken over, not lost."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from setup_tasks.store.records import UNKNOWN_PROJECT, BuildRecord, BuildRecords, other_projects, project_state_dir


def _record(**extra: object) -> dict:
    return {
        k: v
        for k, v in asdict(BuildRecord("fp", {}, 0.0, 0.1, "b", relation=("db", "main", "t"))).items()
        if k != "project"
    } | extra


def test_the_first_project_takes_over_the_old_layout_and_adopts_only_its_own_records(tmp_path: Path) -> None:
    state = tmp_path / ".planwise" / "w.duckdb"
    state.mkdir(parents=True)
    (state / "records.json").write_text(
        json.dumps(
            {
                "version": 1,
                "records": {"model.shop.stg_a": _record(), "seed.my_pkg.codes": _record(), "model.other.x": _record()},
            }
        )
    )
    (state / "doit.sqlite").write_text("doit's state")
    (state / "run.lock").write_text("")
    folder = project_state_dir(state, "shop")
    assert folder == state / "projects" / "shop"
    assert (folder / "doit.sqlite").read_text() == "doit's state" and not (state / "records.json").exists()
    assert (state / "run.lock").exists()  # one writer per database: it stays with the database
    records = BuildRecords.load(folder / "records.json", "shop", {"my_pkg"})
    assert {uid: r.project for uid, r in records.records.items()} == {
        "model.shop.stg_a": "shop",
        "seed.my_pkg.codes": "shop",
        "model.other.x": UNKNOWN_PROJECT,
    }
    assert set(records.of_project("shop")) == {"model.shop.stg_a", "seed.my_pkg.codes"}  # only these can retire
    assert project_state_dir(state, "hr") == state / "projects" / "hr"  # a second project starts afresh
    assert not (state / "projects" / "hr").exists()


def test_other_projects_records_are_read_for_reporting(tmp_path: Path) -> None:
    state = tmp_path
    for project in ("sales", "hr"):
        records = BuildRecords(state / "projects" / project / "records.json")
        records.put(f"model.{project}.t", BuildRecord("fp", {}, 0.0, 0.1, "b", project=project))
    assert [name for name, _ in other_projects(state, "sales")] == ["hr"]


def _many(folder: Path, n: int) -> BuildRecords:
    records = BuildRecords(folder / "records.json")
    for i in range(n):
        records.records[f"model.shop.m{i}"] = BuildRecord(
            f"fp{i}", {"file:m.sql": "abc"}, 0.0, 0.1, "b", relation=("db", "main", f"m{i}"), project="shop"
        )
    records.save()
    return records


def test_a_build_appends_its_record_and_never_rewrites_the_others(tmp_path: Path) -> None:
    """Issue 21: recording one node costs the same in a project of 1,000 nodes as in one of 10: one
    line appended to the journal; records.json is left alone, and loading replays the journal."""
    records = _many(tmp_path, 1000)
    before = (tmp_path / "records.json").read_bytes()
    records.intend({"model.shop.m1": [("db", "main", "m1"), ("db", "main", "m1__dbt_tmp")]}, [("db", "raw")])
    records.put("model.shop.m1", BuildRecord("new", {}, 1.0, 0.2, "b2", relation=("db", "main", "m1"), project="shop"))
    records.sign({"model.shop.m1": "50:123"})
    records.flush()  # a few changes: not folded in
    assert (tmp_path / "records.json").read_bytes() == before
    assert (tmp_path / "records.journal").stat().st_size < 2000
    again = BuildRecords.load(tmp_path / "records.json", "shop")
    assert again.records["model.shop.m1"].fingerprint == "new" and again.records["model.shop.m1"].signature == "50:123"
    assert again.intents == {} and again.schemas == {("db", "raw")} and len(again.records) == 1000
    again.drop(["model.shop.m2"])
    assert "model.shop.m2" not in BuildRecords.load(tmp_path / "records.json").records


def test_a_torn_journal_line_costs_only_its_own_change(tmp_path: Path) -> None:
    """A run killed while appending leaves half a line: the records before it and the other lines hold."""
    records = _many(tmp_path, 3)
    records.put("model.shop.m0", BuildRecord("new", {}, 1.0, 0.2, "b2", project="shop"))
    with (tmp_path / "records.journal").open("a") as fh:
        fh.write('{"record": ["model.shop.m1", {"fingerp')
    loaded = BuildRecords.load(tmp_path / "records.json")
    assert loaded.records["model.shop.m0"].fingerprint == "new" and loaded.records["model.shop.m1"].fingerprint == "fp1"


def test_a_long_journal_is_folded_into_the_records_at_the_end_of_a_run(tmp_path: Path) -> None:
    records = _many(tmp_path, 10)
    for i in range(100):
        records.put(f"model.shop.n{i}", BuildRecord("fp", {}, 1.0, 0.2, "b", project="shop"))
    records.flush()
    assert not (tmp_path / "records.journal").exists()
    assert len(json.loads((tmp_path / "records.json").read_text())["records"]) == 110
    assert len(BuildRecords.load(tmp_path / "records.json").records) == 110
