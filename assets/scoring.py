"""Stage 4: how unsure the model is about each image of a batch."""

from typing import Literal

import dagster as dg
from labeling_dag.assets.prelabels import FOLDER as PRE_LABELS
from labeling_dag.assets.prelabels import unsettled_images
from labeling_dag.resources.storage import LabelStore

from labeling_dag import atomic
from labeling_dag.partitions import ingest_batches
from labeling_dag.prelabeling import BOX_COLUMNS, IMAGE_COLUMNS
from labeling_dag.scoring import score_images
from labeling_dag.uncertainty import MEASURES

FOLDER = "uncertainty_scores"
STATE_FILE = "state.json"


class ScoringConfig(dg.Config):
    """How box scores become an image score (see ``labeling_dag.uncertainty.image_scores``)."""

    aggregate: Literal["max", "mean"] = "max"
    empty_score: float = 1.0


@dg.asset(group_name="labeling", deps=["pre_labels"], kinds={"numpy"}, partitions_def=ingest_batches)
def uncertainty_scores(
    context: dg.AssetExecutionContext, config: ScoringConfig, store: LabelStore
) -> dg.MaterializeResult:
    """Least-confidence, margin and entropy per image, plus a diversity embedding, per batch."""
    batch = context.partition_key
    scores = score_images(
        store.read_partition(PRE_LABELS, batch, "boxes", BOX_COLUMNS),
        store.read_partition(PRE_LABELS, batch, "images", IMAGE_COLUMNS),
        aggregate=config.aggregate,
        empty_score=config.empty_score,
    )
    path = store.write_partition(FOLDER, batch, "scores", scores)
    # Read by the loop's sensor to find the batches a newly promoted model must pre-label again.
    state = {
        "model_version": str(scores["model_version"].iloc[0]) if len(scores) else "",
        "unsettled": len(unsettled_images(store, batch)),
    }
    atomic.write_json(path.parent / STATE_FILE, state)
    return dg.MaterializeResult(
        metadata={
            "images": len(scores),
            **state,
            **{f"mean_{measure}": float(scores[measure].mean()) if len(scores) else 0.0 for measure in MEASURES},
            "path": dg.MetadataValue.path(str(path)),
        }
    )
