"""The text classifier's arithmetic: class probabilities of a zero-shot or a logistic-regression
model from sentence embeddings, and the logistic regression's fit.

numpy at import, scikit-learn inside the fit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from labeling_dag.text_model import ZERO_SHOT, TextModel

# Cosine similarities of unrelated and related sentences differ by a few tenths; divided by 0.05
# that is several units of logit, so the nearest description clearly wins, where the raw
# similarities would give nearly uniform probabilities.
ZERO_SHOT_TEMPERATURE = 0.05


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
