"""What a review batch's tasks show: each chosen image's record with the boxes on it, a model's
pre-labels, or the verified labels of a re-review, or the fused boxes of an adjudication.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from labeling_dag.consensus.disputes import CONSENSUS_VERSION
from labeling_dag.records import NormBox, PreLabel, ReviewImage

# The model version a re-review task's boxes carry: they are the image's verified labels.
VERIFIED_LABELS_VERSION = "verified-labels"


def verified_as_pre_labels(labels: pd.DataFrame, image_ids: Sequence[str], class_names: Sequence[str]) -> pd.DataFrame:
    """The active verified boxes (``LABEL_COLUMNS`` rows) of ``image_ids`` as pre-label rows
    (``BOX_COLUMNS``): what a re-review task shows, so the reviewer checks the labels under
    suspicion rather than a model's new guess. Confidence 1, model version
    :data:`VERIFIED_LABELS_VERSION`, box ids the label ids."""
    rows = labels[labels["image_id"].isin(set(image_ids))]
    return _as_pre_labels(rows, rows["label_id"], 1.0, VERIFIED_LABELS_VERSION, class_names)


def disputes_as_pre_labels(
    disputes: pd.DataFrame, image_ids: Sequence[str], class_names: Sequence[str]
) -> pd.DataFrame:
    """The fused boxes of disputed images (``DISPUTE_COLUMNS`` rows) as pre-label rows: what an
    adjudication task shows, each box with the most voted class and, as its confidence, the
    share of the image's reviewers who drew it. Model version :data:`CONSENSUS_VERSION`."""
    rows = disputes[disputes["image_id"].isin(set(image_ids))]
    return _as_pre_labels(rows, rows["region_id"], rows["votes"] / rows["reviewers"], CONSENSUS_VERSION, class_names)


def _as_pre_labels(
    rows: pd.DataFrame, box_ids: pd.Series, confidence: object, model_version: str, class_names: Sequence[str]
) -> pd.DataFrame:
    """Boxes with ``class_name`` and x/y/w/h as pre-label rows (``BOX_COLUMNS``) of a given version."""
    one_hot = [tuple(float(name == c) for c in class_names) for name in rows["class_name"]]
    return pd.DataFrame(
        {
            "box_id": box_ids.to_numpy(),
            "image_id": rows["image_id"].to_numpy(),
            "class_id": [list(class_names).index(name) for name in rows["class_name"]],
            "class_name": rows["class_name"].to_numpy(),
            "x": rows["x"].to_numpy(),
            "y": rows["y"].to_numpy(),
            "w": rows["w"].to_numpy(),
            "h": rows["h"].to_numpy(),
            "confidence": confidence.to_numpy() if isinstance(confidence, pd.Series) else confidence,
            "class_probs": one_hot,
            "model_version": model_version,
            "run_id": "",
        }
    )


def review_images(
    chosen: pd.DataFrame,
    cleaned: pd.DataFrame,
    boxes: pd.DataFrame,
    *,
    image_url_prefix: str,
) -> list[ReviewImage]:
    """Review records (image reference, size, pre-labels) for the chosen images, in order."""
    meta = cleaned.set_index("image_id")
    by_image = {image_id: group for image_id, group in boxes.groupby("image_id")}
    empty = boxes.iloc[0:0]
    records = []
    for row in chosen.itertuples(index=False):
        image = meta.loc[row.image_id]
        labels = tuple(
            PreLabel(
                box_id=box.box_id,
                image_id=box.image_id,
                class_name=box.class_name,
                box=NormBox(box.x, box.y, box.w, box.h),
                confidence=float(box.confidence),
                class_probs=tuple(box.class_probs),
                model_version=box.model_version,
            )
            for box in by_image.get(row.image_id, empty).itertuples(index=False)
        )
        records.append(
            ReviewImage(
                image_id=row.image_id,
                image_ref=f"{image_url_prefix}{image['path']}",
                width=int(image["width"]),
                height=int(image["height"]),
                score=float(row.score),
                pre_labels=labels,
            )
        )
    return records
