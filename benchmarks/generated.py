"""Generated dbt-duckdb projects of any size, for measuring how setup's cost grows (bench_scale.py).

A project of ``n`` models has 10 layers of ``n // 10`` models; every third model is a view, the rest
tables; ``n // 10`` seeds of 50 rows; a ``not_null`` and a ``unique`` test on each model's id.

    seed_0 (root) --> the first ~35% of layer 0 ---> ... each model reads two of the layer before it:
    seed_1 .. seed_{S-2} --> layer 0 (one each)        its own index and the next one, so a change
    seed_{S-1} (leaf) -----------------------------> the last model of layer 9 only
                                                      spreads one model wider per layer

Editing the root seed rebuilds about 40% of the models, the leaf seed 2 nodes (itself and one
model), the edited model (``EDITED_LAYER``) 10 nodes: the same share of the project at every size.
Reordering the root seed's rows changes its file, not its table's content: with early cutoff only
the seed is rebuilt, without it the same 40%.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import yaml

LAYERS = 10
ROWS = 50
ROOT_SHARE = 0.35  # of layer 0 reads the root seed
EDITED_LAYER = 6  # the model whose SQL the benchmark edits: layer 6, index 0 (10 nodes rebuilt)
FACTORS = ("0.5", "0.25")  # the edited model's SQL alternates between these


@dataclass(frozen=True)
class Generated:
    """A generated project: where it is and the names the benchmark edits."""

    root: Path
    models: int
    seeds: int
    width: int

    @property
    def root_seed(self) -> Path:
        return self.root / "seeds" / "seed_0.csv"

    @property
    def leaf_seed(self) -> Path:
        return self.root / "seeds" / f"seed_{self.seeds - 1}.csv"

    @property
    def edited_model(self) -> Path:
        return self.root / "models" / f"layer_{EDITED_LAYER}" / f"{model_name(EDITED_LAYER, 0)}.sql"

    @property
    def database(self) -> Path:
        return self.root / "gen.duckdb"


def model_name(layer: int, index: int) -> str:
    return f"m_{layer}_{index}"


def generate(root: Path, models: int, threads: int = 2) -> Generated:
    """Write a project of ``models`` models (a multiple of 10, at least 10) in ``root``."""
    if models < LAYERS or models % LAYERS:
        raise ValueError(f"models must be a multiple of {LAYERS}, at least {LAYERS}: {models}")
    width = models // LAYERS
    seeds = max(3, width)
    root.mkdir(parents=True, exist_ok=True)
    _yaml(
        root / "dbt_project.yml",
        {
            "name": "gen",
            "version": "1.0.0",
            "config-version": 2,
            "profile": "gen",
            "model-paths": ["models"],
            "seed-paths": ["seeds"],
            "target-path": "target",
            "models": {"gen": {"+materialized": "table"}},
        },
    )
    _yaml(
        root / "profiles.yml",
        {"gen": {"target": "dev", "outputs": {"dev": {"type": "duckdb", "path": "gen.duckdb", "threads": threads}}}},
    )
    (root / ".gitignore").write_text("target/\nlogs/\n*.duckdb\n")
    for s in range(seeds):
        _write(root / "seeds" / f"seed_{s}.csv", seed_csv(s, 0))
    schema = []
    for layer in range(LAYERS):
        for index in range(width):
            name = model_name(layer, index)
            _write(root / "models" / f"layer_{layer}" / f"{name}.sql", model_sql(layer, index, width, seeds))
            schema.append({"name": name, "columns": [{"name": "id", "data_tests": ["not_null", "unique"]}]})
    _yaml(root / "models" / "schema.yml", {"version": 2, "models": schema})
    return Generated(root, models, seeds, width)


def seed_csv(number: int, version: int) -> str:
    """50 rows: id, a group, a value, a name; ``version`` moves the last row's value (an edit)."""
    rows = [
        f"{i},{i % 7},{(i * 37 + number) % 1000 + (version if i == ROWS else 0)}.5,name_{number}_{i}"
        for i in range(1, ROWS + 1)
    ]
    return "id,grp,v,name\n" + "\n".join(rows) + "\n"


def model_sql(layer: int, index: int, width: int, seeds: int, factor: str = FACTORS[0]) -> str:
    materialized = "view" if (layer * width + index) % 3 == 0 else "table"
    head = f"{{{{ config(materialized='{materialized}') }}}}\n" if materialized == "view" else ""
    if layer == 0:
        own = 1 + index % (seeds - 2)
        sql = f"select s.id, s.grp, s.v * 2 as v, s.name\nfrom {{{{ ref('seed_{own}') }}}} s"
        if index < math.ceil(ROOT_SHARE * width):
            sql = (
                f"select s.id, s.grp, s.v * 2 + r.v as v, s.name\nfrom {{{{ ref('seed_{own}') }}}} s\n"
                f"join {{{{ ref('seed_0') }}}} r using (id)"
            )
        return head + sql + "\n"
    first, second = model_name(layer - 1, index), model_name(layer - 1, (index + 1) % width)
    sql = (
        f"select a.id, a.grp, a.v + coalesce(b.v, 0) * {factor} as v, a.name\n"
        f"from {{{{ ref('{first}') }}}} a\nleft join {{{{ ref('{second}') }}}} b using (id)"
    )
    if layer == LAYERS - 1 and index == width - 1:
        sql += f"\nleft join {{{{ ref('seed_{seeds - 1}') }}}} leaf using (id)\nwhere leaf.v is not null"
    return head + sql + "\n"


def edit_root_seed(project: Generated, version: int) -> None:
    project.root_seed.write_text(seed_csv(0, version))


def reorder_root_seed(project: Generated, version: int) -> None:
    """The root seed's rows in the other order: the same table content (what early cutoff notices)."""
    header, *rows = project.root_seed.read_text().splitlines()
    project.root_seed.write_text("\n".join([header, *reversed(rows)]) + "\n")


def edit_leaf_seed(project: Generated, version: int) -> None:
    project.leaf_seed.write_text(seed_csv(project.seeds - 1, version))


def edit_model(project: Generated, version: int) -> None:
    factor = FACTORS[version % 2]
    project.edited_model.write_text(model_sql(EDITED_LAYER, 0, project.width, project.seeds, factor))


def descendants(project: Generated) -> dict[str, int]:
    """How many nodes (seeds and models, the edited one included) each edit rebuilds."""
    width, seeds = project.width, project.seeds
    children: dict[str, set[str]] = {}
    for index in range(width):
        children.setdefault(f"seed_{1 + index % (seeds - 2)}", set()).add(model_name(0, index))
        if index < math.ceil(ROOT_SHARE * width):
            children.setdefault("seed_0", set()).add(model_name(0, index))
    for layer in range(1, LAYERS):
        for index in range(width):
            for parent in (index, (index + 1) % width):
                children.setdefault(model_name(layer - 1, parent), set()).add(model_name(layer, index))
    children.setdefault(f"seed_{seeds - 1}", set()).add(model_name(LAYERS - 1, width - 1))

    def reach(start: str) -> int:
        seen, todo = {start}, [start]
        while todo:
            for child in children.get(todo.pop(), ()):
                if child not in seen:
                    seen.add(child)
                    todo.append(child)
        return len(seen)

    return {
        "root seed": reach("seed_0"),
        "leaf seed": reach(f"seed_{seeds - 1}"),
        "model SQL": reach(model_name(EDITED_LAYER, 0)),
    }


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _yaml(path: Path, data: object) -> None:
    _write(path, yaml.safe_dump(data, sort_keys=False))
