"""The text classifier's model: its weights file, its probabilities, its training and its figures.

A text is classified from its sentence embedding (:mod:`labeling_dag.text_embeddings`) by one of
two kinds of model, both kept in one JSON weights file (safe to load: no pickle):

- ``zero_shot``, the model before any label exists: the class whose description's embedding is
  nearest the text's (softmax of cosine similarities / :data:`ZERO_SHOT_TEMPERATURE`);
- ``logistic_regression``: scikit-learn's multinomial logistic regression fit on the embeddings of
  the labelled texts, its coefficients stored in the file.

A text dataset has the YOLO layout (:mod:`labeling_dag.formats.yolo`): item files of UTF-8 text
under the splits' folders, each labelled by one whole-item region ``class_id 0.5 0.5 1 1`` in its
label file. Dagster-free; numpy at import, scikit-learn inside the functions that fit and score.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from labeling_dag import atomic
from labeling_dag.evaluation import BACKGROUND, ClassQuality, ConfusionMatrix, ModelEvaluation
from labeling_dag.formats.yolo import label_path_for, read_yolo_labels
from labeling_dag.text_embeddings import embedder_name

FORMAT = "labeling-dag-text-classifier/1"
TASK = "classify"
ZERO_SHOT = "zero_shot"
LOGISTIC_REGRESSION = "logistic_regression"
# Cosine similarities of unrelated and related sentences differ by a few tenths; divided by 0.05
# that is several units of logit, so the nearest description clearly wins, where the raw
# similarities would give nearly uniform probabilities.
ZERO_SHOT_TEMPERATURE = 0.05
# Stored floats are rounded to this many significant digits: float noise below it (BLAS summation
# order) then leaves the bytes, hence the registry's sha256 version, unchanged.
_SIGNIFICANT_DIGITS = 8
_REQUIRED_KEYS = ("format", "task", "kind", "class_names", "class_descriptions", "embedder")


@dataclass(frozen=True, eq=False)
class TextModel:
    """A weights file's content. ``class_descriptions[i]`` describes ``class_names[i]``;
    ``coef`` ``(n_classes, d)`` and ``intercept`` ``(n_classes,)`` are the logistic regression's
    (None for a zero-shot model), with probabilities ``softmax(x @ coef.T + intercept)``."""

    class_names: tuple[str, ...]
    class_descriptions: tuple[str, ...]
    embedder: str
    kind: str
    coef: np.ndarray | None = None
    intercept: np.ndarray | None = None


def write_text_model(model: TextModel, path: Path) -> Path:
    """Write ``model`` to ``path`` atomically and reproducibly (sorted keys, rounded floats: the
    same model gives the same bytes) and return ``path``."""
    payload: dict[str, Any] = {
        "format": FORMAT,
        "task": TASK,
        "kind": model.kind,
        "class_names": list(model.class_names),
        "class_descriptions": dict(zip(model.class_names, model.class_descriptions)),
        "embedder": model.embedder,
    }
    if model.kind == LOGISTIC_REGRESSION:
        payload["coef"] = _rounded(model.coef)
        payload["intercept"] = _rounded(model.intercept)
    atomic.write_json(Path(path), payload)
    return Path(path)


def _rounded(values: np.ndarray | None) -> list[Any]:
    array = np.asarray(values, dtype=np.float64)
    digits = [float(f"{value:.{_SIGNIFICANT_DIGITS}g}") for value in array.ravel()]
    return np.array(digits, dtype=np.float64).reshape(array.shape).tolist()


def read_text_model(path: Path) -> TextModel:
    """The model in the weights file ``path``.

    Raises:
        ValueError: naming the file, if it is not JSON or not a text classifier's weights file
            (format, task or kind unknown, a key missing, shapes that do not fit the classes).
        OSError: if the file cannot be read.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_bytes())
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
        raise ValueError(f"{path}: not a JSON weights file ({error})") from error
    try:
        return _parse(data)
    except (TypeError, ValueError) as error:  # numpy's, for coefficients that are not numbers
        raise ValueError(f"{path}: not a text classifier weights file ({error})") from error


