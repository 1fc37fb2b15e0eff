"""planwise-setup: take the PlanWise DuckDB warehouse to simulation-ready, rebuilding only what is stale.

Run `doit list` to see every task; `doit setup` (the default) builds what is stale.
"""

from setup_tasks.session import doit_config
from setup_tasks.tasks import task_groups, task_nodes  # noqa: F401  (doit collects task_*)

DOIT_CONFIG = doit_config()
