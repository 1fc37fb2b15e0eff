"""dbt in process: the manifest parsed once is reused, also after a trip through its pickle."""

from __future__ import annotations

import pytest

from factories import Workspace
from setup_tasks.dbt.invoke import InProcessDbt
from setup_tasks.config import load_settings
from setup_tasks.project.context import dbt_context
from setup_tasks.store.caches import manifest_cache

pytestmark = pytest.mark.slow


def test_a_pickled_manifest_serves_several_invocations(shop: Workspace) -> None:
    ctx = dbt_context(load_settings(shop.config_path, root=shop.root, environ={}))
    parsed = InProcessDbt().parse_project(ctx, {"setup": "resource_type:seed path:models/staging"})
    assert "model.shop.stg_customer_orders" in parsed.selections["setup"]
    assert parsed.profile.path == str(shop.db_path)  # the profile reads DUCKDB_PATH, which setup exported
    manifest_path = manifest_cache(ctx).manifest_path
    dbt = InProcessDbt()  # as a fresh process: only the pickle on disk
    nodes = {
        uid: type("Target", (), {"unique_id": uid, "selector": sel})
        for uid, sel in [
            ("seed.shop.customers", "path:seeds/customers.csv"),
            ("model.shop.stg_customers", "path:models/staging/stg_customers.sql"),
            ("seed.shop.regions", "path:seeds/regions.csv"),
            ("model.shop.stg_regions", "path:models/staging/stg_regions.sql"),
            ("model.shop.stg_events", "path:models/staging/stg_events.sql"),  # source(): another lookup
        ]
    }
    seen: list[tuple[str, str]] = []
    for uid in nodes:  # one invocation each: lookups dbt caches on the manifest must survive
        dbt.build_nodes(ctx, manifest_path, [nodes[uid]], lambda o: seen.append((o.unique_id, o.status)))
    assert seen == [(uid, "success") for uid in nodes]
