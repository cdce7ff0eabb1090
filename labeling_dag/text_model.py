"""The text classifier's model: its weights file (written, read back and checked) and the zero-shot
model a text workdir starts from.

A text is classified from its sentence embedding (:mod:`labeling_dag.text_embeddings`) by one of
two kinds of model, both kept in one JSON weights file (safe to load: no pickle):

- ``zero_shot``, the model before any label exists: the class whose description's embedding is
  nearest the text's (softmax of cosine similarities, :mod:`labeling_dag.text_classification`);
- ``logistic_regression``: scikit-learn's multinomial logistic regression fit on the embeddings of
  the labelled texts, its coefficients stored in the file.

Its items are read by :mod:`labeling_dag.text_items` and it is graded by
:mod:`labeling_dag.text_evaluation`. Dagster-free; numpy at import.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from labeling_dag import atomic
from labeling_dag.text_embeddings import embedder_name

FORMAT = "labeling-dag-text-classifier/1"
TASK = "classify"
ZERO_SHOT = "zero_shot"
LOGISTIC_REGRESSION = "logistic_regression"
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
