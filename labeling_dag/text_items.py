"""A text dataset's items and their labels: item files of UTF-8 text under the splits' folders (the
YOLO layout, :mod:`labeling_dag.formats.yolo`), each labelled by one whole-item region
``class_id 0.5 0.5 1 1`` in its label file.
"""

from __future__ import annotations

from pathlib import Path

from labeling_dag.formats.yolo import label_path_for, read_yolo_labels


def read_text(item: Path) -> str:
    """The text of an item file (UTF-8).

    Raises:
        ValueError: naming the file, if it is not UTF-8.
    """
    try:
        return Path(item).read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{item}: not UTF-8 text ({error})") from error


def split_items(folder: Path) -> list[Path]:
    """The item files (``*.txt``) under a split's folder, sorted."""
    return sorted(Path(folder).rglob("*.txt"))


def labelled_items(folder: Path, n_classes: int) -> list[tuple[Path, int]]:
    """``(item, class_id)`` for each item under ``folder`` that has a label, sorted by path.

    An item whose label file is missing or empty has no label and is left out.

    Raises:
        ValueError: naming the label file, if it holds several classes or a class id outside
            ``0..n_classes-1``.
    """
    labelled = []
    for item in split_items(folder):
        label_file = label_path_for(item)
        class_id = _item_label(label_file)
        if class_id is None:
            continue
        if class_id >= n_classes:
            raise ValueError(f"{label_file}: class id {class_id} is not one of the {n_classes} classes")
        labelled.append((item, class_id))
    return labelled


def _item_label(label_file: Path) -> int | None:
    """The class of a label file's whole-item region; None for a missing or empty file."""
    if not label_file.is_file():
        return None
    classes = {row[0] for row in read_yolo_labels(label_file)}
    if len(classes) > 1:
        raise ValueError(f"{label_file}: a text has one class, this label file gives {sorted(classes)}")
    return classes.pop() if classes else None
