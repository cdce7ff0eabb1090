"""A labelled text dataset for the simulated loop, from a CSV of texts and their classes.

The loop reads its datasets in one layout whatever the modality (YOLO's): ``data.yaml`` names the
splits and classes, ``texts/<split>/<n>.txt`` holds a text's exact bytes (so its id, the sha256 the
pipeline gives it at ingestion, is the truth's key), and ``labels/<split>/<n>.txt`` its class as one
whole-item region, ``class_id 0.5 0.5 1 1``. The train split is the unlabelled pool; only the
simulated reviewer reads its labels.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import yaml

from labeling_dag import atomic

SPLITS = ("train", "val")


def text_dataset_from_csv(csv_file: Path, out_dir: Path, *, seed: int = 0, val_fraction: float = 0.2) -> Path:
    """Write the dataset of ``csv_file`` under ``out_dir``; return its ``data.yaml``.

    The CSV has a header with ``text`` and ``label`` and optionally ``split`` (``train`` = the pool,
    ``val`` = held out); without it a share ``val_fraction`` of the rows, drawn with ``seed``, is
    held out. Classes are the labels in sorted order. Texts that repeat with different labels have
    no single truth and are left out (counted in ``data.yaml`` as ``conflicting_texts``); texts
    that repeat with one label stay, as duplicates for the cleaning stage to find.

    Raises ``ValueError`` naming the file and the row on a missing column, an empty text or label,
    or an unknown split.
    """
    rows = _read_rows(Path(csv_file))
    splits = [row.get("split") or "" for row in rows]
    if any(splits) and not all(splits):
        raise ValueError(f"{csv_file}: row {splits.index('') + 2} has no split, but other rows have one")
    if not any(splits):
        rng = np.random.default_rng(seed)
        held_out = set(rng.choice(len(rows), size=round(len(rows) * val_fraction), replace=False).tolist())
        splits = ["val" if index in held_out else "train" for index in range(len(rows))]
    labels_of: dict[str, set[str]] = {}
    for row in rows:
        labels_of.setdefault(row["text"], set()).add(row["label"])
    conflicting = {text for text, labels in labels_of.items() if len(labels) > 1}
    names = sorted({row["label"] for row in rows})
    out_dir = Path(out_dir)
    for index, (row, split) in enumerate(zip(rows, splits, strict=True)):
        if row["text"] in conflicting:
            continue
        atomic.write_bytes(out_dir / "texts" / split / f"{index:06d}.txt", row["text"].encode("utf-8"), sync=False)
        line = f"{names.index(row['label'])} 0.5 0.5 1 1\n"
        atomic.write_bytes(out_dir / "labels" / split / f"{index:06d}.txt", line.encode("utf-8"), sync=False)
    atomic.sync_all()
    spec = {
        "path": ".",
        "train": "texts/train",
        "val": "texts/val",
        "names": names,
        "conflicting_texts": sum(row["text"] in conflicting for row in rows),
    }
    data_yaml = out_dir / "data.yaml"
    atomic.write_bytes(data_yaml, yaml.safe_dump(spec, sort_keys=False).encode("utf-8"))
    return data_yaml


def _read_rows(csv_file: Path) -> list[dict[str, str]]:
    """The CSV's rows, checked: a text and a label in each, a known split where one is given."""
    try:
        with csv_file.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            missing = {"text", "label"} - set(reader.fieldnames or ())
            if missing:
                raise ValueError(f"{csv_file}: no {sorted(missing)} column in the header {reader.fieldnames}")
            rows = list(reader)
    except UnicodeDecodeError as error:
        raise ValueError(f"{csv_file}: not UTF-8 ({error})") from error
    for number, row in enumerate(rows, start=2):
        if not (row.get("text") or "").strip() or not (row.get("label") or "").strip():
            raise ValueError(f"{csv_file}: row {number} has an empty text or label")
        if (row.get("split") or "") not in ("", *SPLITS):
            raise ValueError(f"{csv_file}: row {number} has split {row['split']!r}, not one of {SPLITS}")
        row["label"] = row["label"].strip()
    if not rows:
        raise ValueError(f"{csv_file}: no rows")
    return rows
