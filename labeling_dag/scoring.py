"""Per-image uncertainty scores and diversity embeddings from the pre-label tables."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from labeling_dag.contracts import SCORE_COLUMNS
from labeling_dag.uncertainty import image_scores


def score_images(
    boxes: pd.DataFrame,
    images: pd.DataFrame,
    *,
    aggregate: Literal["max", "mean"] = "max",
    empty_score: float = 1.0,
) -> pd.DataFrame:
    """One row per predicted image with its least-confidence, margin and entropy scores.

    ``boxes`` and ``images`` are the pre-label tables. Scores are in [0, 1], higher = more
    uncertain; see :func:`labeling_dag.uncertainty.image_scores` for the aggregation rule and
    for images without boxes. Rows are sorted by image id so the table is reproducible.
    """
    images = images.sort_values("image_id", ignore_index=True)
    position = pd.Series(np.arange(len(images)), index=images["image_id"])
    n_classes = len(boxes["class_probs"].iloc[0]) if len(boxes) else 1
    probs = np.array(boxes["class_probs"].tolist(), dtype=np.float64).reshape(len(boxes), n_classes)
    scores = image_scores(
        position.loc[boxes["image_id"]].to_numpy(),
        probs,
        len(images),
        aggregate=aggregate,
        empty_score=empty_score,
    )
    frame = pd.DataFrame(
        {
            "image_id": images["image_id"],
            "model_version": images["model_version"],
            "n_boxes": images["n_boxes"],
            **scores,
            "embedding": images["embedding"],
        }
    )
    return frame.astype(SCORE_COLUMNS)
