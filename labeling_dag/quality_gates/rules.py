"""Rules shared by several suites: a not-null range rule, the rules of every table of boxes
(normalised centre xywh inside the image, a known class) and the derived box-edge columns they read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from great_expectations.expectations.expectation import Expectation

SHA256_HEX_PATTERN = r"^[0-9a-f]{64}$"
# Centre/size round trips through float32 model outputs put edges a hair outside [0, 1].
EDGE_TOLERANCE = 1e-6

CLASS_NAMES_PARAMETER = "class_names"


def with_box_edges(frame: pd.DataFrame) -> pd.DataFrame:
    """GX only validates stored columns, so the derived box edges become columns of the copy."""
    return frame.assign(
        left=frame["x"] - frame["w"] / 2,
        right=frame["x"] + frame["w"] / 2,
        top=frame["y"] - frame["h"] / 2,
        bottom=frame["y"] + frame["h"] / 2,
    )


def class_names_parameter(class_names: Sequence[str]) -> dict[str, Any]:
    """The class list a suite's ``class_name in class_names`` rule is bound to for one validation."""
    if isinstance(class_names, str):
        raise TypeError(f"class_names must be a sequence of names, not the string {class_names!r}")
    return {CLASS_NAMES_PARAMETER: list(class_names)}


def box_expectations() -> list[Expectation]:
    """Rules shared by every table of boxes: normalised centre xywh inside the image, known class."""
    import great_expectations.expectations as gxe

    edges = {
        "left": "left edge x - w/2 in [0, 1]",
        "right": "right edge x + w/2 in [0, 1]",
        "top": "top edge y - h/2 in [0, 1]",
        "bottom": "bottom edge y + h/2 in [0, 1]",
    }
    return [
        *not_null_and_between("x", min_value=0, max_value=1, description="x between 0 and 1"),
        *not_null_and_between("y", min_value=0, max_value=1, description="y between 0 and 1"),
        *not_null_and_between("w", min_value=0, max_value=1, strict_min=True, description="w in (0, 1]"),
        *not_null_and_between("h", min_value=0, max_value=1, strict_min=True, description="h in (0, 1]"),
        # Edges are derived from x/y/w/h, whose nulls are already reported above.
        *(
            gxe.ExpectColumnValuesToBeBetween(
                column=column,
                min_value=-EDGE_TOLERANCE,
                max_value=1 + EDGE_TOLERANCE,
                description=description,
            )
            for column, description in edges.items()
        ),
        gxe.ExpectColumnValuesToNotBeNull(column="class_name", description="class_name not null"),
        gxe.ExpectColumnValuesToBeInSet(
            column="class_name",
            # Bound per validation, so one cached suite serves every class list.
            value_set={"$PARAMETER": CLASS_NAMES_PARAMETER},
            description="class_name in class_names",
        ),
    ]


def not_null_and_between(
    column: str,
    *,
    description: str,
    min_value: float,
    max_value: float | None = None,
    strict_min: bool = False,
) -> tuple[Expectation, Expectation]:
    """A range rule plus the not-null rule it needs: GX range checks skip nulls and NaN."""
    import great_expectations.expectations as gxe

    return (
        gxe.ExpectColumnValuesToNotBeNull(column=column, description=f"{column} not null"),
        gxe.ExpectColumnValuesToBeBetween(
            column=column,
            min_value=min_value,
            max_value=max_value,
            strict_min=strict_min,
            description=description,
        ),
    )
