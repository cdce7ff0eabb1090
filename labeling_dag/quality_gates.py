"""Great Expectations 1.x suites that gate the cleaned-images and pre-labels tables.

The Dagster asset checks that block on these gates live elsewhere; this module knows
nothing about Dagster and returns plain :class:`GateResult` values.

``great_expectations`` takes seconds to import, so it is imported only inside functions
and the ephemeral Data Context, its pandas data source and both suites are built once per
process (:func:`functools.cache`). Each validation then only binds a new dataframe to a
whole-dataframe batch definition and runs the suite, which takes milliseconds.

Every expectation carries a short, unique ``description`` (e.g. ``"x between 0 and 1"``).
It names the rule in :attr:`ExpectationOutcome.detail` and in the check metadata, and it is
how results are matched back to rules, because GX does not return them in suite order.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from labeling_dag.contracts import (
    CLEANED,
    CLEANED_IMAGES,
    LABELS,
    PRE_LABEL_BOXES,
    PRE_LABELS,
    QUALITY,
    VERIFIED_LABELS,
)

if TYPE_CHECKING:
    from great_expectations.core.batch_definition import BatchDefinition
    from great_expectations.core.expectation_suite import ExpectationSuite
    from great_expectations.datasource.fluent import PandasDatasource
    from great_expectations.expectations.expectation import Expectation

CLEANED_IMAGES_SUITE = CLEANED_IMAGES.key
PRE_LABELS_SUITE = PRE_LABELS.key
REVIEW_QUALITY_SUITE = "review_quality"
VERIFIED_LABELS_SUITE = VERIFIED_LABELS.key
LABEL_SOURCES = ("human", "auto_accepted", "gold")

SHA256_HEX_PATTERN = r"^[0-9a-f]{64}$"
# Centre/size round trips through float32 model outputs put edges a hair outside [0, 1].
EDGE_TOLERANCE = 1e-6

# The columns each suite has rules for: a choice among the stage table's columns
# (:mod:`labeling_dag.contracts`), checked against its schema when this module loads.
IMAGE_COLUMNS = CLEANED.select("image_id", "path", "width", "height", "blur_variance", "contrast")
BOX_COLUMNS = PRE_LABEL_BOXES.select(
    "box_id", "image_id", "class_name", "x", "y", "w", "h", "confidence", "model_version"
)
REVIEW_QUALITY_COLUMNS = QUALITY.select(
    "batch_id",
    "reviewer",
    "gold_tasks",
    "gold_accuracy",
    "min_gold_accuracy",
    "kappa",
    "min_kappa",
    "box_agreement",
    "min_box_agreement",
)
LABEL_COLUMNS = LABELS.select("label_id", "image_id", "class_name", "x", "y", "w", "h", "source")

_CLASS_NAMES_PARAMETER = "class_names"

# One batch id per data asset: GX keys a dataframe batch by asset, so two concurrent
# validations of the same suite would overwrite each other's data in the shared engine.
_LOCK = threading.Lock()


@dataclass(frozen=True)
class ExpectationOutcome:
    """How one expectation of a suite fared on one table."""

    expectation: str
    column: str | None
    success: bool
    unexpected_count: int
    detail: str


@dataclass(frozen=True)
class GateResult:
    """The outcome of validating one table against one suite."""

    suite: str
    success: bool
    evaluated_rows: int
    outcomes: tuple[ExpectationOutcome, ...]

    def failed(self) -> tuple[ExpectationOutcome, ...]:
        """The outcomes whose expectation did not hold, in suite order."""
        return tuple(o for o in self.outcomes if not o.success)

    def as_metadata(self) -> dict[str, object]:
        """A flat, JSON-serialisable dict for Dagster asset-check metadata.

        One key per expectation (its ``detail``) mapping to ``{"success", "unexpected_count"}``,
        plus ``"evaluated_rows"``.
        """
        metadata: dict[str, object] = {"evaluated_rows": self.evaluated_rows}
        for outcome in self.outcomes:
            metadata[outcome.detail] = {
                "success": outcome.success,
                "unexpected_count": outcome.unexpected_count,
            }
        return metadata


def validate_cleaned_images(images: pd.DataFrame) -> GateResult:
    """Validate the cleaned images table (one row per kept image).

    Checks that ``image_id`` is a present, unique sha256 hex digest, ``path`` is present,
    ``width``/``height`` are at least 1, ``blur_variance`` is >= 0 and ``contrast`` (normalised
    RMS contrast) lies in [0, 1], none of them missing. Other columns are ignored.

    Raises:
        ValueError: a non-empty table lacks one of :data:`IMAGE_COLUMNS`.
        RuntimeError: GX could not evaluate a rule, e.g. a numeric column holds strings.
    """
    frame = _project(images, IMAGE_COLUMNS, CLEANED_IMAGES_SUITE)
    return _validate(CLEANED_IMAGES_SUITE, frame, expectation_parameters={})


def validate_pre_labels(boxes: pd.DataFrame, *, class_names: Sequence[str]) -> GateResult:
    """Validate the pre-labels table (one row per model-proposed box).

    Boxes are normalised centre xywh. Checks that ``box_id`` is present and unique,
    ``image_id`` is present, ``x``/``y`` lie in [0, 1], ``w``/``h`` in (0, 1], every box edge
    lies in [0, 1] (within :data:`EDGE_TOLERANCE`), ``class_name`` is one of ``class_names``,
    ``confidence`` lies in [0, 1] and ``model_version`` is a sha256 hex digest; none of these
    values may be missing. Other columns are ignored.

    Raises:
        TypeError: ``class_names`` is a single string rather than a sequence of names.
        ValueError: a non-empty table lacks one of :data:`BOX_COLUMNS`.
        RuntimeError: GX could not evaluate a rule, e.g. ``confidence`` holds strings.
    """
    frame = _with_box_edges(_project(boxes, BOX_COLUMNS, PRE_LABELS_SUITE))
    return _validate(PRE_LABELS_SUITE, frame, expectation_parameters=_class_names_parameter(class_names))


def validate_review_quality(quality: pd.DataFrame) -> GateResult:
    """Validate a review batch's quality rows (one per reviewer, plus ``reviewer == "*"`` for the batch).

    Where a reviewer (or the batch) answered gold items, ``gold_accuracy`` must reach
    ``min_gold_accuracy``; rows without gold items carry no evidence and pass. Where annotators
    shared images, the batch row's ``kappa`` and ``box_agreement`` must reach their floors.
    """
    frame = _project(quality, REVIEW_QUALITY_COLUMNS, REVIEW_QUALITY_SUITE)
    measured = frame["gold_tasks"].fillna(0) > 0
    frame = frame.assign(
        gold_accuracy_margin=(frame["gold_accuracy"] - frame["min_gold_accuracy"]).where(measured, 0.0),
        kappa_margin=(frame["kappa"] - frame["min_kappa"]).fillna(0.0),
        box_agreement_margin=(frame["box_agreement"] - frame["min_box_agreement"]).fillna(0.0),
    )
    return _validate(REVIEW_QUALITY_SUITE, frame, expectation_parameters={})


def validate_verified_labels(labels: pd.DataFrame, *, class_names: Sequence[str]) -> GateResult:
    """Validate the verified labels: unique ids, boxes inside the image, known class and source."""
    frame = _with_box_edges(_project(labels, LABEL_COLUMNS, VERIFIED_LABELS_SUITE))
    return _validate(VERIFIED_LABELS_SUITE, frame, expectation_parameters=_class_names_parameter(class_names))


def _with_box_edges(frame: pd.DataFrame) -> pd.DataFrame:
    """GX only validates stored columns, so the derived box edges become columns of the copy."""
    return frame.assign(
        left=frame["x"] - frame["w"] / 2,
        right=frame["x"] + frame["w"] / 2,
        top=frame["y"] - frame["h"] / 2,
        bottom=frame["y"] + frame["h"] / 2,
    )


def _class_names_parameter(class_names: Sequence[str]) -> dict[str, Any]:
    if isinstance(class_names, str):
        raise TypeError(f"class_names must be a sequence of names, not the string {class_names!r}")
    return {_CLASS_NAMES_PARAMETER: list(class_names)}


def _project(table: pd.DataFrame, columns: tuple[str, ...], suite: str) -> pd.DataFrame:
    """A copy of ``table`` holding exactly ``columns``, so that extra columns never reach GX."""
    missing = [c for c in columns if c not in table.columns]
    if missing and len(table) > 0:
        raise ValueError(f"{suite} table lacks columns {missing}; it has {list(table.columns)}")
    # ``pd.DataFrame([])`` from an empty record list has no columns; with no rows there is
    # nothing to be wrong, so the absent columns are simply added empty.
    return table.reindex(columns=list(columns))


@dataclass(frozen=True)
class _Gate:
    batch_definition: BatchDefinition
    suite: ExpectationSuite


@functools.cache
def _datasource() -> PandasDatasource:
    """The pandas data source of this process's one ephemeral Data Context."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    # GX draws a tqdm "Calculating Metrics" bar on stderr for every validation otherwise.
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context.data_sources.add_pandas("labeling_dag")


