"""Deterministic synthetic object-detection dataset in the Ultralytics YOLO layout.

The dataset (filled circles, squares and triangles on a textured background) is small
enough to train a YOLOv8n from scratch on a CPU in minutes, which is what the tests,
the demo and the benchmarks need. Layout written by :func:`generate_dataset`::

    OUT_DIR/data.yaml               path: <absolute OUT_DIR>, train: images/train,
                                    val: images/val, names: {0: circle, 1: square, 2: triangle}
    OUT_DIR/images/{train,val}/img_00000.jpg
    OUT_DIR/labels/{train,val}/img_00000.txt   one "class_id xc yc w h" line per box

Two *domains* (:data:`DOMAINS`) share classes and layout: ``target`` shifts ``source``'s
backgrounds, sizes, palette and class mix and adds unlabelled clutter, so that a detector
trained on ``source`` is a realistic but imperfect warm start for a ``target`` pool, as
COCO-pretrained weights are for real data.

The readers of that layout are in :mod:`labeling_dag.formats.yolo`.
"""

from __future__ import annotations

import io
import math
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from PIL import Image, ImageDraw
from tqdm import tqdm

CLASS_NAMES: tuple[str, ...] = ("circle", "square", "triangle")

# Box-overlap limit (intersection over the smaller box): beyond it an earlier shape can be
# hidden so much that its label no longer describes anything visible.
_MAX_OVERLAP = 0.3
_PLACEMENT_TRIES = 30
# Euclidean RGB distance a shape keeps from the background's base colour, so that the
# texture (about +-40) never makes a shape blend in.
_MIN_COLOUR_DISTANCE = 140.0
_COLOUR_TRIES = 32
_JPEG_QUALITY = 90
_PROGRESS_THRESHOLD = 200

# Spawn keys give the split and every image statistically independent streams; an image's
# pixels therefore depend only on (seed, index, domain), not on how many images are generated.
_SPLIT_STREAM = 0
_IMAGE_STREAM = 1
_CLUTTER_STREAM = 2  # appended to an image's key: clutter never changes which shapes are drawn

_SPLITS = ("train", "val")  # the splits generated

# (left, top, right, bottom) in pixels, right/bottom exclusive; paired with its class id.
_PixelBox = tuple[int, int, int, int]
_LabelledBox = tuple[int, _PixelBox]
_GENERATED_NAME = re.compile(r"img_\d+\.(?:jpg|txt)")
# Names tempfile gives our writes (see _atomic_write); left behind only by a killed run.
_STALE_TEMP_NAME = re.compile(r"\.(?:img_\d+\.(?:jpg|txt)|data\.yaml)\..+\.tmp")


@dataclass(frozen=True)
class Domain:
    """How one domain draws its images (see :data:`DOMAINS`); colours are RGB, 0-255 per channel."""

    class_weights: tuple[float, float, float]  # circle, square, triangle
    size_range: tuple[float, float]  # shape extent as a fraction of the image side
    max_shapes: int  # each image has 1..max_shapes labelled shapes (fewer when they do not fit)
    background_low: tuple[float, float, float]  # the base colour is uniform in [low, high]
    background_high: tuple[float, float, float]
    blotch_sigma: float  # smooth texture strength
    grain_sigma: float  # per-pixel texture strength
    gradient: float  # brightness change along an image side (a ramp in a random direction); 0 = none
    palette_low: tuple[float, float, float]  # shape and clutter colours are uniform in [low, high]
    palette_high: tuple[float, float, float]
    max_distractors: int  # each image has 0..max_distractors unlabelled clutter items
    stream: tuple[int, ...]  # appended to the image's spawn key: own random streams per domain


_FULL_RANGE = ((0.0, 0.0, 0.0), (255.0, 255.0, 255.0))
DOMAINS: dict[str, Domain] = {
    # Frozen: tests and benchmarks pin its bytes. Mildly imbalanced so that rare-class handling has work.
    "source": Domain(
        class_weights=(0.5, 0.3, 0.2),
        size_range=(0.12, 0.40),
        max_shapes=4,
        background_low=_FULL_RANGE[0],
        background_high=_FULL_RANGE[1],
        blotch_sigma=18.0,
        grain_sigma=10.0,
        gradient=0.0,
        palette_low=_FULL_RANGE[0],
        palette_high=_FULL_RANGE[1],
        max_distractors=0,
        stream=(),
    ),
    # Dark, cold, unevenly lit backgrounds; smaller warm shapes, triangles first; clutter.
    "target": Domain(
        class_weights=(0.2, 0.3, 0.5),
        size_range=(0.08, 0.28),
        max_shapes=6,
        background_low=(0.0, 15.0, 40.0),
        background_high=(60.0, 90.0, 130.0),
        blotch_sigma=28.0,
        grain_sigma=5.0,
        gradient=60.0,
        palette_low=(150.0, 60.0, 0.0),
        palette_high=(255.0, 230.0, 130.0),
        max_distractors=3,
        stream=(1,),
    ),
}


