"""Check results and the run's validation summary: what a check found, in typed, JSON-able form."""

from __future__ import annotations

import datetime as dt
import decimal
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from ..errors import one_line

SEVERITIES = ("critical", "error", "warning", "info")
PASSED, FAILED, SKIPPED, NOT_RUN = "passed", "failed", "skipped", "not run"
LISTED = "listed"  # a result's detail: every item of a list its message names only the first few of
DEFAULT_FAIL_ON = ("critical", "error")
# A severity each verdict implies, as dbt words them: a failed warning is WARN, a failed error FAIL.
IMPLIED: Mapping[str, str] = {"warn": "warning", "fail": "error"}


def singular(phrase: str) -> str:
    """The phrase about one thing: its first plural word made singular ('employees hired' -> 'employee hired')."""
    words = phrase.split(" ")
    for i, word in enumerate(words):
        if len(word) > 2 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
            words[i] = word[:-3] + "y" if word.endswith("ies") else word[:-1]
            break
    return " ".join(words)


def plural(count: int, phrase: str) -> str:
    """'1 row', '2 rows', '1,024 employees hired ...': ``phrase`` is written for many."""
    return f"{count:,} {singular(phrase) if count == 1 else phrase}"


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
    status: str  # passed | failed | skipped | not run
    severity: str  # critical | error | warning | info
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)
    guidance: str = ""
    seconds: float = 0.0
    up_to_date: bool = False  # reused from the last run: its inputs did not change
    incomplete: bool = False  # the check could not run to the end (locked database, crash): never reused
    checked_at: float = 0.0  # when the check ran (a reused result keeps the time it was found)

    @property
    def passed(self) -> bool:
        return self.status == PASSED

    @property
    def failed(self) -> bool:
        return self.status == FAILED

    @property
    def skipped(self) -> bool:
        return self.status == SKIPPED

    @property
    def not_run(self) -> bool:
        return self.status == NOT_RUN

    def blocking(self, fail_on: Iterable[str]) -> bool:
        """Does this result fail the setup under ``validation.fail_on``?"""
        return self.failed and self.severity in tuple(fail_on)

    def verdict(self, fail_on: Iterable[str] = DEFAULT_FAIL_ON) -> str:
        """dbt's words: 'pass', 'warn' (failed, reported), 'fail' (failed, blocks the setup), 'skipped', 'not run'."""
        if self.failed:
            return "fail" if self.blocking(fail_on) else "warn"
        return "pass" if self.passed else self.status

    def one_line(self, fail_on: Iterable[str] = DEFAULT_FAIL_ON) -> str:
        """'<name> warn: <message> -- fix: <guidance>' (the severity only where the verdict does not imply it)."""
        verdict = self.verdict(fail_on)
        severity = (
            "" if IMPLIED.get(verdict, self.severity) == self.severity or not self.failed else f" ({self.severity})"
        )
        text = f"{self.name} {verdict}{severity}: {self.message}"
        return one_line(text, self.guidance if self.failed else "")

    def sample_line(self) -> str:
        """What -v 2 and `doit info` add to the message: 'offending rows (2 of 14): {...}, {...}' when the
        result carries a sample, 'all 4: a; b; c; d' when its message names only the first few; else ''."""
        details = self.details if isinstance(self.details, Mapping) else {}
        listed = details.get(LISTED)
        every = f"all {len(listed)}: {'; '.join(map(str, listed))}" if listed else ""
        sample = details.get("sample")
        if not sample:
            return every
        total = details.get("offending_rows") or details.get("failures") or len(sample)
        rows = "; ".join(
            ", ".join(f"{k}={v}" for k, v in row.items()) if isinstance(row, Mapping) else str(row) for row in sample
        )
        line = (
            f"offending rows ({len(sample)} of {total:,}): {rows}"
            if isinstance(total, int)
            else f"offending rows: {rows}"
        )
        return f"{line}; {every}" if every else line

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "severity": self.severity,
            "message": self.message,
            "details": jsonable(self.details),
            "guidance": self.guidance,
            "seconds": round(self.seconds, 4),
            "up_to_date": self.up_to_date,
            "incomplete": self.incomplete,
            "checked_at": round(self.checked_at, 3),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CheckResult":
        return cls(
            name=data["name"],
            status=data["status"],
            severity=data["severity"],
            message=data.get("message", ""),
            details=data.get("details") or {},
            guidance=data.get("guidance", ""),
            seconds=float(data.get("seconds") or 0.0),
            up_to_date=bool(data.get("up_to_date")),
            incomplete=bool(data.get("incomplete")),
            checked_at=float(data.get("checked_at") or 0.0),
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
    def not_run(self) -> int:
        return sum(r.not_run for r in self.results)

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
    def unchanged_warnings(self) -> list[CheckResult]:
        """Reported failures reused from an earlier run: their inputs did not change since."""
        return [r for r in self.reported_failures if r.up_to_date]

    @property
    def ok(self) -> bool:
        return not self.blocking_failures

    def tally(self) -> str:
        """'150 passed, 1 fail, 2 warn, 16 skipped' (dbt's words)."""
        counts = Counter(r.verdict(self.fail_on) for r in self.results)
        words = {"pass": "passed"}
        return ", ".join(
            f"{counts[v]} {words.get(v, v)}" for v in ("pass", "fail", "warn", NOT_RUN, SKIPPED) if counts[v]
        )

    def unchanged_line(self) -> str:
        """'3 warnings unchanged since 05:03: doit status lists them', or ''."""
        reused = self.unchanged_warnings
        if not reused:
            return ""
        since = min((r.checked_at for r in reused if r.checked_at), default=0.0)
        since_text = f" since {when(since)}" if since else ""
        return f"{plural(len(reused), 'warnings')} unchanged{since_text}: doit status lists them"

    def fresh_lines(self) -> list[str]:
        """This run's failures, checks not run, and skips by reason (results reused from earlier runs left out)."""
        fresh = [r for r in self.results if not r.up_to_date]
        lines = [r.one_line(self.fail_on) for r in fresh if r.failed or r.not_run]
        by_reason: dict[str, list[str]] = {}
        for r in fresh:
            if r.skipped:
                by_reason.setdefault(r.message, []).append(r.name)
        return lines + [f"skipped ({reason}): {', '.join(names)}" for reason, names in by_reason.items()]

    def lines(self) -> list[str]:
        checks = self.run + self.not_run + self.skipped
        head = f"validation: {checks} checks, {self.tally() or 'none'}, success rate {self.success_rate:.0%}"
        unchanged = self.unchanged_line()
        return [head, *(f"  {line}" for line in self.fresh_lines()), *([f"  {unchanged}"] if unchanged else [])]

    def as_dict(self) -> dict[str, Any]:
        return {
            "checks_run": self.run,
            "passed": self.passed,
            "failed": self.failed,
            "skipped": self.skipped,
            "not_run": self.not_run,
            "success_rate": round(self.success_rate, 4),
            "ok": self.ok,
            "critical_failures": [r.name for r in self.critical_failures],
            "blocking_failures": [r.name for r in self.blocking_failures],
            "results": [r.as_dict() for r in self.results],
        }


def when(timestamp: float) -> str:
    """'05:03' today, else '2026-11-24 05:03'."""
    moment = dt.datetime.fromtimestamp(timestamp)
    return moment.strftime("%H:%M" if moment.date() == dt.date.today() else "%Y-%m-%d %H:%M")


def summarize(results: Iterable[CheckResult], fail_on: Iterable[str] = DEFAULT_FAIL_ON) -> ValidationSummary:
    ordered = sorted(results, key=lambda r: (SEVERITIES.index(r.severity) if r.severity in SEVERITIES else 9, r.name))
    return ValidationSummary(tuple(ordered), tuple(fail_on))


def closing_lines(
    results: Iterable[CheckResult], fail_on: Iterable[str], held: int = 0, held_since: float = 0.0
) -> list[str]:
    """What a run's closing summary says of its checks: the tally, warnings unchanged since an earlier run,
    checks ``held`` (not run again on rebuilt tables that came out the same), and this run's skips."""
    results = list(results)
    if not results:
        return []
    summary = summarize(results, fail_on)
    lines = [f"validations: {summary.tally()}"]
    unchanged = summary.unchanged_line()
    if unchanged:
        lines.append(f"  {unchanged}")
    if held:  # a cold rebuild: why no check ran on a brand-new database
        lines.append(
            f"  {plural(held, 'checks')} not run again: the tables they read were rebuilt with the "
            f"content they had when checked{f' at {when(held_since)}' if held_since else ''}"
        )
    lines += [f"  {line}" for line in summary.fresh_lines() if line.startswith("skipped (")]
    return lines