@functools.cache
def _gate(suite_name: str) -> _Gate:
    import great_expectations as gx

    asset = _datasource().add_dataframe_asset(suite_name)
    suite = gx.ExpectationSuite(name=suite_name)
    for expectation in _SUITE_BUILDERS[suite_name]():
        suite.add_expectation(expectation)
    return _Gate(batch_definition=asset.add_batch_definition_whole_dataframe("whole"), suite=suite)


def _cleaned_images_expectations() -> list[Expectation]:
    import great_expectations.expectations as gxe

    return [
        gxe.ExpectColumnValuesToNotBeNull(column="image_id", description="image_id not null"),
        gxe.ExpectColumnValuesToBeUnique(column="image_id", description="image_id unique"),
        gxe.ExpectColumnValuesToMatchRegex(
            column="image_id", regex=SHA256_HEX_PATTERN, description="image_id is sha256 hex"
        ),
        gxe.ExpectColumnValuesToNotBeNull(column="path", description="path not null"),
        *_not_null_and_between("width", min_value=1, description="width >= 1"),
        *_not_null_and_between("height", min_value=1, description="height >= 1"),
        *_not_null_and_between("blur_variance", min_value=0, description="blur_variance >= 0"),
        *_not_null_and_between("contrast", min_value=0, max_value=1, description="contrast between 0 and 1"),
    ]


