"""Gold items from a YOLO dataset: every image of its splits with the boxes of its label file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from labeling_dag.formats.yolo import label_path_for, load_data_yaml, read_yolo_labels
from labeling_dag.gold.items import GoldBox, GoldImportError, GoldItem, Renamer, item_of
from labeling_dag.ingest import INGESTED_SUFFIXES
from labeling_dag.records import NormBox


def read_yolo_gold(path: Path, rename: Renamer, suffixes: tuple[str, ...] = INGESTED_SUFFIXES) -> list[GoldItem]:
    """Every item file of the dataset's splits (``suffixes``: images, or a text dataset's ``.txt``)."""
    try:
        spec = load_data_yaml(path)
    except (ValueError, OSError) as error:
        raise GoldImportError(str(error)) from error
    items = []
    for image in _yolo_images(path, (spec.train_images, spec.val_images), suffixes):
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
        items.append(item_of(image, boxes))
    return items


def _yolo_images(path: Path, splits: Sequence[Path], suffixes: tuple[str, ...]) -> list[Path]:
    """Every item of the dataset's splits (folders, or ``.txt`` lists of images), each once, sorted."""
    images: set[Path] = set()
    for split in dict.fromkeys(splits):
        if split.is_dir():
            images.update(p for p in split.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
        elif split.is_file() and split.suffix == ".txt" and ".txt" not in suffixes:
            listed = [line.strip() for line in split.read_text(encoding="utf-8").splitlines() if line.strip()]
            images.update((split.parent / line).resolve() for line in listed)
        else:
            raise GoldImportError(f"{path}: split {split} does not exist")
    missing = sorted(str(p) for p in images if not p.is_file())
    if missing:
        raise GoldImportError(f"{path}: listed images do not exist: {missing[:5]}")
    return sorted(images)
