"""The out-of-sample evidence label issues are judged on: for each human-verified image, the review
batch that sent it out before it was first verified, and the predictions that batch's exported
task carried (made by a model that had not trained on the image).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from labeling_dag.formats.label_studio_export import RECTANGLES
from labeling_dag.formats.review_interface import ReviewInterface
from labeling_dag.label_issues import VerifiedImage
from labeling_dag.merge import exported_predictions
from labeling_dag.records import NormBox


def prediction_batches(images: pd.DataFrame, merges: pd.DataFrame, batches: pd.DataFrame) -> dict[str, str]:
    """For each active human-verified image, the review batch whose exported predictions judge it.

    ``images`` is the verified images table with its retired rows (``VERIFIED_IMAGE_COLUMNS``),
    ``merges`` the merges table (``MERGE_COLUMNS``), ``batches`` the review batches
    (``BATCH_COLUMNS``). The batch is the latest one that sent the image out (gold rows aside)
    before the image first entered the verified labels: the model that pre-labelled it was
    trained on a snapshot taken before then, so not on the image. An image verified before any
    batch sent it out (auto-accepted, then spot-checked or re-reviewed) has none and is absent.
    """
    human = images[(images["retired_by"] == "") & (images["source"] == "human")]
    if human.empty:
        return {}
    merged_at = pd.to_datetime(merges.set_index("merge_id")["merged_at"], utc=True, format="ISO8601")
    first = images.assign(at=images["merge_id"].map(merged_at)).dropna(subset=["at"]).groupby("image_id")["at"].min()
    sent = batches[~batches["is_gold"] & batches["image_id"].isin(set(human["image_id"]))].assign(
        at=lambda frame: pd.to_datetime(frame["created_at"], utc=True, format="ISO8601")
    )
    sent = sent[sent["at"] <= sent["image_id"].map(first)]
    latest = sent.sort_values(["at", "batch_id"], kind="stable").groupby("image_id").tail(1)
    return dict(zip(latest["image_id"], latest["batch_id"]))


def verified_images(
    images: pd.DataFrame,
    labels: pd.DataFrame,
    batch_of: Mapping[str, str],
    exported: Mapping[str, Sequence[Mapping[str, Any]]],
    interface: ReviewInterface = RECTANGLES,
) -> list[VerifiedImage]:
    """The records :func:`~labeling_dag.label_issues.score_label_issues` takes, for the images of
    ``batch_of`` whose batch had a model.

    ``images`` and ``labels`` are the verified tables (active rows are used); ``exported`` holds
    each batch's exported tasks (Label Studio import JSON: ``data.image_id``, ``data.width``,
    ``data.height`` and ``predictions[0]`` with ``model_version`` and its regions' ``score``).
    A task whose prediction names no model (made before any model existed) gives no record. The
    regions are read by the modality's ``interface``.
    """
    active_images = images[images["retired_by"] == ""].set_index("image_id")
    active_labels = labels[labels["retired_by"] == ""]
    boxes = {
        image_id: tuple((row.class_name, NormBox(row.x, row.y, row.w, row.h)) for row in group.itertuples())
        for image_id, group in active_labels.groupby("image_id")
    }
    tasks = {(batch_id, task["data"]["image_id"]): task for batch_id, batch in exported.items() for task in batch}
    records = []
    for image_id, batch_id in sorted(batch_of.items()):
        task = tasks.get((batch_id, image_id))
        model_version = "".join(p.get("model_version", "") for p in (task or {}).get("predictions") or [])
        if task is None or not model_version or image_id not in active_images.index:
            continue
        records.append(
            VerifiedImage(
                image_id=image_id,
                width=int(task["data"]["width"]),
                height=int(task["data"]["height"]),
                labels=boxes.get(image_id, ()),
                predictions=tuple(exported_predictions(task, interface)),
                model_version=model_version,
                review_batch_id=batch_id,
                merge_id=str(active_images.at[image_id, "merge_id"]),
            )
        )
    return records
