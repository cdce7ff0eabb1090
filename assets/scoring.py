"""Stage 4: how unsure the model is about each image."""

from typing import Literal

import dagster as dg

from labeling_dag.assets.prelabels import FOLDER as PRE_LABELS
from labeling_dag.prelabeling import BOX_COLUMNS, IMAGE_COLUMNS
from labeling_dag.resources.storage import LabelStore
from labeling_dag.scoring import score_images
from labeling_dag.uncertainty import MEASURES

FOLDER = "uncertainty_scores"


class ScoringConfig(dg.Config):
    """How box scores become an image score (see ``labeling_dag.uncertainty.image_scores``)."""

    aggregate: Literal["max", "mean"] = "max"
    empty_score: float = 1.0


@dg.asset(group_name="labeling", deps=["pre_labels"], kinds={"numpy"})
def uncertainty_scores(config: ScoringConfig, store: LabelStore) -> dg.MaterializeResult:
    """Least-confidence, margin and entropy per image, plus a diversity embedding."""
    scores = score_images(
        store.read_table(PRE_LABELS, "boxes", BOX_COLUMNS),
        store.read_table(PRE_LABELS, "images", IMAGE_COLUMNS),
        aggregate=config.aggregate,
        empty_score=config.empty_score,
    )
    path = store.write_table(FOLDER, "scores", scores)
    return dg.MaterializeResult(
        metadata={
            "images": len(scores),
            **{f"mean_{measure}": float(scores[measure].mean()) if len(scores) else 0.0 for measure in MEASURES},
            "path": dg.MetadataValue.path(str(path)),
        }
    )
