"""Jobs: named selections of the asset graph."""

from __future__ import annotations

import dagster as dg

# From new raw files to an exported review batch, gates included.
prelabel_and_select = dg.define_asset_job(
    "prelabel_and_select",
    selection=dg.AssetSelection.assets("raw_images", "cleaned_images", "pre_labels", "uncertainty_scores", "review_batch"),
    description="Ingest, clean, pre-label, score and export the next review batch.",
)
