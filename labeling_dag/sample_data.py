"""Deterministic synthetic object-detection dataset in the Ultralytics YOLO layout.

The dataset (filled circles, squares and triangles on a textured background) is small
enough to train a YOLOv8n from scratch on a CPU in minutes, which is what the tests,
the demo and the benchmarks need. Layout written by :func:`generate_dataset`::

    OUT_DIR/data.yaml               path: <absolute OUT_DIR>, train: images/train,
                                    val: images/val, names: {0: circle, 1: square, 2: triangle}
    OUT_DIR/images/{train,val}/img_00000.jpg
    OUT_DIR/labels/{train,val}/img_00000.txt   one "class_id xc yc w h" line per box

Also here: readers for that format (:func:`read_yolo_labels`, :func:`load_data_yaml`)
and the Ultralytics image → label path convention (:func:`label_path_for`).
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

# Mildly imbalanced on purpose so that rare-class handling has something to act on.
_CLASS_WEIGHTS = (0.5, 0.3, 0.2)
_SHAPE_SIZE_RANGE = (0.12, 0.40)  # shape extent as a fraction of the image side
_MAX_SHAPES = 4
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
# pixels therefore depend only on (seed, index), not on how many images are generated.
_SPLIT_STREAM = 0
_IMAGE_STREAM = 1

_SPLITS = ("train", "val")

# (left, top, right, bottom) in pixels, right/bottom exclusive; paired with its class id.
_PixelBox = tuple[int, int, int, int]
_LabelledBox = tuple[int, _PixelBox]
_GENERATED_NAME = re.compile(r"img_\d+\.(?:jpg|txt)")
# Names tempfile gives our writes (see _atomic_write); left behind only by a killed run.
_STALE_TEMP_NAME = re.compile(r"\.(?:img_\d+\.(?:jpg|txt)|data\.yaml)\..+\.tmp")


@dataclass(frozen=True)
class DatasetSpec:
    """A YOLO dataset as described by its data.yaml, with every path absolute.

    ``train_images`` / ``val_images`` are what the yaml names: usually image folders,
    but Ultralytics also allows a .txt file listing images. ``names[i]`` is class ``i``.
    """

    root: Path
    train_images: Path
    val_images: Path
    names: tuple[str, ...]


def generate_dataset(
    out_dir: str | Path,
    *,
    images: int = 300,
    seed: int = 0,
    imgsz: int = 160,
    val_fraction: float = 0.2,
) -> Path:
    """Write a synthetic YOLO detection dataset to ``out_dir`` and return its data.yaml path.

    Each image is an ``imgsz`` x ``imgsz`` RGB JPEG (quality 90) holding 1-4 filled shapes
    (class weights circle 0.5 / square 0.3 / triangle 0.2, extent 12-40 % of the side) on
    a noisy background; its label file has one ``"class_id xc yc w h"`` line per shape,
    normalised to [0, 1] with 6 decimals, the box being the tight box of the drawn pixels
    (the whole shape, also where a later shape partly covers it).

    ``images`` counts train and val together; val gets ``round(images * val_fraction)``
    images (Python rounding), at least 1 when ``images >= 2`` and never all of them. Files
    are named ``img_<global index>.jpg`` (zero-padded to 5 digits or more); which indices
    go to val is drawn from ``seed``.

    The same arguments give byte-identical files (with the same Pillow/libjpeg build).
    Every file is written to a temporary name and renamed into place, and data.yaml is
    removed first and written last, so a run that dies part-way leaves no data.yaml. This
    guards against the process dying, not against power loss (nothing is fsynced).
    Re-running into an existing dataset overwrites it and removes generated images and
    labels (``img_*``) and Ultralytics label caches that the new set does not contain;
    other files in ``out_dir`` are left alone.

    Raises:
        ValueError: if ``images < 1``, ``seed < 0``, ``imgsz < 32`` or ``val_fraction``
            is outside ``[0, 1)``.
    """
    if images < 1:
        raise ValueError(f"images must be >= 1, got {images}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if imgsz < 32:
        raise ValueError(f"imgsz must be >= 32, got {imgsz}")
    if not 0 <= val_fraction < 1:  # also rejects NaN
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")

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
        image, boxes = _render_image(seed, index, imgsz)
        image_path = root / "images" / split / f"{stem}.jpg"
        label_path = root / "labels" / split / f"{stem}.txt"
        _atomic_write(image_path, _encode_jpeg(image))
        _atomic_write(label_path, _format_labels(boxes, imgsz).encode("ascii"))
        written.update((image_path, label_path))

    _remove_stale(root, written)
    _atomic_write(yaml_path, _data_yaml_text(root).encode("utf-8"))
    return yaml_path


def read_yolo_labels(label_file: Path) -> list[tuple[int, float, float, float, float]]:
    """Parse one YOLO detection label file into ``(class_id, xc, yc, w, h)`` tuples.

    Each non-blank line must be ``class_id xc yc w h``: a non-negative integer class id
    and four finite floats in [0, 1] (box centre and size, normalised to the image), with
    ``w`` and ``h`` > 0. Blank lines are skipped; an empty file is an image without boxes
    and gives ``[]``. Segment lines (more than 5 fields) are not accepted.

    Raises:
        ValueError: on a malformed line; the message starts with ``<file>:<line number>:``.
        OSError: if the file cannot be read.
    """
    label_file = Path(label_file)
    boxes: list[tuple[int, float, float, float, float]] = []
    for lineno, line in enumerate(label_file.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{label_file}:{lineno}"
        if len(fields) != 5:
            raise ValueError(f"{where}: expected 'class_id xc yc w h' (5 fields), got {line.strip()!r}")
        try:
            class_id = int(fields[0])
        except ValueError:
            raise ValueError(f"{where}: class id must be an integer, got {fields[0]!r}") from None
        if class_id < 0:
            raise ValueError(f"{where}: class id must be >= 0, got {class_id}")
        try:
            xc, yc, w, h = (float(field) for field in fields[1:])
        except ValueError:
            raise ValueError(f"{where}: box values must be numbers, got {line.strip()!r}") from None
        if not all(0.0 <= value <= 1.0 for value in (xc, yc, w, h)):  # also rejects NaN
            raise ValueError(f"{where}: box values must be normalised to [0, 1], got {line.strip()!r}")
        if w <= 0.0 or h <= 0.0:
            raise ValueError(f"{where}: box width and height must be > 0, got {line.strip()!r}")
        boxes.append((class_id, xc, yc, w, h))
    return boxes


def load_data_yaml(path: str | Path) -> DatasetSpec:
    """Read an Ultralytics data.yaml into a :class:`DatasetSpec` with absolute paths.

    The dataset root is ``path:`` when given, else the yaml's folder; ``train:`` and
    ``val:`` (single strings) are resolved against that root, as Ultralytics does.
    ``names`` may be a list or a ``{index: name}`` mapping with indices 0..n-1.

    Differences from Ultralytics, chosen so the result does not depend on the working
    directory or on Ultralytics' settings: a relative ``path:`` is resolved against the
    yaml's folder (Ultralytics uses the working directory, then its DATASETS_DIR); there
    is no ``../`` retry, no ``validation:`` alias and no ``nc:``-only form; nothing is
    checked to exist.

    Raises:
        ValueError: if the yaml is not a mapping, ``train``/``val`` is missing or not a
            string, or ``names`` is missing or malformed.
        OSError: if the file cannot be read.
    """
    yaml_file = Path(path).resolve()
    try:
        data = yaml.safe_load(yaml_file.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ValueError(f"{yaml_file}: not valid YAML ({error})") from error
    if not isinstance(data, dict):
        raise ValueError(f"{yaml_file}: expected a YAML mapping, got {type(data).__name__}")

    root = yaml_file.parent
    if data.get("path"):
        root = (yaml_file.parent / str(data["path"])).resolve()  # an absolute path wins the join

    splits: dict[str, Path] = {}
    for key in _SPLITS:
        value = data.get(key)
        if not isinstance(value, str) or not value:
            raise ValueError(f"{yaml_file}: '{key}:' must be a non-empty string path, got {value!r}")
        splits[key] = (root / value).resolve()

    return DatasetSpec(
        root=root,
        train_images=splits["train"],
        val_images=splits["val"],
        names=_parse_names(data.get("names"), yaml_file),
    )


def label_path_for(image_path: Path) -> Path:
    """Map ``.../images/<split>/x.jpg`` to ``.../labels/<split>/x.txt`` (Ultralytics convention).

    The last ``images`` folder in the path becomes ``labels`` and the suffix becomes
    ``.txt``. Unlike Ultralytics' string replace, a relative path starting with
    ``images/`` is handled too.

    Raises:
        ValueError: if no folder in the path is named ``images``.
    """
    image_path = Path(image_path)
    folders = image_path.parts[:-1]
    for position in range(len(folders) - 1, -1, -1):
        if folders[position] == "images":
            parts = (*folders[:position], "labels", *folders[position + 1 :], image_path.name)
            return Path(*parts).with_suffix(".txt")
    raise ValueError(f"{image_path}: no 'images' folder in the path to map to 'labels'")


def _parse_names(names: object, yaml_file: Path) -> tuple[str, ...]:
    """Class names from a data.yaml ``names`` value (list, or mapping with keys 0..n-1)."""
    if isinstance(names, list):
        values = names
    elif isinstance(names, dict):
        try:
            by_index = {int(key): value for key, value in names.items()}
        except (TypeError, ValueError):
            raise ValueError(f"{yaml_file}: 'names:' keys must be class indices, got {list(names)}") from None
        if sorted(by_index) != list(range(len(by_index))):
            raise ValueError(
                f"{yaml_file}: 'names:' indices must be 0..{len(by_index) - 1}, got {sorted(by_index)}"
            )
        values = [by_index[index] for index in range(len(by_index))]
    else:
        raise ValueError(f"{yaml_file}: 'names:' must be a list or an index -> name mapping, got {names!r}")
    if not values:
        raise ValueError(f"{yaml_file}: 'names:' is empty")
    # YAML turns names such as `yes` or `1` into bool/int; they are still names.
    return tuple(str(value) for value in values)


def _val_indices(images: int, seed: int, val_fraction: float) -> frozenset[int]:
    """The global indices that go to the val split."""
    n_val = round(images * val_fraction)
    if images >= 2:
        n_val = min(max(n_val, 1), images - 1)  # both splits must be usable for training
    else:
        n_val = 0  # a lone image is more use for training than for validation
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_SPLIT_STREAM,)))
    return frozenset(int(index) for index in rng.permutation(images)[:n_val])


def _render_image(seed: int, index: int, imgsz: int) -> tuple[Image.Image, list[_LabelledBox]]:
    """Draw image ``index`` for ``seed``.

    Returns the RGB image and its boxes as ``(class_id, (left, top, right, bottom))`` in
    pixels, right/bottom exclusive, in drawing order.
    """
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_IMAGE_STREAM, index)))
    base_colour = rng.uniform(0, 255, size=3)
    pixels = base_colour + _texture(rng, imgsz)

    boxes: list[_LabelledBox] = []
    for _ in range(int(rng.integers(1, _MAX_SHAPES + 1))):
        class_id = int(rng.choice(len(CLASS_NAMES), p=_CLASS_WEIGHTS))
        mask = _place_shape(rng, class_id, imgsz, [box for _, box in boxes])
        if mask is None:
            continue
        pixels[mask] = _contrasting_colour(rng, base_colour)
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        boxes.append((class_id, (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)))

    # Sensor-like noise over the shapes too, so that they are not perfectly flat.
    pixels += rng.normal(0.0, 6.0, size=pixels.shape)
    image = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))
    return image, boxes


def _texture(rng: np.random.Generator, imgsz: int) -> np.ndarray:
    """Zero-mean background texture, float array of shape (imgsz, imgsz, 3).

    Smooth blotches (a coarse random grid upsampled bilinearly) plus per-pixel noise:
    enough that a detector has to learn shapes, not "anything that is not the background".
    """
    grid = int(rng.integers(3, 9))
    coarse = rng.normal(0.0, 18.0, size=(3, grid, grid)).astype(np.float32)
    smooth = np.stack(
        [
            np.asarray(Image.fromarray(channel).resize((imgsz, imgsz), Image.Resampling.BILINEAR))
            for channel in coarse
        ],
        axis=-1,
    ).astype(np.float64)
    return smooth + rng.normal(0.0, 10.0, size=(imgsz, imgsz, 3))


def _place_shape(
    rng: np.random.Generator, class_id: int, imgsz: int, taken: list[_PixelBox]
) -> np.ndarray | None:
    """Boolean (imgsz, imgsz) mask of a new shape inside the image, or None if none fits.

    A placement is rejected when its box overlaps an existing box by more than
    _MAX_OVERLAP of the smaller one.
    """
    for _ in range(_PLACEMENT_TRIES):
        radius = rng.uniform(*_SHAPE_SIZE_RANGE) * imgsz / 2
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


def _contrasting_colour(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """A random RGB colour (shape (3,)) at least _MIN_COLOUR_DISTANCE from ``background``."""
    for _ in range(_COLOUR_TRIES):
        colour = rng.uniform(0, 255, size=3)
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
