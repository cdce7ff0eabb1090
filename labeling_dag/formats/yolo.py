"""The Ultralytics YOLO detection dataset: its data.yaml, its label files and where they lie.

Readers only (writing a dataset is :func:`labeling_dag.formats.exports.write_yolo`):
:func:`load_data_yaml` reads a data.yaml into a :class:`DatasetSpec`, :func:`read_yolo_labels`
one label file, and :func:`label_path_for` maps an image to its label file by Ultralytics'
``images/`` -> ``labels/`` convention.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

# The splits a data.yaml must name.
_SPLITS = ("train", "val")
# The folders whose items have label files beside them under ``labels``: images, and the texts of
# a text classification dataset (one whole-item line ``class 0.5 0.5 1 1`` per text).
_ITEM_FOLDERS = ("images", "texts")


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

    The last ``images`` (or, in a text dataset, ``texts``) folder in the path becomes ``labels``
    and the suffix becomes ``.txt``. Unlike Ultralytics' string replace, a relative path starting
    with ``images/`` is handled too.

    Raises:
        ValueError: if no folder in the path is named ``images`` or ``texts``.
    """
    image_path = Path(image_path)
    folders = image_path.parts[:-1]
    for position in range(len(folders) - 1, -1, -1):
        if folders[position] in _ITEM_FOLDERS:
            parts = (*folders[:position], "labels", *folders[position + 1 :], image_path.name)
            return Path(*parts).with_suffix(".txt")
    raise ValueError(f"{image_path}: no 'images' or 'texts' folder in the path to map to 'labels'")


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
            raise ValueError(f"{yaml_file}: 'names:' indices must be 0..{len(by_index) - 1}, got {sorted(by_index)}")
        values = [by_index[index] for index in range(len(by_index))]
    else:
        raise ValueError(f"{yaml_file}: 'names:' must be a list or an index -> name mapping, got {names!r}")
    if not values:
        raise ValueError(f"{yaml_file}: 'names:' is empty")
    # YAML turns names such as `yes` or `1` into bool/int; they are still names.
    return tuple(str(value) for value in values)
