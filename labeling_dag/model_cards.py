"""Model cards: the JSON kept beside each registered model that says how it was trained and how it
did (metrics, parent, training snapshot, parameters, evaluations), where each is kept, and the
evaluations it holds.
"""

from __future__ import annotations

from pathlib import Path

from labeling_dag.contracts import (
    MODEL_CARDS,
    MODEL_REGISTRY,
)
from labeling_dag.evaluation import ModelEvaluation


def card_file_of(workdir: Path, model_version: str) -> Path:
    """Where a model's card (metrics, parent, training snapshot, parameters) is kept."""
    return Path(workdir) / MODEL_REGISTRY.folder / MODEL_CARDS / f"{model_version}.json"


def card_evaluations(card: dict) -> tuple[ModelEvaluation | None, ModelEvaluation | None]:
    """The candidate's and the current model's evaluations a card holds (None: a cold start has no
    current model; a card written before per-class figures has neither)."""
    candidate, current = card.get("evaluation"), card.get("parent_evaluation_same_validation")
    return (
        ModelEvaluation.from_json(candidate) if candidate else None,
        ModelEvaluation.from_json(current) if current and candidate else None,
    )
