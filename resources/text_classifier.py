"""The text classification modality's model: sentence embeddings and a linear classifier on them.

The pure parts (weights file, probabilities, fitting, figures) are :mod:`labeling_dag.text_model`,
the embedder :mod:`labeling_dag.text_embeddings`; this resource reads the items and datasets and
turns probabilities into ``ImagePrediction`` records. sentence-transformers, torch and
scikit-learn are imported only by the runs that embed or fit.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from labeling_dag.resources.item_model import ItemModel

from labeling_dag.evaluation import ModelEvaluation
from labeling_dag.formats.yolo import load_data_yaml
from labeling_dag.labeling_functions import LabelingFunction, load_labeling_functions
from labeling_dag.records import ImagePrediction
from labeling_dag.text_classification import class_probabilities, fit_logistic_regression
from labeling_dag.text_embeddings import embed_texts, embedder_name
from labeling_dag.text_evaluation import evaluation_figures
from labeling_dag.text_items import labelled_items, read_text
from labeling_dag.text_model import (
    LOGISTIC_REGRESSION,
    TASK,
    ZERO_SHOT,
    TextModel,
    read_text_model,
    write_text_model,
)

# A text is one whole-item region.
_WHOLE_ITEM = np.array([[0.5, 0.5, 1.0, 1.0]], dtype=np.float32)


class TextClassifier(ItemModel):
    """Text classification from sentence embeddings: the text modality's
    :class:`~labeling_dag.resources.item_model.ItemModel`.

    ``embedder`` is a local sentence-transformers model folder, ``""`` for the all-MiniLM-L6-v2
    packaged with the project. ``embedding_cache`` is a folder keeping each text's embedding
    (``""`` = off): the pool is predicted again every round, and its texts do not change. ``c`` is
    the logistic regression's inverse regularisation strength: 10, not scikit-learn's 1, because on
    unit-length embeddings C=1 leaves even right answers at 0.4-0.6 confidence, and auto-accept
    needs a confidence that separates right from wrong. ``batch`` texts are embedded at a time;
    ``seed`` seeds the fit.
    """

    modality: ClassVar[str] = "text"
    embedder: str = ""
    embedding_cache: str = ""
    c: float = 10.0
    # A Python module of labeling functions (labeling_dag.labeling_functions) that vote beside the
    # classifier; "" = the classifier alone.
    labeling_functions: str = ""

    def voters(self) -> tuple[LabelingFunction, ...]:
        """The labeling functions of the ``labeling_functions`` module, loaded afresh (the user may
        have edited them since the last run)."""
        return load_labeling_functions(Path(self.labeling_functions)) if self.labeling_functions else ()

    def predict(self, weights: Path, items: Sequence[Path]) -> Iterator[ImagePrediction]:
        """Stream one record per item, in order, ``batch`` items at a time: one whole-item region
        of the most probable class, every class's probability and the text's embedding."""
        if not items:
            return
        model = self._load(weights)
        descriptions = self._embed(model.class_descriptions) if model.kind == ZERO_SHOT else None
        for start in range(0, len(items), self.batch):
            chunk = items[start : start + self.batch]
            texts = [read_text(item) for item in chunk]
            embeddings = self._embed(texts)
            probabilities = class_probabilities(model, embeddings, descriptions)
            for item, text, embedding, probs in zip(chunk, texts, embeddings, probabilities):
                yield _to_record(item, text, embedding, probs)

    def train(self, data: Path, out_dir: Path, *, base_weights: Path | None = None, **overrides: Any) -> Path:
        """Fit the logistic regression on the labelled texts of the train split of ``data`` (a
        data.yaml) and write ``out_dir/weights/model.json``; return that path.

        ``base_weights`` (a zero-shot or trained weights file) gives the class descriptions, each
        one more example of its class; without, a class is described by its name. ``overrides``
        are the image trainer's schedule (``epochs``, ``mosaic``, ``warmup_epochs``, ``lr0``...):
        accepted and ignored, as the fit runs to convergence and has no schedule.

        Raises:
            ValueError: naming ``data``, if its train split has no labelled text.
        """
        spec = load_data_yaml(data)
        items = labelled_items(spec.train_images, len(spec.names))
        if not items:
            raise ValueError(f"{data}: no labelled text in the train split {spec.train_images}")
        descriptions = _descriptions(spec.names, base_weights)
        coef, intercept = fit_logistic_regression(
            self._embed([read_text(item) for item, _ in items]),
            [class_id for _, class_id in items],
            self._embed(descriptions),
            c=self.c,
            seed=self.seed,
        )
        model = TextModel(spec.names, descriptions, embedder_name(self.embedder), LOGISTIC_REGRESSION, coef, intercept)
        return write_text_model(model, Path(out_dir) / "weights" / "model.json")

    def evaluate(self, weights: Path, data: Path, out_dir: Path) -> ModelEvaluation:
        """Accuracy (as ``map50`` and ``map50_95``), per-class precision and recall and the
        confusion matrix of ``weights`` on the labelled texts of the val split of ``data``
        (:func:`~labeling_dag.text_model.evaluation_figures`). ``out_dir`` is created, and left empty.

        Raises:
            ValueError: if the classes of ``data`` and ``weights`` differ, or the val split has no
                labelled text.
        """
        names = read_text_model(weights).class_names
        spec = load_data_yaml(data)
        if spec.names != names:
            raise ValueError(f"{data}: classes {list(spec.names)} differ from {list(names)} of {weights}")
        items = labelled_items(spec.val_images, len(names))
        if not items:
            raise ValueError(f"{data}: no labelled text in the val split {spec.val_images}")
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        predicted = [int(record.class_ids[0]) for record in self.predict(weights, [item for item, _ in items])]
        return evaluation_figures([class_id for _, class_id in items], predicted, names)

    def describe(self, weights: Path) -> tuple[str, tuple[str, ...]]:
        """``("classify", class names)`` of a weights file; a ValueError naming it for any file
        that is not one (the JSON is read, nothing is executed)."""
        return TASK, read_text_model(weights).class_names

    def card_parameters(self, *, from_scratch: bool) -> dict[str, Any]:
        """The embedder, ``c``, ``batch`` and ``seed``: everything a fit depends on besides its data
        and descriptions, from scratch or not."""
        return {"embedder": embedder_name(self.embedder), "c": self.c, "batch": self.batch, "seed": self.seed}

    def _load(self, weights: Path) -> TextModel:
        """The model of ``weights``, refused if it was fit on another embedder's vectors."""
        model = read_text_model(weights)
        name = embedder_name(self.embedder)
        if model.embedder != name:
            raise ValueError(f"{weights}: built on {model.embedder} embeddings, this classifier embeds with {name}")
        return model

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        cache = Path(self.embedding_cache) if self.embedding_cache else None
        return embed_texts(texts, embedder=self.embedder, cache=cache, batch_size=self.batch)


def _descriptions(class_names: Sequence[str], base_weights: Path | None) -> tuple[str, ...]:
    """Each class's description from ``base_weights`` where it names the class, else the name."""
    known: dict[str, str] = {}
    if base_weights:
        base = read_text_model(base_weights)
        known = dict(zip(base.class_names, base.class_descriptions))
    return tuple(known.get(name, name) for name in class_names)


def _to_record(item: Path, text: str, embedding: np.ndarray, probs: np.ndarray) -> ImagePrediction:
    top = int(probs.argmax())
    return ImagePrediction(
        path=str(item),
        width=len(text),
        height=1,
        boxes_xywhn=_WHOLE_ITEM.copy(),
        class_ids=np.array([top], dtype=np.int64),
        confidences=np.array([probs[top]], dtype=np.float32),
        class_probs=probs[None, :].astype(np.float32),
        embedding=embedding.astype(np.float32),
    )
