"""Jobs: named selections of the asset graph (each includes the checks of its assets)."""

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
)
from labeling_dag.partitions import ingest_batches

# One ingestion batch (a partition) from raw files to uncertainty scores. Batches run in
# parallel: each is its own run, and with the Celery executor each step goes to a worker.
prelabel_batch = dg.define_asset_job(
    "prelabel_batch",
    selection=dg.AssetSelection.assets(RAW_IMAGES.key, CLEANED_IMAGES.key, PRE_LABELS.key, UNCERTAINTY_SCORES.key),
    partitions_def=ingest_batches,
    description="Ingest, clean, pre-label and score one ingestion batch.",
)

# Selection for review is global: it ranks the whole pool, every batch together.
select_review_batch = dg.define_asset_job(
    "select_review_batch",
    selection=dg.AssetSelection.assets(REVIEW_BATCH.key),
    description="Rank the pool and export the next review batch.",
)

# A returned review batch becomes verified labels (unless its gold accuracy gate fails).
merge_review = dg.define_asset_job(
    "merge_review",
    selection=dg.AssetSelection.assets(REVIEW_ANNOTATIONS.key, VERIFIED_LABELS.key),
    description="Take in a completed review batch and merge it into the verified labels.",
)

# Train on the verified labels and promote the model if it passes the promotion gate.
retrain = dg.define_asset_job(
    "retrain",
    selection=dg.AssetSelection.assets(RETRAINED_MODEL.key, CURRENT_MODEL.key),
    description="Fine-tune (or cold-start) on the verified labels, evaluate, promote.",
)

# The verified labels as a dataset a trainer reads (YOLO by default), DVC-snapshotted: run after
# a merge to version the export of that verified snapshot.
export_dataset = dg.define_asset_job(
    "export_dataset",
    selection=dg.AssetSelection.assets(DATASET_EXPORT.key),
    description="Export the verified labels (YOLO, COCO or Label Studio) with their provenance.",
)

# cleanlab's ranking of the human-verified labels: label_issues_sensor runs it after each merge;
# this job runs it by hand (e.g. with other thresholds in its run config).
find_label_issues = dg.define_asset_job(
    "find_label_issues",
    selection=dg.AssetSelection.assets(LABEL_ISSUES.key),
    description="Rank the human-verified images by cleanlab's label quality and list the suspects.",
)
