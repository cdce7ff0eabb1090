"""Label Studio formats for boxes: the labelling config, the rectangle result items and the
importable review tasks of an image batch.

Reading the JSON export back is :mod:`labeling_dag.formats.label_studio_export`; the percent
coordinates are converted by :mod:`labeling_dag.formats.label_studio_boxes` and a task is built
by :mod:`labeling_dag.formats.label_studio_task`.

Pure functions only (no I/O, no Dagster), so the whole round trip
``ReviewImage -> task JSON -> (annotators) -> export JSON -> TaskAnnotation`` is testable offline.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any
from xml.sax.saxutils import quoteattr

from labeling_dag.formats.label_studio_boxes import ls_percent_to_norm, norm_to_ls_percent
from labeling_dag.formats.label_studio_task import prediction_task
from labeling_dag.formats.review_interface import FROM_NAME, control_problem
from labeling_dag.records import NormBox, ReviewImage

TO_NAME = "image"

RECTANGLE_TYPE = "rectanglelabels"
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
    return control_problem(
        parsed, class_names, control_type="RectangleLabels", to_name=TO_NAME, input_type="Image", label_noun="labels"
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