def _pre_labels_expectations() -> list[Expectation]:
    import great_expectations.expectations as gxe

    return [
        gxe.ExpectColumnValuesToNotBeNull(column="box_id", description="box_id not null"),
        gxe.ExpectColumnValuesToBeUnique(column="box_id", description="box_id unique"),
        gxe.ExpectColumnValuesToNotBeNull(column="image_id", description="image_id not null"),
        *_box_expectations(),
        *_not_null_and_between("confidence", min_value=0, max_value=1, description="confidence between 0 and 1"),
        gxe.ExpectColumnValuesToNotBeNull(column="model_version", description="model_version not null"),
        gxe.ExpectColumnValuesToMatchRegex(
            column="model_version",
            regex=SHA256_HEX_PATTERN,
            description="model_version is sha256 hex",
        ),
    ]


def _review_quality_expectations() -> list[Expectation]:
    import great_expectations.expectations as gxe

    return [
        gxe.ExpectColumnValuesToNotBeNull(column="batch_id", description="batch_id not null"),
        gxe.ExpectColumnValuesToBeBetween(
            column="gold_accuracy_margin",
            min_value=0,
            description="gold accuracy >= min_gold_accuracy",
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="kappa_margin", min_value=0, description="annotators' kappa on matched boxes >= min_kappa"
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="box_agreement_margin",
            min_value=0,
            description="share of boxes both annotators drew >= min_box_agreement",
        ),
    ]


