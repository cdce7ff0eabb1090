"""Label Studio's JSON export, read back: one typed annotation per reviewer and task.

Pure functions only (no I/O, no Dagster). Accepts what Label Studio really writes (predictions
as objects or as bare ids, drafts, meta and its other fields) and refuses what is malformed with
an error naming the task.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from labeling_dag.formats.label_studio import (
    RECTANGLE_TYPE,
    TO_NAME,
    config_problem,
    labeling_config,
    read_rectangle_value,
    rectangle_item,
    rectangle_value,
    review_task,
)
from labeling_dag.formats.label_studio_boxes import as_real, ls_percent_to_norm
from labeling_dag.formats.review_interface import ReviewInterface, check_region_source
from labeling_dag.records import NormBox


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


def rectangle_regions(result: Any, class_names: frozenset[str]) -> tuple[AnnotatedBox, ...]:
    """The boxes of an annotation's result (``rectanglelabels`` items), checked and normalised."""
    if not isinstance(result, list):
        raise ValueError(f"annotation result must be a list, got {result!r}")
    boxes: list[AnnotatedBox] = []
    seen_ids: set[str] = set()
    for item in result:
        if not isinstance(item, Mapping):
            raise ValueError(f"result item must be an object, got {item!r}")
        # Other controls (choices, text areas) may join the config later; they carry no boxes.
        if item.get("type") != RECTANGLE_TYPE:
            continue
        region_id = _non_empty_str(item.get("id"), "region id")
        if region_id in seen_ids:
            raise ValueError(f"region id {region_id!r} appears twice")
        seen_ids.add(region_id)
        check_region_source(item, region_id, TO_NAME)
        if as_real(item.get("image_rotation", 0), "image_rotation") != 0:
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


# Boxes drawn with RectangleLabels on an image: object detection's review interface.
RECTANGLES = ReviewInterface(
    labeling_config=labeling_config,
    config_problem=config_problem,
    task=review_task,
    result_type=RECTANGLE_TYPE,
    parse_regions=rectangle_regions,
    data_key="image",
    region_value=rectangle_value,
    read_value=read_rectangle_value,
    result_item=rectangle_item,
)


def _prediction_region_ids(predictions: Any, result_type: str) -> tuple[str, ...]:
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
            if item.get("type") == result_type:
                region_id = _non_empty_str(item.get("id"), "prediction region id")
                if region_id not in ids:
                    ids.append(region_id)
    return tuple(ids)


def _lead_time(annotation: Mapping[str, Any]) -> float | None:
    """The annotation's ``lead_time`` in seconds: ``None`` when absent or null, else a finite number >= 0."""
    raw = annotation.get("lead_time")
    if raw is None:
        return None
    seconds = as_real(raw, "lead_time")
    if seconds < 0:
        raise ValueError(f"lead_time must not be negative, got {raw!r}")
    return seconds


@dataclass(frozen=True)
class _Reading:
    """How an export is read: the classes a region may carry, the batch every task must belong to
    (None: any), the modality's review interface, and whether only each task's latest annotation is read."""

    class_names: frozenset[str]
    expected_batch_id: str | None
    interface: ReviewInterface
    latest_only: bool


def _parse_task(task: Any, reading: _Reading) -> list[TaskAnnotation]:
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
    if reading.expected_batch_id is not None and batch_id != reading.expected_batch_id:
        raise ValueError(f"task belongs to batch {batch_id!r}, expected {reading.expected_batch_id!r}")
    live = _live_annotations(task)
    if live is None:
        raise ValueError("annotations must be a list of objects")
    if not live:
        raise ValueError("task has no non-cancelled annotation; the batch is incomplete")
    if reading.latest_only:
        chosen = [max(live, key=_annotation_order)]
    else:
        # sorted() is stable, so annotations with identical stamps and ids keep export order.
        chosen = sorted(live, key=_annotation_order)
    region_ids = _prediction_region_ids(task.get("predictions", []), reading.interface.result_type)
    return [
        TaskAnnotation(
            task_id=task_id,
            image_id=image_id,
            batch_id=batch_id,
            reviewer=_reviewer(annotation),
            annotated_at=_annotation_order(annotation)[0].isoformat(),
            boxes=reading.interface.parse_regions(annotation.get("result"), reading.class_names),
            prediction_region_ids=region_ids,
            lead_time=_lead_time(annotation),
        )
        for annotation in chosen
    ]


def _parse_tasks(tasks: Any, reading: _Reading) -> list[TaskAnnotation]:
    if not isinstance(tasks, list):
        raise ReviewExportError(f"export must be a list of tasks, got {type(tasks).__name__}")
    parsed: list[TaskAnnotation] = []
    seen: dict[str, int] = {}
    for index, task in enumerate(tasks):
        try:
            annotations = _parse_task(task, reading)
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
    tasks: Any,
    *,
    class_names: Sequence[str],
    expected_batch_id: str | None = None,
    interface: ReviewInterface = RECTANGLES,
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
    return _parse_tasks(tasks, _Reading(frozenset(class_names), expected_batch_id, interface, latest_only=True))


def parse_all_annotations(
    tasks: Any,
    *,
    class_names: Sequence[str],
    expected_batch_id: str | None = None,
    interface: ReviewInterface = RECTANGLES,
) -> list[TaskAnnotation]:
    """Parse a Label Studio JSON export into every non-cancelled annotation of every task.

    Same checks and the same all-or-nothing rejection as :func:`parse_export`, except
    that every non-cancelled annotation is validated, not only the latest, since every
    one is returned.  Output follows task order; within a task annotations run oldest
    first (the order :func:`parse_export` uses to pick the latest, which is the last
    one here).  One reviewer may appear more than once for a task if they annotated it
    twice; callers that need one annotation per reviewer pick the latest.
    """
    return _parse_tasks(tasks, _Reading(frozenset(class_names), expected_batch_id, interface, latest_only=False))
