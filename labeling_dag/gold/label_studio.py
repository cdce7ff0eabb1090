"""Gold items from a Label Studio JSON export: each task's latest annotation is its known answer."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from labeling_dag.gold.items import GoldBox, GoldImportError, GoldItem, Renamer, item_of, local_image, norm_box

_RECTANGLE = "rectanglelabels"


def read_label_studio_gold(path: Path, tasks: list[Any], root: Path, rename: Renamer) -> list[GoldItem]:
    items = []
    for index, task in enumerate(tasks):
        where = f"task #{index}" + (f" (id={task['id']!r})" if isinstance(task, Mapping) and "id" in task else "")
        data = task.get("data") if isinstance(task, Mapping) else None
        if not isinstance(data, Mapping):
            raise GoldImportError(f"{path}: {where}: task has no data object")
        image = local_image(data.get("image"), root, path, where)
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
            boxes.append(
                GoldBox(rename(labels[0], where), norm_box(value, path, f"{where} region {region.get('id')!r}"))
            )
        items.append(item_of(image, boxes))
    return items
