"""Stage 5: pick the images humans should look at next and send them out for review."""

from datetime import UTC, datetime

import dagster as dg
import pandas as pd

from labeling_dag.assets.cleaning import FOLDER as CLEANED
from labeling_dag.assets.prelabels import FOLDER as PRE_LABELS
from labeling_dag.assets.scoring import FOLDER as SCORES
from labeling_dag.cleaning import IMAGE_COLUMNS as CLEANED_COLUMNS
from labeling_dag.label_studio_format import review_task
from labeling_dag.prelabeling import BOX_COLUMNS, IMAGE_COLUMNS
from labeling_dag.resources.review_exchange import FileReviewExchange
from labeling_dag.resources.storage import LabelStore
from labeling_dag.review_selection import BATCH_COLUMNS, batch_id_for, choose, eligible_images, review_images
from labeling_dag.sampling import STRATEGIES
from labeling_dag.scoring import SCORE_COLUMNS

FOLDER = "review_batch"


class ReviewBatchConfig(dg.Config):
    """How many images to review and how to choose them.

    ``hybrid`` (the default) fills ``1 - random_fraction`` of the batch by uncertainty and
    the rest at random: pure uncertainty sampling never shows the model the easy,
    representative part of the pool and biases what it learns.
    """

    size: int = 20
    strategy: str = "hybrid"
    uncertainty_measure: str = "entropy"
    random_fraction: float = 0.2
    diversity: bool = False
    seed: int = 0
    skip_near_duplicates: bool = True
    image_url_prefix: str = "/data/local-files/?d="


@dg.asset(group_name="labeling", deps=["uncertainty_scores"], kinds={"labelstudio"})
def review_batch(
    context: dg.AssetExecutionContext,
    config: ReviewBatchConfig,
    store: LabelStore,
    exchange: FileReviewExchange,
) -> dg.MaterializeResult:
    """The next human-review batch, exported as Label Studio tasks with the model's boxes."""
    if config.strategy not in STRATEGIES:
        raise dg.Failure(f"review_batch: unknown strategy {config.strategy!r}; choose one of {STRATEGIES}")
    scores = store.read_table(SCORES, "scores", SCORE_COLUMNS)
    cleaned = store.read_table(CLEANED, "images", CLEANED_COLUMNS)
    batches = store.read_table(FOLDER, "batches", BATCH_COLUMNS)
    batch_id = batch_id_for(scores, config.model_dump())

    candidates = eligible_images(
        scores, cleaned, batches, batch_id=batch_id, skip_near_duplicates=config.skip_near_duplicates
    )
    chosen = choose(
        candidates,
        k=config.size,
        strategy=config.strategy,
        uncertainty_measure=config.uncertainty_measure,
        random_fraction=config.random_fraction,
        diversity=config.diversity,
        seed=config.seed,
    )
    boxes = store.read_table(PRE_LABELS, "boxes", BOX_COLUMNS)
    runs = store.read_table(PRE_LABELS, "images", IMAGE_COLUMNS).set_index("image_id")["run_id"]
    tasks = [
        review_task(image, batch_id=batch_id, model_version=model, pre_label_run_id=runs[image.image_id])
        for image, model in zip(
            review_images(chosen, cleaned, boxes, image_url_prefix=config.image_url_prefix), chosen["model_version"]
        )
    ]
    outbox = exchange.export(store.root, batch_id, tasks)

    rows = pd.DataFrame(
        {
            "batch_id": batch_id,
            "image_id": chosen["image_id"],
            "position": range(len(chosen)),
            "score": chosen["score"],
            "strategy": config.strategy,
            "model_version": chosen["model_version"],
            "created_at": datetime.now(UTC).isoformat(),
            "run_id": context.run_id,
        },
        columns=list(BATCH_COLUMNS),
    ).astype(BATCH_COLUMNS)
    batches = pd.concat([batches[batches["batch_id"] != batch_id], rows], ignore_index=True)
    store.write_table(FOLDER, "batches", batches)
    return dg.MaterializeResult(
        metadata={
            "batch_id": batch_id,
            "images": len(chosen),
            "boxes_proposed": sum(len(task["predictions"][0]["result"]) for task in tasks),
            "eligible_images": len(candidates),
            "strategy": config.strategy,
            "mean_score": float(chosen["score"].mean()) if len(chosen) else 0.0,
            "tasks_file": dg.MetadataValue.path(str(outbox)),
        }
    )
