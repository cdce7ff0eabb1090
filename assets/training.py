"""Stage 8: retrain on the verified labels and evaluate the candidate beside the current model.

Promotion (stage 9) is :mod:`labeling_dag.assets.promotion`."""

import json
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
from labeling_dag.resources.item_model import ItemModel
from labeling_dag.resources.loop_policy import LoopPolicy
from labeling_dag.resources.snapshots import SnapshotStore
from labeling_dag.resources.storage import LabelStore
from pydantic import Field

from labeling_dag import atomic
from labeling_dag.cold_start import check_model_fits
from labeling_dag.contracts import CLEANED, LABELS, RETRAINED_MODEL, VERIFIED_IMAGES, VERIFIED_LABELS
from labeling_dag.evaluation import class_quality_table, confusion_table
from labeling_dag.fine_tuning import fine_tune_epochs
from labeling_dag.merge import active
from labeling_dag.model_cards import card_evaluations, card_file_of
from labeling_dag.model_registry import ModelRegistry, file_sha256
from labeling_dag.records import ModelEntry


class RetrainConfig(dg.Config):
    """The per-class promotion rule, beside the mAP50 one of :class:`LoopPolicy`.

    ``class_tolerance`` is the mAP50 any one class of the validation split may lose against the
    current model (``None``: no per-class rule). 0.05 because one class's AP moves about
    sqrt(k) times more than the mean of k classes between two models of equal quality: the
    overall rule's 0.02 on the mean of the demo's three classes is about 0.035 on one class, and
    0.05 leaves that noise room while a class the model starts to forget is refused.
    """

    class_tolerance: float | None = Field(default=0.05, ge=0.0, le=1.0)


@dg.asset(group_name="labeling", deps=[VERIFIED_LABELS.key], kinds={"pytorch"})
def retrained_model(
    context: dg.AssetExecutionContext,
    config: RetrainConfig,
    store: LabelStore,
    detector: ItemModel,
    policy: LoopPolicy,
    snapshots: SnapshotStore,
) -> dg.MaterializeResult:
    """A model fine-tuned on every verified label, with its validation figures overall, per class and
    as a confusion matrix in its model card.

    The first model trains from the policy's pretrained weights where it names some (a new class
    head on their tensors), else from the detector's YAML config. The card's ``start`` says how the
    loop this model descends from started: ``warm`` (a registered seed model), ``pretrained`` or
    ``cold``; the model trained from pretrained weights records their sha256 in ``parameters``.
    """
    history = snapshots.history(store.root, VERIFIED_LABELS.folder)
    if not history:
        raise dg.Failure("retrained_model: no verified labels snapshot yet")
    training_snapshot = history[-1]["snapshot_id"]
    class_names = store.class_names()
    modality = store.modality()
    check_model_fits(detector, modality)
    validation = modality.read_dataset(Path(policy.validation_dataset))
    if validation.names != class_names:
        raise dg.Failure(
            f"{policy.validation_dataset}: classes {list(validation.names)} "
            f"differ from the project's {list(class_names)}"
        )

    registry = ModelRegistry(store.root)
    # A re-run on the snapshot the waiting candidate or the current model was trained on (the
    # run was killed after training) takes that model: training again would add one per attempt.
    trained = [m for m in (registry.candidate(), registry.current()) if m and m.training_snapshot == training_snapshot]
    if trained and card_file_of(store.root, trained[0].model_version).exists():
        return _training_result(json.loads(card_file_of(store.root, trained[0].model_version).read_text()), reused=True)

    cleaned = store.read(CLEANED).set_index("image_id")["path"]
    images = active(store.read(VERIFIED_IMAGES))
    labels = active(store.read(LABELS))
    run_dir = store.root / RETRAINED_MODEL.folder / training_snapshot
    data_yaml = modality.write_training_set(
        run_dir / "dataset",
        images=images.assign(path=[str(store.root / cleaned[i]) for i in images["image_id"]]),
        labels=labels,
        class_names=class_names,
        val_images=validation.val_images,
    )

    parent = registry.current()
    if parent is None:
        pretrained = Path(policy.pretrained_weights) if policy.pretrained_weights else None
        start = "pretrained" if pretrained else "cold"
        from_scratch = pretrained is None
        parameters = {"epochs": policy.cold_start_epochs}
        if pretrained:
            parameters |= {"pretrained_weights": str(pretrained), "pretrained_sha256": file_sha256(pretrained)}
        weights = detector.train(
            data_yaml, run_dir / f"{start}-start", base_weights=pretrained, epochs=policy.cold_start_epochs
        )
    else:
        start = _start_of(store, registry, parent)
        from_scratch = False
        epochs = fine_tune_epochs(
            len(images), batch=detector.batch, epochs=policy.fine_tune_epochs, min_steps=policy.fine_tune_min_steps
        )
        parameters = {"epochs": epochs, "mosaic": 0.0, "warmup_epochs": 0}
        weights = detector.train(
            data_yaml,
            run_dir / f"fine-tune-{parent.model_version[:12]}",
            base_weights=registry.verified_path(parent),
            **parameters,
        )

    evaluation = detector.evaluate(weights, data_yaml, run_dir / "eval-candidate")
    parent_evaluation = (
        detector.evaluate(registry.verified_path(parent), data_yaml, run_dir / "eval-parent") if parent else None
    )
    entry = registry.register(
        weights,
        task=detector.describe(weights)[0],
        class_names=class_names,
        source="retrained" if parent else "cold_start",
        parent=parent.model_version if parent else None,
        metrics={**evaluation.summary(), "training_boxes": len(labels), "training_images": len(images)},
        training_snapshot=training_snapshot,
        make_current=False,
    )
    card = {
        "model_version": entry.model_version,
        "parent": entry.parent,
        "start": start,
        "training_snapshot": training_snapshot,
        "training_images": len(images),
        "training_boxes": len(labels),
        "metrics": evaluation.summary(),
        "parent_metrics_same_validation": parent_evaluation.summary() if parent_evaluation else {},
        "evaluation": evaluation.as_json(),
        "parent_evaluation_same_validation": parent_evaluation.as_json() if parent_evaluation else None,
        "validation_dataset": str(validation.val_images),
        "parameters": parameters | detector.card_parameters(from_scratch=from_scratch),
        "promotion_tolerance": policy.promotion_tolerance,
        "class_tolerance": config.class_tolerance,
        "class_names": list(class_names),
        "run_id": context.run_id,
        "created_at": datetime.now(UTC).isoformat(),
    }
    atomic.write_json(card_file_of(store.root, entry.model_version), card)
    return _training_result(card, reused=False)


