"""Gold items (images with known answers) read from a YOLO dataset, a COCO JSON or a Label Studio export.

Every reader returns the same records: the image file, its id (the sha256 of its bytes, as
ingestion computes it, so a gold answer meets its image once the pipeline ingests it) and its
boxes in normalised centre xywh under project class names. Every error names the file and,
where there is one, the image, task or line.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image

from labeling_dag.contracts import GOLD_COLUMNS
from labeling_dag.formats.label_studio import ls_percent_to_norm
from labeling_dag.formats.yolo import label_path_for, load_data_yaml, read_yolo_labels
from labeling_dag.ingest import INGESTED_SUFFIXES
from labeling_dag.model_registry import file_sha256
from labeling_dag.records import NormBox
from labeling_dag.review_intake import check_image_ref

_RECTANGLE = "rectanglelabels"
# EXIF orientations that turn the picture a quarter: the displayed (and cleaned) image is transposed.
_QUARTER_TURNS = frozenset({5, 6, 7, 8})


class GoldImportError(ValueError):
    """A gold file that cannot be imported; the message names the file and the problem."""


@dataclass(frozen=True)
class GoldBox:
    """One known box of a gold image, under its project class name."""

    class_name: str
    box: NormBox


@dataclass(frozen=True)
class GoldItem:
    """A gold image: its file, its id (sha256 of the bytes) and its known boxes."""

    image: Path
    image_id: str
    boxes: tuple[GoldBox, ...]


def read_gold(
    path: Path, *, class_names: Sequence[str], class_map: Mapping[str, str], images_root: Path | None = None
) -> list[GoldItem]:
    """The gold items of ``path``: a YOLO ``data.yaml``, a COCO JSON or a Label Studio JSON export.

    Class names are renamed by ``class_map`` and must then be in ``class_names``. COCO file
    names and Label Studio image references are resolved under ``images_root`` (default: the
    file's folder). Items come sorted by image id, one per image (a picture listed twice is
    refused when its answers differ).
    """
    path = Path(path).resolve()
    if not path.is_file():
        raise GoldImportError(f"{path}: gold file does not exist")
    root = Path(images_root).resolve() if images_root else path.parent
    rename = _Renamer(path, class_names, class_map)
    if path.suffix.lower() in (".yaml", ".yml"):
        items = _read_yolo(path, rename)
    elif path.suffix.lower() == ".json":
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise GoldImportError(f"{path}: not valid JSON ({error})") from error
        if isinstance(document, Mapping) and "annotations" in document and "images" in document:
            items = _read_coco(path, document, root, rename)
        elif isinstance(document, list):
            items = _read_label_studio(path, document, root, rename)
        else:
            raise GoldImportError(
                f"{path}: neither a COCO JSON (images, annotations) nor a Label Studio export (a task list)"
            )
    else:
        raise GoldImportError(
            f"{path}: unknown gold format; give a YOLO data.yaml, a COCO JSON or a Label Studio JSON export"
        )
    by_id: dict[str, GoldItem] = {}
    for item in items:
        known = by_id.setdefault(item.image_id, item)
        if set(known.boxes) != set(item.boxes):
            raise GoldImportError(f"{path}: {known.image} and {item.image} are the same picture with different answers")
    return [by_id[image_id] for image_id in sorted(by_id)]


def gold_table(items: Sequence[GoldItem]) -> pd.DataFrame:
    """The gold items' boxes as rows of the pipeline's gold table (``GOLD_COLUMNS``)."""
    rows = [
        {
            "image_id": item.image_id,
            "class_name": box.class_name,
            "x": box.box.x,
            "y": box.box.y,
            "w": box.box.w,
            "h": box.box.h,
        }
        for item in items
        for box in item.boxes
    ]
    return pd.DataFrame(rows, columns=list(GOLD_COLUMNS)).astype(GOLD_COLUMNS)


class _Renamer:
    """Source class name -> project class name, refusing names outside the project."""

    def __init__(self, path: Path, class_names: Sequence[str], class_map: Mapping[str, str]) -> None:
        self.path, self.class_names, self.class_map = path, frozenset(class_names), class_map

    def __call__(self, name: str, where: str) -> str:
        renamed = self.class_map.get(name, name)
        if renamed not in self.class_names:
            raise GoldImportError(
                f"{self.path}: {where}: class {name!r} is not a project class {sorted(self.class_names)} "
                "(map it with --class-map)"
            )
        return renamed


def _item(image: Path, boxes: list[GoldBox]) -> GoldItem:
    return GoldItem(image=image, image_id=file_sha256(image), boxes=tuple(boxes))


def _read_yolo(path: Path, rename: _Renamer) -> list[GoldItem]:
    try:
        spec = load_data_yaml(path)
    except (ValueError, OSError) as error:
        raise GoldImportError(str(error)) from error
    items = []
    for image in _yolo_images(path, (spec.train_images, spec.val_images)):
        label_file = label_path_for(image)
        try:
            rows = read_yolo_labels(label_file) if label_file.exists() else []
        except (ValueError, OSError) as error:
            raise GoldImportError(f"{path}: {error}") from error
        boxes = []
        for class_id, x, y, w, h in rows:
            if class_id >= len(spec.names):
                raise GoldImportError(
                    f"{path}: {label_file}: class id {class_id} but the dataset has {len(spec.names)} classes"
                )
            boxes.append(GoldBox(rename(spec.names[class_id], str(label_file)), NormBox(x, y, w, h)))
        items.append(_item(image, boxes))
    return items


def _yolo_images(path: Path, splits: Sequence[Path]) -> list[Path]:
    """Every image of the dataset's splits (folders or ``.txt`` lists), each once, sorted."""
    images: set[Path] = set()
    for split in dict.fromkeys(splits):
        if split.is_dir():
            images.update(p for p in split.rglob("*") if p.is_file() and p.suffix.lower() in INGESTED_SUFFIXES)
        elif split.is_file() and split.suffix == ".txt":
            listed = [line.strip() for line in split.read_text(encoding="utf-8").splitlines() if line.strip()]
            images.update((split.parent / line).resolve() for line in listed)
        else:
            raise GoldImportError(f"{path}: split {split} does not exist")
    missing = sorted(str(p) for p in images if not p.is_file())
    if missing:
        raise GoldImportError(f"{path}: listed images do not exist: {missing[:5]}")
    return sorted(images)


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


