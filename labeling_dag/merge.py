"""From a returned review batch to verified labels: edits, auto-accepts, merge.

Tables (pandas, one row per box):

* edits: what each reviewer did to each box of a batch (``EDIT_COLUMNS``), the evidence the
  auto-accept threshold is calibrated on;
* returned: the images each returned batch (or revision) answered (``RETURNED_COLUMNS``): the
  images its merge covers, boxes or not;
* labels: the verified labels with their provenance (``LABEL_COLUMNS``). A merge never edits
  a row: superseded rows are retired (``retired_by`` = the merge that replaced them), so every
  earlier snapshot's content stays derivable from the table.

A revision of a merged batch (``<batch_id>.r<n>``, :mod:`labeling_dag.revisions`) is merged like
a batch of the images it holds: their earlier rows are retired by it, the others stay in force.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from labeling_dag.agreement import (
    PredictedBox,
    classify_edits,
)
from labeling_dag.calibration import Calibration, ImageGate, auto_accept_images, calibrate, image_threshold
from labeling_dag.contracts import (
    EDIT_COLUMNS,
    LABEL_COLUMNS,
    RETURNED_COLUMNS,
    VERIFIED_IMAGE_COLUMNS,
)
from labeling_dag.formats.label_studio_export import RECTANGLES, TaskAnnotation
from labeling_dag.formats.review_interface import ReviewInterface
from labeling_dag.records import NormBox
from labeling_dag.revisions import split_revision


def exported_predictions(task: Mapping[str, Any], interface: ReviewInterface = RECTANGLES) -> list[PredictedBox]:
    """The regions a task was sent out with, read back from its Label Studio prediction."""
    boxes = []
    for prediction in task.get("predictions") or []:
        for region in prediction.get("result") or []:
            class_name, box = interface.read_value(region["value"])
            boxes.append(
                PredictedBox(
                    box_id=region["id"], class_name=class_name, box=box, confidence=float(region.get("score", 0.0))
                )
            )
    return boxes


def edit_rows(
    annotations: Sequence[TaskAnnotation],
    exported: Sequence[Mapping[str, Any]],
    *,
    batch_id: str,
    gold_ids: set[str],
    spot_check_ids: set[str],
    interface: ReviewInterface = RECTANGLES,
) -> pd.DataFrame:
    """One row per box per reviewed task: the edit kind against the exported pre-label (its regions
    read by the modality's ``interface``)."""
    tasks = {task["data"]["image_id"]: task for task in exported}
    rows: list[dict[str, object]] = []
    for annotation in annotations:
        task = tasks[annotation.image_id]
        model_version = "".join(p.get("model_version", "") for p in task.get("predictions") or [])
        for edit in classify_edits(exported_predictions(task, interface), annotation.boxes):
            final = edit.box or NormBox(np.nan, np.nan, np.nan, np.nan)
            correct = edit.prediction_correct
            rows.append(
                {
                    "batch_id": batch_id,
                    "image_id": annotation.image_id,
                    "reviewer": annotation.reviewer,
                    "annotated_at": annotation.annotated_at,
                    "edit_kind": edit.edit_kind,
                    "pre_label_id": edit.pre_label_id or "",
                    "region_id": edit.region_id or "",
                    "class_name": edit.class_name or "",
                    "x": final.x,
                    "y": final.y,
                    "w": final.w,
                    "h": final.h,
                    "original_class": edit.original_class or "",
                    "confidence": np.nan if edit.confidence is None else edit.confidence,
                    "iou": np.nan if edit.iou is None else edit.iou,
                    "prediction_correct": np.nan if correct is None else float(correct),
                    "model_version": model_version,
                    "pre_label_run_id": task["data"].get("pre_label_run_id", ""),
                    "is_gold": annotation.image_id in gold_ids,
                    "is_spot_check": annotation.image_id in spot_check_ids,
                }
            )
    return _frame(rows, EDIT_COLUMNS)


def returned_rows(annotations: Sequence[TaskAnnotation], *, batch_id: str) -> pd.DataFrame:
    """The images a returned batch or revision answered, one row each."""
    return _frame(
        [{"batch_id": batch_id, "image_id": annotation.image_id} for annotation in annotations], RETURNED_COLUMNS
    )


def current_edits(edits: pd.DataFrame) -> pd.DataFrame:
    """The edits of each image from the latest revision of its batch that holds it.

    An image edited in the labelling tool after its merge was judged again; the earlier
    judgement is history, not more evidence.
    """
    revision = pd.DataFrame(
        edits["batch_id"].map(split_revision).tolist(), columns=["base", "number"], index=edits.index
    )
    latest = revision.groupby([revision["base"], edits["image_id"]])["number"].transform("max")
    return edits[revision["number"] == latest]


def calibration_from_edits(
    edits: pd.DataFrame, *, model_version: str, class_names: Sequence[str], target_precision: float, min_support: int
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
    )


def image_gate_from_edits(
    edits: pd.DataFrame,
    calibration: Calibration,
    *,
    model_version: str,
    target_accuracy: float,
    min_support: int,
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
        judged["least"].to_numpy(), fully_right, target_accuracy=target_accuracy, min_support=min_support
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
    return _frame(rows, LABEL_COLUMNS)


def human_rows(edits: pd.DataFrame, *, merge_id: str) -> pd.DataFrame:
    """Label rows for the boxes reviewers kept, moved, relabelled or added (gold tasks excluded)."""
    kept = edits[(edits["edit_kind"] != "deleted") & ~edits["is_gold"]]
    rows = [
        {
            "label_id": f"vl-{merge_id}-{edit.image_id[:16]}-{index:03d}",
            "image_id": edit.image_id,
            "class_name": edit.class_name,
            "x": edit.x,
            "y": edit.y,
            "w": edit.w,
            "h": edit.h,
            "source": "human",
            "model_version": edit.model_version if edit.pre_label_id else "",
            "pre_label_id": edit.pre_label_id,
            "pre_label_run_id": edit.pre_label_run_id if edit.pre_label_id else "",
            "review_batch_id": edit.batch_id,
            "reviewer": edit.reviewer,
            "reviewed_at": edit.annotated_at,
            "edit_kind": edit.edit_kind,
            "confidence": edit.confidence,
            "merge_id": merge_id,
            "retired_by": "",
        }
        for index, edit in enumerate(kept.itertuples(index=False))
    ]
    return _frame(rows, LABEL_COLUMNS)


def gold_rows(gold: pd.DataFrame, *, merge_id: str) -> pd.DataFrame:
    """Label rows for gold images: their known answers are verified labels by definition."""
    rows = [
        {
            "label_id": f"vl-{merge_id}-gold-{row.image_id[:16]}-{index:03d}",
            "image_id": row.image_id,
            "class_name": row.class_name,
            "x": row.x,
            "y": row.y,
            "w": row.w,
            "h": row.h,
            "source": "gold",
            "model_version": "",
            "pre_label_id": "",
            "pre_label_run_id": "",
            "review_batch_id": "",
            "reviewer": "",
            "reviewed_at": "",
            "edit_kind": "",
            "confidence": np.nan,
            "merge_id": merge_id,
            "retired_by": "",
        }
        for index, row in enumerate(gold.itertuples(index=False))
    ]
    return _frame(rows, LABEL_COLUMNS)


def verified_image_rows(image_sources: Mapping[str, str], *, merge_id: str) -> pd.DataFrame:
    """Rows vouching for each image's whole box set (an image may hold no box at all)."""
    rows = [
        {"image_id": image_id, "source": source, "merge_id": merge_id, "retired_by": ""}
        for image_id, source in image_sources.items()
    ]
    return _frame(rows, VERIFIED_IMAGE_COLUMNS)


def merge_verified(
    labels: pd.DataFrame, images: pd.DataFrame, new_labels: pd.DataFrame, new_images: pd.DataFrame, *, merge_id: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Apply one merge: rows of images it covers are retired by ``merge_id``, its rows added.

    Re-running the same merge first undoes it (its rows dropped, the rows it retired
    revived), so the result is the same however often it runs.
    """
    merged = []
    for table, additions, columns in (
        (labels, new_labels, LABEL_COLUMNS),
        (images, new_images, VERIFIED_IMAGE_COLUMNS),
    ):
        table = table[table["merge_id"] != merge_id].copy()
        table.loc[table["retired_by"] == merge_id, "retired_by"] = ""
        superseded = (table["retired_by"] == "") & table["image_id"].isin(new_images["image_id"])
        table.loc[superseded, "retired_by"] = merge_id
        merged.append(pd.concat([table, additions], ignore_index=True).astype(columns))
    return merged[0], merged[1]


def active(table: pd.DataFrame) -> pd.DataFrame:
    """The rows in force now (labels or verified images)."""
    return table[table["retired_by"] == ""]


def _frame(rows: list[dict[str, object]], columns: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(columns)).astype(columns)
