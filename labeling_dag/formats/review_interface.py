"""What a modality looks like in Label Studio: its labelling config, its tasks, its answers."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from labeling_dag.records import NormBox


@dataclass(frozen=True)
class ReviewInterface:
    """The Label Studio side of a modality, as pure functions.

    A region is what a reviewer labels: a box of an image, or for a classification the whole
    item (:data:`WHOLE_ITEM`). Label Studio stores a region as one result item whose ``value``
    holds the label under the key named like the item's ``type``.

    Attributes:
        labeling_config: ``class_names -> XML``, the project's labelling interface.
        config_problem: ``(parsed_label_config, class_names) -> problem or None``: what makes an
            existing project's config (Label Studio's ``parsed_label_config``) unusable.
        task: ``(item, *, batch_id, model_version, pre_label_run_id, annotators) -> task``, one
            importable task with the model's regions as its prediction.
        result_type: the result item type that carries the labelled regions (``rectanglelabels``
            for boxes, ``choices`` for a whole-item class), in annotations and in predictions alike.
        parse_regions: ``(result, class_names) -> regions``, an annotation's result read back
            (:class:`~labeling_dag.formats.label_studio_export.AnnotatedBox` each), ignoring items
            of other types and raising ``ValueError`` on a malformed one.
        data_key: the key of a task's ``data`` that holds the item's URL (``$image``, ``$text``).
        region_value: ``(box, class_name) -> value``, the ``value`` of a region's result item.
        read_value: ``value -> (class_name, box)``, the inverse of ``region_value``.
        result_item: ``(region_id, value, width, height) -> item``, one result item of an
            annotation or prediction, for an item of that size.
        whole_item: whether an item's one region is the whole item (a classification).
    """

    labeling_config: Callable[[Sequence[str]], str]
    config_problem: Callable[[Any, Sequence[str]], str | None]
    task: Callable[..., dict[str, Any]]
    result_type: str
    parse_regions: Callable[[Any, frozenset[str]], tuple[Any, ...]]
    data_key: str
    region_value: Callable[[NormBox, str], dict[str, Any]]
    read_value: Callable[[Mapping[str, Any]], tuple[str, NormBox]]
    result_item: Callable[[str, Mapping[str, Any], int, int], dict[str, Any]]
    # Each item is one region (a classification): a wrong class is one wrong answer, not a missed
    # region plus a false one as it is for boxes.
    whole_item: bool = False


# The name of the labelling control in every modality's config: what a result item comes from.
FROM_NAME = "label"

# A classification's one region: the whole item, as ultralytics' classification predictions are stored.
WHOLE_ITEM = NormBox(0.5, 0.5, 1.0, 1.0)


def control_problem(
    parsed: Any, class_names: Sequence[str], *, control_type: str, to_name: str, input_type: str, label_noun: str
) -> str | None:
    """What makes a project's parsed labelling config (Label Studio's ``parsed_label_config``)
    unusable, or None: it needs a ``control_type`` control named :data:`FROM_NAME` that labels the
    ``input_type`` object ``to_name``, shown from ``$<to_name>``, and offers exactly ``class_names``
    (its ``label_noun``: labels, choices)."""
    control = parsed.get(FROM_NAME) if isinstance(parsed, Mapping) else None
    if not isinstance(control, Mapping) or control.get("type") != control_type:
        return f"has no {control_type} control named {FROM_NAME!r}"
    if list(control.get("to_name") or []) != [to_name]:
        return f"labels {control.get('to_name')!r}, not the {input_type.lower()} {to_name!r}"
    inputs = [
        (item.get("type"), item.get("value")) for item in control.get("inputs") or [] if isinstance(item, Mapping)
    ]
    if (input_type, to_name) not in inputs:
        return f"does not show ${to_name}"
    labels = list(control.get("labels") or [])
    if sorted(labels) != sorted(class_names):
        return f"offers the {label_noun} {labels}, but the pipeline's classes are {list(class_names)}"
    return None


def check_region_source(item: Mapping[str, Any], region_id: str, to_name: str) -> None:
    """Refuse a result item that does not come from the config's control: :data:`FROM_NAME` -> ``to_name``."""
    if item.get("from_name") != FROM_NAME or item.get("to_name") != to_name:
        raise ValueError(
            f"region {region_id!r} comes from {item.get('from_name')!r} -> "
            f"{item.get('to_name')!r}, not the {FROM_NAME!r} -> {to_name!r} of this config"
        )
