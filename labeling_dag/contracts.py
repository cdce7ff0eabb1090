"""Each pipeline stage's storage contract, declared once: asset key, workdir folder, partitioning
and the schema of every table it writes.

Every reader of a stage's files (its own asset, the stages downstream, the asset checks and the
Great Expectations suites, the sensors, lineage, restore, the CLI, the export) takes them from
here and never restates a folder name, a table name or a column list. Renaming a folder or adding
a column is then one edit, and ``tests/test_contracts.py`` keeps the contracts and the
Definitions' assets in step.

Dagster-free and light (pandas dtypes as strings), so the audit CLI and the pure modules can read
the contracts without loading the code location. A schema maps each column to the pandas dtype it
is read as (:func:`labeling_dag.tables.read`); a table written before a column existed reads that
column as the dtype's empty value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from labeling_dag.uncertainty import MEASURES


@dataclass(frozen=True)
class Table:
    """One parquet table of a stage: ``<folder>/<name>.parquet``, or for a partitioned stage
    ``<folder>/<batch>/<name>.parquet``, one per ingestion batch."""

    folder: str
    name: str
    columns: Mapping[str, str]
    partitioned: bool = False

    def select(self, *names: str) -> tuple[str, ...]:
        """Some of the table's columns, in the order given; a name the schema lacks is an error,
        so a subset (a quality gate's columns, a cheap ``only=`` read) cannot drift from it."""
        unknown = [name for name in names if name not in self.columns]
        if unknown:
            raise KeyError(f"{self.folder}/{self.name}: no columns {unknown}")
        return names


@dataclass(frozen=True)
class Stage:
    """One stage of the lifecycle: its asset key (None for a folder no asset materialises, such as
    ``gold``), the workdir folder it owns and whether it is partitioned by ingestion batch."""

    key: str | None
    folder: str
    partitioned: bool = False

    def table(self, name: str, columns: Mapping[str, str]) -> Table:
        """A table of this stage."""
        return Table(self.folder, name, columns, self.partitioned)

    def tables(self, **columns: Mapping[str, str]) -> tuple[Table, ...]:
        """Tables of this stage, one per keyword (the table's name and its schema), in that order."""
        return tuple(self.table(name, schema) for name, schema in columns.items())


# --- schemas ----------------------------------------------------------------------------------

# A box in normalised centre xywh (labeling_dag.records.NormBox): the columns of every table of boxes.
XYWH: dict[str, str] = {"x": "float64", "y": "float64", "w": "float64", "h": "float64"}

RAW_COLUMNS: dict[str, str] = {
    "image_id": "str",
    "source_path": "str",
    "stored_path": "str",
    "size_bytes": "int64",
    "source_mtime_ns": "int64",
    "ingested_at": "str",
    "run_id": "str",
}
CLEANED_COLUMNS: dict[str, str] = {
    "image_id": "str",
    "path": "str",
    "source_path": "str",
    "width": "int64",
    "height": "int64",
    "exif_transposed": "bool",
    "converted_mode": "str",
    "pixel_hash": "str",
    "phash": "str",
    "duplicate_of": "str",
    "near_duplicate_of": "str",
    "is_exact_duplicate": "bool",
    "is_near_duplicate": "bool",
    "blur_variance": "float64",
    "contrast": "float64",
    "is_blurry": "bool",
    "is_low_contrast": "bool",
    "run_id": "str",
}
REJECT_COLUMNS: dict[str, str] = {
    "image_id": "str",
    "source_path": "str",
    "reason": "str",
    "message": "str",
    "run_id": "str",
}
BOX_COLUMNS: dict[str, str] = {
    "box_id": "str",
    "image_id": "str",
    "class_id": "int64",
    "class_name": "str",
    **XYWH,
    "confidence": "float64",
    "class_probs": "object",
    "model_version": "str",
    "run_id": "str",
}
PRE_LABEL_IMAGE_COLUMNS: dict[str, str] = {
    "image_id": "str",
    "model_version": "str",
    "run_id": "str",
    "width": "int64",
    "height": "int64",
    "n_boxes": "int64",
    "embedding": "object",
}
SCORE_COLUMNS: dict[str, str] = {
    "image_id": "str",
    "model_version": "str",
    "n_boxes": "int64",
    **{measure: "float64" for measure in MEASURES},
    "embedding": "object",
}
# One row per labeling function that voted on a text (labeling_dag.weak_labels); abstentions are not stored.
LF_VOTE_COLUMNS: dict[str, str] = {
    "image_id": "str",
    "function": "str",
    "class_name": "str",
    "run_id": "str",
}
BATCH_COLUMNS: dict[str, str] = {
    "batch_id": "str",
    "image_id": "str",
    "position": "int64",
    "score": "float64",
    "strategy": "str",
    "model_version": "str",
    "is_gold": "bool",
    "is_spot_check": "bool",
    # Picked by a non-random strategy's ranking (uncertainty), so not a random draw: such images are
    # left out of the evidence auto-accept thresholds are fitted on (see calibration_evidence).
    "by_uncertainty": "bool",
    # A verified image sent back because label_issues suspects its labels; the task shows those labels.
    "is_re_review": "bool",
    # Annotators asked to label the image independently (overlap for consensus); 0 in a table
    # written before the column existed, read as 1.
    "annotators": "int64",
    "created_at": "str",
    "run_id": "str",
}
EDIT_COLUMNS: dict[str, str] = {
    "batch_id": "str",
    "image_id": "str",
    "reviewer": "str",
    "annotated_at": "str",
    "edit_kind": "str",
    "pre_label_id": "str",
    "region_id": "str",
    "class_name": "str",
    **XYWH,
    "original_class": "str",
    "confidence": "float64",
    "iou": "float64",
    "prediction_correct": "float64",  # 1 / 0, NaN for added boxes
    "model_version": "str",
    "pre_label_run_id": "str",
    "is_gold": "bool",
    "is_spot_check": "bool",
}
RETURNED_COLUMNS: dict[str, str] = {"batch_id": "str", "image_id": "str"}
QUALITY_COLUMNS: dict[str, str] = {
    "batch_id": "str",
    "reviewer": "str",  # "*" = the whole batch
    "gold_tasks": "int64",
    "gold_accuracy": "float64",
    "min_gold_accuracy": "float64",
    # Agreement with the other reviewers of the images they shared (labeling_dag.consensus.agreement.agreement);
    # NaN where nobody shared an image. The floors gate the batch row only.
    "matched_boxes": "int64",
    "kappa": "float64",
    "mean_iou": "float64",
    "box_agreement": "float64",
    "min_kappa": "float64",
    "min_box_agreement": "float64",
    "run_id": "str",
}
# One row per fused box of an image its reviewers did not agree on (labeling_dag.consensus): what
# the image's adjudication task shows.
DISPUTE_COLUMNS: dict[str, str] = {
    "batch_id": "str",
    "image_id": "str",
    "region_id": "str",
    "class_name": "str",
    **XYWH,
    "votes": "int64",
    "reviewers": "int64",
    "class_votes": "str",  # JSON: [[class, votes], ...], most voted first
    "agreed": "bool",
}
# One row per image a returned batch (or revision) answered.
EFFORT_COLUMNS: dict[str, str] = {
    "batch_id": "str",
    "image_id": "str",
    "is_gold": "bool",
    "modelled_seconds": "float64",
    "measured_seconds": "float64",  # Label Studio's lead_time summed over the image's annotations; NaN if none
}
LABEL_COLUMNS: dict[str, str] = {
    "label_id": "str",
    "image_id": "str",
    "class_name": "str",
    **XYWH,
    "source": "str",  # human | auto_accepted | gold
    "model_version": "str",  # the model that proposed the box ("" when a human drew it)
    "pre_label_id": "str",
    "pre_label_run_id": "str",
    "review_batch_id": "str",
    "reviewer": "str",
    "reviewed_at": "str",
    "edit_kind": "str",
    "confidence": "float64",
    "merge_id": "str",  # the merge (review batch) whose verified_labels run added the row
    "retired_by": "str",  # the merge that superseded it, "" while active
}
VERIFIED_IMAGE_COLUMNS: dict[str, str] = {
    "image_id": "str",
    "source": "str",  # human | auto_accepted | gold: who vouches for the image's complete box set
    "merge_id": "str",
    "retired_by": "str",
}
MERGE_COLUMNS: dict[str, str] = {"merge_id": "str", "run_id": "str", "merged_at": "str"}
SPOT_CHECK_COLUMNS: dict[str, str] = {"image_id": "str", "merge_id": "str"}
GOLD_COLUMNS: dict[str, str] = {
    "image_id": "str",
    "class_name": "str",
    **XYWH,
}
ISSUE_COLUMNS: dict[str, str] = {
    "image_id": "str",
    "rank": "int64",  # 1 = the image most likely mislabelled
    "label_quality": "float64",  # cleanlab's image score in [0, 1]; lower = more likely wrong
    "overlooked": "float64",  # per-kind image scores in [0, 1], lower = worse (1.0: no evidence)
    "swapped": "float64",
    "badly_located": "float64",
    "suspect": "bool",  # some kind scores below the issue threshold
    "issue": "str",  # a suspect's worst kind (its lowest per-kind score); "" for the others
    "issue_kinds": "str",  # every kind scoring below the issue threshold, comma-separated, worst first
    "boxes": "int64",  # verified boxes judged
    "predicted_boxes": "int64",  # out-of-sample predictions they were judged by
    "model_version": "str",  # the model whose predictions were used
    "review_batch_id": "str",  # the review batch whose export carried them
    "merge_id": "str",  # the merge that brought in the labels judged
}

# --- stages and their tables, in lifecycle order ----------------------------------------------

RAW_IMAGES = Stage("raw_images", "raw_images", partitioned=True)
RAW_INDEX = RAW_IMAGES.table("index", RAW_COLUMNS)

CLEANED_IMAGES = Stage("cleaned_images", "cleaned_images", partitioned=True)
CLEANED, REJECTS = CLEANED_IMAGES.tables(images=CLEANED_COLUMNS, rejects=REJECT_COLUMNS)

PRE_LABELS = Stage("pre_labels", "pre_labels", partitioned=True)
PRE_LABEL_BOXES, PRE_LABEL_IMAGES, LF_VOTES = PRE_LABELS.tables(
    boxes=BOX_COLUMNS, images=PRE_LABEL_IMAGE_COLUMNS, lf_votes=LF_VOTE_COLUMNS
)

UNCERTAINTY_SCORES = Stage("uncertainty_scores", "uncertainty_scores", partitioned=True)
SCORES = UNCERTAINTY_SCORES.table("scores", SCORE_COLUMNS)
# Beside each batch's scores: the model that scored it and how many of its images are unsettled,
# read by the loop's sensor to find the batches a newly promoted model must pre-label again.
SCORING_STATE_FILE = "state.json"

REVIEW_BATCH = Stage("review_batch", "review_batch")
REVIEW_BATCHES = REVIEW_BATCH.table("batches", BATCH_COLUMNS)

REVIEW_ANNOTATIONS = Stage("review_annotations", "review_annotations")
EDITS, QUALITY, RETURNED, EFFORT, DISPUTES = REVIEW_ANNOTATIONS.tables(
    edits=EDIT_COLUMNS,
    quality=QUALITY_COLUMNS,
    returned=RETURNED_COLUMNS,
    effort=EFFORT_COLUMNS,
    disputes=DISPUTE_COLUMNS,
)

VERIFIED_LABELS = Stage("verified_labels", "verified_labels")
LABELS, VERIFIED_IMAGES, MERGES, SPOT_CHECKS = VERIFIED_LABELS.tables(
    labels=LABEL_COLUMNS, images=VERIFIED_IMAGE_COLUMNS, merges=MERGE_COLUMNS, spot_checks=SPOT_CHECK_COLUMNS
)

# The gold answers: imported (``labeling-dag gold``) and grown by merges, never an asset of its own.
GOLD = Stage(None, "gold")
GOLD_LABELS = GOLD.table("labels", GOLD_COLUMNS)

# The model registry: content-addressed weights, ``registry.json`` and each model's card in
# ``cards/``; written by retraining and promotion, no asset of its own.
MODEL_REGISTRY = Stage(None, "models")
MODEL_CARDS = "cards"

# The retraining's working files (one folder per training snapshot) and the promoted model.
RETRAINED_MODEL = Stage("retrained_model", "training")
CURRENT_MODEL = Stage("current_model", "model_store")

LABEL_ISSUES = Stage("label_issues", "label_issues")
ISSUE_SCORES, SUSPECTS = LABEL_ISSUES.tables(scores=ISSUE_COLUMNS, suspects=ISSUE_COLUMNS)

DATASET_EXPORT = Stage("dataset_export", "dataset_export")

STAGES: tuple[Stage, ...] = (
    RAW_IMAGES,
    CLEANED_IMAGES,
    PRE_LABELS,
    UNCERTAINTY_SCORES,
    REVIEW_BATCH,
    REVIEW_ANNOTATIONS,
    VERIFIED_LABELS,
    GOLD,
    MODEL_REGISTRY,
    RETRAINED_MODEL,
    CURRENT_MODEL,
    LABEL_ISSUES,
    DATASET_EXPORT,
)
# Stages partitioned by ingestion batch keep one sub-folder per batch: ``<folder>/<batch>/``.
PARTITIONED_FOLDERS: tuple[str, ...] = tuple(stage.folder for stage in STAGES if stage.partitioned)
