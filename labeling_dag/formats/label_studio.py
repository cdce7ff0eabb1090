"""Label Studio formats: the labelling config and the importable review tasks.

Reading the JSON export back is :mod:`labeling_dag.formats.label_studio_export`.

Pure functions only (no I/O, no Dagster), so the whole round trip
``ReviewImage -> task JSON -> (annotators) -> export JSON -> TaskAnnotation`` is testable offline.

Label Studio stores a rectangle as ``x``, ``y`` (the TOP-LEFT corner), ``width`` and
``height``, all in percent of the image; the rest of the project uses YOLO-style normalised
centre boxes (:class:`NormBox`).  The conversions live here and nowhere else.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from xml.sax.saxutils import quoteattr

from labeling_dag.records import NormBox, PreLabel, ReviewImage

FROM_NAME = "label"
TO_NAME = "image"

RECTANGLE_TYPE = "rectanglelabels"
# How far (in percent of the image) a box edge may stick out of the image before it is
# treated as invalid rather than as rounding or a drag that overshot the border by a pixel.
_EDGE_TOLERANCE_PERCENT = 0.5
# Characters XML 1.0 cannot carry at all, escaped or not: a class name holding one would make
# the labelling config unparseable.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def labeling_config(class_names: Sequence[str]) -> str:
    """Return the Label Studio labelling config XML for a bounding-box project.

    ``canRotate="false"``: a rotated rectangle cannot be expressed as an axis-aligned
    :class:`NormBox`, so annotators are not offered the rotation handle at all.
    Raises ``ValueError`` on an empty list, an empty name, a duplicate name or a name
    with a character XML cannot hold (control characters, unpaired surrogates).
    """
    labels = "".join(f"<Label value={quoteattr(name)}/>" for name in checked_class_names(class_names))
    return (
        "<View>"
        f'<Image name="{TO_NAME}" value="$image"/>'
        f'<RectangleLabels name="{FROM_NAME}" toName="{TO_NAME}" canRotate="false">'
        f"{labels}"
        "</RectangleLabels>"
        "</View>"
    )


def checked_class_names(class_names: Sequence[str]) -> list[str]:
    """The class names a labelling config can offer, in order; ``ValueError`` on an empty list, an
    empty or duplicate name, or a name with a character XML cannot hold (control characters,
    unpaired surrogates)."""
    names = list(class_names)
    if not names:
        raise ValueError("labeling_config needs at least one class name")
    for name in names:
        if not isinstance(name, str) or not name:
            raise ValueError(f"class names must be non-empty strings, got {name!r}")
        if _NOT_XML.search(name):
            raise ValueError(f"class name {name!r} holds a character XML cannot represent")
    if len(set(names)) != len(names):
        raise ValueError(f"class names must be unique, got {names!r}")
    return names


def config_problem(parsed: Any, class_names: Sequence[str]) -> str | None:
    """What makes a project's parsed labelling config (Label Studio's ``parsed_label_config``)
    unusable for boxes of ``class_names``, or None."""
    control = parsed.get(FROM_NAME) if isinstance(parsed, Mapping) else None
    if not isinstance(control, Mapping) or control.get("type") != "RectangleLabels":
        return f"has no RectangleLabels control named {FROM_NAME!r}"
    if list(control.get("to_name") or []) != [TO_NAME]:
        return f"labels {control.get('to_name')!r}, not the image {TO_NAME!r}"
    inputs = [
        (item.get("type"), item.get("value")) for item in control.get("inputs") or [] if isinstance(item, Mapping)
    ]
    if ("Image", "image") not in inputs:
        return "does not show $image"
    labels = list(control.get("labels") or [])
    if sorted(labels) != sorted(class_names):
        return f"offers the labels {labels}, but the pipeline's classes are {list(class_names)}"
    return None


def as_real(value: Any, what: str) -> float:
    """``value`` as a finite float, or ``ValueError`` naming ``what``: a number read from a file."""
    # bool is an int subclass, and strings would "work" through float(); both mean a broken file.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what} must be a number, got {value!r}")
    try:
        number = float(value)
    except OverflowError as exc:
        raise ValueError(f"{what} is out of range: {value!r}") from exc
    if not math.isfinite(number):
        raise ValueError(f"{what} must be finite, got {value!r}")
    return number


def _finite(value: Any, what: str) -> float:
    # Lenient about the type (numpy scalars are fine on the way out), strict about the value.
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def _clipped_edges(left: float, top: float, width: float, height: float) -> tuple[float, float, float, float]:
    """Validate a top-left percent box and return its edges clipped to the image."""
    if width <= 0 or height <= 0:
        raise ValueError(f"box size must be positive, got width={width!r} height={height!r}")
    right, bottom = left + width, top + height
    low, high = -_EDGE_TOLERANCE_PERCENT, 100.0 + _EDGE_TOLERANCE_PERCENT
    if left < low or top < low or right > high or bottom > high:
        raise ValueError(f"box lies outside the image: x={left!r} y={top!r} width={width!r} height={height!r}")
    left, top = min(max(left, 0.0), 100.0), min(max(top, 0.0), 100.0)
    right, bottom = min(max(right, 0.0), 100.0), min(max(bottom, 0.0), 100.0)
    if right <= left or bottom <= top:
        raise ValueError(f"box has no area inside the image: x={left!r} y={top!r} width={width!r} height={height!r}")
    return left, top, right, bottom


def norm_to_ls_percent(box: NormBox) -> dict[str, float]:
    """Convert a normalised centre box to Label Studio's ``{"x", "y", "width", "height"}``.

    ``x``/``y`` are the top-left corner in percent.  A box that overshoots the image by
    less than 0.5 % is clipped to it (so an annotator who accepts it unchanged gives back
    exactly what was sent); anything worse raises ``ValueError``, as do non-finite values
    and non-positive sizes.
    """
    cx, cy = as_real(box.x, "box.x"), as_real(box.y, "box.y")
    w, h = as_real(box.w, "box.w"), as_real(box.h, "box.h")
    left, top, right, bottom = _clipped_edges((cx - w / 2) * 100.0, (cy - h / 2) * 100.0, w * 100.0, h * 100.0)
    return {"x": left, "y": top, "width": right - left, "height": bottom - top}


def ls_percent_to_norm(value: Mapping[str, float]) -> NormBox:
    """Convert a Label Studio rectangle ``value`` back to a normalised centre box.

    Inverse of :func:`norm_to_ls_percent`.  Edges within 0.5 % outside the image are
    clipped to it.  Raises ``ValueError`` on missing or non-numeric coordinates, NaN or
    infinity, non-positive sizes, a box further outside the image, or a non-zero
    ``rotation`` (a rotated rectangle has no axis-aligned equivalent).
    """
    if not isinstance(value, Mapping):
        raise ValueError(f"rectangle value must be an object, got {value!r}")
    missing = [key for key in ("x", "y", "width", "height") if key not in value]
    if missing:
        raise ValueError(f"rectangle value lacks {', '.join(missing)}")
    if as_real(value.get("rotation", 0), "rotation") != 0:
        raise ValueError(f"rotated rectangles are not supported, got {value['rotation']!r}")
    left, top, right, bottom = _clipped_edges(
        as_real(value["x"], "x"),
        as_real(value["y"], "y"),
        as_real(value["width"], "width"),
        as_real(value["height"], "height"),
    )
    return NormBox(
        x=(left + right) / 200.0,
        y=(top + bottom) / 200.0,
        w=(right - left) / 100.0,
        h=(bottom - top) / 100.0,
    )


def rectangle_value(box: NormBox, class_name: str) -> dict[str, Any]:
    """A Label Studio rectangle ``value`` for a box and its class."""
    return {**norm_to_ls_percent(box), "rotation": 0, RECTANGLE_TYPE: [class_name]}


def read_rectangle_value(value: Mapping[str, Any]) -> tuple[str, NormBox]:
    """The class and box of a rectangle ``value`` (the inverse of :func:`rectangle_value`)."""
    labels = value.get(RECTANGLE_TYPE)
    if not isinstance(labels, list) or len(labels) != 1 or not isinstance(labels[0], str):
        raise ValueError(f"a rectangle must carry exactly one label, got {labels!r}")
    return labels[0], ls_percent_to_norm(value)


def rectangle_item(region_id: str, value: Mapping[str, Any], width: int, height: int) -> dict[str, Any]:
    """One ``rectanglelabels`` result item on an image of ``width`` x ``height`` pixels."""
    return {
        "id": region_id,
        "from_name": FROM_NAME,
        "to_name": TO_NAME,
        "type": RECTANGLE_TYPE,
        "original_width": width,
        "original_height": height,
        "image_rotation": 0,
        "value": dict(value),
    }


def review_task(
    image: ReviewImage, *, batch_id: str, model_version: str, pre_label_run_id: str, annotators: int = 1
) -> dict[str, Any]:
    """Build one importable Label Studio task with the model's boxes as a prediction
    (:func:`prediction_task`, with the image URL as ``$image``)."""
    return prediction_task(
        image,
        data_key="image",
        region=lambda pre_label: rectangle_item(
            pre_label.box_id, rectangle_value(pre_label.box, pre_label.class_name), image.width, image.height
        ),
        batch_id=batch_id,
        model_version=model_version,
        pre_label_run_id=pre_label_run_id,
        annotators=annotators,
    )


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


def review_batch_document(
    images: Sequence[ReviewImage], *, batch_id: str, model_version: str, pre_label_run_id: str
) -> list[dict[str, Any]]:
    """Return the importable tasks JSON (a list of tasks) for one review batch.

    Raises ``ValueError`` on a repeated ``image_id``, because the export is joined back
    on it.
    """
    seen: set[str] = set()
    tasks: list[dict[str, Any]] = []
    for image in images:
        if image.image_id in seen:
            raise ValueError(f"image {image.image_id!r} appears twice in batch {batch_id!r}")
        seen.add(image.image_id)
        tasks.append(
            review_task(
                image,
                batch_id=batch_id,
                model_version=model_version,
                pre_label_run_id=pre_label_run_id,
            )
        )
    return tasks
