"""Label errors among human-verified images, found with cleanlab's object-detection scores.

Reviewers err a few per cent of the time: a missed object, a wrong class, a sloppy box. cleanlab
(``cleanlab.object_detection``, the ObjectLab method) compares each image's verified boxes with
a detector's predictions for it and gives three per-kind scores in [0, 1], lower = worse:

* ``overlooked``: a confident prediction that overlaps no verified box (an object left out);
* ``swapped``: a verified box on which a confident prediction of another class sits;
* ``badly_located``: a verified box that the predictions of its class only partly overlap.

Their geometric mean is the image's ``label_quality`` (cleanlab's own aggregation, equal weights),
and the images are ranked by it, worst first. An image with a kind scoring below
``ISSUE_THRESHOLD`` (0.5) is a suspect, named by its worst kind.

**Out-of-sample predictions only.** A model reproduces the labels it trained on, mistakes
included, so its predictions for those images vouch for nothing. Every image a human verified
was pre-labelled before its review by the model then current, which had not trained on it; those
predictions travel in the review batch's exported tasks (per box: class, box, ``score``). This
module takes them from there (:func:`prediction_batches` picks, per image, the latest batch that
sent it out before it was first verified). They are what was stored, not what cleanlab would
ideally see: pre-labels are made at the detector's confidence floor (``Detector.conf``, 0.25 by
default), so no lower-confidence box is available, and a batch exported before any model existed
(a cold start's random seed round) has no predictions: its images are left unscored. Gold images
(known answers) and auto-accepted ones (their labels ARE the model's predictions) are not scored.

Pure functions over plain records and frames, no Dagster; cleanlab is imported inside the
functions that use it (it pulls in scikit-learn and SciPy).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from labeling_dag.agreement import PredictedBox
from labeling_dag.contracts import ISSUE_COLUMNS
from labeling_dag.formats.label_studio_export import RECTANGLES
from labeling_dag.formats.review_interface import ReviewInterface
from labeling_dag.merge import exported_predictions
from labeling_dag.records import NormBox

ISSUE_KINDS: tuple[str, ...] = ("overlooked", "swapped", "badly_located")


# Predictions at or above this confidence count as confident for overlooked and swapped boxes.
# cleanlab's default is 0.95, tuned for large detectors; the small YOLO models of an early loop
# rarely reach it, so nearly no missed object or wrong class would be seen (bench/label_issues.py).
HIGH_PROBABILITY_THRESHOLD = 0.7
# Predictions above this confidence are the evidence for badly located boxes (cleanlab's default).
LOW_PROBABILITY_THRESHOLD = 0.5
# A kind is named for an image when its per-kind score is below this; an image with a named kind
# is a suspect. One kind at 0.5 and the others clean give a label quality of 0.5 ** (1/3) = 0.79.
ISSUE_THRESHOLD = 0.5


@dataclass(frozen=True)
class VerifiedImage:
    """A human-verified image: its boxes, and what a model that never trained on it predicted.

    ``labels`` are ``(class_name, box)`` pairs; ``predictions`` carry each box's confidence in
    its class. ``width`` and ``height`` are the image's pixels: cleanlab's similarity of two boxes
    mixes their IoU with the distance of their centres in pixels.
    """

    image_id: str
    width: int
    height: int
    labels: tuple[tuple[str, NormBox], ...]
    predictions: tuple[PredictedBox, ...]
    model_version: str
    review_batch_id: str
    merge_id: str = ""


def _xyxy(box: NormBox, width: int, height: int) -> list[float]:
    return [
        (box.x - box.w / 2) * width,
        (box.y - box.h / 2) * height,
        (box.x + box.w / 2) * width,
        (box.y + box.h / 2) * height,
    ]


def cleanlab_inputs(
    images: Sequence[VerifiedImage], class_names: Sequence[str]
) -> tuple[list[dict[str, Any]], list[list[np.ndarray]]]:
    """``labels`` and ``predictions`` in cleanlab's object-detection format, boxes in pixels.

    Per image a dict of ``bboxes`` (L, 4) ``x1, y1, x2, y2`` and ``labels`` (L,) class ids, and
    a list of K arrays (K = ``len(class_names)``), the k-th of shape (M_k, 5) ``x1, y1, x2, y2,
    confidence`` for the predictions of class k. Raises ``ValueError`` on a class outside
    ``class_names`` or an image without a positive size.
    """
    index = {name: k for k, name in enumerate(class_names)}

    def class_id(name: str, image_id: str) -> int:
        if name not in index:
            raise ValueError(f"image {image_id!r}: class {name!r} is not in the class list {list(class_names)}")
        return index[name]

    labels: list[dict[str, Any]] = []
    predictions: list[list[np.ndarray]] = []
    for image in images:
        if image.width <= 0 or image.height <= 0:
            raise ValueError(f"image {image.image_id!r} has no size ({image.width}x{image.height})")
        labels.append(
            {
                "bboxes": np.array(
                    [_xyxy(box, image.width, image.height) for _, box in image.labels], dtype=np.float64
                ).reshape(-1, 4),
                "labels": np.array([class_id(name, image.image_id) for name, _ in image.labels], dtype=np.int64),
                "image_name": image.image_id,
            }
        )
        per_class: list[list[list[float]]] = [[] for _ in class_names]
        for predicted in image.predictions:
            per_class[class_id(predicted.class_name, image.image_id)].append(
                [*_xyxy(predicted.box, image.width, image.height), float(predicted.confidence)]
            )
        predictions.append([np.array(rows, dtype=np.float64).reshape(-1, 5) for rows in per_class])
    return labels, predictions


def auxiliary_inputs(labels: list[dict[str, Any]], predictions: list[list[np.ndarray]]) -> list[dict[str, Any]]:
    """The per-image inputs cleanlab's per-kind scores share, computed once, vectorised.

    The ``auxiliary_inputs`` that ``compute_overlooked_box_scores``, ``compute_swap_box_scores`` and
    ``compute_badloc_box_scores`` accept, as their docstrings define them: per image the labelled
    and predicted boxes, classes and confidences, the IoU matrix (labels x predictions) and the
    similarity matrix ``alpha * IoU + (1 - alpha) * exp(-EUC_FACTOR * centre distance in pixels)``,
    and the smallest non-zero similarity of the whole dataset. Without them each of the three
    functions builds them again in Python loops over box pairs; the same numbers, 3 to 4 times
    slower (tests/test_label_issues.py compares both).
    """
    from cleanlab.internal.constants import ALPHA, EPSILON, EUC_FACTOR

    inputs = []
    for label, prediction in zip(labels, predictions, strict=True):
        lab_bboxes = np.asarray(label["bboxes"], dtype=np.float64).reshape(-1, 4)
        per_class = [np.asarray(rows, dtype=np.float64).reshape(-1, 5) for rows in prediction]
        predicted = np.concatenate([np.zeros((0, 5)), *per_class])
        a, b = lab_bboxes[:, None, :], predicted[None, :, :4]
        inter = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None) * np.clip(
            np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None
        )
        areas = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1]) + (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
        iou = inter / np.clip(areas - inter, EPSILON, None)
        centres_apart = np.linalg.norm((a[..., :2] + a[..., 2:]) / 2 - (b[..., :2] + b[..., 2:]) / 2, axis=-1)
        far = 1 - np.exp(-centres_apart * EUC_FACTOR)  # cleanlab's "1 - dist_matrix", written as it does
        inputs.append(
            {
                "pred_labels": np.repeat(np.arange(len(per_class)), [len(rows) for rows in per_class]),
                "pred_label_probs": predicted[:, 4],
                "pred_bboxes": predicted[:, :4],
                "lab_labels": np.asarray(label["labels"]),
                "lab_bboxes": lab_bboxes,
                "similarity_matrix": iou * ALPHA + (1 - ALPHA) * (1 - far),
                "iou_matrix": iou,
            }
        )
    nonzero = [item["similarity_matrix"][item["similarity_matrix"] != 0] for item in inputs]
    smallest = min([1.0, *(float(values.min()) for values in nonzero if values.size)])
    for item in inputs:
        item["min_possible_similarity"] = smallest
    return inputs


def kind_scores(
    labels: list[dict[str, Any]],
    predictions: list[list[np.ndarray]],
    *,
    high_probability_threshold: float = HIGH_PROBABILITY_THRESHOLD,
    low_probability_threshold: float = LOW_PROBABILITY_THRESHOLD,
) -> np.ndarray:
    """Per-kind image scores, shape (N, 3) in :data:`ISSUE_KINDS` order, in [0, 1], lower = worse.

    cleanlab's per-box scores (``compute_overlooked_box_scores``, ``compute_swap_box_scores``,
    ``compute_badloc_box_scores``) pooled per image by its softmin (``pool_box_scores_per_image``);
    an image with no evidence for a kind scores 1.0 on it.
    """
    from cleanlab.object_detection import rank

    if not labels:
        return np.zeros((0, len(ISSUE_KINDS)))
    shared = auxiliary_inputs(labels, predictions)
    per_box = (
        rank.compute_overlooked_box_scores(
            auxiliary_inputs=shared, high_probability_threshold=high_probability_threshold
        ),
        rank.compute_swap_box_scores(auxiliary_inputs=shared, high_probability_threshold=high_probability_threshold),
        rank.compute_badloc_box_scores(auxiliary_inputs=shared, low_probability_threshold=low_probability_threshold),
    )
    return np.column_stack([rank.pool_box_scores_per_image(scores) for scores in per_box])


def label_quality(scores: np.ndarray) -> np.ndarray:
    """cleanlab's image score from the per-kind scores: their geometric mean, equal weights.

    The aggregation of ``cleanlab.object_detection.rank.get_label_quality_scores``, which offers
    no way to set its probability thresholds; at cleanlab's thresholds (0.95 and 0.5) the two
    agree (tests/test_label_issues.py).
    """
    from cleanlab.internal.constants import TINY_VALUE

    if not len(scores):
        return np.zeros(0)
    return np.exp(np.mean(np.log(TINY_VALUE + scores), axis=1))


def score_label_issues(
    images: Sequence[VerifiedImage],
    *,
    class_names: Sequence[str],
    high_probability_threshold: float = HIGH_PROBABILITY_THRESHOLD,
    low_probability_threshold: float = LOW_PROBABILITY_THRESHOLD,
    issue_threshold: float = ISSUE_THRESHOLD,
) -> pd.DataFrame:
    """Every image scored and ranked, worst first (``ISSUE_COLUMNS``, one row per image).

    ``issue_kinds`` lists the kinds scoring below ``issue_threshold`` (worst first), an image
    with any is a ``suspect``, and a suspect's ``issue`` is its worst kind. Ties rank by image
    id, so the same input gives the same table.
    """
    for name, value in (
        ("high_probability_threshold", high_probability_threshold),
        ("low_probability_threshold", low_probability_threshold),
        ("issue_threshold", issue_threshold),
    ):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    if len({image.image_id for image in images}) != len(images):
        raise ValueError("an image appears twice among the images to score")
    if not images:
        return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in ISSUE_COLUMNS.items()})
    labels, predictions = cleanlab_inputs(images, class_names)
    kinds = kind_scores(
        labels,
        predictions,
        high_probability_threshold=high_probability_threshold,
        low_probability_threshold=low_probability_threshold,
    )
    quality = label_quality(kinds)
    rows = []
    for i, image in enumerate(images):
        named = [ISSUE_KINDS[k] for k in np.argsort(kinds[i], kind="stable") if kinds[i][k] < issue_threshold]
        rows.append(
            {
                "image_id": image.image_id,
                "rank": 0,
                "label_quality": float(quality[i]),
                **{kind: float(score) for kind, score in zip(ISSUE_KINDS, kinds[i])},
                "suspect": bool(named),
                "issue": named[0] if named else "",
                "issue_kinds": ",".join(named),
                "boxes": len(image.labels),
                "predicted_boxes": len(image.predictions),
                "model_version": image.model_version,
                "review_batch_id": image.review_batch_id,
                "merge_id": image.merge_id,
            }
        )
    table = pd.DataFrame(rows, columns=list(ISSUE_COLUMNS)).sort_values(
        ["label_quality", "image_id"], kind="stable", ignore_index=True
    )
    table["rank"] = np.arange(1, len(table) + 1)
    return table.astype(ISSUE_COLUMNS)


def suspects(scores: pd.DataFrame) -> pd.DataFrame:
    """The suspects of a :func:`score_label_issues` table, worst first."""
    return scores[scores["suspect"]].sort_values("rank", ignore_index=True)


def open_suspects(suspects: pd.DataFrame, already_sent: Collection[str], k: int) -> list[str]:
    """The image ids of the worst ``k`` suspects not in ``already_sent``, worst first.

    ``suspects`` is the ``label_issues`` asset's table (``ISSUE_COLUMNS``; non-suspect rows are
    skipped); ``already_sent`` the images already put in a batch for re-review, so that no
    suspect goes back twice: a re-review that confirms the labels leaves the image a suspect
    (it is still judged by the same out-of-sample predictions).
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    candidates = suspects[suspects["suspect"] & ~suspects["image_id"].isin(set(already_sent))]
    return candidates.sort_values(["rank", "image_id"])["image_id"].head(k).tolist()


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
    """The records :func:`score_label_issues` takes, for the images of ``batch_of`` whose batch had a model.

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