def _parse(data: Any) -> TextModel:
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    kind = data.get("kind")
    required = (*_REQUIRED_KEYS, *(("coef", "intercept") if kind == LOGISTIC_REGRESSION else ()))
    missing = [key for key in required if key not in data]
    if missing:
        raise ValueError(f"missing keys {missing}")
    if data["format"] != FORMAT or data["task"] != TASK:
        raise ValueError(f"format {data['format']!r}, task {data['task']!r}: expected {FORMAT!r}, {TASK!r}")
    if kind not in (ZERO_SHOT, LOGISTIC_REGRESSION):
        raise ValueError(f"unknown kind {kind!r}")
    names = data["class_names"]
    if not isinstance(names, list) or not names or not all(isinstance(name, str) for name in names):
        raise ValueError(f"class_names must be a list of strings, got {names!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"class_names repeat a name: {names!r}")
    texts = data["class_descriptions"]
    if not isinstance(texts, dict) or not all(isinstance(texts.get(name), str) for name in names):
        raise ValueError("class_descriptions must map every class name to a text")
    if not isinstance(data["embedder"], str):
        raise ValueError(f"embedder must be a string, got {data['embedder']!r}")
    model = TextModel(tuple(names), tuple(texts[name] for name in names), data["embedder"], kind)
    return model if kind == ZERO_SHOT else _with_coefficients(model, data["coef"], data["intercept"])


def _with_coefficients(model: TextModel, coef_values: Any, intercept_values: Any) -> TextModel:
    coef = np.asarray(coef_values, dtype=np.float64)
    intercept = np.asarray(intercept_values, dtype=np.float64)
    n_classes = len(model.class_names)
    if coef.ndim != 2 or coef.shape[0] != n_classes or intercept.shape != (n_classes,):
        raise ValueError(f"coef {coef.shape} and intercept {intercept.shape} do not fit {n_classes} classes")
    if not (np.isfinite(coef).all() and np.isfinite(intercept).all()):
        raise ValueError("coef and intercept must be finite numbers")
    return TextModel(model.class_names, model.class_descriptions, model.embedder, model.kind, coef, intercept)


def zero_shot_weights(
    class_names: Sequence[str],
    out_path: Path,
    *,
    descriptions: Mapping[str, str] | None = None,
    embedder: str = "",
) -> Path:
    """Write the zero-shot model of ``class_names`` to ``out_path`` and return it: the model that
    pre-labels before any label exists. A class's description (what its embedding is compared
    with) is ``descriptions[name]``, else the name itself; ``embedder`` is recorded as the
    classifier resource names it (``""``: the packaged model).
    """
    descriptions = descriptions or {}
    model = TextModel(
        class_names=tuple(class_names),
        class_descriptions=tuple(descriptions.get(name, name) for name in class_names),
        embedder=embedder_name(embedder),
        kind=ZERO_SHOT,
    )
    return write_text_model(model, out_path)


def zero_shot_probabilities(
    item_embeddings: np.ndarray, description_embeddings: np.ndarray, *, temperature: float = ZERO_SHOT_TEMPERATURE
) -> np.ndarray:
    """``(n_items, n_classes)``: softmax over classes of the cosine similarity of each item's and
    each class description's unit embeddings, divided by ``temperature``."""
    return _softmax(item_embeddings @ description_embeddings.T / temperature)


def class_probabilities(
    model: TextModel, item_embeddings: np.ndarray, description_embeddings: np.ndarray | None = None
) -> np.ndarray:
    """``(n_items, n_classes)`` class probabilities of ``model`` for unit item embeddings, in
    class-id order. A zero-shot model needs its descriptions' embeddings."""
    if model.kind == ZERO_SHOT:
        if description_embeddings is None:
            raise ValueError("a zero-shot model needs the embeddings of its class descriptions")
        return zero_shot_probabilities(item_embeddings, description_embeddings)
    return _softmax(item_embeddings @ np.asarray(model.coef).T + np.asarray(model.intercept))


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)


