"""The verified label rows each source contributes to a merge: the boxes reviewers kept, moved,
relabelled or added, the known answers of gold images, and the rows vouching for each image's
whole box set.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from labeling_dag.contracts import (
    LABEL_COLUMNS,
    VERIFIED_IMAGE_COLUMNS,
)
from labeling_dag.tables import rows_frame


def human_rows(edits: pd.DataFrame, *, merge_id: str) -> pd.DataFrame:
    """Label rows for the boxes reviewers kept, moved, relabelled or added (gold tasks excluded)."""
    kept = edits[(edits["edit_kind"] != "deleted") & ~edits["is_gold"]]
    rows = [
        {
            "label_id": f"vl-{merge_id}-{edit.image_id[:16]}-{index:03d}",
            "image_id": edit.image_id,
            "class_name": edit.class_name,
            "x": edit.x,
            "y": edit.y,
            "w": edit.w,
            "h": edit.h,
            "source": "human",
            "model_version": edit.model_version if edit.pre_label_id else "",
            "pre_label_id": edit.pre_label_id,
            "pre_label_run_id": edit.pre_label_run_id if edit.pre_label_id else "",
            "review_batch_id": edit.batch_id,
            "reviewer": edit.reviewer,
            "reviewed_at": edit.annotated_at,
            "edit_kind": edit.edit_kind,
            "confidence": edit.confidence,
            "merge_id": merge_id,
            "retired_by": "",
        }
        for index, edit in enumerate(kept.itertuples(index=False))
    ]
    return rows_frame(rows, LABEL_COLUMNS)


def gold_rows(gold: pd.DataFrame, *, merge_id: str) -> pd.DataFrame:
    """Label rows for gold images: their known answers are verified labels by definition."""
    rows = [
        {
            "label_id": f"vl-{merge_id}-gold-{row.image_id[:16]}-{index:03d}",
            "image_id": row.image_id,
            "class_name": row.class_name,
            "x": row.x,
            "y": row.y,
            "w": row.w,
            "h": row.h,
            "source": "gold",
            "model_version": "",
            "pre_label_id": "",
            "pre_label_run_id": "",
            "review_batch_id": "",
            "reviewer": "",
            "reviewed_at": "",
            "edit_kind": "",
            "confidence": np.nan,
            "merge_id": merge_id,
            "retired_by": "",
        }
        for index, row in enumerate(gold.itertuples(index=False))
    ]
    return rows_frame(rows, LABEL_COLUMNS)


def verified_image_rows(image_sources: Mapping[str, str], *, merge_id: str) -> pd.DataFrame:
    """Rows vouching for each image's whole box set (an image may hold no box at all)."""
    rows = [
        {"image_id": image_id, "source": source, "merge_id": merge_id, "retired_by": ""}
        for image_id, source in image_sources.items()
    ]
    return rows_frame(rows, VERIFIED_IMAGE_COLUMNS)
