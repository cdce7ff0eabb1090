"""Decide which model pre-labels the pool when the registry has none yet."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from labeling_dag.contracts import RETRAINED_MODEL
from labeling_dag.formats.yolo import load_data_yaml
from labeling_dag.model_registry import ModelRegistry
from labeling_dag.records import ModelEntry
from labeling_dag.resources.detector import Detector, model_info


class NoModelError(RuntimeError):
    """The configured seed model does not exist."""


def current_or_seed_model(
    registry: ModelRegistry,
    detector: Detector,
    *,
    seed_model: str = "",
    seed_dataset: str = "",
) -> ModelEntry | None:
    """The registry's current model; on a cold start, register ``seed_model`` or train on ``seed_dataset``.

    ``seed_model`` is any local ultralytics ``.pt``; ``seed_dataset`` is a YOLO ``data.yaml``
    whose train split holds the seed labels. Training builds the model from the detector's
    ultralytics YAML architecture. With neither, None: the loop's first review batch is then
    drawn at random and the first model is trained on its verified labels.
    """
    current = registry.current()
    if current is not None:
        return current
    if seed_model:
        weights = Path(seed_model).expanduser()
        if not weights.is_file():
            raise NoModelError(f"{weights}: seed_model does not exist")
        task, names = model_info(weights)
        return registry.register(weights, task=task, class_names=names, source="seed_model")
    if seed_dataset:
        spec = load_data_yaml(seed_dataset)
        out_dir = registry.workdir / RETRAINED_MODEL.folder / f"cold-start-{datetime.now(UTC):%Y%m%dT%H%M%S}"
        best = detector.train(Path(seed_dataset), out_dir)
        return registry.register(best, task="detect", class_names=spec.names, source="cold_start")
    return None