def fit_logistic_regression(
    embeddings: np.ndarray,
    class_ids: Sequence[int],
    description_embeddings: np.ndarray,
    *,
    c: float = 1.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Fit the classifier; return ``(coef (n_classes, d), intercept (n_classes,))`` in the
    multinomial form :func:`class_probabilities` reads.

    Each class description's embedding is one more example of its class, so that every class is
    known (and has a probability) even before it has a label. ``c`` is the inverse regularisation
    strength. lbfgs to convergence is deterministic: the same data give the same coefficients.
    """
    from sklearn.linear_model import LogisticRegression

    n_classes = len(description_embeddings)
    if n_classes == 1:  # nothing to tell apart: the one class has probability 1
        return np.zeros((1, description_embeddings.shape[1])), np.zeros(1)
    features = np.concatenate([embeddings, description_embeddings]).astype(np.float64)
    targets = np.concatenate([np.asarray(class_ids, dtype=np.int64), np.arange(n_classes)])
    fitted = LogisticRegression(C=c, solver="lbfgs", max_iter=5000, random_state=seed).fit(features, targets)
    if n_classes == 2:
        # A binary fit has one logit z for class 1: softmax of (-z/2, z/2) is its sigmoid.
        return np.concatenate([-fitted.coef_, fitted.coef_]) / 2, np.array([-1.0, 1.0]) * fitted.intercept_ / 2
    return fitted.coef_, fitted.intercept_


def read_text(item: Path) -> str:
    """The text of an item file (UTF-8).

    Raises:
        ValueError: naming the file, if it is not UTF-8.
    """
    try:
        return Path(item).read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{item}: not UTF-8 text ({error})") from error


def split_items(folder: Path) -> list[Path]:
    """The item files (``*.txt``) under a split's folder, sorted."""
    return sorted(Path(folder).rglob("*.txt"))


def labelled_items(folder: Path, n_classes: int) -> list[tuple[Path, int]]:
    """``(item, class_id)`` for each item under ``folder`` that has a label, sorted by path.

    An item whose label file is missing or empty has no label and is left out.

    Raises:
        ValueError: naming the label file, if it holds several classes or a class id outside
            ``0..n_classes-1``.
    """
    labelled = []
    for item in split_items(folder):
        label_file = label_path_for(item)
        class_id = _item_label(label_file)
        if class_id is None:
            continue
        if class_id >= n_classes:
            raise ValueError(f"{label_file}: class id {class_id} is not one of the {n_classes} classes")
        labelled.append((item, class_id))
    return labelled


def _item_label(label_file: Path) -> int | None:
    """The class of a label file's whole-item region; None for a missing or empty file."""
    if not label_file.is_file():
        return None
    classes = {row[0] for row in read_yolo_labels(label_file)}
    if len(classes) > 1:
        raise ValueError(f"{label_file}: a text has one class, this label file gives {sorted(classes)}")
    return classes.pop() if classes else None


def evaluation_figures(
    true_ids: Sequence[int], predicted_ids: Sequence[int], class_names: Sequence[str]
) -> ModelEvaluation:
    """The figures of predicted against true class ids.

    ``map50`` and ``map50_95`` are both the accuracy (top-1), as ultralytics reports for a
    classifier: a text has one whole-item region, so there is no localisation to grade. Per class
    present among ``true_ids`` (in class order): its instances, precision and recall, and its
    recall as its map50 and map50_95. The confusion matrix counts ``[predicted][true]`` over the
    class names and ``background``, whose row and column stay zero: every text gets one class.
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    true = np.asarray(true_ids, dtype=np.int64)
    predicted = np.asarray(predicted_ids, dtype=np.int64)
    accuracy = float(np.mean(true == predicted))
    present = sorted({int(class_id) for class_id in true})
    precision, recall, _, support = precision_recall_fscore_support(true, predicted, labels=present, zero_division=0)
    per_class = tuple(
        ClassQuality(
            class_name=class_names[class_id],
            instances=int(count),
            precision=float(p),
            recall=float(r),
            map50=float(r),
            map50_95=float(r),
        )
        for class_id, p, r, count in zip(present, precision, recall, support)
    )
    n_classes = len(class_names)
    by_true = confusion_matrix(true, predicted, labels=list(range(n_classes)))
    counts = [[*(int(n) for n in row), 0] for row in by_true.T] + [[0] * (n_classes + 1)]
    confusion = ConfusionMatrix(labels=(*class_names, BACKGROUND), counts=tuple(map(tuple, counts)), conf=0.0)
    return ModelEvaluation(map50=accuracy, map50_95=accuracy, per_class=per_class, confusion=confusion)
