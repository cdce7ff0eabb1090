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

This module reads the edits and applies a merge; auto-accept is fitted and applied by
:mod:`labeling_dag.auto_accept`, and the label rows of each source are built by
:mod:`labeling_dag.label_rows`.
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
from labeling_dag.tables import rows_frame


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
    return rows_frame(rows, EDIT_COLUMNS)


def returned_rows(annotations: Sequence[TaskAnnotation], *, batch_id: str) -> pd.DataFrame:
    """The images a returned batch or revision answered, one row each."""
    return rows_frame(
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
