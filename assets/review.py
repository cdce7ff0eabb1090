"""Stage 5: pick the images humans should look at next and send them out for review."""

import math
from datetime import UTC, datetime

import dagster as dg
import pandas as pd
from labeling_dag.resources.review_exchange import FileReviewExchange, ReviewBackend
from labeling_dag.resources.storage import LabelStore
from pydantic import Field

from labeling_dag.batch_states import quarantined_batches, unmerged_rows
from labeling_dag.consensus.disputes import CONSENSUS_VERSION
from labeling_dag.contracts import (
    BATCH_COLUMNS,
    CLEANED,
    DISPUTES,
    GOLD_LABELS,
    LABELS,
    MERGES,
    PRE_LABEL_BOXES,
    PRE_LABEL_IMAGES,
    QUALITY,
    RETURNED,
    REVIEW_BATCHES,
    SCORES,
    SPOT_CHECKS,
    SUSPECTS,
    UNCERTAINTY_SCORES,
    VERIFIED_IMAGES,
)
from labeling_dag.label_issues import open_suspects
from labeling_dag.merge import active
from labeling_dag.review_items import (
    VERIFIED_LABELS_VERSION,
    disputes_as_pre_labels,
    review_images,
    verified_as_pre_labels,
)
from labeling_dag.review_selection import (
    batch_id_for,
    choose,
    cold_start_scores,
    eligible_images,
    extra_items,
    open_disputes,
    overlapped,
    shuffled,
)
from labeling_dag.sampling import STRATEGIES, strategy_names


class ReviewBatchConfig(dg.Config):
    """How many images to review and how to choose them.

    ``hybrid`` (the default) fills ``1 - random_fraction`` of the batch by uncertainty and
    the rest at random: pure uncertainty sampling never shows the model the easy,
    representative part of the pool and biases what it learns. Gold items (known answers,
    ``gold_rate`` of the images chosen, so the short last batch of a pool carries few) and
    pending spot checks of auto-accepted images (at most a quarter of ``size``) come on top,
    shuffled in, indistinguishable to the annotator, and so do the worst suspects of
    ``label_issues`` (at most ``re_review_rate`` of the images chosen, each sent back once), whose
    tasks show their verified labels for the reviewer to confirm or correct. Images whose
    annotators disagreed (:mod:`labeling_dag.consensus`) come back as one adjudication task each,
    showing every box they drew.
    ``overlap_rate`` of the images chosen (and then every gold item) go to ``annotators_per_item``
    annotators each, labelled independently and merged by consensus, with their agreement gated
    in ``review_annotations``:
    each costs that many looks, so it buys measured agreement and fewer single-reviewer slips,
    not human seconds. Off by default.
    ``cost_aware`` ranks the uncertainty part by uncertainty per expected box (pre-label
    count) instead of per image, for budgets counted in the boxes annotators draw.
    ``calibration_fraction`` of the batch is drawn at random from the images with boxes
    (:func:`labeling_dag.review_selection.choose`): the evidence each new model's auto-accept
    thresholds are fitted on, since the strategy's own picks were chosen for looking wrong and
    would close the gate on the easy images it decides about. Half the batch by default: measured
    on a warm 1 000-image pool, a quarter left the gate shut for rounds (bench/RESULTS.md).
    """

    size: int = 20
    strategy: str = "hybrid"
    uncertainty_measure: str = "entropy"
    random_fraction: float = 0.2
    diversity: bool = False
    cost_aware: bool = False
    calibration_fraction: float = 0.5
    seed: int = 0
    gold_rate: float = 0.1
    skip_near_duplicates: bool = True
    re_review_rate: float = Field(default=0.1, ge=0.0, le=1.0)
    overlap_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    annotators_per_item: int = Field(default=2, ge=2)
    image_url_prefix: str = "/data/local-files/?d="


