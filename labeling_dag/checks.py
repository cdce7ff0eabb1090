"""Great Expectations suites as blocking asset checks: a failed gate stops downstream assets."""

import dagster as dg

from labeling_dag.assets.cleaning import FOLDER as CLEANED
from labeling_dag.assets.prelabels import FOLDER as PRE_LABELS
from labeling_dag.cleaning import IMAGE_COLUMNS as CLEANED_COLUMNS
from labeling_dag.model_registry import ModelRegistry
from labeling_dag.prelabeling import BOX_COLUMNS
from labeling_dag.quality_gates import GateResult, validate_cleaned_images, validate_pre_labels
from labeling_dag.resources.storage import LabelStore


def _check_result(gate: GateResult) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=gate.success,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            **gate.as_metadata(),
            "failed_expectations": dg.MetadataValue.json([outcome.detail for outcome in gate.failed()]),
        },
    )


@dg.asset_check(asset="cleaned_images", blocking=True, description="GX suite: ids, paths, sizes, quality measures")
def cleaned_images_gate(store: LabelStore) -> dg.AssetCheckResult:
    """Validate the cleaned-images table with its Great Expectations suite."""
    return _check_result(validate_cleaned_images(store.read_table(CLEANED, "images", CLEANED_COLUMNS)))


@dg.asset_check(
    asset="pre_labels", blocking=True, description="GX suite: boxes inside the image, classes, confidences, model version"
)
def pre_labels_gate(store: LabelStore) -> dg.AssetCheckResult:
    """Validate the pre-label boxes against the class list of the model that produced them."""
    model = ModelRegistry(store.root).current()
    class_names = model.class_names if model else ()
    return _check_result(
        validate_pre_labels(store.read_table(PRE_LABELS, "boxes", BOX_COLUMNS), class_names=class_names)
    )
