"""Measure decoded images for the ``cleaned_images`` asset: blur, contrast and a perceptual hash.

Everything here is a pure function of a path or of measured values, so the asset (which decides
what to keep, log and store) can be tested without Dagster. Decoding is
:mod:`labeling_dag.image_decoding`; comparing the hashes is :mod:`labeling_dag.near_duplicates`.

Scoring: a 64-bit perceptual hash (pHash) for near-duplicate detection, the variance of the
Laplacian for blur and RMS contrast for washed-out images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import imagehash
import numpy as np
from PIL import Image

from labeling_dag.image_decoding import MAX_PIXELS, decode_image


@dataclass(frozen=True)
class InspectedImage:
    """What the quality filters need to know about one decoded image."""

    width: int  # after EXIF orientation
    height: int  # after EXIF orientation
    exif_transposed: bool  # the EXIF orientation was not upright and has been applied
    converted_mode: str | None  # the decoded Pillow mode when it was not RGB, else None
    phash: str  # imagehash.phash as hex, 16 characters = 64 bits
    blur_variance: float  # variance of the Laplacian of the grey image; higher = sharper
    contrast: float  # RMS contrast: std of grey intensities scaled to [0, 1], so in [0, 0.5]


def inspect_image(path: Path, *, max_pixels: int = MAX_PIXELS) -> tuple[Image.Image, InspectedImage]:
    """Decode ``path`` as :func:`~labeling_dag.image_decoding.load_image` does and measure it.

    Returns:
        The upright RGB image and its :class:`InspectedImage` (sizes are of that image).

    Raises:
        ImageRejected: for every reason the file cannot be used (see :data:`~labeling_dag.rejects.RejectReason`).
    """
    image, converted_mode, exif_transposed = decode_image(path, max_pixels)
    grey_image = image.convert("L")
    grey = np.asarray(grey_image)
    # cv2 computes mean and std in one pass without numpy's full-size float64 temporaries,
    # which matter at 50 MP.
    _, contrast_std = cv2.meanStdDev(grey)
    # ksize=1 is the 3x3 kernel [[0,1,0],[1,-4,1],[0,1,0]] of Pertuz et al. (2013); on
    # uint8 input its values lie in [-1020, 1020], so int16 holds them exactly.
    _, laplacian_std = cv2.meanStdDev(cv2.Laplacian(grey, cv2.CV_16S, ksize=1))
    return image, InspectedImage(
        width=image.width,
        height=image.height,
        exif_transposed=exif_transposed,
        converted_mode=converted_mode,
        phash=str(imagehash.phash(grey_image)),
        blur_variance=float(laplacian_std[0, 0]) ** 2,
        contrast=float(contrast_std[0, 0]) / 255.0,
    )


def is_blurry(blur_variance: float, *, threshold: float = 100.0) -> bool:
    """True when the variance of the Laplacian is below ``threshold``.

    The variance of the Laplacian is one of the best-performing focus measures in Pertuz,
    Puig & Garcia, "Analysis of focus measure operators for shape-from-focus", Pattern
    Recognition 46(5), 2013. It also grows with texture and shrinks when an image is
    downscaled, so 100 is a starting point to tune per dataset, not a universal constant.
    """
    return blur_variance < threshold


def is_low_contrast(contrast: float, *, threshold: float = 0.05) -> bool:
    """True when the RMS contrast (std of [0, 1] grey intensities) is below ``threshold``."""
    return contrast < threshold
