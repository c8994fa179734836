"""A quality suite's checks and results: :class:`Check`, :class:`CheckResult`, :class:`QualityReport`
and the error a failed critical check raises."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class QualityGateError(RuntimeError):
    """A critical expectation failed; the message names each one with its counts."""


@dataclass(frozen=True)
class Check:
    """One expectation: a Great Expectations class name, its kwargs, and whether it is critical."""

    expectation: str
    kwargs: dict[str, Any]
    critical: bool = True


@dataclass
class CheckResult:
    check: Check
    success: bool
    element_count: int | None
    unexpected_count: int | None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        col = self.check.kwargs.get("column")
        return f"{self.check.expectation}({col})" if col else self.check.expectation


@dataclass
class QualityReport:
    suite: str
    table: str
    table_version: int | None
    results: list[CheckResult]

    @property
    def failed_critical(self) -> list[CheckResult]:
        return [r for r in self.results if r.check.critical and not r.success]

    @property
    def success(self) -> bool:
        return not self.failed_critical

    def summary(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "success": self.success,
            "checks": len(self.results),
            "failed": [r.label for r in self.results if not r.success],
        }

    def raise_if_failed(self) -> None:
        bad = self.failed_critical
        if bad:
            parts = [
                f"{r.label}: {r.unexpected_count} unexpected of {r.element_count}"
                + (
                    f" (e.g. {r.details['partial_unexpected_list'][:3]})"
                    if r.details.get("partial_unexpected_list")
                    else ""
                )
                for r in bad
            ]
            raise QualityGateError(
                f"quality gate '{self.suite}' failed on {self.table} v{self.table_version}: "
                + "; ".join(parts)
            )
