"""Property: seeds, tables and views setup builds itself (without dbt) equal a clean build by dbt.

The same user and edits as ``test_property`` (its own module, so that the suite's workers
run the two properties side by side), on the shop project without the hooks that let a
kill or an edit land at an instant of dbt's build.
"""

from __future__ import annotations

import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from test_property import (
    BUDGET_SECONDS,
    EDIT_VALUES,
    FORGETTABLE,
    User,
    budget_spent,
    build,
    checks_run,
    clean_build,
    contents,
    make_project,
    random_draw,
    report,
)

pytestmark = pytest.mark.slow

# The edits that need no hook in dbt's build (the kill and edit instants above are dbt's hooks):
# an interrupt at a random instant, never in the commit window.
DIRECT_EDIT_VALUES = {
    **{name: values for name, values in EDIT_VALUES.items() if name not in ("during_build", "kill9")},
    "ctrl_c_forget": st.tuples(st.floats(0.5, 8.0), FORGETTABLE),
}
DIRECT_EDITS = st.one_of(*(st.tuples(st.just(name), values) for name, values in DIRECT_EDIT_VALUES.items()))
DIRECT_EXPLICIT = [
    # seeds edited, gaining a column, a table moved to the views and back, renamed, ephemeral: each
    # after a first build that kept every model's SQL, so setup builds them without dbt
    [
        ("orders_csv", [(1, Decimal("2.50")), (3, Decimal("7.00"))]),
        ("regions_columns", True),
        ("move_customers", True),
        ("events", ["buy"]),
        ("move_customers", False),
        ("rename_regions", True),
        ("ephemeral_regions", True),
        ("same_length", 4),
    ],
    [
        ("drop", "stg_orders"),
        ("forget", "-a"),
        ("ctrl_c_forget", (0.8, "seed:orders")),
        ("census_user", 7),
        ("orders_csv", []),
        ("regions_schema", True),
    ],
]


@settings(
    max_examples=2,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    print_blob=True,
)
@given(edits=st.lists(DIRECT_EDITS, min_size=1, max_size=3))
@example(edits=DIRECT_EXPLICIT[1])
@example(edits=DIRECT_EXPLICIT[0])
def test_setups_own_builds_equal_a_clean_dbt_build(edits: list[tuple[str, Any]]) -> None:
    """Seeds, tables and views setup builds without dbt (engine.direct_build) equal what dbt builds
    from scratch (the clean build deletes dbt's target folder, and with it every kept SQL)."""
    drawn = random_draw("direct", len(DIRECT_EXPLICIT))
    if drawn and budget_spent("direct", BUDGET_SECONDS / 2):
        return
    with tempfile.TemporaryDirectory() as tmp:
        user = User(make_project(Path(tmp), hooks=False))
        first = build(user)
        assert first["direct_builds"] == 0, "a first build has no kept SQL: dbt builds it"
        direct = 0
        for edit in edits:
            if drawn and budget_spent("direct", BUDGET_SECONDS / 2):
                break
            user.apply(edit)
            direct += build(user)["direct_builds"]
        incremental = contents(user.ws), checks_run(user.ws)
        clean = clean_build(user)
        assert report(user.ws)["direct_builds"] == 0
        assert incremental[0] == clean[0], "tables or schemas setup built differ from a clean dbt build's"
        assert incremental[1] == clean[1], "checks or dbt tests run differ from a clean build's"
        if not drawn:
            assert direct > 0, "the explicit examples must build without dbt"
