"""Auto-accept, fitted on the edits of a returned batch: per-class thresholds and the image gate
from the current human judgements of a model's boxes, and the label rows of the candidate
images whose pre-labels clear both.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from labeling_dag.calibration.class_thresholds import Calibration, calibrate
from labeling_dag.calibration.image_gate import ImageGate, auto_accept_images, image_threshold
from labeling_dag.contracts import (
    LABEL_COLUMNS,
)
from labeling_dag.merge import current_edits
from labeling_dag.tables import rows_frame


def calibration_from_edits(
    edits: pd.DataFrame,
    *,
    model_version: str,
    class_names: Sequence[str],
    target_precision: float,
    min_support: int,
    confidence_level: float | None = None,
) -> Calibration:
    """Fit auto-accept thresholds on every current human judgement of ``model_version``'s boxes.

    Gold tasks are excluded: reviewers may treat them differently, and they are not a sample
    of the pool the thresholds are applied to. A judgement revised after its merge counts
    once, as revised (:func:`current_edits`).
    """
    edits = current_edits(edits)
    judged = edits[(edits["model_version"] == model_version) & edits["prediction_correct"].notna() & ~edits["is_gold"]]
    return calibrate(
        judged["original_class"].tolist(),
        judged["confidence"].to_numpy(),
        judged["prediction_correct"].to_numpy() == 1.0,
        class_names=class_names,
        target_precision=target_precision,
        min_support=min_support,
        confidence_level=confidence_level,
    )


def image_gate_from_edits(
    edits: pd.DataFrame,
    calibration: Calibration,
    *,
    model_version: str,
    target_accuracy: float,
    min_support: int,
    confidence_level: float | None = None,
) -> ImageGate:
    """Fit the image-level gate on ``model_version``'s images that humans judged.

    The evidence is every current, non-gold judgement of an image whose pre-labels (at least
    one) all cleared ``calibration``: exactly the kind of image auto-accept would take. It was
    fully right when every box survived and the reviewer added none.
    """
    edits = current_edits(edits)
    mine = edits[(edits["model_version"] == model_version) & ~edits["is_gold"]]
    proposed = mine[mine["prediction_correct"].notna()]
    cleared = proposed["confidence"].to_numpy() >= [
        _threshold_or_inf(calibration, name) for name in proposed["original_class"]
    ]
    per_image = (
        pd.DataFrame(
            {
                "image_id": proposed["image_id"].to_numpy(),
                "cleared": cleared,
                "correct": proposed["prediction_correct"].to_numpy() == 1.0,
                "confidence": proposed["confidence"].to_numpy(),
            }
        )
        .groupby("image_id")
        .agg(cleared=("cleared", "all"), correct=("correct", "all"), least=("confidence", "min"))
    )
    added = set(mine.loc[mine["edit_kind"] == "added", "image_id"])
    judged = per_image[per_image["cleared"]]
    fully_right = judged["correct"].to_numpy() & ~judged.index.isin(added)
    return image_threshold(
        judged["least"].to_numpy(),
        fully_right,
        target_accuracy=target_accuracy,
        min_support=min_support,
        confidence_level=confidence_level,
    )


def _threshold_or_inf(calibration: Calibration, class_name: str) -> float:
    threshold = calibration.threshold_for(class_name)
    return np.inf if threshold is None else threshold


def auto_accepted_rows(
    boxes: pd.DataFrame, candidates: set[str], calibration: Calibration, gate: ImageGate, *, merge_id: str
) -> pd.DataFrame:
    """Label rows for every candidate image whose pre-labels all clear their class threshold and the image gate."""
    pool = boxes[boxes["image_id"].isin(candidates)]
    accepted = set(
        auto_accept_images(
            pool["image_id"].tolist(),
            pool["class_name"].tolist(),
            pool["confidence"].to_numpy(),
            calibration,
            gate=gate,
        )
    )
    chosen = pool[pool["image_id"].isin(accepted)]
    rows = [
        {
            "label_id": f"vl-{merge_id}-{box.box_id}",
            "image_id": box.image_id,
            "class_name": box.class_name,
            "x": box.x,
            "y": box.y,
            "w": box.w,
            "h": box.h,
            "source": "auto_accepted",
            "model_version": box.model_version,
            "pre_label_id": box.box_id,
            "pre_label_run_id": box.run_id,
            "review_batch_id": "",
            "reviewer": "",
            "reviewed_at": "",
            "edit_kind": "accepted",
            "confidence": box.confidence,
            "merge_id": merge_id,
            "retired_by": "",
        }
        for box in chosen.itertuples(index=False)
    ]
    return rows_frame(rows, LABEL_COLUMNS)
