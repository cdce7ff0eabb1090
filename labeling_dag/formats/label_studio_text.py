"""Label Studio's text classification: a ``<Text>`` shown with ``<Choices>``, one class per text.

Pure functions only, the counterpart of :mod:`labeling_dag.formats.label_studio` for texts. A
text's one region is the whole item (:data:`~labeling_dag.formats.review_interface.WHOLE_ITEM`),
so what a reviewer chose reads back as a whole-item box of that class and every later stage
(merge, calibration, gold, consensus) treats it as it treats a box.

The task carries the text's URL, as an image task carries the image's (``valueType="url"``):
texts stay in the workdir, and review files are checked against the data root the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from xml.sax.saxutils import quoteattr

from labeling_dag.formats.label_studio import checked_class_names
from labeling_dag.formats.label_studio_export import AnnotatedBox
from labeling_dag.formats.label_studio_task import prediction_task
from labeling_dag.formats.review_interface import (
    FROM_NAME,
    WHOLE_ITEM,
    ReviewInterface,
    check_region_source,
    control_problem,
)
from labeling_dag.records import NormBox, ReviewImage

TO_NAME = "text"
CHOICES_TYPE = "choices"


def labeling_config(class_names: Sequence[str]) -> str:
    """The labelling config XML of a single-choice text classification project.

    Raises ``ValueError`` on an empty list, an empty or duplicate name or one XML cannot hold.
    """
    names = checked_class_names(class_names)
    choices = "".join(f"<Choice value={quoteattr(name)}/>" for name in names)
    return (
        "<View>"
        f'<Text name="{TO_NAME}" value="$text" valueType="url"/>'
        f'<Choices name="{FROM_NAME}" toName="{TO_NAME}" choice="single" showInLine="true">'
        f"{choices}"
        "</Choices>"
        "</View>"
    )


def config_problem(parsed: Any, class_names: Sequence[str]) -> str | None:
    """What makes a project's parsed labelling config unusable for texts of ``class_names``, or None."""
    return control_problem(
        parsed, class_names, control_type="Choices", to_name=TO_NAME, input_type="Text", label_noun="choices"
    )


def choice_value(box: NormBox, class_name: str) -> dict[str, Any]:
    """The ``value`` of a choice; a text has no geometry, so ``box`` is the whole item and unused."""
    return {CHOICES_TYPE: [class_name]}


def read_choice_value(value: Mapping[str, Any]) -> tuple[str, NormBox]:
    """The class of a choice ``value`` and the whole-item region it labels."""
    choices = value.get(CHOICES_TYPE) if isinstance(value, Mapping) else None
    if not isinstance(choices, list) or len(choices) != 1 or not isinstance(choices[0], str):
        raise ValueError(f"a text takes exactly one choice, got {choices!r}")
    return choices[0], WHOLE_ITEM


def choice_item(region_id: str, value: Mapping[str, Any], width: int, height: int) -> dict[str, Any]:
    """One ``choices`` result item; a text's size plays no part in it."""
    return {"id": region_id, "from_name": FROM_NAME, "to_name": TO_NAME, "type": CHOICES_TYPE, "value": dict(value)}


def text_task(
    item: ReviewImage, *, batch_id: str, model_version: str, pre_label_run_id: str, annotators: int = 1
) -> dict[str, Any]:
    """One importable task for a text, the model's class as its prediction (see
    :func:`labeling_dag.formats.label_studio_task.prediction_task` for the checks and the ``data``)."""
    return prediction_task(
        item,
        data_key="text",
        region=lambda pre_label: choice_item(pre_label.box_id, choice_value(pre_label.box, pre_label.class_name), 0, 0),
        batch_id=batch_id,
        model_version=model_version,
        pre_label_run_id=pre_label_run_id,
        annotators=annotators,
    )


def choice_regions(result: Any, class_names: frozenset[str]) -> tuple[AnnotatedBox, ...]:
    """The chosen class of an annotation's result as one whole-item region (none if nothing was
    chosen); other result types are ignored, a second choice item or an unknown class refused."""
    if not isinstance(result, list):
        raise ValueError(f"annotation result must be a list, got {result!r}")
    items = [item for item in result if isinstance(item, Mapping) and item.get("type") == CHOICES_TYPE]
    if len(items) > 1:
        raise ValueError(f"a text takes one choice item, got {len(items)}")
    regions = []
    for item in items:
        region_id = item.get("id")
        if not isinstance(region_id, str) or not region_id:
            raise ValueError(f"region id must be a non-empty string, got {region_id!r}")
        check_region_source(item, region_id, TO_NAME)
        label, box = read_choice_value(item.get("value"))
        if label not in class_names:
            raise ValueError(f"region {region_id!r} has unknown class label {label!r}")
        regions.append(AnnotatedBox(region_id=region_id, class_name=label, box=box))
    return tuple(regions)


# One class per text, chosen with Choices: text classification's review interface.
CHOICES = ReviewInterface(
    labeling_config=labeling_config,
    config_problem=config_problem,
    task=text_task,
    result_type=CHOICES_TYPE,
    parse_regions=choice_regions,
    data_key="text",
    region_value=choice_value,
    read_value=read_choice_value,
    result_item=choice_item,
    whole_item=True,
)