@dg.asset(group_name="labeling", deps=[UNCERTAINTY_SCORES.key], kinds={"labelstudio"})
def review_batch(
    context: dg.AssetExecutionContext,
    config: ReviewBatchConfig,
    store: LabelStore,
    exchange: FileReviewExchange,
    review: ReviewBackend,
) -> dg.MaterializeResult:
    """The next human-review batch, exported as Label Studio tasks with the model's boxes."""
    if config.strategy not in STRATEGIES:
        raise dg.Failure(f"review_batch: unknown strategy {config.strategy!r}; choose one of {strategy_names()}")
    if not store.class_names():
        raise dg.Failure(
            f"review_batch: no class list in {store.root / 'classes.json'}; set one with `labeling-dag init`"
        )
    cleaned = store.read(CLEANED)
    scores = store.read(SCORES)
    cold_start = scores.empty
    if cold_start:
        scores = cold_start_scores(cleaned)
    batches = store.read(REVIEW_BATCHES)
    merges = store.read(MERGES)
    quarantined = quarantined_batches(store.read(QUALITY))
    # How many annotators see an image does not change which images are chosen, nor the batch.
    selection = config.model_dump(exclude={"overlap_rate", "annotators_per_item"})
    batch_id = batch_id_for(scores, selection, closed_batches=set(merges["merge_id"]) | quarantined)

    verified = set(active(store.read(VERIFIED_IMAGES))["image_id"])
    gold = sorted(set(store.read(GOLD_LABELS)["image_id"]) & set(cleaned["image_id"]))
    # A merged batch no longer holds the images only its quarantined reviewers answered.
    returned = store.read(RETURNED)
    holding = batches[~unmerged_rows(batches, returned, merged=set(merges["merge_id"]))]
    # Images their annotators disagreed on go back as one adjudication task each, not to the pool.
    disputes = store.read(DISPUTES)
    live = holding[~holding["batch_id"].isin(quarantined) & (holding["batch_id"] != batch_id)]
    adjudications = open_disputes(
        disputes, verified=verified, sent=set(live.loc[live["model_version"] == CONSENSUS_VERSION, "image_id"])
    )
    candidates = eligible_images(
        scores,
        cleaned,
        holding,
        batch_id=batch_id,
        released_batches=quarantined,
        verified=verified,
        excluded=set(gold) | set(disputes["image_id"]),
        skip_near_duplicates=config.skip_near_duplicates,
    )
    chosen = choose(
        candidates,
        k=config.size,
        strategy="random" if cold_start else config.strategy,
        uncertainty_measure=config.uncertainty_measure,
        random_fraction=config.random_fraction,
        diversity=config.diversity and not cold_start,
        cost_aware=config.cost_aware and not cold_start,
        calibration_fraction=config.calibration_fraction,
        seed=config.seed,
    )
    # The worst suspects of label_issues go back to a reviewer, showing their verified labels; they
    # make a batch even when the pool is done. Gold items and spot checks alone make none.
    suspects = store.read(SUSPECTS)
    sent = set(batches.loc[batches["is_re_review"] & (batches["batch_id"] != batch_id), "image_id"])
    re_reviews = open_suspects(
        suspects[suspects["image_id"].isin(verified)], sent, math.ceil(config.re_review_rate * config.size)
    )
    work = len(chosen) + len(re_reviews) + len(adjudications)
    spot_checks = _open_spot_checks(store, holding, batch_id) if work else []
    extras = (
        extra_items(gold, count=math.ceil(config.gold_rate * work), batch_id=batch_id)
        + extra_items(
            [image for image in spot_checks if image not in re_reviews],
            count=max(1, config.size // 4),
            batch_id=batch_id,
        )
        if work
        else []
    )
    order = shuffled(list(chosen["image_id"]) + extras + re_reviews + adjudications, batch_id=batch_id)
    picked = chosen.set_index("image_id").reindex(order)
    picked["score"] = picked["score"].fillna(0.0)
    picked["by_uncertainty"] = picked["by_uncertainty"].astype("boolean").fillna(False).astype(bool)
    picked["model_version"] = scores.set_index("image_id")["model_version"].reindex(order).fillna("")
    picked.loc[re_reviews, "model_version"] = VERIFIED_LABELS_VERSION
    picked.loc[adjudications, "model_version"] = CONSENSUS_VERSION
    picked = picked.reset_index()
    # Every annotator of a batch meets its gold items, so the gold gate judges each of them.
    shared = set(overlapped(list(chosen["image_id"]), rate=config.overlap_rate, batch_id=batch_id))
    shared |= set(picked["image_id"]) & set(gold) if shared else set()
    picked["annotators"] = [config.annotators_per_item if image in shared else 1 for image in picked["image_id"]]

    boxes = store.read(PRE_LABEL_BOXES)
    if re_reviews or adjudications:
        shown = pd.concat(
            [
                verified_as_pre_labels(active(store.read(LABELS)), re_reviews, store.class_names()),
                disputes_as_pre_labels(disputes, adjudications, store.class_names()),
            ],
            ignore_index=True,
        )
        boxes = pd.concat([boxes[~boxes["image_id"].isin(re_reviews + adjudications)], shown], ignore_index=True)
    runs = store.read(PRE_LABEL_IMAGES).set_index("image_id")["run_id"]
    images = review_images(picked, cleaned, boxes, image_url_prefix=config.image_url_prefix)
    not_a_model = (VERIFIED_LABELS_VERSION, CONSENSUS_VERSION)
    interface = store.modality().review
    tasks = [
        interface.task(
            image,
            batch_id=batch_id,
            model_version=model,
            pre_label_run_id="" if model in not_a_model else runs.get(image.image_id, ""),
            annotators=annotators,
        )
        for image, model, annotators in zip(images, picked["model_version"], picked["annotators"])
    ]
    outbox = exchange.export(store.root, batch_id, tasks) if tasks else None
    handed_over = review.export(store.root, batch_id, tasks, store.class_names()) if tasks else ""

    rows = pd.DataFrame(
        {
            "batch_id": batch_id,
            "image_id": picked["image_id"],
            "position": range(len(picked)),
            "score": picked["score"],
            "strategy": "random" if cold_start else config.strategy,
            "model_version": picked["model_version"],
            "is_gold": picked["image_id"].isin(gold),
            "is_spot_check": picked["image_id"].isin(spot_checks),
            "by_uncertainty": picked["by_uncertainty"],
            "is_re_review": picked["image_id"].isin(re_reviews),
            "annotators": picked["annotators"],
            "created_at": datetime.now(UTC).isoformat(),
            "run_id": context.run_id,
        },
        columns=list(BATCH_COLUMNS),
    ).astype(BATCH_COLUMNS)
    store.write(REVIEW_BATCHES, pd.concat([batches[batches["batch_id"] != batch_id], rows], ignore_index=True))
    return dg.MaterializeResult(
        metadata={
            "batch_id": batch_id if tasks else "",
            "images": len(picked),
            "gold_items": int(rows["is_gold"].sum()),
            "spot_checks": int(rows["is_spot_check"].sum()),
            "re_reviews": int(rows["is_re_review"].sum()),
            "adjudications": len(adjudications),
            "overlapped_images": len(shared - set(gold)),
            "boxes_proposed": sum(len(task["predictions"][0]["result"]) for task in tasks),
            "eligible_images": len(candidates),
            "pool_done": not len(chosen),  # every pool image verified or in review
            "strategy": "random (cold start)" if cold_start else config.strategy,
            "mean_score": float(chosen["score"].mean()) if len(chosen) else 0.0,
            "tasks_file": dg.MetadataValue.path(str(outbox)) if outbox else "nothing left to review",
            "review_location": handed_over,
        }
    )


def _open_spot_checks(store: LabelStore, batches: pd.DataFrame, batch_id: str) -> list[str]:
    """Auto-accepted images drawn for a human re-check and not yet put in another batch."""
    drawn = store.read(SPOT_CHECKS)
    sent = set(batches.loc[batches["is_spot_check"] & (batches["batch_id"] != batch_id), "image_id"])
    return sorted(set(drawn["image_id"]) - sent)
