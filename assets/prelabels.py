"""Stage 3: the current model proposes boxes for every cleaned image of a batch it has not seen."""

import dagster as dg
import pandas as pd
from labeling_dag.resources.item_model import ItemModel
from labeling_dag.resources.snapshots import SnapshotStore
from labeling_dag.resources.storage import LabelStore
from tqdm import tqdm

from labeling_dag import atomic
from labeling_dag.cold_start import current_or_seed_model
from labeling_dag.contracts import (
    CLEANED,
    CLEANED_IMAGES,
    LABELS,
    LF_VOTES,
    PRE_LABEL_BOXES,
    PRE_LABEL_IMAGES,
    PRE_LABELS,
    VERIFIED_IMAGES,
)
from labeling_dag.labeling_functions import LabelingFunction
from labeling_dag.merge import active
from labeling_dag.model_registry import ModelRegistry
from labeling_dag.partitions import ingest_batches
from labeling_dag.prelabeling import prediction_rows
from labeling_dag.records import ImagePrediction, ModelEntry
from labeling_dag.weak_labels import function_report, weigh_votes

_WRITE_EVERY = 2048  # images per table flush: bounds memory; each flush rewrites the batch's tables so far


class PreLabelConfig(dg.Config):
    """Where the first model comes from when the registry is empty (cold start)."""

    seed_model: str = ""
    seed_dataset: str = ""


@dg.asset(group_name="labeling", deps=[CLEANED_IMAGES.key], kinds={"pytorch"}, partitions_def=ingest_batches)
def pre_labels(
    context: dg.AssetExecutionContext,
    config: PreLabelConfig,
    store: LabelStore,
    detector: ItemModel,
    snapshots: SnapshotStore,
) -> dg.MaterializeResult:
    """Boxes, classes, confidences and class-probability vectors from the current model, per batch;
    for texts with labeling functions, the label model's combination of their votes and the model's."""
    batch = context.partition_key
    registry = ModelRegistry(store.root)
    model = current_or_seed_model(
        registry, detector, store.modality(), seed_model=config.seed_model, seed_dataset=config.seed_dataset
    )
    if model is None:
        return dg.MaterializeResult(
            metadata={"model_version": "", "note": "cold start: no model yet, nothing to predict"}
        )
    store.set_class_names(model.class_names)
    weights = registry.verified_path(model)

    candidates = unsettled_images(store, batch)
    boxes = store.read(PRE_LABEL_BOXES, batch=batch)
    images = store.read(PRE_LABEL_IMAGES, batch=batch)
    # Predictions of an older model are stale: they stay in earlier snapshots, not here.
    boxes = boxes[boxes["model_version"] == model.model_version]
    images = images[images["model_version"] == model.model_version]
    # The image table is written last, so it is the commit record: boxes of images missing
    # from it come from an interrupted run and are predicted again.
    boxes = boxes[boxes["image_id"].isin(images["image_id"])]
    todo = candidates[~candidates["image_id"].isin(images["image_id"])]
    functions = detector.voters()
    votes = store.read(LF_VOTES, batch=batch)
    votes = votes[votes["image_id"].isin(images["image_id"])] if functions else votes.iloc[:0]
    paths = [store.root / path for path in todo["path"]]

    predictions = zip(todo["image_id"], detector.predict(weights, paths))
    pending: list[tuple[str, ImagePrediction]] = []
    with tqdm(total=len(todo), desc="pre-labelling", unit="img", disable=None) as progress:
        for pair in predictions:
            pending.append(pair)
            progress.update()
            if len(pending) >= _WRITE_EVERY:
                boxes, images, votes = _append(store, batch, (boxes, images, votes), pending, model, functions, context)
                pending = []
    boxes, images, votes = _append(store, batch, (boxes, images, votes), pending, model, functions, context)

    summary = _summary(boxes, images)
    # DVC's metrics file counts the whole pool, every batch so far.
    pool = _summary(
        store.read(PRE_LABEL_BOXES, only=["confidence"]),
        store.read(PRE_LABEL_IMAGES, only=["n_boxes"]),
    )
    atomic.write_json(store.root / "metrics" / f"{PRE_LABELS.folder}.json", pool)
    snapshot_id = snapshots.snapshot(store.root, f"{PRE_LABELS.folder}/{batch}", run_id=context.run_id)
    return dg.MaterializeResult(
        metadata={
            **summary,
            "model_version": model.model_version,
            "model_source": model.source,
            "newly_predicted": len(todo),
            **_function_metadata(store, votes, functions, model.class_names),
            "dvc_snapshot": snapshot_id,
            "path": dg.MetadataValue.path(str(store.root / PRE_LABELS.folder / batch)),
        },
        data_version=dg.DataVersion(snapshot_id),
    )


def unsettled_images(store: LabelStore, batch: str) -> pd.DataFrame:
    """The cleaned images of ``batch`` that still want a model's proposal.

    Images a human (or the gold set) vouches for need none; auto-accepted ones are
    predicted again so that their spot checks show the current model's boxes.
    """
    cleaned = store.read(CLEANED, batch=batch)
    settled = active(store.read(VERIFIED_IMAGES))
    settled = set(settled.loc[settled["source"] != "auto_accepted", "image_id"])
    return cleaned[~cleaned["is_exact_duplicate"] & ~cleaned["image_id"].isin(settled)]


def _append(
    store: LabelStore,
    batch: str,
    tables: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame],
    pending: list[tuple[str, ImagePrediction]],
    model: ModelEntry,
    functions: tuple[LabelingFunction, ...],
    context: dg.AssetExecutionContext,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Add a chunk of predictions and persist the tables (atomically; the image table last)."""
    boxes, images, votes = tables
    if functions and pending:
        pending, new_votes = weigh_votes(pending, functions, class_names=model.class_names, run_id=context.run_id)
        votes = pd.concat([votes, new_votes], ignore_index=True)
        store.write(LF_VOTES, votes, batch=batch)
    new_boxes, new_images = prediction_rows(
        pending, class_names=model.class_names, model_version=model.model_version, run_id=context.run_id
    )
    boxes = pd.concat([boxes, new_boxes], ignore_index=True) if len(new_boxes) else boxes
    images = pd.concat([images, new_images], ignore_index=True) if len(new_images) else images
    store.write(PRE_LABEL_BOXES, boxes, batch=batch)
    store.write(PRE_LABEL_IMAGES, images, batch=batch)
    return boxes, images, votes


def _function_metadata(
    store: LabelStore, votes: pd.DataFrame, functions: tuple[LabelingFunction, ...], class_names: tuple[str, ...]
) -> dict[str, object]:
    """Each labeling function's coverage, overlaps, conflicts and accuracy on the verified texts."""
    if not functions:
        return {}
    # Judged against what people verified, not against auto-accepted labels the functions helped make.
    labels = active(store.read(LABELS, only=["image_id", "class_name", "source", "retired_by"]))
    labels = labels[labels["source"] != "auto_accepted"]
    verified = dict(zip(labels["image_id"], labels["class_name"]))
    report = function_report(votes, [f.name for f in functions], class_names, verified)
    return {"labeling_functions": dg.MetadataValue.md(report.round(3).to_markdown())}


def _summary(boxes: pd.DataFrame, images: pd.DataFrame) -> dict[str, int | float]:
    """Counts for the UI and for ``dvc metrics show``."""
    return {
        "images": len(images),
        "boxes": len(boxes),
        "images_without_boxes": int((images["n_boxes"] == 0).sum()),
        "mean_confidence": float(boxes["confidence"].mean()) if len(boxes) else 0.0,
    }
