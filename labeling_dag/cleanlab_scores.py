"""cleanlab's object-detection scores for verified images: its input format (boxes in pixels, one
array of predictions per class), the auxiliary inputs its three per-kind scores share (built
once, vectorised), the per-kind image scores and their aggregation into one label quality.

cleanlab is imported inside the functions that use it (it pulls in scikit-learn and SciPy).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from labeling_dag.records import NormBox

if TYPE_CHECKING:
    from labeling_dag.label_issues import VerifiedImage

ISSUE_KINDS: tuple[str, ...] = ("overlooked", "swapped", "badly_located")

# Predictions at or above this confidence count as confident for overlooked and swapped boxes.
# cleanlab's default is 0.95, tuned for large detectors; the small YOLO models of an early loop
# rarely reach it, so nearly no missed object or wrong class would be seen (bench/label_issues.py).
HIGH_PROBABILITY_THRESHOLD = 0.7

# Predictions above this confidence are the evidence for badly located boxes (cleanlab's default).
LOW_PROBABILITY_THRESHOLD = 0.5


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
