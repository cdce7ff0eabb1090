"""Decode a raw image file into upright 8-bit RGB, or reject it.

Decoding turns every way a scraped or uploaded file can be unusable into one exception,
:class:`~labeling_dag.rejects.ImageRejected`, whose ``reason`` is a short machine code the asset
can count and whose message names the file. Images that decode are returned as 8-bit RGB with
their EXIF orientation applied, because that is what annotators see in the labelling tool and
what box coordinates refer to.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from labeling_dag.rejects import ImageRejected

SUPPORTED_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")

# Pillow's names for the formats behind SUPPORTED_SUFFIXES. The content decides, not the
# suffix: a PNG saved as .jpg is fine, a GIF saved as .jpg is not. MPO is what Pillow calls
# a JPEG carrying the multi-picture extension that many phone cameras write.
SUPPORTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "BMP", "TIFF"})

# Decompression-bomb guard. A few kilobytes of PNG or JPEG can declare 20000x20000 pixels
# and need over a gigabyte once decoded, so the size is checked from the header, before any
# pixel is decoded. 50 MP (150 MB as RGB) is above any camera or phone photo we label.
# Pillow has a similar guard, Image.MAX_IMAGE_PIXELS (about 89 MP), but it is a
# process-wide global that any other library may raise or disable, so we keep our own.
MAX_PIXELS = 50_000_000

# Below this many pixels on either side an image shows nothing an annotator could box.
MIN_SIDE = 8

# Colour modes whose alpha channel must be flattened rather than dropped: dropping it
# exposes whatever colour the encoder left under transparent pixels (often black).
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "PA"})

# EXIF orientations 2..8 each need a flip and/or rotation; 1 is upright and any other
# value is invalid and ignored, as ImageOps.exif_transpose does.
_TRANSPOSED_ORIENTATIONS = frozenset(range(2, 9))


def load_image(path: Path, *, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode ``path`` fully into an upright 8-bit RGB image.

    The whole file is decoded (so truncation is detected here, not later), the EXIF
    orientation is applied, and other modes are converted to RGB: transparency is
    composited onto white, 16-bit grey is scaled by 1/256, CMYK and palettes are converted.
    The returned image does not depend on the file staying open or in place.

    Raises:
        ImageRejected: for every reason the file cannot be used (see :data:`~labeling_dag.rejects.RejectReason`).
    """
    image, _, _ = decode_image(path, max_pixels)
    return image


def decode_image(path: Path, max_pixels: int) -> tuple[Image.Image, str | None, bool]:
    """Decode ``path``; return the upright RGB image, the converted mode, the EXIF flag."""
    try:
        fp = path.open("rb")
    except OSError as exc:
        raise ImageRejected(path, "unreadable", f"cannot open file ({exc})") from exc
    with fp, warnings.catch_warnings():
        # Between 1x and 2x its limit Pillow only warns; turning that warning into an error
        # makes the stricter of max_pixels and Image.MAX_IMAGE_PIXELS always reject. The
        # warnings filter is restored on exit (catch_warnings is not thread-safe: decode
        # in processes, not threads, as Dagster's default executor does).
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        if os.fstat(fp.fileno()).st_size == 0:
            raise ImageRejected(path, "zero_byte", "file is empty (0 bytes)")
        image = _open_header(path, fp, max_pixels)
        try:
            image.load()
            orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
            exif_transposed = orientation in _TRANSPOSED_ORIENTATIONS
            if exif_transposed:
                image = ImageOps.exif_transpose(image)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageRejected(path, "decompression_bomb", f"possible decompression bomb ({exc})") from exc
        # Pillow's decoders raise an open-ended set of types on hostile data (OSError,
        # SyntaxError, ValueError, EOFError, struct.error, ...); all mean the same here.
        except Exception as exc:
            raise ImageRejected(path, "truncated", f"truncated or corrupt image data ({exc})") from exc
    rgb, converted_mode = _to_rgb(path, image)
    return rgb, converted_mode, exif_transposed


def _pillow_open() -> Callable[..., Image.Image]:
    """Pillow's own ``Image.open``, even after ultralytics has replaced it.

    Importing ultralytics swaps ``Image.open`` for a wrapper that, on an unidentified file,
    tries to install and register a HEIF plugin (a network call) and fails with an import
    error offline; an HTML page saved as .jpg must still read as "not an image".
    """
    patches = sys.modules.get("ultralytics.utils.patches")
    return getattr(patches, "_image_open", Image.open) if patches else Image.open


def _open_header(path: Path, fp: BinaryIO, max_pixels: int) -> Image.Image:
    """Identify the format and size from the header only; nothing is decoded yet."""
    try:
        image = _pillow_open()(fp)
    except UnidentifiedImageError as exc:
        raise ImageRejected(path, "not_an_image", "not a recognised image format") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected(path, "decompression_bomb", f"possible decompression bomb ({exc})") from exc
    except Exception as exc:  # a recognised signature followed by a broken header
        raise ImageRejected(path, "truncated", f"truncated or corrupt image header ({exc})") from exc
    if image.format not in SUPPORTED_FORMATS:
        raise ImageRejected(
            path,
            "unsupported_format",
            f"{image.format} images are not supported (supported: {', '.join(sorted(SUPPORTED_FORMATS))})",
        )
    width, height = image.size
    if width * height > max_pixels:
        raise ImageRejected(
            path,
            "decompression_bomb",
            f"{width}x{height} = {width * height} pixels exceeds the limit of "
            f"{max_pixels} (possible decompression bomb)",
        )
    if min(width, height) < MIN_SIDE:
        raise ImageRejected(
            path,
            "too_small",
            f"{width}x{height} pixels is smaller than {MIN_SIDE}x{MIN_SIDE}",
        )
    return image


def _to_rgb(path: Path, image: Image.Image) -> tuple[Image.Image, str | None]:
    """Convert a decoded image to 8-bit RGB; return it and the original mode (None if RGB)."""
    mode = image.mode
    if mode == "RGB":
        return image, None
    if mode.startswith("I;16"):
        # Pillow's own I;16 -> L conversion clips at 255, which turns almost every 16-bit
        # photo white; dropping the low byte keeps the full tonal range.
        grey = (np.asarray(image).astype(np.uint16) >> 8).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB"), mode
    if mode in ("I", "F"):
        # 32-bit integer or float samples declare no bit depth (scientific TIFFs, depth
        # maps), so the observed range is stretched to 0..255.
        values = np.asarray(image, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        scale = 255.0 / (high - low) if high > low else 0.0
        grey = np.round((values - low) * scale).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB"), mode
    try:
        if mode in _ALPHA_MODES or "transparency" in image.info:
            canvas = Image.new("RGBA", image.size, (255, 255, 255, 255))
            canvas.alpha_composite(image.convert("RGBA"))
            return canvas.convert("RGB"), mode
        return image.convert("RGB"), mode
    except ValueError as exc:  # a mode Pillow decodes but cannot convert (e.g. "La")
        raise ImageRejected(path, "unsupported_format", f"cannot convert {mode} pixels to RGB ({exc})") from exc
