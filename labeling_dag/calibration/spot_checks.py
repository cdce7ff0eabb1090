"""Spot checks: a random share of auto-accepted images sent back to humans, which measures the
precision auto-acceptance really delivers."""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

import numpy as np


def sample_spot_checks(image_ids: Sequence[str], *, rate: float = 0.05, seed: int = 0) -> list[str]:
    """A random share of auto-accepted images to send back to humans.

    Reviewing them next round measures the precision auto-acceptance really delivers,
    including missed objects that box calibration cannot see.

    Args:
        image_ids: the auto-accepted images, each once.
        rate: share to re-check, in [0, 1]. ``ceil(rate * n)`` images are drawn, so at
            least one whenever ``rate > 0`` and there is any image.
        seed: seeds the draw; the same ids, rate and seed give the same sample.

    Returns:
        The drawn ids, without repeats, in their ``image_ids`` order.

    Raises:
        ValueError: on ``rate`` outside [0, 1] or repeated ids.
    """
    if not 0.0 <= rate <= 1.0:  # also rejects NaN
        raise ValueError(f"rate must lie in [0, 1]; got {rate!r}")
    ids = list(image_ids)
    if len(set(ids)) != len(ids):
        raise ValueError("image_ids must not repeat an id")
    # Read rate as the decimal it was written as: 0.07 * 100 is 7.000000000000001 in
    # binary floating point, and its ceiling would draw 8 images instead of 7.
    k = math.ceil(Fraction(str(float(rate))) * len(ids))
    drawn = np.random.default_rng(seed).choice(len(ids), size=k, replace=False)
    return [ids[i] for i in np.sort(drawn).tolist()]
