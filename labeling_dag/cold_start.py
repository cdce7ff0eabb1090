"""Decide which model pre-labels the pool when the registry has none yet."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from labeling_dag.contracts import RETRAINED_MODEL
from labeling_dag.modalities import Modality
from labeling_dag.model_registry import ModelRegistry
from labeling_dag.records import ModelEntry
from labeling_dag.resources.item_model import ItemModel


class NoModelError(RuntimeError):
    """The configured seed model does not exist."""


class WrongModelError(RuntimeError):
    """The deployment's model resource takes another modality's items than the workdir holds."""


def check_model_fits(detector: ItemModel, modality: Modality) -> None:
    """Refuse a model of another modality (a text workdir served by the image model): the code
    location binds the model from ``LABELING_DAG_MODALITY``, the workdir records its own."""
    if detector.modality != modality.name:
        raise WrongModelError(
            f"the workdir holds {modality.name!r} items but the deployment's model takes {detector.modality!r} "
            f"items: set LABELING_DAG_MODALITY={modality.name} where the code location loads"
        )


def current_or_seed_model(
    registry: ModelRegistry,
    detector: ItemModel,
    modality: Modality,
    *,
    seed_model: str = "",
    seed_dataset: str = "",
) -> ModelEntry | None:
    """The registry's current model; on a cold start, register ``seed_model`` or train on ``seed_dataset``.

    ``seed_model`` is a weights file the model resource reads (for detection any local
    ultralytics ``.pt``); ``seed_dataset`` is a labelled dataset of the modality (for detection a
    YOLO ``data.yaml``) whose train split holds the seed labels, trained on from scratch. With
    neither, None: the loop's first review batch is then drawn at random and the first model is
    trained on its verified labels.
    """
    check_model_fits(detector, modality)
    current = registry.current()
    if current is not None:
        return current
    if seed_model:
        weights = Path(seed_model).expanduser()
        if not weights.is_file():
            raise NoModelError(f"{weights}: seed_model does not exist")
        task, names = detector.describe(weights)
        return registry.register(weights, task=task, class_names=names, source="seed_model")
    if seed_dataset:
        spec = modality.read_dataset(Path(seed_dataset))
        out_dir = registry.workdir / RETRAINED_MODEL.folder / f"cold-start-{datetime.now(UTC):%Y%m%dT%H%M%S}"
        best = detector.train(Path(seed_dataset), out_dir)
        task, _ = detector.describe(best)
        return registry.register(best, task=task, class_names=spec.names, source="cold_start")
    return None
