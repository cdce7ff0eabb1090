"""Disputed images: the fused boxes their adjudication task shows, as rows of the disputes table."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pandas as pd

from labeling_dag.consensus.fusion import ImageConsensus
from labeling_dag.contracts import DISPUTE_COLUMNS

# What the pre-labels of a disputed image's adjudication task are recorded as coming from.
CONSENSUS_VERSION = "reviewer-consensus"


def dispute_rows(disputed: Sequence[ImageConsensus], *, batch_id: str) -> pd.DataFrame:
    """The fused boxes of disputed images, one row each (``DISPUTE_COLUMNS``), boxes most
    reviewers left out dropped: what the images' adjudication tasks show."""
    rows = [
        {
            "batch_id": batch_id,
            "image_id": outcome.image_id,
            "region_id": box.region_id,
            "class_name": box.class_name,
            "x": box.box.x,
            "y": box.box.y,
            "w": box.box.w,
            "h": box.box.h,
            "votes": box.votes,
            "reviewers": len(outcome.reviewers),
            "class_votes": json.dumps([list(item) for item in box.class_votes]),
            "agreed": box.agreed,
        }
        for outcome in disputed
        for box in outcome.boxes
        if not box.absent
    ]
    return pd.DataFrame(rows, columns=list(DISPUTE_COLUMNS)).astype(DISPUTE_COLUMNS)
