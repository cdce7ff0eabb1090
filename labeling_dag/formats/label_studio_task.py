"""One importable Label Studio task of any modality: the item's URL and ids in ``data``, the
model's regions as its prediction, each checked on the way out (JSON has no NaN).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

from labeling_dag.records import PreLabel, ReviewImage


def _finite(value: Any, what: str) -> float:
    # Lenient about the type (numpy scalars are fine on the way out), strict about the value.
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def prediction_task(
    item: ReviewImage,
    *,
    data_key: str,
    region: Callable[[PreLabel], dict[str, Any]],
    batch_id: str,
    model_version: str,
    pre_label_run_id: str,
    annotators: int = 1,
) -> dict[str, Any]:
    """One importable task: the item's URL under ``data[data_key]``, its pre-labels as the
    prediction, each turned into a result item by ``region``.

    ``data`` carries the item URL plus ``image_id``, ``batch_id`` and ``pre_label_run_id`` so the
    export can be joined back without relying on Label Studio's own task ids.  Whether an item is
    a gold item is deliberately NOT in the task: everything in ``data`` is visible through the API
    and the data manager, so gold bookkeeping stays with the caller. ``annotators`` above 1 asks
    for that many independent annotations (``data.annotators``, see
    :func:`~labeling_dag.formats.label_studio_export.required_annotations`).

    Each region's ``id`` is the pre-label's ``box_id``; Label Studio keeps it when an
    annotator accepts the prediction, which is how the export tells an accepted region from
    a changed one.  Raises ``ValueError`` if a pre-label belongs to another item or
    another model version, if region ids repeat, if a region is invalid, or if the score or a
    confidence is not a finite number (JSON has no NaN; Label Studio would refuse the file).
    """
    if item.width <= 0 or item.height <= 0:
        raise ValueError(f"image {item.image_id!r} has invalid size {item.width}x{item.height}")
    score = _finite(item.score, f"score of image {item.image_id!r}")
    regions: list[dict[str, Any]] = []
    seen_ids: set[str] = set()
    for pre_label in item.pre_labels:
        if pre_label.image_id != item.image_id:
            raise ValueError(
                f"pre-label {pre_label.box_id!r} belongs to image {pre_label.image_id!r}, not {item.image_id!r}"
            )
        # One prediction carries one model_version, so mixing versions would misattribute regions.
        if pre_label.model_version != model_version:
            raise ValueError(
                f"pre-label {pre_label.box_id!r} on image {item.image_id!r} comes from model "
                f"{pre_label.model_version!r}, not {model_version!r}"
            )
        if pre_label.box_id in seen_ids:
            raise ValueError(f"duplicate box id {pre_label.box_id!r} on image {item.image_id!r}")
        seen_ids.add(pre_label.box_id)
        try:
            result = region(pre_label) | {"score": _finite(pre_label.confidence, "confidence")}
        except ValueError as exc:
            raise ValueError(f"pre-label {pre_label.box_id!r} on image {item.image_id!r}: {exc}") from exc
        regions.append(result)
    return {
        "data": {
            data_key: item.image_ref,
            "image_id": item.image_id,
            "width": item.width,
            "height": item.height,
            "batch_id": batch_id,
            "pre_label_run_id": pre_label_run_id,
            **({"annotators": annotators} if annotators > 1 else {}),
        },
        "predictions": [{"model_version": model_version, "score": score, "result": regions}],
    }
