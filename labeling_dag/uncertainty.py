"""Uncertainty measures for detector pre-labels, per box and per image.

Every measure maps class-probability vectors to scores in ``[0, 1]`` where **higher means
more uncertain**. This module only *measures*; choosing which images to review from those
scores is :mod:`labeling_dag.sampling`'s job.

YOLOv8-style detection heads emit an independent sigmoid score per class, so a box's
vector does not sum to 1. :func:`least_confidence` reads the raw scores, because a low
top score is itself the signal. :func:`margin` and :func:`entropy` compare classes with
one another, so they work on the normalised distribution ``q = p / sum(p)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
import numpy.typing as npt

MEASURES: tuple[str, ...] = ("least_confidence", "margin", "entropy")


def _as_probs(probs: npt.ArrayLike) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"probs must be 2-D with shape (n_boxes, n_classes); got shape {p.shape}")
    if p.shape[1] == 0:
        raise ValueError("probs must have at least one class column; got n_classes == 0")
    if np.isnan(p).any():
        raise ValueError("probs contains NaN")
    if ((p < 0.0) | (p > 1.0)).any():
        raise ValueError(f"probs must lie in [0, 1]; got values in [{p.min():.6g}, {p.max():.6g}]")
    return p


def _normalise(p: np.ndarray) -> np.ndarray:
    """Rows of ``p`` (n_boxes, n_classes) rescaled to sum to 1, as (n_boxes, n_classes).

    A row of all zeros carries no preference between classes, so it becomes uniform.
    """
    totals = p.sum(axis=1, keepdims=True)
    uniform = np.full_like(p, 1.0 / p.shape[1])
    return np.divide(p, totals, out=uniform, where=totals > 0)


def least_confidence(probs: npt.ArrayLike) -> np.ndarray:
    """``1 - max(p)`` per box, on the raw (unnormalised) scores.

    Args:
        probs: shape (n_boxes, n_classes), per-class scores in [0, 1].

    Returns:
        shape (n_boxes,), in [0, 1]; higher = more uncertain.
    """
    p = _as_probs(probs)
    return 1.0 - p.max(axis=1)


def margin(probs: npt.ArrayLike) -> np.ndarray:
    """``1 - (q_top1 - q_top2)`` per box, on the normalised distribution ``q``.

    With a single class ``q`` is always ``[1]`` and there is no runner-up to be confused
    with, so ``q_top2`` is taken as 0 and the score is 0.

    Args:
        probs: shape (n_boxes, n_classes), per-class scores in [0, 1].

    Returns:
        shape (n_boxes,), in [0, 1]; 0 when one class takes all the mass, 1 when the two
        leading classes tie. Higher = more uncertain.
    """
    q = _normalise(_as_probs(probs))
    if q.shape[1] == 1:
        return np.zeros(q.shape[0])
    top2 = -np.partition(-q, 1, axis=1)[:, :2]
    return 1.0 - (top2[:, 0] - top2[:, 1])


def entropy(probs: npt.ArrayLike) -> np.ndarray:
    """Shannon entropy of the normalised distribution ``q``, divided by ``log(n_classes)``.

    Args:
        probs: shape (n_boxes, n_classes), per-class scores in [0, 1].

    Returns:
        shape (n_boxes,), in [0, 1]; 1 for a uniform ``q``, 0 when one class takes all
        the mass (always, when n_classes == 1). Higher = more uncertain.
    """
    q = _normalise(_as_probs(probs))
    n_classes = q.shape[1]
    if n_classes == 1:
        return np.zeros(q.shape[0])
    # 0 * log(0) is taken as 0, its limit; log is only evaluated where q > 0.
    log_q = np.log(q, out=np.zeros_like(q), where=q > 0)
    h = -(q * log_q).sum(axis=1) / np.log(n_classes)
    # Rounding can put a uniform row a few ulps past 1 (or a one-hot row below 0).
    return np.clip(h, 0.0, 1.0)


_MEASURE_FUNCS: dict[str, Callable[[npt.ArrayLike], np.ndarray]] = {
    "least_confidence": least_confidence,
    "margin": margin,
    "entropy": entropy,
}


def _as_box_index(box_image_index: npt.ArrayLike, n_boxes: int, n_images: int) -> np.ndarray:
    idx = np.asarray(box_image_index)
    if idx.ndim != 1 or idx.shape[0] != n_boxes:
        raise ValueError(
            f"box_image_index must have shape (n_boxes,) = ({n_boxes},) to match probs; got shape {idx.shape}"
        )
    if idx.size == 0:
        # np.asarray([]) is float64; an empty index is valid whatever its dtype.
        return idx.astype(np.intp)
    if not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"box_image_index must hold integers; got dtype {idx.dtype}")
    if idx.min() < 0 or idx.max() >= n_images:
        raise ValueError(
            f"box_image_index must lie in [0, n_images) = [0, {n_images}); got values in [{idx.min()}, {idx.max()}]"
        )
    return idx.astype(np.intp)


def image_scores(
    box_image_index: npt.ArrayLike,
    probs: npt.ArrayLike,
    n_images: int,
    *,
    aggregate: Literal["max", "mean"] = "max",
    empty_score: float = 1.0,
) -> dict[str, np.ndarray]:
    """Every measure in :data:`MEASURES`, aggregated from boxes to images.

    An image is as uncertain as its most uncertain box (``aggregate="max"``, the default:
    one confusing object is enough to make the image worth a look) or as its average box
    (``aggregate="mean"``).

    An image with no boxes, i.e. no detection above the pre-label confidence floor, scores
    ``empty_score`` on every measure. The default 1.0 treats it as maximally uncertain: on
    a pool where almost every image holds objects, "the model sees nothing" is the
    strongest sign of a miss, and cold-start models miss most objects. Set
    ``empty_score=0.0`` for pools with many truly empty images, where an empty prediction
    is usually right.

    Args:
        box_image_index: shape (n_boxes,), integers in [0, n_images); the image each row
            of ``probs`` belongs to.
        probs: shape (n_boxes, n_classes), per-class scores in [0, 1].
        n_images: number of images in the pool, including those without boxes.
        aggregate: how box scores combine into an image score.
        empty_score: score in [0, 1] given to images without boxes.

    Returns:
        ``{measure_name: scores}`` for each name in :data:`MEASURES`, each scores array of
        shape (n_images,) in [0, 1]; higher = more uncertain.

    Raises:
        ValueError: on mis-shaped or out-of-range inputs, NaN, or an unknown ``aggregate``.
    """
    if aggregate not in ("max", "mean"):
        raise ValueError(f"aggregate must be 'max' or 'mean'; got {aggregate!r}")
    if not 0.0 <= empty_score <= 1.0:  # also rejects NaN
        raise ValueError(f"empty_score must lie in [0, 1]; got {empty_score!r}")
    if isinstance(n_images, bool) or not isinstance(n_images, (int, np.integer)) or n_images < 0:
        raise ValueError(f"n_images must be a non-negative integer; got {n_images!r}")
    p = _as_probs(probs)
    idx = _as_box_index(box_image_index, p.shape[0], int(n_images))

    counts = np.bincount(idx, minlength=n_images)
    has_boxes = counts > 0
    result: dict[str, np.ndarray] = {}
    for name in MEASURES:
        per_box = _MEASURE_FUNCS[name](p)
        if aggregate == "max":
            # Starting from 0 is safe: every measure is >= 0, and empty images are
            # overwritten below.
            per_image = np.zeros(n_images)
            np.maximum.at(per_image, idx, per_box)
        else:
            sums = np.bincount(idx, weights=per_box, minlength=n_images)
            per_image = np.divide(sums, counts, out=np.zeros(n_images), where=has_boxes)
        per_image[~has_boxes] = empty_score
        result[name] = per_image
    return result
