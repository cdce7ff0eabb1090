"""Writers of an exported dataset's label files: YOLO, COCO and Label Studio.

Each writer gets the export folder (the images already in ``images/<split>/``), the exported
images, their label rows (normalised centre ``x, y, w, h``) and the class list, and writes the
format's own files beside the images. Output is deterministic: same input, same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from labeling_dag.formats.label_studio_export import RECTANGLES
from labeling_dag.formats.review_interface import ReviewInterface
from labeling_dag.records import NormBox


@dataclass(frozen=True)
class ExportedImage:
    """One image of an export: where its bytes come from and where they go."""

    image_id: str
    source: Path  # the cleaned file in the workdir
    split: str
    file: str  # path inside the export, ``images/<split>/<name>``
    width: int
    height: int


Writer = Callable[..., None]


def _by_image(labels: pd.DataFrame) -> dict[str, pd.DataFrame]:
    return {image_id: group.sort_values("label_id") for image_id, group in labels.groupby("image_id")}


def _splits(images: Sequence[ExportedImage]) -> list[str]:
    return list(dict.fromkeys(image.split for image in images)) or ["train"]


def _dump(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_yolo(
    out: Path, images: Sequence[ExportedImage], labels: pd.DataFrame, class_names: Sequence[str], **_: object
) -> None:
    """``labels/<split>/<stem>.txt`` per image (empty for an image without boxes: a verified negative)
    and a ``data.yaml`` without ``path:``, so the folder trains wherever it is moved.

    Without a val split, ``val:`` names the train images: ultralytics needs one to train at all.
    """
    index = {name: i for i, name in enumerate(class_names)}
    by_image = _by_image(labels)
    for image in images:
        group = by_image.get(image.image_id)
        lines = (
            []
            if group is None
            else [
                f"{index[row.class_name]} {row.x:.6f} {row.y:.6f} {row.w:.6f} {row.h:.6f}\n"
                for row in group.itertuples()
            ]
        )
        target = out / "labels" / image.split / f"{Path(image.file).stem}.txt"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("".join(lines), encoding="ascii")
    splits = _splits(images)
    spec: dict[str, Any] = {"train": "images/train", "val": "images/val" if "val" in splits else "images/train"}
    if "test" in splits:
        spec["test"] = "images/test"
    spec["names"] = dict(enumerate(class_names))
    (out / "data.yaml").write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True), encoding="utf-8")


def write_coco(
    out: Path, images: Sequence[ExportedImage], labels: pd.DataFrame, class_names: Sequence[str], **_: object
) -> None:
    """``annotations/instances_<split>.json`` per split: COCO detection JSON, boxes in pixels
    (top-left ``x, y``, width, height), category ids 1..n in class-list order, ``file_name``
    relative to ``images/<split>/``. Each annotation keeps its verified ``label_id``."""
    categories = [{"id": i + 1, "name": name, "supercategory": ""} for i, name in enumerate(class_names)]
    category = {name: i + 1 for i, name in enumerate(class_names)}
    by_image = _by_image(labels)
    for split in _splits(images):
        members = [image for image in images if image.split == split]
        coco_images, annotations = [], []
        for number, image in enumerate(members, start=1):
            coco_images.append(
                {"id": number, "file_name": Path(image.file).name, "width": image.width, "height": image.height}
            )
            group = by_image.get(image.image_id)
            for row in [] if group is None else group.itertuples():
                w, h = row.w * image.width, row.h * image.height
                left, top = row.x * image.width - w / 2, row.y * image.height - h / 2
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": number,
                        "category_id": category[row.class_name],
                        "bbox": [round(left, 3), round(top, 3), round(w, 3), round(h, 3)],
                        "area": round(w * h, 3),
                        "iscrowd": 0,
                        "label_id": row.label_id,
                    }
                )
        document = {
            "info": {"description": f"labeling-dag export, split {split}"},
            "licenses": [],
            "images": coco_images,
            "annotations": annotations,
            "categories": categories,
        }
        _dump(out / "annotations" / f"instances_{split}.json", document)


def write_label_studio(
    out: Path,
    images: Sequence[ExportedImage],
    labels: pd.DataFrame,
    class_names: Sequence[str],
    *,
    image_url_prefix: str,
    interface: ReviewInterface = RECTANGLES,
    **_: object,
) -> None:
    """``tasks/<split>.json`` per split: Label Studio tasks whose annotations are the verified regions
    (boxes, or a text's class: the modality's ``interface``), items as
    ``<image_url_prefix>images/<split>/<name>`` (Label Studio's local files, with the export folder as
    ``LOCAL_FILES_DOCUMENT_ROOT``), and the project's ``labeling_config.xml``."""
    by_image = _by_image(labels)
    for split in _splits(images):
        tasks = []
        for image in (image for image in images if image.split == split):
            group = by_image.get(image.image_id)
            result = [
                interface.result_item(
                    row.label_id,
                    interface.region_value(NormBox(row.x, row.y, row.w, row.h), row.class_name),
                    image.width,
                    image.height,
                )
                for row in ([] if group is None else group.itertuples())
            ]
            tasks.append(
                {
                    "data": {interface.data_key: f"{image_url_prefix}{image.file}", "image_id": image.image_id},
                    "annotations": [{"result": result}],
                }
            )
        _dump(out / "tasks" / f"{split}.json", tasks)
    (out / "labeling_config.xml").write_text(interface.labeling_config(class_names) + "\n", encoding="utf-8")


WRITERS: dict[str, Writer] = {"yolo": write_yolo, "coco": write_coco, "labelstudio": write_label_studio}
