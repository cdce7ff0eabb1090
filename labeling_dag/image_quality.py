"""Decode, normalise and score raw images for the ``cleaned_images`` asset.

Everything here is a pure function of a path, a decoded image or a list of hashes, so the
asset (which decides what to keep, log and store) can be tested without Dagster.

Decoding (:func:`load_image`, :func:`inspect_image`) turns every way a scraped or uploaded
file can be unusable into one exception, :class:`ImageRejected`, whose ``reason`` is a short
machine code the asset can count and whose message names the file. Images that decode are
returned as 8-bit RGB with their EXIF orientation applied, because that is what annotators
see in the labelling tool and what box coordinates refer to.

Scoring: a 64-bit perceptual hash (pHash) for near-duplicate detection, the variance of the
Laplacian for blur and RMS contrast for washed-out images.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from math import isqrt
from pathlib import Path
from typing import BinaryIO, Literal

import cv2
import imagehash
import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

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

RejectReason = Literal[
    "unreadable",  # the file could not be opened (missing, a directory, no permission)
    "zero_byte",
    "not_an_image",  # no image format recognises the content (HTML, random bytes)
    "unsupported_format",  # a real image in a format we do not label (GIF, ICO, ...)
    "decompression_bomb",
    "too_small",
    "truncated",  # a recognised format whose data ends early or is corrupt
    # Texts (labeling_dag.text_cleaning):
    "empty",  # no characters but whitespace, a 0-byte file included
    "not_utf8",  # bytes that are not valid UTF-8
    "binary",  # a NUL byte or a high share of control characters
    "too_long",  # more characters than text_cleaning.MAX_TEXT_CHARS
]

# Colour modes whose alpha channel must be flattened rather than dropped: dropping it
# exposes whatever colour the encoder left under transparent pixels (often black).
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "PA"})

# EXIF orientations 2..8 each need a flip and/or rotation; 1 is upright and any other
# value is invalid and ignored, as ImageOps.exif_transpose does.
_TRANSPOSED_ORIENTATIONS = frozenset(range(2, 9))

# Upper bound on the elements of one (rows x columns x words) XOR block in
# find_near_duplicates: 4 Mi uint64 = 32 MiB, whatever the number of hashes.
_BLOCK_ELEMENTS = 1 << 22


class ImageRejected(Exception):
    """An image file that cannot be used, with a machine-readable ``reason``.

    ``str(exc)`` is ``"{path}: {problem}"`` so a log line names the file.
    """

    def __init__(self, path: Path, reason: RejectReason, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.reason: RejectReason = reason
        self.problem = problem

    def __reduce__(self) -> tuple[type[ImageRejected], tuple[Path, RejectReason, str]]:
        # Exceptions pickle as cls(*self.args); ours takes different arguments, and Dagster
        # may pickle errors across process boundaries.
        return (type(self), (self.path, self.reason, self.problem))


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


def load_image(path: Path, *, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode ``path`` fully into an upright 8-bit RGB image.

    The whole file is decoded (so truncation is detected here, not later), the EXIF
    orientation is applied, and other modes are converted to RGB: transparency is
    composited onto white, 16-bit grey is scaled by 1/256, CMYK and palettes are converted.
    The returned image does not depend on the file staying open or in place.

    Raises:
        ImageRejected: for every reason the file cannot be used (see ``RejectReason``).
    """
    image, _, _ = _decode(path, max_pixels)
    return image


def inspect_image(path: Path, *, max_pixels: int = MAX_PIXELS) -> tuple[Image.Image, InspectedImage]:
    """Decode ``path`` as :func:`load_image` does and measure it.

    Returns:
        The upright RGB image and its :class:`InspectedImage` (sizes are of that image).

    Raises:
        ImageRejected: for every reason the file cannot be used (see ``RejectReason``).
    """
    image, converted_mode, exif_transposed = _decode(path, max_pixels)
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


def phash_distance(a: str, b: str) -> int:
    """Hamming distance in bits between two hex hashes of equal length (0 = identical)."""
    first, second = _hash_bytes(a), _hash_bytes(b)
    if len(first) != len(second):
        raise ValueError(f"hashes differ in length: {a!r} vs {b!r}")
    return (int.from_bytes(first) ^ int.from_bytes(second)).bit_count()