def generate_dataset(
    out_dir: str | Path,
    *,
    images: int = 300,
    seed: int = 0,
    imgsz: int = 160,
    val_fraction: float = 0.2,
    domain: str = "source",
) -> Path:
    """Write a synthetic YOLO detection dataset to ``out_dir`` and return its data.yaml path.

    Each image is an ``imgsz`` x ``imgsz`` RGB JPEG (quality 90) holding filled shapes on a
    noisy background; its label file has one ``"class_id xc yc w h"`` line per shape,
    normalised to [0, 1] with 6 decimals, the box being the tight box of the drawn pixels
    (the whole shape, also where a later shape partly covers it). A ``source`` image has 1-4
    shapes (class weights circle 0.5 / square 0.3 / triangle 0.2, extent 12-40 % of the side).
    ``target`` (see :data:`DOMAINS`) shifts background, sizes, palette and class mix and adds
    unlabelled clutter, so that a model trained on ``source`` is an imperfect warm start there.

    ``images`` counts train and val together; val gets ``round(images * val_fraction)``
    images (Python rounding), at least 1 when ``images >= 2`` and never all of them. Files
    are named ``img_<global index>.jpg`` (zero-padded to 5 digits or more); which indices
    go to val is drawn from ``seed``.

    The same arguments give byte-identical files (with the same Pillow/libjpeg build); an
    image's pixels depend only on ``(seed, index, domain)``.
    Every file is written to a temporary name and renamed into place, and data.yaml is
    removed first and written last, so a run that dies part-way leaves no data.yaml. This
    guards against the process dying, not against power loss (nothing is fsynced).
    Re-running into an existing dataset overwrites it and removes generated images and
    labels (``img_*``) and Ultralytics label caches that the new set does not contain;
    other files in ``out_dir`` are left alone.

    Raises:
        ValueError: if ``images < 1``, ``seed < 0``, ``imgsz < 32``, ``val_fraction``
            is outside ``[0, 1)`` or ``domain`` is not in :data:`DOMAINS`.
    """
    if images < 1:
        raise ValueError(f"images must be >= 1, got {images}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if imgsz < 32:
        raise ValueError(f"imgsz must be >= 32, got {imgsz}")
    if not 0 <= val_fraction < 1:  # also rejects NaN
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}, known: {', '.join(DOMAINS)}")

    root = Path(out_dir).resolve()
    yaml_path = root / "data.yaml"
    # Removed before anything else so that no data.yaml ever describes a half-rewritten set.
    yaml_path.unlink(missing_ok=True)
    for split in _SPLITS:
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)

    val_indices = _val_indices(images, seed, val_fraction)
    width = max(5, len(str(images - 1)))
    written: set[Path] = set()
    for index in tqdm(
        range(images),
        desc="sample images",
        unit="img",
        disable=True if images <= _PROGRESS_THRESHOLD else None,
    ):
        split = "val" if index in val_indices else "train"
        stem = f"img_{index:0{width}d}"
        image, boxes = _render_image(seed, index, imgsz, DOMAINS[domain])
        image_path = root / "images" / split / f"{stem}.jpg"
        label_path = root / "labels" / split / f"{stem}.txt"
        _atomic_write(image_path, _encode_jpeg(image))
        _atomic_write(label_path, _format_labels(boxes, imgsz).encode("ascii"))
        written.update((image_path, label_path))

    _remove_stale(root, written)
    _atomic_write(yaml_path, _data_yaml_text(root).encode("utf-8"))
    return yaml_path


def _val_indices(images: int, seed: int, val_fraction: float) -> frozenset[int]:
    """The global indices that go to the val split."""
    n_val = round(images * val_fraction)
    if images >= 2:
        n_val = min(max(n_val, 1), images - 1)  # both splits must be usable for training
    else:
        n_val = 0  # a lone image is more use for training than for validation
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_SPLIT_STREAM,)))
    return frozenset(int(index) for index in rng.permutation(images)[:n_val])


