"""Gold items from a COCO JSON: its images (sizes checked against the files) and their boxes."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from labeling_dag.gold.items import GoldBox, GoldImportError, GoldItem, Renamer, item_of, local_image, norm_box

# EXIF orientations that turn the picture a quarter: the displayed (and cleaned) image is transposed.
_QUARTER_TURNS = frozenset({5, 6, 7, 8})


def read_coco_gold(path: Path, document: Mapping[str, Any], root: Path, rename: Renamer) -> list[GoldItem]:
    categories = {}
    for category in _list(document, "categories", path):
        category_id, name = _fields(category, ("id", "name"), "category", path)
        categories[category_id] = name
    images: dict[Any, tuple[Path, int, int]] = {}
    for record in _list(document, "images", path):
        image_id, file_name, width, height = _fields(record, ("id", "file_name", "width", "height"), "image", path)
        image = local_image(file_name, root, path, f"image {image_id}")
        actual = _image_size(image, path)
        if actual != (width, height):
            raise GoldImportError(
                f"{path}: image {image_id} ({image}) is {actual[0]}x{actual[1]}, the JSON says {width}x{height}"
            )
        images[image_id] = (image, width, height)
    boxes: dict[Any, list[GoldBox]] = {image_id: [] for image_id in images}
    for annotation in _list(document, "annotations", path):
        ann_id, image_id, category_id, bbox = _fields(
            annotation, ("id", "image_id", "category_id", "bbox"), "annotation", path
        )
        where = f"annotation {ann_id}"
        if image_id not in images:
            raise GoldImportError(f"{path}: {where}: unknown image_id {image_id!r}")
        if category_id not in categories:
            raise GoldImportError(f"{path}: {where}: unknown category_id {category_id!r}")
        if annotation.get("iscrowd"):
            raise GoldImportError(f"{path}: {where}: crowd regions (iscrowd=1) are not boxes of one object")
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise GoldImportError(f"{path}: {where}: bbox must be [x, y, width, height], got {bbox!r}")
        _, width, height = images[image_id]
        left, top, box_w, box_h = bbox
        percent = {
            "x": _pct(left, width),
            "y": _pct(top, height),
            "width": _pct(box_w, width),
            "height": _pct(box_h, height),
        }
        boxes[image_id].append(GoldBox(rename(categories[category_id], where), norm_box(percent, path, where)))
    return [item_of(images[image_id][0], found) for image_id, found in boxes.items()]


def _image_size(image: Path, source: Path) -> tuple[int, int]:
    """Width and height of ``image`` as displayed (EXIF orientation applied, as cleaning does)."""
    try:
        with Image.open(image) as opened:
            width, height = opened.size
            orientation = opened.getexif().get(0x0112, 1)
    except OSError as error:
        raise GoldImportError(f"{source}: image {image} cannot be read ({error})") from error
    return (height, width) if orientation in _QUARTER_TURNS else (width, height)


def _fields(record: Any, keys: Sequence[str], what: str, path: Path) -> list[Any]:
    if not isinstance(record, Mapping) or any(key not in record for key in keys):
        raise GoldImportError(f"{path}: {what} must be an object with {', '.join(keys)}, got {record!r:.200}")
    return [record[key] for key in keys]


def _pct(value: Any, size: int) -> float:
    return float(value) / size * 100.0 if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def _list(document: Mapping[str, Any], key: str, path: Path) -> list[Any]:
    value = document.get(key)
    if not isinstance(value, list):
        raise GoldImportError(f"{path}: '{key}' must be a list, got {type(value).__name__}")
    return value