def _verified_labels_expectations() -> list[Expectation]:
    import great_expectations.expectations as gxe

    return [
        gxe.ExpectColumnValuesToNotBeNull(column="label_id", description="label_id not null"),
        gxe.ExpectColumnValuesToBeUnique(column="label_id", description="label_id unique"),
        gxe.ExpectColumnValuesToNotBeNull(column="image_id", description="image_id not null"),
        *_box_expectations(),
        gxe.ExpectColumnValuesToBeInSet(
            column="source", value_set=list(LABEL_SOURCES), description="source is human, auto_accepted or gold"
        ),
    ]


def _box_expectations() -> list[Expectation]:
    """Rules shared by every table of boxes: normalised centre xywh inside the image, known class."""
    import great_expectations.expectations as gxe

    edges = {
        "left": "left edge x - w/2 in [0, 1]",
        "right": "right edge x + w/2 in [0, 1]",
        "top": "top edge y - h/2 in [0, 1]",
        "bottom": "bottom edge y + h/2 in [0, 1]",
    }
    return [
        *_not_null_and_between("x", min_value=0, max_value=1, description="x between 0 and 1"),
        *_not_null_and_between("y", min_value=0, max_value=1, description="y between 0 and 1"),
        *_not_null_and_between("w", min_value=0, max_value=1, strict_min=True, description="w in (0, 1]"),
        *_not_null_and_between("h", min_value=0, max_value=1, strict_min=True, description="h in (0, 1]"),
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
            value_set={"$PARAMETER": _CLASS_NAMES_PARAMETER},
            description="class_name in class_names",
        ),
    ]


def _not_null_and_between(
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


_SUITE_BUILDERS: Mapping[str, Callable[[], list[Expectation]]] = {
    CLEANED_IMAGES_SUITE: _cleaned_images_expectations,
    PRE_LABELS_SUITE: _pre_labels_expectations,
    REVIEW_QUALITY_SUITE: _review_quality_expectations,
    VERIFIED_LABELS_SUITE: _verified_labels_expectations,
}


def _validate(suite_name: str, frame: pd.DataFrame, *, expectation_parameters: dict[str, Any]) -> GateResult:
    with _LOCK:
        gate = _gate(suite_name)
        batch = gate.batch_definition.get_batch(batch_parameters={"dataframe": frame})
        # BASIC still reports unexpected_count but skips SUMMARY's value histograms.
        suite_result = batch.validate(gate.suite, result_format="BASIC", expectation_parameters=expectation_parameters)

    by_detail = {r.expectation_config.description: r for r in suite_result.results}
    outcomes = []
    for expectation in gate.suite.expectations:
        result = by_detail[expectation.description]
        # Every rule here is a column-map expectation, which always reports unexpected_count
        # once evaluated; without it GX failed to evaluate the rule rather than the data failing.
        if "unexpected_count" not in result.result:
            errors = _exception_messages(result.exception_info or {})
            raise RuntimeError(f"{suite_name}: GX could not evaluate {expectation.description!r}: {errors}")
        outcomes.append(
            ExpectationOutcome(
                expectation=result.expectation_config.type,
                column=result.expectation_config.kwargs.get("column"),
                success=bool(result.success),
                unexpected_count=int(result.result["unexpected_count"]),
                detail=str(expectation.description),
            )
        )
    return GateResult(
        suite=suite_name,
        success=all(o.success for o in outcomes),
        evaluated_rows=len(frame),
        outcomes=tuple(outcomes),
    )


def _exception_messages(exception_info: Mapping[str, Any]) -> list[str]:
    # GX reports a failed expectation flat, but a failed metric nested under its metric id.
    entries = [exception_info, *(v for v in exception_info.values() if isinstance(v, Mapping))]
    return sorted({str(e.get("exception_message")) for e in entries if e.get("raised_exception")})