def _render_image(seed: int, index: int, imgsz: int, domain: Domain) -> tuple[Image.Image, list[_LabelledBox]]:
    """Draw image ``index`` for ``seed`` in ``domain``.

    Returns the RGB image and its boxes as ``(class_id, (left, top, right, bottom))`` in
    pixels, right/bottom exclusive, in drawing order.
    """
    key = (_IMAGE_STREAM, index, *domain.stream)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))
    base_colour = rng.uniform(domain.background_low, domain.background_high, size=3)
    pixels = base_colour + _texture(rng, imgsz, domain)
    if domain.max_distractors:
        # Under the shapes, so that every labelled shape stays whole.
        clutter_rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(*key, _CLUTTER_STREAM)))
        _draw_clutter(clutter_rng, pixels, base_colour, domain)

    boxes: list[_LabelledBox] = []
    for _ in range(int(rng.integers(1, domain.max_shapes + 1))):
        class_id = int(rng.choice(len(CLASS_NAMES), p=domain.class_weights))
        mask = _place_shape(rng, class_id, imgsz, domain, [box for _, box in boxes])
        if mask is None:
            continue
        pixels[mask] = _contrasting_colour(rng, base_colour, domain)
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        boxes.append((class_id, (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)))

    # Sensor-like noise over the shapes too, so that they are not perfectly flat.
    pixels += rng.normal(0.0, 6.0, size=pixels.shape)
    image = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))
    return image, boxes


def _texture(rng: np.random.Generator, imgsz: int, domain: Domain) -> np.ndarray:
    """Zero-mean background texture, float array of shape (imgsz, imgsz, 3).

    Smooth blotches (a coarse random grid upsampled bilinearly) plus per-pixel noise:
    enough that a detector has to learn shapes, not "anything that is not the background";
    plus the domain's lighting gradient, if any.
    """
    grid = int(rng.integers(3, 9))
    coarse = rng.normal(0.0, domain.blotch_sigma, size=(3, grid, grid)).astype(np.float32)
    smooth = np.stack(
        [np.asarray(Image.fromarray(channel).resize((imgsz, imgsz), Image.Resampling.BILINEAR)) for channel in coarse],
        axis=-1,
    ).astype(np.float64)
    texture = smooth + rng.normal(0.0, domain.grain_sigma, size=(imgsz, imgsz, 3))
    if domain.gradient:  # uneven lighting: a linear brightness ramp in a random direction
        angle = rng.uniform(0.0, 2 * math.pi)
        along = (np.arange(imgsz) / (imgsz - 1) - 0.5) * domain.gradient
        texture += (math.cos(angle) * along[np.newaxis, :] + math.sin(angle) * along[:, np.newaxis])[..., np.newaxis]
    return texture


def _draw_clutter(rng: np.random.Generator, pixels: np.ndarray, base_colour: np.ndarray, domain: Domain) -> None:
    """Paint up to max_distractors unlabelled lines, rings and square outlines (false-positive bait)."""
    imgsz = pixels.shape[0]
    width = max(1, round(imgsz / 100))
    for _ in range(int(rng.integers(0, domain.max_distractors + 1))):
        mask_image = Image.new("L", (imgsz, imgsz), 0)
        draw = ImageDraw.Draw(mask_image)
        kind = int(rng.integers(3))
        if kind == 0:
            draw.line([tuple(point) for point in rng.uniform(0, imgsz - 1, size=(2, 2))], fill=255, width=width)
        else:
            # At least 4 line widths, so that a ring or outline is visibly hollow, never a filled shape.
            radius = max(rng.uniform(*domain.size_range) * imgsz / 2, 4.0 * width)
            cx, cy = rng.uniform(radius + 1, imgsz - radius - 2, size=2)
            corners = [cx - radius, cy - radius, cx + radius, cy + radius]
            (draw.ellipse if kind == 1 else draw.rectangle)(corners, outline=255, width=width)
        pixels[np.asarray(mask_image) > 0] = _contrasting_colour(rng, base_colour, domain)


