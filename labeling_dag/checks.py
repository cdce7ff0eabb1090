"""Great Expectations suites as blocking asset checks: a failed gate stops downstream assets."""

import dagster as dg

from labeling_dag.batch_states import quarantined_batches
from labeling_dag.contracts import (
    CLEANED,
    CLEANED_IMAGES,
    LABELS,
    PRE_LABEL_BOXES,
    PRE_LABELS,
    QUALITY,
    REVIEW_ANNOTATIONS,
    VERIFIED_LABELS,
)
from labeling_dag.merge import active
from labeling_dag.model_registry import ModelRegistry
from labeling_dag.quality_gates.cleaned_images import validate_cleaned_images
from labeling_dag.quality_gates.pre_labels import validate_pre_labels
from labeling_dag.quality_gates.results import GateResult
from labeling_dag.quality_gates.review_quality import validate_review_quality
from labeling_dag.quality_gates.verified_labels import validate_verified_labels
from labeling_dag.resources.storage import LabelStore


def _check_result(
    gate: GateResult, severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR
) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=gate.success,
        severity=severity,
        metadata={
            **gate.as_metadata(),
            "failed_expectations": dg.MetadataValue.json([outcome.detail for outcome in gate.failed()]),
        },
    )


@dg.asset_check(asset=CLEANED_IMAGES.key, blocking=True, description="GX suite: ids, paths, sizes, quality measures")
def cleaned_images_gate(context: dg.AssetCheckExecutionContext, store: LabelStore) -> dg.AssetCheckResult:
    """Validate the ingestion batch's cleaned-images table with its Great Expectations suite."""
    return _check_result(validate_cleaned_images(store.read(CLEANED, batch=context.partition_key)))


@dg.asset_check(
    asset=PRE_LABELS.key,
    blocking=True,
    description="GX suite: boxes inside the image, classes, confidences, model version",
)
def pre_labels_gate(context: dg.AssetCheckExecutionContext, store: LabelStore) -> dg.AssetCheckResult:
    """Validate the batch's pre-label boxes against the class list of the model that produced them."""
    model = ModelRegistry(store.root).current()
    class_names = model.class_names if model else ()
    boxes = store.read(PRE_LABEL_BOXES, batch=context.partition_key)
    return _check_result(validate_pre_labels(boxes, class_names=class_names))


@dg.asset_check(
    asset=REVIEW_ANNOTATIONS.key,
    blocking=True,
    description=(
        "GX suite: gold accuracy of each reviewer reaches the threshold; a reviewer below it is quarantined "
        "(a warning, the others' annotations are merged), a batch where every reviewer is blocks the merge, "
        "and so does a batch whose annotators agreed less than the kappa or box-agreement floor"
    ),
)
def review_quality_gate(context: dg.AssetCheckExecutionContext, store: LabelStore) -> dg.AssetCheckResult:
    """Validate the quality rows this run wrote for its review batch.

    A failure blocks the merge (severity ERROR) when no reviewer of the batch passed or its
    annotators agreed too little; otherwise it is a warning: the failing reviewers' annotations
    were already left out of the batch's edits.
    """
    quality = store.read(QUALITY)
    mine = quality[quality["run_id"] == context.run.run_id]
    severity = dg.AssetCheckSeverity.ERROR if quarantined_batches(mine) else dg.AssetCheckSeverity.WARN
    return _check_result(validate_review_quality(mine), severity)


@dg.asset_check(
    asset=VERIFIED_LABELS.key,
    blocking=True,
    description="GX suite: unique ids, boxes inside the image, known class and source",
)
def verified_labels_gate(store: LabelStore) -> dg.AssetCheckResult:
    """Validate the labels in force against the project's class list."""
    labels = active(store.read(LABELS))
    return _check_result(validate_verified_labels(labels, class_names=store.class_names()))
