"""Bring a snapshotted asset back to one of its DVC snapshots, bit-exact.

Each snapshotted asset keeps its snapshots under its own folder (a partitioned asset one
folder per ingestion batch). Restoring ``current_model`` also makes the model registry name
the restored weights as current, registering them again if the registry lost its copy, so
that pre-labelling, retraining and lineage all read the model that ``model_store/`` holds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from labeling_dag import atomic
from labeling_dag.contracts import CLEANED_IMAGES, CURRENT_MODEL, DATASET_EXPORT, PRE_LABELS, VERIFIED_LABELS, Stage
from labeling_dag.model_cards import card_file_of
from labeling_dag.model_registry import ModelRegistry, file_sha256

_SNAPSHOTTED: tuple[Stage, ...] = (CLEANED_IMAGES, PRE_LABELS, VERIFIED_LABELS, CURRENT_MODEL, DATASET_EXPORT)
SNAPSHOTTED_ASSETS = tuple(stage.key for stage in _SNAPSHOTTED)


class RestoreError(ValueError):
    """A restore that cannot be done as asked (unknown asset, wrong batch option, inconsistent model)."""


@dataclass(frozen=True)
class Restored:
    """What a restore brought back."""

    asset: str
    folder: Path
    snapshot_id: str
    batch: str = ""  # the ingestion batch, for a partitioned asset
    model_version: str = ""  # current_model only: the model the registry now names current


def restore_asset(workdir: Path, asset: str, snapshot_id: str, *, batch: str | None = None) -> Restored:
    """Restore ``asset`` (of ingestion batch ``batch`` when partitioned, default ``_root``) to ``snapshot_id``."""
    from labeling_dag.ingest_batches import ROOT_BATCH, batch_key_problem
    from labeling_dag.resources.snapshots import SnapshotStore

    if asset not in SNAPSHOTTED_ASSETS:
        raise RestoreError(f"{asset!r} has no snapshots; snapshotted assets: {', '.join(SNAPSHOTTED_ASSETS)}")
    # Its snapshots live in the stage's folder, one sub-folder per ingestion batch when partitioned.
    stage = next(stage for stage in _SNAPSHOTTED if stage.key == asset)
    if stage.partitioned:
        batch = batch or ROOT_BATCH
        if problem := batch_key_problem(batch):
            raise RestoreError(f"--batch {batch!r}: {problem}")
        folder = f"{stage.folder}/{batch}"
    elif batch is not None:
        raise RestoreError(f"{asset} is not partitioned by ingestion batch: leave out --batch")
    else:
        folder = stage.folder
    workdir = Path(workdir)
    restored = SnapshotStore().restore(workdir, folder, snapshot_id)
    model_version = _follow_model(workdir, restored) if asset == "current_model" else ""
    return Restored(asset, restored, snapshot_id, batch=batch or "", model_version=model_version)


def _follow_model(workdir: Path, model_store: Path) -> str:
    """Make the registry's current model the one in ``model_store`` (its weights and card)."""
    weights, card_file = model_store / "model.pt", model_store / "card.json"
    card = json.loads(card_file.read_text())
    version = file_sha256(weights)
    if card.get("model_version") != version:
        raise RestoreError(f"{card_file}: card of model {card.get('model_version')}, but {weights} is model {version}")
    entry = ModelRegistry(workdir).register(
        weights,
        task=card.get("task", "detect"),
        class_names=tuple(card["class_names"]),
        source="retrained" if card.get("parent") else "cold_start",
        parent=card.get("parent"),
        metrics={
            **card["metrics"],
            "training_boxes": card["training_boxes"],
            "training_images": card["training_images"],
        },
        training_snapshot=card["training_snapshot"],
        promoted=True,
    )
    # Retraining and the promotion gate read a model's card from the registry's side.
    kept = card_file_of(workdir, version)
    if not kept.exists():
        atomic.copy_file(card_file, kept)
    return entry.model_version
