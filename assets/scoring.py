"""Stage 4: how unsure the model is about each image of a batch."""

from typing import Literal

import dagster as dg
from labeling_dag.assets.prelabels import unsettled_images
from labeling_dag.resources.storage import LabelStore

from labeling_dag import atomic
from labeling_dag.contracts import PRE_LABEL_BOXES, PRE_LABEL_IMAGES, PRE_LABELS, SCORES, SCORING_STATE_FILE
from labeling_dag.partitions import ingest_batches
from labeling_dag.scoring import score_images
from labeling_dag.uncertainty import MEASURES


class ScoringConfig(dg.Config):
    """How box scores become an image score (see ``labeling_dag.uncertainty.image_scores``)."""

    aggregate: Literal["max", "mean"] = "max"
    empty_score: float = 1.0


@dg.asset(group_name="labeling", deps=[PRE_LABELS.key], kinds={"numpy"}, partitions_def=ingest_batches)
def uncertainty_scores(
    context: dg.AssetExecutionContext, config: ScoringConfig, store: LabelStore
) -> dg.MaterializeResult:
    """Least-confidence, margin and entropy per image, plus a diversity embedding, per batch."""
    batch = context.partition_key
    scores = score_images(
        store.read(PRE_LABEL_BOXES, batch=batch),
        store.read(PRE_LABEL_IMAGES, batch=batch),
        aggregate=config.aggregate,
        empty_score=config.empty_score,
    )
    path = store.write(SCORES, scores, batch=batch)
    state = {
        "model_version": str(scores["model_version"].iloc[0]) if len(scores) else "",
        "unsettled": len(unsettled_images(store, batch)),
    }
    atomic.write_json(path.parent / SCORING_STATE_FILE, state)
    return dg.MaterializeResult(
        metadata={
            "images": len(scores),
            **state,
            **{f"mean_{measure}": float(scores[measure].mean()) if len(scores) else 0.0 for measure in MEASURES},
            "path": dg.MetadataValue.path(str(path)),
        }
    )
