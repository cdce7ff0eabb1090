"""The cleaned-images gate: ids, paths, sizes and quality measures of each kept image."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from labeling_dag.contracts import CLEANED, CLEANED_IMAGES
from labeling_dag.quality_gates.engine import project, validate
from labeling_dag.quality_gates.results import GateResult
from labeling_dag.quality_gates.rules import SHA256_HEX_PATTERN, not_null_and_between

if TYPE_CHECKING:
    from great_expectations.expectations.expectation import Expectation


CLEANED_IMAGES_SUITE = CLEANED_IMAGES.key
# The columns this suite has rules for (as every suite names its own): a choice among the stage
# table's columns (:mod:`labeling_dag.contracts`), checked against its schema when this module loads.
IMAGE_COLUMNS = CLEANED.select("image_id", "path", "width", "height", "blur_variance", "contrast")


def validate_cleaned_images(images: pd.DataFrame) -> GateResult:
    """Validate the cleaned images table (one row per kept image).

    Checks that ``image_id`` is a present, unique sha256 hex digest, ``path`` is present,
    ``width``/``height`` are at least 1, ``blur_variance`` is >= 0 and ``contrast`` (normalised
    RMS contrast) lies in [0, 1], none of them missing. Other columns are ignored.

    Raises:
        ValueError: a non-empty table lacks one of :data:`IMAGE_COLUMNS`.
        RuntimeError: GX could not evaluate a rule, e.g. a numeric column holds strings.
    """
    frame = project(images, IMAGE_COLUMNS, CLEANED_IMAGES_SUITE)
    return validate(CLEANED_IMAGES_SUITE, _cleaned_images_expectations, frame, expectation_parameters={})


def _cleaned_images_expectations() -> list[Expectation]:
    import great_expectations.expectations as gxe

    return [
        gxe.ExpectColumnValuesToNotBeNull(column="image_id", description="image_id not null"),
        gxe.ExpectColumnValuesToBeUnique(column="image_id", description="image_id unique"),
        gxe.ExpectColumnValuesToMatchRegex(
            column="image_id", regex=SHA256_HEX_PATTERN, description="image_id is sha256 hex"
        ),
        gxe.ExpectColumnValuesToNotBeNull(column="path", description="path not null"),
        *not_null_and_between("width", min_value=1, description="width >= 1"),
        *not_null_and_between("height", min_value=1, description="height >= 1"),
        *not_null_and_between("blur_variance", min_value=0, description="blur_variance >= 0"),
        *not_null_and_between("contrast", min_value=0, max_value=1, description="contrast between 0 and 1"),
    ]
