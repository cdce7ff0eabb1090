"""Label Studio's rectangle coordinates: ``x``, ``y`` (the TOP-LEFT corner), ``width`` and
``height``, all in percent of the image, converted to and from the YOLO-style normalised centre
boxes (:class:`~labeling_dag.records.NormBox`) the rest of the project uses. The conversions live
here and nowhere else; numbers read from a file are checked on the way (:func:`as_real`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from labeling_dag.records import NormBox

# How far (in percent of the image) a box edge may stick out of the image before it is
# treated as invalid rather than as rounding or a drag that overshot the border by a pixel.
_EDGE_TOLERANCE_PERCENT = 0.5


def as_real(value: Any, what: str) -> float:
    """``value`` as a finite float, or ``ValueError`` naming ``what``: a number read from a file."""
    # bool is an int subclass, and strings would "work" through float(); both mean a broken file.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what} must be a number, got {value!r}")
    try:
        number = float(value)
    except OverflowError as exc:
        raise ValueError(f"{what} is out of range: {value!r}") from exc
    if not math.isfinite(number):
        raise ValueError(f"{what} must be finite, got {value!r}")
    return number


def _clipped_edges(left: float, top: float, width: float, height: float) -> tuple[float, float, float, float]:
    """Validate a top-left percent box and return its edges clipped to the image."""
    if width <= 0 or height <= 0:
        raise ValueError(f"box size must be positive, got width={width!r} height={height!r}")
    right, bottom = left + width, top + height
    low, high = -_EDGE_TOLERANCE_PERCENT, 100.0 + _EDGE_TOLERANCE_PERCENT
    if left < low or top < low or right > high or bottom > high:
        raise ValueError(f"box lies outside the image: x={left!r} y={top!r} width={width!r} height={height!r}")
    left, top = min(max(left, 0.0), 100.0), min(max(top, 0.0), 100.0)
    right, bottom = min(max(right, 0.0), 100.0), min(max(bottom, 0.0), 100.0)
    if right <= left or bottom <= top:
        raise ValueError(f"box has no area inside the image: x={left!r} y={top!r} width={width!r} height={height!r}")
    return left, top, right, bottom


def norm_to_ls_percent(box: NormBox) -> dict[str, float]:
    """Convert a normalised centre box to Label Studio's ``{"x", "y", "width", "height"}``.

    ``x``/``y`` are the top-left corner in percent.  A box that overshoots the image by
    less than 0.5 % is clipped to it (so an annotator who accepts it unchanged gives back
    exactly what was sent); anything worse raises ``ValueError``, as do non-finite values
    and non-positive sizes.
    """
    cx, cy = as_real(box.x, "box.x"), as_real(box.y, "box.y")
    w, h = as_real(box.w, "box.w"), as_real(box.h, "box.h")
    left, top, right, bottom = _clipped_edges((cx - w / 2) * 100.0, (cy - h / 2) * 100.0, w * 100.0, h * 100.0)
    return {"x": left, "y": top, "width": right - left, "height": bottom - top}


def ls_percent_to_norm(value: Mapping[str, float]) -> NormBox:
    """Convert a Label Studio rectangle ``value`` back to a normalised centre box.

    Inverse of :func:`norm_to_ls_percent`.  Edges within 0.5 % outside the image are
    clipped to it.  Raises ``ValueError`` on missing or non-numeric coordinates, NaN or
    infinity, non-positive sizes, a box further outside the image, or a non-zero
    ``rotation`` (a rotated rectangle has no axis-aligned equivalent).
    """
    if not isinstance(value, Mapping):
        raise ValueError(f"rectangle value must be an object, got {value!r}")
    missing = [key for key in ("x", "y", "width", "height") if key not in value]
    if missing:
        raise ValueError(f"rectangle value lacks {', '.join(missing)}")
    if as_real(value.get("rotation", 0), "rotation") != 0:
        raise ValueError(f"rotated rectangles are not supported, got {value['rotation']!r}")
    left, top, right, bottom = _clipped_edges(
        as_real(value["x"], "x"),
        as_real(value["y"], "y"),
        as_real(value["width"], "width"),
        as_real(value["height"], "height"),
    )
    return NormBox(
        x=(left + right) / 200.0,
        y=(top + bottom) / 200.0,
        w=(right - left) / 100.0,
        h=(bottom - top) / 100.0,
    )
