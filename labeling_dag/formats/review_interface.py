"""What a modality looks like in Label Studio: its labelling config, its tasks, its answers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ReviewInterface:
    """The Label Studio side of a modality, as pure functions.

    Attributes:
        labeling_config: ``class_names -> XML``, the project's labelling interface.
        config_problem: ``(parsed_label_config, class_names) -> problem or None``: what makes an
            existing project's config (Label Studio's ``parsed_label_config``) unusable.
        task: ``(item, *, batch_id, model_version, pre_label_run_id, annotators) -> task``, one
            importable task with the model's regions as its prediction.
        result_type: the result item type that carries the labelled regions (``rectanglelabels``
            for boxes), in annotations and in predictions alike.
        parse_regions: ``(result, class_names) -> regions``, an annotation's result read back
            (:class:`~labeling_dag.formats.label_studio_export.AnnotatedBox` each), ignoring items
            of other types and raising ``ValueError`` on a malformed one.
    """

    labeling_config: Callable[[Sequence[str]], str]
    config_problem: Callable[[Any, Sequence[str]], str | None]
    task: Callable[..., dict[str, Any]]
    result_type: str
    parse_regions: Callable[[Any, frozenset[str]], tuple[Any, ...]]
