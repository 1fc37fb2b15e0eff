"""planwise-setup: take the PlanWise DuckDB warehouse to simulation-ready, rebuilding only what is stale.

Run `doit list` to see every task; `doit setup` (the default) builds what is stale.
The tasks live in setup_tasks/cli; this file only exposes them to doit.
"""

from setup_tasks.cli import dodo_namespace

globals().update(dodo_namespace(__file__))
