"""What a simulated run is measured by, against the truth only the simulated reviewer reads:
a record per round and the finished dataset."""

from __future__ import annotations

from dataclasses import dataclass

from labeling_dag.contracts import CLEANED, EDITS, EFFORT, LABELS, VERIFIED_IMAGES
from labeling_dag.records import NormBox
from labeling_dag.simulation.loop_settings import LoopSettings


@dataclass(frozen=True)
class RoundRecord:
    """What one round cost and achieved (one line of the report)."""

    round: int
    batch_id: str
    images_reviewed: int
    boxes_reviewed: int
    boxes_edited: int
    human_boxes_total: int
    auto_accepted: int
    auto_accept_precision: float | None
    human_seconds: float  # cumulative, every batch so far (the cost model's seconds)
    images_labelled: int  # pool images with verified labels so far
    map50: float
    map50_95: float
    model_version: str
    seconds: float


def round_record(store, truth, round_number: int, batch_id: str, seconds: float) -> RoundRecord:
    """What the round that merged ``batch_id`` cost and achieved, measured against the truth."""
    from labeling_dag.agreement import score_against_gold
    from labeling_dag.merge import active
    from labeling_dag.model_registry import ModelRegistry

    edits = store.read(EDITS)
    batch = edits[(edits["batch_id"] == batch_id) & ~edits["is_gold"]]
    human = edits[~edits["is_gold"]]
    labels = store.read(LABELS)
    auto = labels[(labels["merge_id"] == batch_id) & (labels["source"] == "auto_accepted")]
    tp = fp = 0
    for image_id, group in auto.groupby("image_id"):
        score = score_against_gold(
            "auto",
            image_id,
            [(row.class_name, box_of(row)) for row in group.itertuples()],
            [(box.class_name, box.box) for box in truth[image_id]],
        )
        tp, fp = tp + score.true_positives, fp + score.false_positives
    model = ModelRegistry(store.root).current()
    effort = store.read(EFFORT)
    verified = active(store.read(VERIFIED_IMAGES))
    return RoundRecord(
        round=round_number,
        batch_id=batch_id,
        images_reviewed=int(batch["image_id"].nunique()),
        boxes_reviewed=len(batch),
        boxes_edited=int((batch["edit_kind"] != "accepted").sum()),
        human_boxes_total=int((human["edit_kind"] != "deleted").sum()),
        auto_accepted=len(auto),
        auto_accept_precision=tp / (tp + fp) if tp + fp else None,
        human_seconds=round(float(effort["modelled_seconds"].sum()), 1),
        images_labelled=len(set(verified["image_id"]) & set(truth)),
        map50=float(model.metrics.get("map50", 0.0)) if model else 0.0,
        map50_95=float(model.metrics.get("map50_95", 0.0)) if model else 0.0,
        model_version=model.model_version if model else "",
        seconds=round(seconds, 1),
    )


def box_of(row):

    return NormBox(row.x, row.y, row.w, row.h)


def dataset_summary(settings: LoopSettings) -> dict[str, object]:
    """The finished dataset against the truth only the simulated reviewer reads, and what it cost.

    ``precision``/``recall`` (IoU 0.5, overall, ``per_class``, ``per_source``) are over the pool
    images with verified labels; ``hand_label_seconds`` prices looking at every pool image and
    drawing every true box with the same cost model; ``human_time_ratio`` is the loop's human
    seconds over that; ``start`` is how the loop started: ``warm``, ``pretrained`` or ``cold``
    (see :mod:`labeling_dag.simulation.loop_start`), or for texts ``zero_shot``.
    """
    from labeling_dag.cleaning import pool_images
    from labeling_dag.dataset_quality import label_quality
    from labeling_dag.human_time import hand_label_seconds
    from labeling_dag.merge import active
    from labeling_dag.model_registry import ModelRegistry
    from labeling_dag.resources.storage import LabelStore

    store = LabelStore(workdir=str(settings.workdir.resolve()))
    # Exact copies of another item share its labels and are never reviewed: the dataset is the
    # pipeline's pool (cleaning.pool_images), the copies counted apart.
    cleaned = store.read(CLEANED, only=["image_id", "is_exact_duplicate"])
    copies = set(cleaned.loc[cleaned["is_exact_duplicate"], "image_id"]) - pool_images(cleaned)
    truth = {image_id: boxes for image_id, boxes in settings.truth().items() if image_id not in copies}
    images = active(store.read(VERIFIED_IMAGES))
    sources = {row.image_id: row.source for row in images.itertuples() if row.image_id in truth}
    labels: dict[str, list] = {}
    for row in active(store.read(LABELS)).itertuples():
        labels.setdefault(row.image_id, []).append((row.class_name, box_of(row)))
    reference = {image_id: [(box.class_name, box.box) for box in boxes] for image_id, boxes in truth.items()}
    quality = label_quality(labels, reference, sources, class_names=store.class_names())
    human = float(store.read(EFFORT)["modelled_seconds"].sum())
    hand = hand_label_seconds(len(truth), sum(len(boxes) for boxes in truth.values()), settings.costs())
    models = ModelRegistry(store.root).entries()
    warm = bool(models) and models[0].source == "seed_model"
    return {
        # A seed model registered first is a warm start; one that was not registered had other
        # classes and was the first training's starting point; without one, a cold start.
        "start": "zero_shot"
        if settings.modality == "text"
        else "warm"
        if warm
        else "pretrained"
        if settings.seed_model is not None
        else "cold",
        "pool_images": len(truth),
        "exact_copies": len(copies),
        "images_labelled": len(sources),
        **{key: quality[key] for key in ("precision", "recall", "image_accuracy")},
        "human_seconds": round(human, 1),
        "hand_label_seconds": round(hand, 1),
        "human_time_ratio": round(human / hand, 4) if hand else None,
        "per_class": quality["per_class"],
        "per_source": quality["per_source"],
        # A text's one region is its class: the share of labelled texts fully right is their accuracy.
        **(
            {"pool_items": len(truth), "items_labelled": len(sources), "accuracy": quality["image_accuracy"]}
            if settings.modality == "text"
            else {}
        ),
    }
