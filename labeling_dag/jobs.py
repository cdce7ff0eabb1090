"""Jobs: named selections of the asset graph (each includes the checks of its assets)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import dagster as dg

from labeling_dag.contracts import (
    CLEANED_IMAGES,
    CURRENT_MODEL,
    DATASET_EXPORT,
    LABEL_ISSUES,
    PRE_LABELS,
    RAW_IMAGES,
    RETRAINED_MODEL,
    REVIEW_ANNOTATIONS,
    REVIEW_BATCH,
    UNCERTAINTY_SCORES,
    VERIFIED_LABELS,
    Stage,
)
from labeling_dag.partitions import ingest_batches

if TYPE_CHECKING:
    # What define_asset_job returns: Dagster resolves the selection when the Definitions load.
    from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition


def _job(
    name: str, stages: tuple[Stage, ...], description: str, partitions_def: dg.PartitionsDefinition | None = None
) -> UnresolvedAssetJobDefinition:
    """The job ``name`` that materialises the assets of ``stages`` (and runs their checks)."""
    selection = dg.AssetSelection.assets(*(stage.key for stage in stages))
    return dg.define_asset_job(name, selection=selection, description=description, partitions_def=partitions_def)


# One ingestion batch (a partition) from raw files to uncertainty scores. Batches run in
# parallel: each is its own run, and with the Celery executor each step goes to a worker.
prelabel_batch = _job(
    "prelabel_batch",
    (RAW_IMAGES, CLEANED_IMAGES, PRE_LABELS, UNCERTAINTY_SCORES),
    "Ingest, clean, pre-label and score one ingestion batch.",
    partitions_def=ingest_batches,
)

# Selection for review is global: it ranks the whole pool, every batch together.
select_review_batch = _job("select_review_batch", (REVIEW_BATCH,), "Rank the pool and export the next review batch.")

# A returned review batch becomes verified labels (unless its gold accuracy gate fails).
merge_review = _job(
    "merge_review",
    (REVIEW_ANNOTATIONS, VERIFIED_LABELS),
    "Take in a completed review batch and merge it into the verified labels.",
)

# Train on the verified labels and promote the model if it passes the promotion gate.
retrain = _job(
    "retrain",
    (RETRAINED_MODEL, CURRENT_MODEL),
    "Fine-tune (or cold-start) on the verified labels, evaluate, promote.",
)

# The verified labels as a dataset a trainer reads (YOLO by default), DVC-snapshotted: run after
# a merge to version the export of that verified snapshot.
export_dataset = _job(
    "export_dataset",
    (DATASET_EXPORT,),
    "Export the verified labels (YOLO, COCO or Label Studio) with their provenance.",
)

# cleanlab's ranking of the human-verified labels: label_issues_sensor runs it after each merge;
# this job runs it by hand (e.g. with other thresholds in its run config).
find_label_issues = _job(
    "find_label_issues",
    (LABEL_ISSUES,),
    "Rank the human-verified images by cleanlab's label quality and list the suspects.",
)
