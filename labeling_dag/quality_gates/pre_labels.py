"""The pre-labels gate: every model-proposed box inside its image, of a known class, with a
confidence and the model version that proposed it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pandas as pd

from labeling_dag.contracts import PRE_LABEL_BOXES, PRE_LABELS
from labeling_dag.quality_gates.engine import project, validate
from labeling_dag.quality_gates.results import GateResult
from labeling_dag.quality_gates.rules import (
    SHA256_HEX_PATTERN,
    box_expectations,
    class_names_parameter,
    not_null_and_between,
    with_box_edges,
)

if TYPE_CHECKING:
    from great_expectations.expectations.expectation import Expectation


PRE_LABELS_SUITE = PRE_LABELS.key
BOX_COLUMNS = PRE_LABEL_BOXES.select(
    "box_id", "image_id", "class_name", "x", "y", "w", "h", "confidence", "model_version"
)


def validate_pre_labels(boxes: pd.DataFrame, *, class_names: Sequence[str]) -> GateResult:
    """Validate the pre-labels table (one row per model-proposed box).

    Boxes are normalised centre xywh. Checks that ``box_id`` is present and unique,
    ``image_id`` is present, ``x``/``y`` lie in [0, 1], ``w``/``h`` in (0, 1], every box edge
    lies in [0, 1] (within :data:`~labeling_dag.quality_gates.rules.EDGE_TOLERANCE`),
    ``class_name`` is one of ``class_names``, ``confidence`` lies in [0, 1] and ``model_version``
    is a sha256 hex digest; none of these values may be missing. Other columns are ignored.

    Raises:
        TypeError: ``class_names`` is a single string rather than a sequence of names.
        ValueError: a non-empty table lacks one of :data:`BOX_COLUMNS`.
        RuntimeError: GX could not evaluate a rule, e.g. ``confidence`` holds strings.
    """
    frame = with_box_edges(project(boxes, BOX_COLUMNS, PRE_LABELS_SUITE))
    return validate(
        PRE_LABELS_SUITE, _pre_labels_expectations, frame, expectation_parameters=class_names_parameter(class_names)
    )


def _pre_labels_expectations() -> list[Expectation]:
    import great_expectations.expectations as gxe

    return [
        gxe.ExpectColumnValuesToNotBeNull(column="box_id", description="box_id not null"),
        gxe.ExpectColumnValuesToBeUnique(column="box_id", description="box_id unique"),
        gxe.ExpectColumnValuesToNotBeNull(column="image_id", description="image_id not null"),
        *box_expectations(),
        *not_null_and_between("confidence", min_value=0, max_value=1, description="confidence between 0 and 1"),
        gxe.ExpectColumnValuesToNotBeNull(column="model_version", description="model_version not null"),
        gxe.ExpectColumnValuesToMatchRegex(
            column="model_version",
            regex=SHA256_HEX_PATTERN,
            description="model_version is sha256 hex",
        ),
    ]