def _place_shape(
    rng: np.random.Generator, class_id: int, imgsz: int, domain: Domain, taken: list[_PixelBox]
) -> np.ndarray | None:
    """Boolean (imgsz, imgsz) mask of a new shape inside the image, or None if none fits.

    A placement is rejected when its box overlaps an existing box by more than
    _MAX_OVERLAP of the smaller one.
    """
    for _ in range(_PLACEMENT_TRIES):
        radius = rng.uniform(*domain.size_range) * imgsz / 2
        if CLASS_NAMES[class_id] == "triangle":
            # A triangle in a circle fills less of it; enlarging keeps its box comparable.
            radius *= 1.15
        # Margins keep every drawn pixel (PIL includes the end coordinate) inside the image.
        cx, cy = rng.uniform(radius + 1, imgsz - radius - 2, size=2)
        rotation = rng.uniform(0.0, 2 * math.pi)

        mask_image = Image.new("L", (imgsz, imgsz), 0)
        draw = ImageDraw.Draw(mask_image)
        corners = [cx - radius, cy - radius, cx + radius, cy + radius]
        if CLASS_NAMES[class_id] == "circle":
            draw.ellipse(corners, fill=255)
        elif CLASS_NAMES[class_id] == "square":
            draw.rectangle(corners, fill=255)
        else:
            angles = rotation + np.arange(3) * 2 * math.pi / 3
            vertices = list(zip(cx + radius * np.cos(angles), cy + radius * np.sin(angles)))
            draw.polygon(vertices, fill=255)

        left, top, right, bottom = mask_image.getbbox()
        if all(_overlap((left, top, right, bottom), other) <= _MAX_OVERLAP for other in taken):
            return np.asarray(mask_image) > 0
    return None


def _overlap(a: _PixelBox, b: _PixelBox) -> float:
    """Intersection area of two (left, top, right, bottom) boxes over the smaller box's area."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return width * height / smaller


def _contrasting_colour(rng: np.random.Generator, background: np.ndarray, domain: Domain) -> np.ndarray:
    """A random RGB colour (shape (3,)) of the domain's palette at least _MIN_COLOUR_DISTANCE from ``background``."""
    for _ in range(_COLOUR_TRIES):
        colour = rng.uniform(domain.palette_low, domain.palette_high, size=3)
        if np.linalg.norm(colour - background) >= _MIN_COLOUR_DISTANCE:
            return colour
    # The farthest RGB corner is always >= 255 * sqrt(3) / 2 ~ 221 away.
    return np.where(background < 127.5, 255.0, 0.0)


def _format_labels(boxes: list[_LabelledBox], imgsz: int) -> str:
    """YOLO label text for pixel boxes of an ``imgsz`` square image: one ``class xc yc w h`` line each."""
    lines = []
    for class_id, (left, top, right, bottom) in boxes:
        xc, yc = (left + right) / 2 / imgsz, (top + bottom) / 2 / imgsz
        w, h = (right - left) / imgsz, (bottom - top) / imgsz
        lines.append(f"{class_id} {xc:.6f} {yc:.6f} {w:.6f} {h:.6f}\n")
    return "".join(lines)


def _encode_jpeg(image: Image.Image) -> bytes:
    """JPEG bytes at a fixed quality, so that output depends on the pixels alone."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=_JPEG_QUALITY)
    return buffer.getvalue()


def _data_yaml_text(root: Path) -> str:
    """The data.yaml text for a dataset generated at absolute ``root``."""
    spec = {
        "path": str(root),
        "train": "images/train",
        "val": "images/val",
        "names": dict(enumerate(CLASS_NAMES)),
    }
    return yaml.safe_dump(spec, sort_keys=False)


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def _remove_stale(root: Path, keep: set[Path]) -> None:
    """Delete generated files under ``root`` that this run did not write.

    Only names this module produces are touched: ``img_*`` images/labels of an earlier,
    larger or differently split run, temp files of a killed run, and Ultralytics' label
    caches, which could otherwise describe the previous labels.
    """
    for kind in ("images", "labels"):
        for split in _SPLITS:
            for entry in (root / kind / split).iterdir():
                stale_output = _GENERATED_NAME.fullmatch(entry.name) and entry not in keep
                if (stale_output or _STALE_TEMP_NAME.fullmatch(entry.name)) and entry.is_file():
                    entry.unlink()
    for split in _SPLITS:
        # Where Ultralytics caches parsed labels: labels/<split> -> labels/<split>.cache.
        (root / "labels" / f"{split}.cache").unlink(missing_ok=True)
    for entry in root.iterdir():
        if _STALE_TEMP_NAME.fullmatch(entry.name) and entry.is_file():
            entry.unlink()
