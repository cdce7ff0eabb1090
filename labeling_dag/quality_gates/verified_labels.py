"""The verified-labels gate: unique ids, boxes inside the image, a known class and who vouches
for each label.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pandas as pd

from labeling_dag.contracts import LABELS, VERIFIED_LABELS
from labeling_dag.quality_gates.engine import project, validate
from labeling_dag.quality_gates.results import GateResult
from labeling_dag.quality_gates.rules import box_expectations, class_names_parameter, with_box_edges

if TYPE_CHECKING:
    from great_expectations.expectations.expectation import Expectation


VERIFIED_LABELS_SUITE = VERIFIED_LABELS.key
LABEL_SOURCES = ("human", "auto_accepted", "gold")
LABEL_COLUMNS = LABELS.select("label_id", "image_id", "class_name", "x", "y", "w", "h", "source")


def validate_verified_labels(labels: pd.DataFrame, *, class_names: Sequence[str]) -> GateResult:
    """Validate the verified labels: unique ids, boxes inside the image, known class and source."""
    frame = with_box_edges(project(labels, LABEL_COLUMNS, VERIFIED_LABELS_SUITE))
    return validate(
        VERIFIED_LABELS_SUITE,
        _verified_labels_expectations,
        frame,
        expectation_parameters=class_names_parameter(class_names),
    )


def _verified_labels_expectations() -> list[Expectation]:
    import great_expectations.expectations as gxe

    return [
        gxe.ExpectColumnValuesToNotBeNull(column="label_id", description="label_id not null"),
        gxe.ExpectColumnValuesToBeUnique(column="label_id", description="label_id unique"),
        gxe.ExpectColumnValuesToNotBeNull(column="image_id", description="image_id not null"),
        *box_expectations(),
        gxe.ExpectColumnValuesToBeInSet(
            column="source", value_set=list(LABEL_SOURCES), description="source is human, auto_accepted or gold"
        ),
    ]
