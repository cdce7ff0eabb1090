"""What an image costs an annotator: the boxes they are expected to draw on it.

With costs, a strategy's uncertainty part ranks by uncertainty per box rather than per image:
the "return on investment" rule of cost-sensitive active learning (Settles, Craven and Friedland
2008, "Active Learning with Real Annotation Costs"). The budget that matters is counted in boxes,
and with max-aggregated image scores an image full of objects is usually the most uncertain one,
so ranking per image spends the budget on the most expensive images.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def expected_boxes(n_boxes: npt.ArrayLike) -> np.ndarray:
    """Boxes a human is expected to draw on each image: its pre-label count, or, where the
    model found nothing, the mean count of the images where it found something (1 if it
    found nothing anywhere). A model misses objects far more often than it invents whole
    images of them, so an empty prediction is priced like an average image, not as free.

    Args:
        n_boxes: shape (n,), non-negative pre-label counts per image.

    Returns:
        shape (n,), every entry >= 1.

    Raises:
        ValueError: on a mis-shaped input, or negative or non-finite counts.
    """
    counts = np.asarray(n_boxes, dtype=np.float64)
    if counts.ndim != 1:
        raise ValueError(f"n_boxes must have shape (n,); got {counts.shape}")
    if not np.isfinite(counts).all() or (counts < 0).any():
        raise ValueError("n_boxes must hold finite, non-negative counts")
    found = counts > 0
    prior = max(1.0, float(counts[found].mean())) if found.any() else 1.0
    return np.where(found, np.maximum(counts, 1.0), prior)
