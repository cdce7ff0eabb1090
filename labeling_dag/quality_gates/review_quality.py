"""The review-quality gate: each reviewer's gold accuracy and the batch's agreement between
annotators reach their floors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from labeling_dag.contracts import QUALITY
from labeling_dag.quality_gates.engine import project, validate
from labeling_dag.quality_gates.results import GateResult

if TYPE_CHECKING:
    from great_expectations.expectations.expectation import Expectation


REVIEW_QUALITY_SUITE = "review_quality"
REVIEW_QUALITY_COLUMNS = QUALITY.select(
    "batch_id",
    "reviewer",
    "gold_tasks",
    "gold_accuracy",
    "min_gold_accuracy",
    "kappa",
    "min_kappa",
    "box_agreement",
    "min_box_agreement",
)


def validate_review_quality(quality: pd.DataFrame) -> GateResult:
    """Validate a review batch's quality rows (one per reviewer, plus ``reviewer == "*"`` for the batch).

    Where a reviewer (or the batch) answered gold items, ``gold_accuracy`` must reach
    ``min_gold_accuracy``; rows without gold items carry no evidence and pass. Where annotators
    shared images, the batch row's ``kappa`` and ``box_agreement`` must reach their floors.
    """
    frame = project(quality, REVIEW_QUALITY_COLUMNS, REVIEW_QUALITY_SUITE)
    measured = frame["gold_tasks"].fillna(0) > 0
    frame = frame.assign(
        gold_accuracy_margin=(frame["gold_accuracy"] - frame["min_gold_accuracy"]).where(measured, 0.0),
        kappa_margin=(frame["kappa"] - frame["min_kappa"]).fillna(0.0),
        box_agreement_margin=(frame["box_agreement"] - frame["min_box_agreement"]).fillna(0.0),
    )
    return validate(REVIEW_QUALITY_SUITE, _review_quality_expectations, frame, expectation_parameters={})


def _review_quality_expectations() -> list[Expectation]:
    import great_expectations.expectations as gxe

    return [
        gxe.ExpectColumnValuesToNotBeNull(column="batch_id", description="batch_id not null"),
        gxe.ExpectColumnValuesToBeBetween(
            column="gold_accuracy_margin",
            min_value=0,
            description="gold accuracy >= min_gold_accuracy",
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="kappa_margin", min_value=0, description="annotators' kappa on matched boxes >= min_kappa"
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="box_agreement_margin",
            min_value=0,
            description="share of boxes both annotators drew >= min_box_agreement",
        ),
    ]
