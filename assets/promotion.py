"""Stage 9: promote a retrained model if it is no worse than the current one, overall and per class.

The promotion gate is a blocking check of ``retrained_model``; ``current_model`` publishes the
promoted model (``model_store/``, DVC artifact ``detector``), which pre-labels the pool from then on.
"""

import json
from dataclasses import asdict

import dagster as dg
from labeling_dag.resources.snapshots import SnapshotStore
from labeling_dag.resources.storage import LabelStore

from labeling_dag import atomic
from labeling_dag.contracts import CURRENT_MODEL, RETRAINED_MODEL, VERIFIED_LABELS
from labeling_dag.evaluation import class_drops
from labeling_dag.model_cards import card_evaluations, card_file_of
from labeling_dag.model_registry import ModelRegistry


@dg.asset_check(
    asset=RETRAINED_MODEL.key,
    blocking=True,
    description="mAP50 no worse than the current model's, within tolerance; no class's mAP50 either, within its own",
)
def promotion_gate(store: LabelStore, snapshots: SnapshotStore) -> dg.AssetCheckResult:
    """Refuse a retrained model whose mAP50 falls more than the tolerance below its parent's, or
    whose mAP50 on any one class of the validation split falls more than the class tolerance below."""
    registry = ModelRegistry(store.root)
    candidate, current = registry.candidate(), registry.current()
    history = snapshots.history(store.root, VERIFIED_LABELS.folder)
    if (
        candidate is None
        and current is not None
        and history
        and current.training_snapshot == history[-1]["snapshot_id"]
    ):
        # A re-run after the promotion (its run was killed while publishing): nothing new to judge.
        return dg.AssetCheckResult(
            passed=True,
            metadata={
                "reason": f"current model {current.model_version} already trained on {current.training_snapshot}"
            },
        )
    if candidate is None:
        return dg.AssetCheckResult(passed=False, metadata={"reason": "no candidate model awaiting promotion"})
    card = json.loads(card_file_of(store.root, candidate.model_version).read_text())
    new, old = card["metrics"]["map50"], card["parent_metrics_same_validation"].get("map50")
    candidate_evaluation, current_evaluation = card_evaluations(card)
    class_tolerance = card.get("class_tolerance")
    drops = (
        class_drops(candidate_evaluation.per_class, current_evaluation.per_class, tolerance=class_tolerance)
        if candidate_evaluation and current_evaluation and class_tolerance is not None
        else []
    )
    passed = (old is None or new >= old - card["promotion_tolerance"]) and not drops
    return dg.AssetCheckResult(
        passed=passed,
        metadata={
            "candidate_map50": new,
            "current_map50": old if old is not None else "none (cold start)",
            "tolerance": card["promotion_tolerance"],
            "class_tolerance": class_tolerance if class_tolerance is not None else "off",
            "class_drops": dg.MetadataValue.json([{**asdict(drop), "change": round(drop.change, 4)} for drop in drops]),
        },
    )


@dg.asset(group_name="labeling", deps=[RETRAINED_MODEL.key], kinds={"pytorch"})
def current_model(
    context: dg.AssetExecutionContext, store: LabelStore, snapshots: SnapshotStore
) -> dg.MaterializeResult:
    """The promoted model: it pre-labels the pool from now on (model_store/, DVC artifact ``detector``).

    Re-running it after the promotion re-publishes the current model, unchanged.
    """
    registry = ModelRegistry(store.root)
    candidate = registry.candidate() or registry.current()
    if candidate is None:
        raise dg.Failure("current_model: no model to promote")
    weights = registry.verified_path(candidate)
    card = json.loads(card_file_of(store.root, candidate.model_version).read_text())
    folder = store.folder(CURRENT_MODEL.folder)
    atomic.copy_file(weights, folder / "model.pt")
    atomic.write_json(folder / "card.json", card)
    atomic.write_json(folder / "metrics.json", card["metrics"] | {"training_boxes": card["training_boxes"]})
    registry.promote(candidate.model_version)
    snapshot_id = snapshots.snapshot(store.root, CURRENT_MODEL.folder, run_id=context.run_id)
    tag = snapshots.tag_artifact(
        store.root,
        "detector",
        version=registry.promotions().index(candidate.model_version) + 1,
        message=f"model {candidate.model_version} (mAP50 {card['metrics']['map50']:.3f}), "
        f"trained on {card['training_snapshot']}",
    )
    return dg.MaterializeResult(
        metadata={
            "model_version": candidate.model_version,
            "map50": card["metrics"]["map50"],
            "map50_95": card["metrics"]["map50_95"],
            "training_snapshot": card["training_snapshot"],
            "dvc_snapshot": snapshot_id,
            "dvc_artifact": tag,
        },
        data_version=dg.DataVersion(snapshot_id),
    )
