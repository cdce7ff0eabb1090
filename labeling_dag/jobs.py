"""Jobs: named selections of the asset graph (each includes the checks of its assets)."""

import dagster as dg

# From new raw files to an exported review batch.
prelabel_and_select = dg.define_asset_job(
    "prelabel_and_select",
    selection=dg.AssetSelection.assets("raw_images", "cleaned_images", "pre_labels", "uncertainty_scores", "review_batch"),
    description="Ingest, clean, pre-label, score and export the next review batch.",
)

# A returned review batch becomes verified labels (unless its gold accuracy gate fails).
merge_review = dg.define_asset_job(
    "merge_review",
    selection=dg.AssetSelection.assets("review_annotations", "verified_labels"),
    description="Take in a completed review batch and merge it into the verified labels.",
)

# Train on the verified labels and promote the model if it passes the promotion gate.
retrain = dg.define_asset_job(
    "retrain",
    selection=dg.AssetSelection.assets("retrained_model", "current_model"),
    description="Fine-tune (or cold-start) on the verified labels, evaluate, promote.",
)
