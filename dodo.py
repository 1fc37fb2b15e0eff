"""planwise-setup: take the PlanWise DuckDB warehouse to simulation-ready, rebuilding only what is stale.

Run `doit list` to see every task; `doit setup` (the default) builds what is stale.
The task functions live in setup_tasks/tasks.py; this file only exposes them to doit.
"""

from setup_tasks.tasks import namespace

globals().update(namespace())