def _read_coco(path: Path, document: Mapping[str, Any], root: Path, rename: _Renamer) -> list[GoldItem]:
    categories = {}
    for category in _list(document, "categories", path):
        category_id, name = _fields(category, ("id", "name"), "category", path)
        categories[category_id] = name
    images: dict[Any, tuple[Path, int, int]] = {}
    for record in _list(document, "images", path):
        image_id, file_name, width, height = _fields(record, ("id", "file_name", "width", "height"), "image", path)
        image = _local_image(file_name, root, path, f"image {image_id}")
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
        boxes[image_id].append(GoldBox(rename(categories[category_id], where), _norm(percent, path, where)))
    return [_item(images[image_id][0], found) for image_id, found in boxes.items()]


def _pct(value: Any, size: int) -> float:
    return float(value) / size * 100.0 if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def _list(document: Mapping[str, Any], key: str, path: Path) -> list[Any]:
    value = document.get(key)
    if not isinstance(value, list):
        raise GoldImportError(f"{path}: '{key}' must be a list, got {type(value).__name__}")
    return value


def _norm(percent: Mapping[str, Any], path: Path, where: str) -> NormBox:
    try:
        return ls_percent_to_norm(percent)
    except ValueError as error:
        raise GoldImportError(f"{path}: {where}: invalid box: {error}") from error


def _local_image(ref: Any, root: Path, path: Path, where: str) -> Path:
    try:
        image = check_image_ref(ref, data_root=root)
    except ValueError as error:
        raise GoldImportError(
            f"{path}: {where}: {error}; gold images must be local files under {root} (--gold-images)"
        ) from error
    if image is None or not image.is_file():
        raise GoldImportError(f"{path}: {where}: image {ref!r} is not a file under {root} (--gold-images)")
    return image


def _read_label_studio(path: Path, tasks: list[Any], root: Path, rename: _Renamer) -> list[GoldItem]:
    items = []
    for index, task in enumerate(tasks):
        where = f"task #{index}" + (f" (id={task['id']!r})" if isinstance(task, Mapping) and "id" in task else "")
        data = task.get("data") if isinstance(task, Mapping) else None
        if not isinstance(data, Mapping):
            raise GoldImportError(f"{path}: {where}: task has no data object")
        image = _local_image(data.get("image"), root, path, where)
        annotations = task.get("annotations")
        if not isinstance(annotations, list) or not all(isinstance(a, Mapping) for a in annotations):
            raise GoldImportError(f"{path}: {where}: annotations must be a list of objects")
        live = [a for a in annotations if not a.get("was_cancelled", False)]
        if not live:
            raise GoldImportError(f"{path}: {where}: no annotation to take as the known answer")
        # The latest annotation is the answer, as for a reviewed batch.
        latest = max(live, key=lambda a: (str(a.get("updated_at") or a.get("created_at") or ""), str(a.get("id", ""))))
        result = latest.get("result")
        if not isinstance(result, list):
            raise GoldImportError(f"{path}: {where}: annotation result must be a list")
        boxes = []
        for region in result:
            if not isinstance(region, Mapping) or region.get("type") != _RECTANGLE:
                continue
            value = region.get("value")
            labels = value.get("rectanglelabels") if isinstance(value, Mapping) else None
            if not isinstance(labels, list) or len(labels) != 1 or not isinstance(labels[0], str):
                raise GoldImportError(f"{path}: {where}: region {region.get('id')!r} must carry exactly one label")
            boxes.append(GoldBox(rename(labels[0], where), _norm(value, path, f"{where} region {region.get('id')!r}")))
        items.append(_item(image, boxes))
    return items
