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


# A classification's one region: the whole item, as ultralytics' classification predictions are stored.
WHOLE_ITEM = NormBox(0.5, 0.5, 1.0, 1.0)
