"""Validations: the framework (checks, results, registry), the built-in checks, and each run's scope.

Imports ``engine`` and below. Public API for teams writing their own checks::

    from setup_tasks.validation import CheckContext, CheckResult, SkipCheck, register_check
"""

from .framework import CheckContext, register_check
from .results import CheckResult, SkipCheck

__all__ = ["CheckContext", "CheckResult", "SkipCheck", "register_check"]
