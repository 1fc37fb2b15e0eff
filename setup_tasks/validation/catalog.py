"""Which checks a run has: the built-in ones (discovered in ``validation.builtin``), those registered
by the modules ``validation.check_modules`` names, and the custom SQL checks of the config."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from ..config import ValidationSettings, nearest
from ..errors import DatabaseError, PlanwiseError
from ..store.database import tables_in_sql
from . import builtin
from .framework import REGISTRY, Check, CheckContext, CheckRegistry, Reads
from .project_view import ProjectView
from .results import CheckResult

DBT_TESTS_CHECK = "dbt_tests"
# The built-in model checks' area: "staging_models" where setup builds staging models only (PlanWise),
# "models" in a project whose setup builds others too (a team's marts). Either name disables it.
STAGING_AREA, MODELS_AREA = "staging_models", "models"


def discover_builtin() -> None:
    """Import every module of ``validation.builtin``: each registers its checks (name order)."""
    for module in sorted(m.name for m in pkgutil.iter_modules(builtin.__path__)):
        importlib.import_module(f"{builtin.__name__}.{module}")


def custom_check(index: int, name: str, sql: str, severity: str, description: str) -> Check:
    """A check from ``validation.custom_checks[index]``: the query selects the offending rows."""
    origin = f"validation.custom_checks[{index}]"
    tables = tables_in_sql(sql)

    def run(ctx: CheckContext) -> CheckResult:
        what = f"offending rows{f' ({description})' if description else ''}"
        guidance = f"correct the rows the query of {origin} ({name}) selects"
        try:
            return ctx.audit(sql, what=what, guidance=guidance)
        except DatabaseError as err:
            return ctx.failed(
                f"the query failed: {err.cause.removeprefix('query failed: ')}", f"fix the SQL of {origin}.sql"
            )

    reads: Reads = tuple(sorted(tables)) if tables is not None else _everything
    return Check(name, severity, run, reads, (), description, origin, definition=sql)


def _everything(project: ProjectView, validation: ValidationSettings) -> list[str]:
    """Reads of a query that cannot be parsed: every node setup builds."""
    return list(project.setup_nodes)


def _import_check_modules(validation: ValidationSettings, root: Path) -> None:
    if validation.check_modules and str(root) not in sys.path:
        sys.path.append(str(root))
    for module in validation.check_modules:
        try:
            importlib.import_module(module)
        except Exception as exc:  # any import failure is a definition error, named
            raise PlanwiseError(
                f"validation.check_modules: cannot import {module}: {type(exc).__name__}: {exc}",
                f"make {module} importable from {root} (or installed), or remove it from validation.check_modules",
            ) from None


def models_area(project: ProjectView) -> str:
    """What the built-in model checks are called in this project: its models' kind, in its words."""
    models = project.selected("model", "snapshot")
    return STAGING_AREA if all(n.in_staging_folder for n in models) else MODELS_AREA


def load_checks(
    validation: ValidationSettings, root: Path, registry: CheckRegistry | None = None, area: str = STAGING_AREA
) -> list[Check]:
    """Built-in, Python-registered and custom SQL checks, in that order; names checked unique.

    ``area``: the name of the built-in model checks' area (``models_area``)."""
    discover_builtin()
    registry = registry or REGISTRY
    _import_check_modules(validation, root)
    # The project's own dbt tests go after the built-in SQL checks (one slow invocation, last).
    found = sorted(
        (_in_area(c, area) for c in registry.checks() if validation.run_dbt_tests or c.name != DBT_TESTS_CHECK),
        key=lambda c: c.name == DBT_TESTS_CHECK,
    )
    taken = {c.name for c in found} | {c.group for c in found if c.group}
    for index, entry in enumerate(validation.custom_checks):
        if entry.name in taken:
            raise PlanwiseError(
                f"validation.custom_checks[{index}].name: {entry.name!r} is already a built-in or registered check",
                "choose another name",
            )
        taken.add(entry.name)
        found.append(custom_check(index, entry.name, entry.sql, entry.severity, entry.description))
    # The model checks' PlanWise names keep disabling them when they are called "models" here.
    renamed = (
        {}
        if area == STAGING_AREA
        else {STAGING_AREA: area, **{_in_area_name(c.name, STAGING_AREA): c.name for c in found if c.group == area}}
    )
    disabled = [renamed.get(name, name) for name in validation.disabled_checks]
    return _without_disabled(found, disabled, taken | {DBT_TESTS_CHECK})


def _in_area_name(name: str, area: str) -> str:
    """A built-in model check's name in ``area`` (other names as they are)."""
    head, dot, rest = name.partition(".")
    return f"{area}.{rest}" if dot and head in (STAGING_AREA, MODELS_AREA) else name


def _in_area(check: Check, area: str) -> Check:
    name = _in_area_name(check.name, area) if check.origin.startswith(f"{builtin.__name__}.") else check.name
    return check if name == check.name else replace(check, name=name)


def _without_disabled(checks: list[Check], disabled: Sequence[str], known: set[str]) -> list[Check]:
    """The checks ``validation.disabled_checks`` leaves, by check name or area; an unknown name is an error."""
    for index, name in enumerate(disabled):
        if name not in known:
            close = nearest(name, known)
            raise PlanwiseError(
                f"validation.disabled_checks[{index}]: {name!r} is no check or area"
                + (f" (did you mean {close!r}?)" if close else ""),
                "use a name from `doit list` without the validate: prefix",
            )
    off = set(disabled)
    return [c for c in checks if c.name not in off and (c.group or "") not in off]
