"""What validating one table against one suite returns: an outcome per expectation and the verdict.

Plain records, so the asset checks (:mod:`labeling_dag.checks`) read a gate's result without
Great Expectations.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ExpectationOutcome:
    """How one expectation of a suite fared on one table."""

    expectation: str
    column: str | None
    success: bool
    unexpected_count: int
    detail: str


@dataclass(frozen=True)
class GateResult:
    """The outcome of validating one table against one suite."""

    suite: str
    success: bool
    evaluated_rows: int
    outcomes: tuple[ExpectationOutcome, ...]

    def failed(self) -> tuple[ExpectationOutcome, ...]:
        """The outcomes whose expectation did not hold, in suite order."""
        return tuple(o for o in self.outcomes if not o.success)

    def as_metadata(self) -> dict[str, object]:
        """A flat, JSON-serialisable dict for Dagster asset-check metadata.

        One key per expectation (its ``detail``) mapping to ``{"success", "unexpected_count"}``,
        plus ``"evaluated_rows"``.
        """
        metadata: dict[str, object] = {"evaluated_rows": self.evaluated_rows}
        for outcome in self.outcomes:
            metadata[outcome.detail] = {
                "success": outcome.success,
                "unexpected_count": outcome.unexpected_count,
            }
        return metadata
