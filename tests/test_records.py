"""Build records: kept per dbt project; the single-project layout of earlier versions is taken over, not lost."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from setup_tasks.store.records import UNKNOWN_PROJECT, BuildRecord, BuildRecords, other_projects, project_state_dir


def _record(**extra: object) -> dict:
    return {k: v for k, v in asdict(BuildRecord("fp", {}, 0.0, 0.1, "b", relation=("db", "main", "t"))).items()
            if k != "project"} | extra


def test_the_first_project_takes_over_the_old_layout_and_adopts_only_its_own_records(tmp_path: Path) -> None:
    state = tmp_path / ".planwise" / "w.duckdb"
    state.mkdir(parents=True)
    (state / "records.json").write_text(json.dumps({"version": 1, "records": {
        "model.shop.stg_a": _record(), "seed.my_pkg.codes": _record(), "model.other.x": _record()}}))
    (state / "doit.sqlite").write_text("doit's state")
    (state / "run.lock").write_text("")
    folder = project_state_dir(state, "shop")
    assert folder == state / "projects" / "shop"
    assert (folder / "doit.sqlite").read_text() == "doit's state" and not (state / "records.json").exists()
    assert (state / "run.lock").exists()  # one writer per database: it stays with the database
    records = BuildRecords.load(folder / "records.json", "shop", {"my_pkg"})
    assert {uid: r.project for uid, r in records.records.items()} == {
        "model.shop.stg_a": "shop", "seed.my_pkg.codes": "shop", "model.other.x": UNKNOWN_PROJECT}
    assert set(records.of_project("shop")) == {"model.shop.stg_a", "seed.my_pkg.codes"}  # only these can retire
    assert project_state_dir(state, "hr") == state / "projects" / "hr"  # a second project starts afresh
    assert not (state / "projects" / "hr").exists()


def test_other_projects_records_are_read_for_reporting(tmp_path: Path) -> None:
    state = tmp_path
    for project in ("sales", "hr"):
        records = BuildRecords(state / "projects" / project / "records.json")
        records.put(f"model.{project}.t", BuildRecord("fp", {}, 0.0, 0.1, "b", project=project))
    assert [name for name, _ in other_projects(state, "sales")] == ["hr"]
