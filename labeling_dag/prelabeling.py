"""Turn model predictions into pre-label rows, one table of boxes and one of images.

Images with no detection still get an image row, so later stages can tell "predicted,
found nothing" from "not predicted yet".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from labeling_dag.contracts import BOX_COLUMNS, PRE_LABEL_IMAGE_COLUMNS
from labeling_dag.records import ImagePrediction


def box_id(image_id: str, model_version: str, index: int) -> str:
    """A stable, readable id for the ``index``-th box a model proposed for an image."""
    return f"pl-{image_id[:16]}-{model_version[:12]}-{index:03d}"


def prediction_rows(
    predictions: Sequence[tuple[str, ImagePrediction]],
    *,
    class_names: Sequence[str],
    model_version: str,
    run_id: str,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Box rows and image rows for ``(image_id, prediction)`` pairs (``BOX_COLUMNS``, ``PRE_LABEL_IMAGE_COLUMNS``)."""
    boxes: list[dict[str, object]] = []
    images: list[dict[str, object]] = []
    for image_id, prediction in predictions:
        for index, (xywh, class_id, confidence, probs) in enumerate(
            zip(prediction.boxes_xywhn, prediction.class_ids, prediction.confidences, prediction.class_probs)
        ):
            boxes.append(
                {
                    "box_id": box_id(image_id, model_version, index),
                    "image_id": image_id,
                    "class_id": int(class_id),
                    "class_name": class_names[int(class_id)],
                    "x": float(xywh[0]),
                    "y": float(xywh[1]),
                    "w": float(xywh[2]),
                    "h": float(xywh[3]),
                    "confidence": float(confidence),
                    "class_probs": [float(p) for p in probs],
                    "model_version": model_version,
                    "run_id": run_id,
                }
            )
        images.append(
            {
                "image_id": image_id,
                "model_version": model_version,
                "run_id": run_id,
                "width": prediction.width,
                "height": prediction.height,
                "n_boxes": len(prediction.class_ids),
                # float32 as the model computed it: half the bytes of a list of Python floats.
                "embedding": np.asarray(prediction.embedding, dtype=np.float32),
            }
        )
    return (
        pd.DataFrame(boxes, columns=list(BOX_COLUMNS)).astype(BOX_COLUMNS),
        pd.DataFrame(images, columns=list(PRE_LABEL_IMAGE_COLUMNS)).astype(PRE_LABEL_IMAGE_COLUMNS),
    )
