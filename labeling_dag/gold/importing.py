"""Importing a gold file: the reader its kind calls for, one item per picture, and the items as
rows of the pipeline's gold table.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from labeling_dag.contracts import GOLD_COLUMNS
from labeling_dag.gold.coco import read_coco_gold
from labeling_dag.gold.items import GoldImportError, GoldItem, Renamer
from labeling_dag.gold.label_studio import read_label_studio_gold
from labeling_dag.gold.yolo import read_yolo_gold
from labeling_dag.ingest import INGESTED_SUFFIXES


def read_gold(
    path: Path,
    *,
    class_names: Sequence[str],
    class_map: Mapping[str, str],
    images_root: Path | None = None,
    item_suffixes: tuple[str, ...] = INGESTED_SUFFIXES,
) -> list[GoldItem]:
    """The gold items of ``path``: a YOLO ``data.yaml``, a COCO JSON or a Label Studio JSON export.

    Class names are renamed by ``class_map`` and must then be in ``class_names``. COCO file
    names and Label Studio image references are resolved under ``images_root`` (default: the
    file's folder). Items come sorted by image id, one per image (a picture listed twice is
    refused when its answers differ). A data.yaml's items are the files of ``item_suffixes``, the
    workdir modality's (a text dataset's ``.txt`` files, each labelled with one whole-item line).
    """
    path = Path(path).resolve()
    if not path.is_file():
        raise GoldImportError(f"{path}: gold file does not exist")
    root = Path(images_root).resolve() if images_root else path.parent
    rename = Renamer(path, class_names, class_map)
    if path.suffix.lower() in (".yaml", ".yml"):
        items = read_yolo_gold(path, rename, item_suffixes)
    elif path.suffix.lower() == ".json":
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise GoldImportError(f"{path}: not valid JSON ({error})") from error
        if isinstance(document, Mapping) and "annotations" in document and "images" in document:
            items = read_coco_gold(path, document, root, rename)
        elif isinstance(document, list):
            items = read_label_studio_gold(path, document, root, rename)
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
