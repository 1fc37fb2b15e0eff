"""Check results and the run's validation summary: what a check found, in typed, JSON-able form."""

from __future__ import annotations

import datetime as dt
import decimal
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

SEVERITIES = ("critical", "error", "warning", "info")
PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"


def jsonable(value: Any) -> Any:
    """Numbers and samples as JSON: decimals as floats, dates as ISO text."""
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (dt.date, dt.datetime, dt.time)):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check."""

    name: str
    status: str  # passed | failed | skipped
    severity: str  # critical | error | warning | info
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)
    guidance: str = ""
    seconds: float = 0.0
    up_to_date: bool = False  # reused from the last run: its inputs did not change
    incomplete: bool = False  # the check could not run to the end (locked database, crash): never reused

    @property
    def passed(self) -> bool:
        return self.status == PASSED

    @property
    def failed(self) -> bool:
        return self.status == FAILED

    @property
    def skipped(self) -> bool:
        return self.status == SKIPPED

    def blocking(self, fail_on: Iterable[str]) -> bool:
        """Does this result fail the setup under ``validation.fail_on``?"""
        return self.failed and self.severity in tuple(fail_on)

    def one_line(self) -> str:
        """'<name> failed (<severity>): <message> -- fix: <guidance>'."""
        text = f"{self.name} {self.status} ({self.severity}): {self.message}"
        return f"{text} -- fix: {self.guidance}" if self.failed and self.guidance else text

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "status": self.status, "severity": self.severity, "message": self.message,
            "details": jsonable(self.details), "guidance": self.guidance, "seconds": round(self.seconds, 4),
            "up_to_date": self.up_to_date, "incomplete": self.incomplete,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CheckResult":
        return cls(
            name=data["name"], status=data["status"], severity=data["severity"], message=data.get("message", ""),
            details=data.get("details") or {}, guidance=data.get("guidance", ""),
            seconds=float(data.get("seconds") or 0.0), up_to_date=bool(data.get("up_to_date")),
            incomplete=bool(data.get("incomplete")),
        )


class SkipCheck(Exception):
    """Raised inside a check: it cannot run here (a table or column is absent); the reason is reported."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class ValidationSummary:
    """Checks run, passed, failed, success rate, and the failures that matter."""

    results: tuple[CheckResult, ...]
    fail_on: tuple[str, ...]

    @property
    def run(self) -> int:
        return self.passed + self.failed

    @property
    def passed(self) -> int:
        return sum(r.passed for r in self.results)

    @property
    def failed(self) -> int:
        return sum(r.failed for r in self.results)

    @property
    def skipped(self) -> int:
        return sum(r.skipped for r in self.results)

    @property
    def success_rate(self) -> float:
        return self.passed / self.run if self.run else 1.0

    @property
    def critical_failures(self) -> list[CheckResult]:
        return [r for r in self.results if r.failed and r.severity == "critical"]

    @property
    def blocking_failures(self) -> list[CheckResult]:
        return [r for r in self.results if r.blocking(self.fail_on)]

    @property
    def reported_failures(self) -> list[CheckResult]:
        return [r for r in self.results if r.failed and not r.blocking(self.fail_on)]

    @property
    def ok(self) -> bool:
        return not self.blocking_failures

    def lines(self) -> list[str]:
        head = (f"validation: {self.run} checks run, {self.passed} passed, {self.failed} failed"
                f"{f', {self.skipped} skipped' if self.skipped else ''}, success rate {self.success_rate:.0%}")
        lines = [head]
        for label, results in (("critical", self.critical_failures),
                               ("blocking", [r for r in self.blocking_failures if r.severity != "critical"]),
                               ("reported", self.reported_failures)):
            lines += [f"  {label}: {r.one_line()}" for r in results]
        by_reason: dict[str, list[str]] = {}
        for r in self.results:
            if r.skipped:
                by_reason.setdefault(r.message, []).append(r.name)
        lines += [f"  skipped ({reason}): {', '.join(names)}" for reason, names in by_reason.items()]
        return lines

    def as_dict(self) -> dict[str, Any]:
        return {
            "checks_run": self.run, "passed": self.passed, "failed": self.failed, "skipped": self.skipped,
            "success_rate": round(self.success_rate, 4), "ok": self.ok,
            "critical_failures": [r.name for r in self.critical_failures],
            "blocking_failures": [r.name for r in self.blocking_failures],
            "results": [r.as_dict() for r in self.results],
        }


def summarize(results: Iterable[CheckResult], fail_on: Iterable[str] = ("critical", "error")) -> ValidationSummary:
    ordered = sorted(results, key=lambda r: (SEVERITIES.index(r.severity) if r.severity in SEVERITIES else 9, r.name))
    return ValidationSummary(tuple(ordered), tuple(fail_on))
