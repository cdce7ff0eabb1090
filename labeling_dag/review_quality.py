"""How a returned batch's reviewers did: gold accuracy and agreement, per reviewer and for the
batch (``QUALITY_COLUMNS``: the rows the review-quality gate validates)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from labeling_dag.agreement import GoldScore, accuracy_by_reviewer, overall_accuracy, score_against_gold
from labeling_dag.consensus.agreement import AgreementScore
from labeling_dag.contracts import QUALITY_COLUMNS
from labeling_dag.formats.label_studio_export import TaskAnnotation
from labeling_dag.records import NormBox
from labeling_dag.tables import rows_frame


def quality_rows(
    annotations: Sequence[TaskAnnotation],
    gold: pd.DataFrame,
    *,
    batch_id: str,
    min_gold_accuracy: float,
    run_id: str,
    whole_item: bool = False,
) -> pd.DataFrame:
    """Gold accuracy per reviewer and for the whole batch (``reviewer == "*"``); ``whole_item``:
    the items are classifications, where a wrong class is one wrong answer."""
    truth = {
        image_id: [(row.class_name, NormBox(row.x, row.y, row.w, row.h)) for row in group.itertuples()]
        for image_id, group in gold.groupby("image_id")
    }
    scores: list[GoldScore] = [
        score_against_gold(
            annotation.reviewer,
            annotation.image_id,
            [(box.class_name, box.box) for box in annotation.boxes],
            truth[annotation.image_id],
            whole_item=whole_item,
        )
        for annotation in annotations
        if annotation.image_id in truth
    ]
    per_reviewer = accuracy_by_reviewer(scores)
    reviewers = sorted({annotation.reviewer for annotation in annotations})
    rows = [
        {
            "batch_id": batch_id,
            "reviewer": reviewer,
            "gold_tasks": sum(score.reviewer == reviewer for score in scores),
            "gold_accuracy": per_reviewer.get(reviewer, np.nan),
            "min_gold_accuracy": min_gold_accuracy,
            "run_id": run_id,
        }
        for reviewer in reviewers
    ]
    overall = overall_accuracy(scores)
    rows.append(
        {
            "batch_id": batch_id,
            "reviewer": "*",
            "gold_tasks": len(scores),
            "gold_accuracy": np.nan if overall is None else overall,
            "min_gold_accuracy": min_gold_accuracy,
            "run_id": run_id,
        }
    )
    return rows_frame([{**_NO_AGREEMENT, **row} for row in rows], QUALITY_COLUMNS)


_NO_AGREEMENT = {
    "matched_boxes": 0,
    "kappa": np.nan,
    "mean_iou": np.nan,
    "box_agreement": np.nan,
    "min_kappa": np.nan,
    "min_box_agreement": np.nan,
}


def with_agreement(
    quality: pd.DataFrame, scores: Sequence[AgreementScore], *, min_kappa: float, min_box_agreement: float
) -> pd.DataFrame:
    """``quality`` (:func:`quality_rows`) with each reviewer's agreement, and the batch's on its
    ``"*"`` row, filled in from ``scores``; the floors go on the batch row, which they gate."""
    out = quality.copy()
    for score in scores:
        row = out["reviewer"] == score.reviewer
        out.loc[row, "matched_boxes"] = score.matched
        for column in ("kappa", "mean_iou", "box_agreement"):
            value = getattr(score, column)
            out.loc[row, column] = np.nan if value is None else value
    batch = out["reviewer"] == "*"
    out.loc[batch, "min_kappa"] = min_kappa
    out.loc[batch, "min_box_agreement"] = min_box_agreement
    return out.astype(QUALITY_COLUMNS)