def find_near_duplicates(
    phashes: Sequence[str], *, max_distance: int = 6, reference: Sequence[str] = ()
) -> list[int | None]:
    """Greedy near-duplicate detection over perceptual hashes.

    Hashes are indexed in the concatenation ``[*reference, *phashes]``: reference hash
    ``k`` has index ``k`` and ``phashes[i]`` has index ``len(reference) + i``. Reference
    hashes (e.g. images already in the dataset) are always kept. ``phashes`` are visited
    in order and each one is a duplicate when it lies within ``max_distance`` bits of a
    *kept* hash with a smaller index; otherwise it is kept itself. Comparing only against
    kept hashes means every duplicate points at an image that survives deduplication, and
    a chain of small edits (A, then B near A, then C near B but far from A) keeps C.
    Cost is O(N * (R + N)) bit comparisons, vectorised in blocks of bounded memory
    (about 1 s for 30 000 64-bit hashes).

    Args:
        phashes: N hex hashes of equal length, in priority order (earlier wins).
        max_distance: largest Hamming distance, in bits, that counts as a duplicate.
        reference: R hex hashes of the same length, already kept.

    Returns:
        A list of length N: for each of ``phashes``, the smallest index (into
        reference + phashes) of a kept hash it duplicates, or None when it is kept.

    Raises:
        ValueError: for a negative ``max_distance`` or hashes that are not hex strings
            of one common length.
    """
    if max_distance < 0:
        raise ValueError(f"max_distance must be >= 0, got {max_distance}")
    if not phashes:
        return []
    n_reference = len(reference)
    words = _pack_hashes([*reference, *phashes])  # (R + N, W) uint64
    n_total, n_words = words.shape
    kept = np.zeros(n_total, dtype=bool)
    kept[:n_reference] = True
    # Rows per block: bound both the block x kept XOR and the block x block one.
    max_rows = max(1, isqrt(_BLOCK_ELEMENTS // n_words))
    duplicate_of: list[int | None] = []
    start = n_reference
    while start < n_total:
        kept_before = np.flatnonzero(kept[:start])
        n_rows = max(1, _BLOCK_ELEMENTS // (n_words * max(1, kept_before.size)))
        stop = min(start + min(n_rows, max_rows), n_total)
        block = words[start:stop]
        # Matches among hashes settled before this block: argmax finds the first True,
        # i.e. the smallest kept index; -1 marks rows with no match there.
        prior_match = np.full(stop - start, -1, dtype=np.int64)
        if kept_before.size:
            hits = _hamming(block, words[kept_before]) <= max_distance
            first_hit = hits.argmax(axis=1)
            found = hits[np.arange(stop - start), first_hit]
            prior_match[found] = kept_before[first_hit[found]]
        # Within the block, whether an earlier row is kept depends on the rows before it,
        # so this part is sequential; each step is still a vector over the block.
        inner_hits = _hamming(block, block) <= max_distance
        for row in range(stop - start):
            if prior_match[row] >= 0:
                duplicate_of.append(int(prior_match[row]))
                continue
            candidates = np.flatnonzero(inner_hits[row, :row] & kept[start : start + row])
            if candidates.size:
                duplicate_of.append(start + int(candidates[0]))
            else:
                kept[start + row] = True
                duplicate_of.append(None)
        start = stop
    return duplicate_of


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


def _decode(path: Path, max_pixels: int) -> tuple[Image.Image, str | None, bool]:
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


def _hash_bytes(hex_hash: str) -> bytes:
    """Bytes of a hex hash; rejects empty, odd-length and non-hex strings."""
    if not hex_hash or len(hex_hash) % 2:
        raise ValueError(f"not a hex hash of whole bytes: {hex_hash!r}")
    try:
        return bytes.fromhex(hex_hash)
    except ValueError as exc:
        raise ValueError(f"not a hex hash: {hex_hash!r}") from exc


def _pack_hashes(hex_hashes: Sequence[str]) -> np.ndarray:
    """Pack M equal-length hex hashes into an (M, W) uint64 array, zero-padded to words."""
    raw = [_hash_bytes(h) for h in hex_hashes]
    n_bytes = len(raw[0])
    if any(len(r) != n_bytes for r in raw):
        lengths = sorted({len(h) for h in hex_hashes})
        raise ValueError(f"hashes must all have the same length, got lengths {lengths}")
    n_words = -(-n_bytes // 8)
    padded = np.zeros((len(raw), n_words * 8), dtype=np.uint8)
    padded[:, :n_bytes] = np.frombuffer(b"".join(raw), dtype=np.uint8).reshape(-1, n_bytes)
    return padded.view(np.uint64)


def _hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise Hamming distances between (A, W) and (B, W) packed hashes, shape (A, B)."""
    return np.bitwise_count(a[:, None, :] ^ b[None, :, :]).sum(axis=2, dtype=np.uint32)
