"""The checks every fit and every gate makes of its inputs: confidences in [0, 1], booleans for
right or wrong, settings within their ranges. Each raises ``ValueError`` naming what is wrong."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def as_confidences(confidences: npt.ArrayLike, n: int, name: str = "confidences") -> np.ndarray:
    """``confidences`` as a float array of shape (n,), every value finite and in [0, 1]."""
    c = np.asarray(confidences, dtype=np.float64)
    if c.ndim != 1 or c.shape[0] != n:
        raise ValueError(f"{name} must have shape (n_boxes,) = ({n},); got shape {c.shape}")
    if not np.isfinite(c).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if ((c < 0.0) | (c > 1.0)).any():
        raise ValueError(f"{name} must lie in [0, 1]; got values in [{c.min():.6g}, {c.max():.6g}]")
    return c


def as_correct(correct: npt.ArrayLike) -> np.ndarray:
    """``correct`` as a 1-D boolean array (0/1 integers accepted)."""
    ok = np.asarray(correct)
    if ok.ndim != 1:
        raise ValueError(f"correct must be 1-D with shape (n_boxes,); got shape {ok.shape}")
    if ok.dtype != np.bool_:
        # 0/1 integers are a common spelling of booleans (e.g. a parquet column).
        if ok.size and not np.isin(ok, (0, 1)).all():
            raise ValueError(f"correct must hold booleans (or 0/1); got dtype {ok.dtype}")
        ok = ok.astype(np.bool_)
    return ok


def check_settings(target_precision: float, min_support: int, confidence_level: float | None) -> None:
    """Refuse a target, a support or a confidence level outside its range."""
    if not 0.0 < target_precision <= 1.0:  # also rejects NaN
        raise ValueError(f"target_precision must lie in (0, 1]; got {target_precision!r}")
    if isinstance(min_support, bool) or not isinstance(min_support, (int, np.integer)) or min_support < 1:
        raise ValueError(f"min_support must be an integer >= 1; got {min_support!r}")
    if confidence_level is not None and not 0.0 < confidence_level < 1.0:
        raise ValueError(f"confidence_level must be None or lie in (0, 1); got {confidence_level!r}")
