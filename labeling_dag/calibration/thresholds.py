"""The threshold rule: the smallest confidence whose tail of reviewed boxes reaches the target
precision, with at least ``min_support`` boxes and, optionally, by its Wilson lower bound.

Per-class thresholds (:mod:`.class_thresholds`) and the image gate (:mod:`.image_gate`) are both
fitted with it.
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
import numpy.typing as npt

from labeling_dag.calibration.inputs import as_confidences, as_correct, check_settings


def _wilson_lower(n_correct: np.ndarray, n: np.ndarray, confidence_level: float) -> np.ndarray:
    """One-sided Wilson score lower bounds, shape of ``n`` (all entries >= 1).

    Matches ``scipy.stats.binomtest(k, n, alternative="greater")
    .proportion_ci(confidence_level, method="wilson").low``, vectorised over every tail at
    once instead of one scipy call per candidate threshold.
    """
    z = NormalDist().inv_cdf(confidence_level)
    p = n_correct / n
    centre = (2 * n * p + z**2) / (2 * (n + z**2))
    half_width = z / (2 * (n + z**2)) * np.sqrt(4 * n * p * (1 - p) + z**2)
    return np.where(n_correct == 0, 0.0, centre - half_width)


def fit_threshold(
    conf: np.ndarray,
    ok: np.ndarray,
    target_precision: float,
    min_support: int,
    confidence_level: float | None,
) -> tuple[float | None, float | None]:
    """``(t, precision)`` of :func:`precision_threshold` on checked arrays; ``(None, None)`` when no
    threshold qualifies."""
    order = np.argsort(-conf, kind="stable")
    c = conf[order]
    n_correct = np.cumsum(ok[order])
    n_tail = np.arange(1, c.size + 1)
    precision = n_correct / n_tail
    # Boxes tied at a confidence pass or fail together, so only the last row of each
    # run of ties is a tail that a threshold can produce.
    is_tail = np.ones(c.size, dtype=np.bool_)
    is_tail[:-1] = c[1:] != c[:-1]
    evidence = precision if confidence_level is None else _wilson_lower(n_correct, n_tail, confidence_level)
    passing = np.flatnonzero(is_tail & (n_tail >= min_support) & (evidence >= target_precision))
    if passing.size == 0:
        return None, None
    # Rows run from high to low confidence: the last passing row is the smallest threshold.
    i = passing[-1]
    return float(c[i]), float(precision[i])


def precision_threshold(
    confidences: npt.ArrayLike,
    correct: npt.ArrayLike,
    *,
    target_precision: float = 0.95,
    min_support: int = 20,
    confidence_level: float | None = None,
) -> tuple[float | None, float | None]:
    """The smallest confidence threshold that reaches ``target_precision`` on reviewed boxes.

    Candidates are the observed confidences. Threshold ``t`` qualifies when the boxes with
    confidence >= ``t`` number at least ``min_support`` and their precision (or, with
    ``confidence_level``, its one-sided Wilson lower bound) is >= ``target_precision``.

    Args:
        confidences: shape (n,), the model's confidence of each reviewed box, in [0, 1].
        correct: shape (n,), bool; True where the box survived review.
        target_precision: required share of correct boxes at or above ``t``, in (0, 1].
        min_support: fewest boxes at or above ``t`` for it to count, >= 1.
        confidence_level: None to compare the raw precision with the target; otherwise a
            level in (0, 1) for the Wilson lower bound, which only ever raises ``t`` or
            makes it unattainable.

    Returns:
        ``(t, precision)``: ``t`` is an observed confidence (accept boxes with
        confidence >= ``t``), ``precision`` the raw share of correct boxes among those at
        or above it. ``(None, None)`` when no threshold qualifies.

    Raises:
        ValueError: on mismatched lengths, confidences that are not finite or lie outside
            [0, 1], non-boolean ``correct``, or settings outside their ranges.
    """
    check_settings(target_precision, min_support, confidence_level)
    ok = as_correct(correct)
    conf = as_confidences(confidences, ok.shape[0])
    return fit_threshold(conf, ok, target_precision, int(min_support), confidence_level)
