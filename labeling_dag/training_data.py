"""Write verified labels out as an Ultralytics YOLO dataset for training."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import yaml

from labeling_dag import atomic


def write_yolo_dataset(
    out_dir: Path,
    *,
    images: pd.DataFrame,
    labels: pd.DataFrame,
    class_names: Sequence[str],
    val_images: Path,
) -> Path:
    """Write ``out_dir/{images,labels}/train`` and ``out_dir/data.yaml``; return the yaml path.

    ``images`` has ``image_id`` and an absolute ``path``; ``labels`` has ``image_id``,
    ``class_name`` and normalised ``x, y, w, h``. Images without labels get an empty label
    file: a verified image with no object is a negative example, not a missing one. Image
    files are hard-linked (copied across file systems). The validation split is referenced,
    never copied, so it stays held out. The folder is built aside and renamed into place.
    """
    unknown = sorted(set(labels["class_name"]) - set(class_names))
    if unknown:
        raise ValueError(f"labels use classes {unknown} that are not in the class list {list(class_names)}")
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        _fill(staging, images=images, labels=labels, class_names=class_names, out_dir=out_dir, val_images=val_images)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    atomic.replace_folder(staging, out_dir)
    return out_dir / "data.yaml"


def _fill(
    staging: Path,
    *,
    images: pd.DataFrame,
    labels: pd.DataFrame,
    class_names: Sequence[str],
    out_dir: Path,
    val_images: Path,
) -> None:
    index = {name: i for i, name in enumerate(class_names)}
    (staging / "images" / "train").mkdir(parents=True)
    (staging / "labels" / "train").mkdir(parents=True)
    by_image = {image_id: group for image_id, group in labels.groupby("image_id")}
    for row in images.itertuples(index=False):
        source = Path(row.path)
        _link(source, staging / "images" / "train" / f"{row.image_id}{source.suffix}")
        group = by_image.get(row.image_id)
        lines = (
            []
            if group is None
            else [
                f"{index[box.class_name]} {box.x:.6f} {box.y:.6f} {box.w:.6f} {box.h:.6f}" for box in group.itertuples()
            ]
        )
        (staging / "labels" / "train" / f"{row.image_id}.txt").write_text("".join(f"{line}\n" for line in lines))
    spec = {
        "path": str(out_dir.resolve()),
        "train": "images/train",
        "val": str(Path(val_images).resolve()),
        "names": dict(enumerate(class_names)),
    }
    (staging / "data.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))


def _link(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
