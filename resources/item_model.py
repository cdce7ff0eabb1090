"""The model behind pre-labels and retraining, whatever the modality: one interface, one
implementation per kind of model, chosen by deployment configuration (as the review backends are).

:class:`labeling_dag.resources.detector.Detector` (ultralytics YOLO) is the detection modality's.
The assets call only what is declared here, so a modality's model is one subclass bound to the
``detector`` resource key of the code location.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import dagster as dg

from labeling_dag.evaluation import ModelEvaluation
from labeling_dag.labeling_functions import LabelingFunction
from labeling_dag.records import ImagePrediction


class ItemModel(dg.ConfigurableResource):
    """Predict, train and evaluate on a modality's items.

    ``batch`` is the optimiser's batch size (the fine-tune's minimum steps are counted in it) and
    ``seed`` seeds training; both go into every model card.
    """

    # The modality whose items the model takes (a name in labeling_dag.modalities.MODALITIES).
    modality: ClassVar[str] = ""
    batch: int = 16
    seed: int = 0

    def predict(self, weights: Path, items: Sequence[Path]) -> Iterator[ImagePrediction]:
        """One prediction per item, in order, streamed so that memory stays bounded."""
        raise NotImplementedError

    def train(self, data: Path, out_dir: Path, *, base_weights: Path | None = None, **overrides: Any) -> Path:
        """Train on the training set ``data`` (the modality's ``write_training_set``) and return the
        weights file: from ``base_weights`` where given (fine-tuning, or pretrained weights of other
        classes), else from scratch. ``overrides`` adjust the training (e.g. ``epochs``)."""
        raise NotImplementedError

    def evaluate(self, weights: Path, data: Path, out_dir: Path) -> ModelEvaluation:
        """The figures of ``weights`` on the validation split of ``data``, overall and per class."""
        raise NotImplementedError

    def describe(self, weights: Path) -> tuple[str, tuple[str, ...]]:
        """The task (e.g. ``detect``) and the class names, in class-id order, a weights file holds.
        Loading may run pickle: call it only on a file its owner trusts."""
        raise NotImplementedError

    def card_parameters(self, *, from_scratch: bool) -> dict[str, Any]:
        """The settings a model card records beside the training's own overrides; ``from_scratch``
        adds what a model trained from no weights was built from."""
        raise NotImplementedError

    def voters(self) -> tuple[LabelingFunction, ...]:
        """The labeling functions that vote beside the model on each item (none by default); the
        pre-labels then carry the label model's combination of their votes and the model's."""
        return ()
