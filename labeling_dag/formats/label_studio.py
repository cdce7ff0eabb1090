"""Label Studio formats: the labelling config, the importable review tasks, and the JSON export.

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from xml.sax.saxutils import quoteattr

from labeling_dag.records import NormBox, ReviewImage

FROM_NAME = "label"
TO_NAME = "image"

_RECTANGLE_TYPE = "rectanglelabels"
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
    labels = "".join(f"<Label value={quoteattr(name)}/>" for name in names)
    return (
        "<View>"
        f'<Image name="{TO_NAME}" value="$image"/>'
        f'<RectangleLabels name="{FROM_NAME}" toName="{TO_NAME}" canRotate="false">'
        f"{labels}"
        "</RectangleLabels>"
        "</View>"
    )


def _as_real(value: Any, what: str) -> float:
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
    cx, cy = _as_real(box.x, "box.x"), _as_real(box.y, "box.y")
    w, h = _as_real(box.w, "box.w"), _as_real(box.h, "box.h")
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
    if _as_real(value.get("rotation", 0), "rotation") != 0:
        raise ValueError(f"rotated rectangles are not supported, got {value['rotation']!r}")
    left, top, right, bottom = _clipped_edges(
        _as_real(value["x"], "x"),
        _as_real(value["y"], "y"),
        _as_real(value["width"], "width"),
        _as_real(value["height"], "height"),
    )
    return NormBox(
        x=(left + right) / 200.0,
        y=(top + bottom) / 200.0,
        w=(right - left) / 100.0,
        h=(bottom - top) / 100.0,
    )


def review_task(
    image: ReviewImage, *, batch_id: str, model_version: str, pre_label_run_id: str, annotators: int = 1
) -> dict[str, Any]:
    """Build one importable Label Studio task with the model's boxes as a prediction.

    ``data`` carries the image URL (``$image`` in the config) plus ``image_id``,
    ``batch_id`` and ``pre_label_run_id`` so the export can be joined back without
    relying on Label Studio's own task ids.  Whether an image is a gold image is
    deliberately NOT in the task: everything in ``data`` is visible through the API and
    the data manager, so gold bookkeeping stays with the caller. ``annotators`` above 1 asks
    for that many independent annotations (``data.annotators``, see :func:`required_annotations`).

    Each region's ``id`` is the pre-label's ``box_id``; Label Studio keeps it when an
    annotator accepts the prediction, which is how the export tells an accepted box from
    a changed one.  Raises ``ValueError`` if a pre-label belongs to another image or
    another model version, if box ids repeat, if a box is invalid, or if the score or a
    confidence is not a finite number (JSON has no NaN; Label Studio would refuse the file).
    """
    if image.width <= 0 or image.height <= 0:
        raise ValueError(f"image {image.image_id!r} has invalid size {image.width}x{image.height}")
    score = _finite(image.score, f"score of image {image.image_id!r}")
    regions: list[dict[str, Any]] = []
    seen_ids: set[str] = set()
    for pre_label in image.pre_labels:
        if pre_label.image_id != image.image_id:
            raise ValueError(
                f"pre-label {pre_label.box_id!r} belongs to image {pre_label.image_id!r}, not {image.image_id!r}"
            )
        # One prediction carries one model_version, so mixing versions would misattribute boxes.
        if pre_label.model_version != model_version:
            raise ValueError(
                f"pre-label {pre_label.box_id!r} on image {image.image_id!r} comes from model "
                f"{pre_label.model_version!r}, not {model_version!r}"
            )
        if pre_label.box_id in seen_ids:
            raise ValueError(f"duplicate box id {pre_label.box_id!r} on image {image.image_id!r}")
        seen_ids.add(pre_label.box_id)
        try:
            percent = norm_to_ls_percent(pre_label.box)
            confidence = _finite(pre_label.confidence, "confidence")
        except ValueError as exc:
            raise ValueError(f"pre-label {pre_label.box_id!r} on image {image.image_id!r}: {exc}") from exc
        regions.append(
            {
                "id": pre_label.box_id,
                "from_name": FROM_NAME,
                "to_name": TO_NAME,
                "type": _RECTANGLE_TYPE,
                "original_width": image.width,
                "original_height": image.height,
                "image_rotation": 0,
                "value": {**percent, "rotation": 0, "rectanglelabels": [pre_label.class_name]},
                "score": confidence,
            }
        )
    return {
        "data": {
            "image": image.image_ref,
            "image_id": image.image_id,
            "width": image.width,
            "height": image.height,
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


@dataclass(frozen=True)
class AnnotatedBox:
    """One box in a reviewer's final annotation; ``region_id`` equals the pre-label's
    ``box_id`` when the region started life as a prediction."""

    region_id: str
    class_name: str
    box: NormBox


@dataclass(frozen=True)
class TaskAnnotation:
    """One reviewer's labels for one task, taken from one non-cancelled annotation.

    :func:`parse_export` yields the latest annotation of each task;
    :func:`parse_all_annotations` yields every one (for agreement between reviewers).

    ``prediction_region_ids`` are the region ids of the prediction objects in the file; a
    task whose predictions the file lists by id only (Label Studio's own export) has none.
    ``lead_time`` is the time in seconds Label Studio measured the annotator spending on the
    annotation (its ``lead_time``), ``None`` when the file does not say.
    """

    task_id: int | None
    image_id: str
    batch_id: str
    reviewer: str
    annotated_at: str  # ISO 8601, UTC
    boxes: tuple[AnnotatedBox, ...]
    prediction_region_ids: tuple[str, ...]  # region ids of the predictions exported with the task
    lead_time: float | None = None  # seconds spent on the annotation, as Label Studio measured it


class ReviewExportError(ValueError):
    """A Label Studio export that cannot be ingested; the message names the task."""


def _live_annotations(task: Any) -> list[Mapping[str, Any]] | None:
    """Non-cancelled annotations of a task, or ``None`` if the task's shape is wrong."""
    if not isinstance(task, Mapping):
        return None
    annotations = task.get("annotations", [])
    if not isinstance(annotations, list) or not all(isinstance(a, Mapping) for a in annotations):
        return None
    return [a for a in annotations if not a.get("was_cancelled", False)]


def required_annotations(task: Any) -> int:
    """How many independent annotations a task asks for: ``data.annotators`` (set on the share
    of a batch labelled by several annotators for consensus), 1 where absent or not a whole number."""
    data = task.get("data") if isinstance(task, Mapping) else None
    wanted = data.get("annotators") if isinstance(data, Mapping) else None
    return wanted if isinstance(wanted, int) and not isinstance(wanted, bool) and wanted > 1 else 1


def is_complete(tasks: Any) -> bool:
    """Cheaply tell whether an export is ready for :func:`parse_export`.

    True when ``tasks`` is a non-empty list and every task has as many non-cancelled
    annotations as it asks for (:func:`required_annotations`, one by default).  An empty list is
    not complete: it is what an export of a project whose tasks were never imported looks like.
    """
    if not isinstance(tasks, list) or not tasks:
        return False
    return all(len(_live_annotations(task) or ()) >= required_annotations(task) for task in tasks)


def _task_label(index: int, task: Any) -> str:
    parts = [f"task #{index}"]
    if isinstance(task, Mapping):
        if "id" in task:
            parts.append(f"id={task['id']!r}")
        data = task.get("data")
        if isinstance(data, Mapping) and "image_id" in data:
            parts.append(f"image_id={data['image_id']!r}")
    return parts[0] if len(parts) == 1 else f"{parts[0]} ({', '.join(parts[1:])})"


def _parse_timestamp(raw: Any) -> datetime:
    if not isinstance(raw, str):
        raise ValueError(f"timestamp must be an ISO 8601 string, got {raw!r}")
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise ValueError(f"timestamp is not ISO 8601: {raw!r}") from exc
    # Label Studio writes UTC; a naive stamp is read as UTC so it stays comparable.
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _annotation_order(annotation: Mapping[str, Any]) -> tuple[datetime, int, str]:
    stamp = annotation.get("updated_at", annotation.get("created_at"))
    if stamp is None:
        raise ValueError(f"annotation {annotation.get('id')!r} has no updated_at or created_at")
    raw_id = annotation.get("id")
    # The documented export shows ids both as numbers and as numeric strings ("1001").
    if isinstance(raw_id, int) and not isinstance(raw_id, bool):
        return _parse_timestamp(stamp), raw_id, ""
    if isinstance(raw_id, str) and raw_id.isdecimal():
        return _parse_timestamp(stamp), int(raw_id), ""
    if isinstance(raw_id, str):
        return _parse_timestamp(stamp), -1, raw_id
    if raw_id is None:
        return _parse_timestamp(stamp), -1, ""
    raise ValueError(f"annotation id must be a number or string, got {raw_id!r}")


def _reviewer(annotation: Mapping[str, Any]) -> str:
    completed_by = annotation.get("completed_by")
    if isinstance(completed_by, int) and not isinstance(completed_by, bool):
        return str(completed_by)
    if isinstance(completed_by, Mapping):
        email = completed_by.get("email")
        if isinstance(email, str) and email:
            return email
        user_id = completed_by.get("id")
        if isinstance(user_id, int) and not isinstance(user_id, bool):
            return str(user_id)
    raise ValueError(f"completed_by must be a user id or a user object, got {completed_by!r}")


def _non_empty_str(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")
    return value


def _annotated_boxes(result: Any, class_names: frozenset[str]) -> tuple[AnnotatedBox, ...]:
    if not isinstance(result, list):
        raise ValueError(f"annotation result must be a list, got {result!r}")
    boxes: list[AnnotatedBox] = []
    seen_ids: set[str] = set()
    for item in result:
        if not isinstance(item, Mapping):
            raise ValueError(f"result item must be an object, got {item!r}")
        # Other controls (choices, text areas) may join the config later; they carry no boxes.
        if item.get("type") != _RECTANGLE_TYPE:
            continue
        region_id = _non_empty_str(item.get("id"), "region id")
        if region_id in seen_ids:
            raise ValueError(f"region id {region_id!r} appears twice")
        seen_ids.add(region_id)
        if item.get("from_name") != FROM_NAME or item.get("to_name") != TO_NAME:
            raise ValueError(
                f"region {region_id!r} comes from {item.get('from_name')!r} -> "
                f"{item.get('to_name')!r}, not the {FROM_NAME!r} -> {TO_NAME!r} of this config"
            )
        if _as_real(item.get("image_rotation", 0), "image_rotation") != 0:
            raise ValueError(f"region {region_id!r} was drawn on a rotated image")
        value = item.get("value")
        if not isinstance(value, Mapping):
            raise ValueError(f"region {region_id!r} has no value object")
        labels = value.get("rectanglelabels")
        if not isinstance(labels, list) or len(labels) != 1:
            raise ValueError(f"region {region_id!r} must carry exactly one label, got {labels!r}")
        label = labels[0]
        if not isinstance(label, str) or label not in class_names:
            raise ValueError(f"region {region_id!r} has unknown class label {label!r}")
        try:
            box = ls_percent_to_norm(value)
        except ValueError as exc:
            raise ValueError(f"region {region_id!r} has an invalid box: {exc}") from exc
        boxes.append(AnnotatedBox(region_id=region_id, class_name=label, box=box))
    return tuple(boxes)


def _prediction_region_ids(predictions: Any) -> tuple[str, ...]:
    """Region ids of a task's prediction objects; predictions given by id contribute none."""
    if not isinstance(predictions, list):
        raise ValueError(f"predictions must be a list, got {predictions!r}")
    ids: list[str] = []
    for prediction in predictions:
        # Label Studio's own JSON export lists a task's predictions by their database id only.
        if isinstance(prediction, int) and not isinstance(prediction, bool) and prediction > 0:
            continue
        if not isinstance(prediction, Mapping) or not isinstance(prediction.get("result"), list):
            what = "an object without a result list" if isinstance(prediction, Mapping) else repr(prediction)
            raise ValueError(f"each prediction must be a prediction id or an object with a result list, got {what}")
        for item in prediction["result"]:
            if not isinstance(item, Mapping):
                raise ValueError(f"prediction result item must be an object, got {item!r}")
            if item.get("type") == _RECTANGLE_TYPE:
                region_id = _non_empty_str(item.get("id"), "prediction region id")
                if region_id not in ids:
                    ids.append(region_id)
    return tuple(ids)


def _lead_time(annotation: Mapping[str, Any]) -> float | None:
    """The annotation's ``lead_time`` in seconds: ``None`` when absent or null, else a finite number >= 0."""
    raw = annotation.get("lead_time")
    if raw is None:
        return None
    seconds = _as_real(raw, "lead_time")
    if seconds < 0:
        raise ValueError(f"lead_time must not be negative, got {raw!r}")
    return seconds


def _parse_task(
    task: Any, class_names: frozenset[str], expected_batch_id: str | None, *, latest_only: bool
) -> list[TaskAnnotation]:
    """The task's latest non-cancelled annotation (``latest_only``), or all of them oldest first."""
    if not isinstance(task, Mapping):
        raise ValueError(f"task must be an object, got {type(task).__name__}")
    task_id = task.get("id")
    if task_id is not None and (isinstance(task_id, bool) or not isinstance(task_id, int)):
        raise ValueError(f"task id must be an integer, got {task_id!r}")
    data = task.get("data")
    if not isinstance(data, Mapping):
        raise ValueError("task has no data object")
    image_id = _non_empty_str(data.get("image_id"), "data.image_id")
    batch_id = _non_empty_str(data.get("batch_id"), "data.batch_id")
    if expected_batch_id is not None and batch_id != expected_batch_id:
        raise ValueError(f"task belongs to batch {batch_id!r}, expected {expected_batch_id!r}")
    live = _live_annotations(task)
    if live is None:
        raise ValueError("annotations must be a list of objects")
    if not live:
        raise ValueError("task has no non-cancelled annotation; the batch is incomplete")
    if latest_only:
        chosen = [max(live, key=_annotation_order)]
    else:
        # sorted() is stable, so annotations with identical stamps and ids keep export order.
        chosen = sorted(live, key=_annotation_order)
    region_ids = _prediction_region_ids(task.get("predictions", []))
    return [
        TaskAnnotation(
            task_id=task_id,
            image_id=image_id,
            batch_id=batch_id,
            reviewer=_reviewer(annotation),
            annotated_at=_annotation_order(annotation)[0].isoformat(),
            boxes=_annotated_boxes(annotation.get("result"), class_names),
            prediction_region_ids=region_ids,
            lead_time=_lead_time(annotation),
        )
        for annotation in chosen
    ]


def _parse_tasks(
    tasks: Any, class_names: Sequence[str], expected_batch_id: str | None, *, latest_only: bool
) -> list[TaskAnnotation]:
    if not isinstance(tasks, list):
        raise ReviewExportError(f"export must be a list of tasks, got {type(tasks).__name__}")
    known = frozenset(class_names)
    parsed: list[TaskAnnotation] = []
    seen: dict[str, int] = {}
    for index, task in enumerate(tasks):
        try:
            annotations = _parse_task(task, known, expected_batch_id, latest_only=latest_only)
        except ValueError as exc:
            raise ReviewExportError(f"{_task_label(index, task)}: {exc}") from exc
        image_id = annotations[0].image_id
        if image_id in seen:
            raise ReviewExportError(
                f"{_task_label(index, task)}: image_id {image_id!r} already appeared in task #{seen[image_id]}"
            )
        seen[image_id] = index
        parsed.extend(annotations)
    return parsed


def parse_export(
    tasks: Any, *, class_names: Sequence[str], expected_batch_id: str | None = None
) -> list[TaskAnnotation]:
    """Parse a Label Studio JSON export (a list of task objects) into one annotation per task.

    The export is accepted or rejected as a whole: a review batch is ingested only when
    every task in it is usable, so a half-finished or foreign export never becomes
    training data.  Raises :class:`ReviewExportError`, naming the task, if ``tasks`` is
    not a list, a task lacks ``data.image_id`` or ``data.batch_id``, the batch differs
    from ``expected_batch_id``, an ``image_id`` repeats, a task has no non-cancelled
    annotation, or its chosen annotation has an unknown label, an invalid box or a
    malformed field.

    Per task the latest non-cancelled annotation wins (by ``updated_at``, falling back to
    ``created_at``, then by annotation id).  ``reviewer`` is ``completed_by`` as a string
    (the user id, or the email when the export expands the user).  ``lead_time`` is the
    annotation's ``lead_time`` (seconds; ``None`` when absent or null; anything but a finite
    number >= 0 is refused).  Result items that are not ``rectanglelabels`` are ignored.
    Region ids are kept so that a caller can compare them with ``prediction_region_ids``:
    same id and same box means an accepted prediction.

    Each task's ``predictions`` may hold prediction objects (with a ``result`` list: the
    importable tasks, Label Studio's task API) or positive integer prediction ids (Label
    Studio's own JSON export); ids give no region ids, so a caller that needs the predicted
    regions takes them from the tasks it exported.  Anything else there is refused.  Other
    fields of a task or an annotation (``drafts``, ``meta``, ``inner_id``, ``unique_id``,
    ``ground_truth`` ...) are ignored.
    """
    return _parse_tasks(tasks, class_names, expected_batch_id, latest_only=True)


def parse_all_annotations(
    tasks: Any, *, class_names: Sequence[str], expected_batch_id: str | None = None
) -> list[TaskAnnotation]:
    """Parse a Label Studio JSON export into every non-cancelled annotation of every task.

    Same checks and the same all-or-nothing rejection as :func:`parse_export`, except
    that every non-cancelled annotation is validated, not only the latest, since every
    one is returned.  Output follows task order; within a task annotations run oldest
    first (the order :func:`parse_export` uses to pick the latest, which is the last
    one here).  One reviewer may appear more than once for a task if they annotated it
    twice; callers that need one annotation per reviewer pick the latest.
    """
    return _parse_tasks(tasks, class_names, expected_batch_id, latest_only=False)