def _start_of(store: LabelStore, registry: ModelRegistry, model: ModelEntry) -> str:
    """How the loop that led to ``model`` started: at a registered seed model (warm), else as the
    cards of its lineage say; a first model without one was trained from the YAML (cold)."""
    if model.source == "seed_model":
        return "warm"
    # Models trained on a seed dataset (labeling_dag.cold_start) have no card; cards written
    # before cards named the start hold their parent.
    path = card_file_of(store.root, model.model_version)
    card = json.loads(path.read_text()) if path.exists() else {}
    if "start" in card:
        return card["start"]
    return _start_of(store, registry, registry.get(card["parent"])) if card.get("parent") else "cold"


def _training_result(card: dict, *, reused: bool) -> dg.MaterializeResult:
    """What the UI shows of a trained model, read from its card."""
    candidate, current = card_evaluations(card)
    per_class = (
        {
            "class_quality": dg.MetadataValue.md(
                class_quality_table(candidate.per_class, current.per_class if current else ())
            ),
            "per_class": dg.MetadataValue.json([asdict(row) for row in candidate.per_class]),
            "confusion_matrix": dg.MetadataValue.md(confusion_table(candidate.confusion)),
        }
        if candidate
        else {}
    )
    return dg.MaterializeResult(
        metadata={
            "model_version": card["model_version"],
            "parent_model": card["parent"] or "",
            "start": card.get("start", ""),
            "training_snapshot": card["training_snapshot"],
            "training_images": card["training_images"],
            "training_boxes": card["training_boxes"],
            "map50": card["metrics"]["map50"],
            "map50_95": card["metrics"]["map50_95"],
            "parent_map50": card["parent_metrics_same_validation"].get("map50", float("nan")),
            "reused_trained_model": reused,
            **per_class,
            "model_card": dg.MetadataValue.json(card),
        }
    )
