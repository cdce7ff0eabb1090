"""Lineage an auditor can follow: from a verified label (or an image) back to its raw file and
forward to every model trained on it, read from the tables and snapshot histories in a workdir."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from labeling_dag.contracts import (
    CLEANED,
    CLEANED_IMAGES,
    EDITS,
    LABELS,
    MERGES,
    MODEL_CARDS,
    MODEL_REGISTRY,
    PRE_LABEL_BOXES,
    PRE_LABELS,
    RAW_INDEX,
    VERIFIED_LABELS,
    Table,
)
from labeling_dag.merge import active
from labeling_dag.revisions import split_revision
from labeling_dag.tables import read, snapshot_files, snapshot_histories


@dataclass(frozen=True)
class Workdir:
    """Read-only access to the tables of one pipeline workdir."""

    root: Path

    def read(self, table: Table) -> pd.DataFrame:
        """A table of the workdir (the whole pool for a partitioned stage), empty with its
        schema when absent."""
        return read(self.root, table)

    def history(self, folder: str) -> list[dict[str, str]]:
        """The DVC snapshot history of an asset folder (every batch's, for a partitioned asset)."""
        return [
            entry
            for path in snapshot_histories(self.root, folder)
            if path.exists()
            for entry in json.loads(path.read_text())
        ]

    def snapshots_of_run(self, folder: str, run_id: str) -> list[str]:
        """Snapshot ids an asset folder got from the run ``run_id``."""
        return [entry["snapshot_id"] for entry in self.history(folder) if entry["run_id"] == run_id]

    def first_snapshot_with_row(self, table: Table, column: str, value: str) -> list[str]:
        """The oldest snapshot of ``table``'s folder (any batch) whose ``table``, read from the
        local DVC cache, has a row with ``column == value``: a list of one, or empty when none has.

        Used when the run named in a row took no snapshot: it was killed after writing the row,
        and the re-run found the work done and took the snapshot under its own run id.
        """
        for history in snapshot_histories(self.root, table.folder):
            for entry in json.loads(history.read_text()) if history.exists() else []:
                if value in _snapshot_column(self.root, entry["snapshot_id"], f"{table.name}.parquet", column):
                    return [entry["snapshot_id"]]
        return []

    def model_cards(self) -> list[dict]:
        """Every model card, oldest first."""
        folder = self.root / MODEL_REGISTRY.folder / MODEL_CARDS
        cards = [json.loads(p.read_text()) for p in folder.glob("*.json")] if folder.is_dir() else []
        return sorted(cards, key=lambda card: card["created_at"])


@functools.lru_cache(maxsize=256)
def _snapshot_column(root: Path, snapshot_id: str, file_name: str, column: str) -> frozenset:
    """The values of one column of a table in a snapshot, read from the DVC cache (empty when
    the snapshot or the table is not in the local cache). Snapshots never change: cached."""
    path = (snapshot_files(root, snapshot_id) or {}).get(file_name)
    if path is None or not path.exists():
        return frozenset()
    return frozenset(pd.read_parquet(path, columns=[column])[column].astype(str))


def label_snapshots(workdir: Workdir, label: pd.Series) -> list[str]:
    """The verified-labels snapshots a label appears in: from its merge until the merge that retired it."""
    merges = workdir.read(MERGES)
    order = list(merges["merge_id"])
    if label["merge_id"] not in order:
        return []
    start = order.index(label["merge_id"])
    stop = order.index(label["retired_by"]) if label["retired_by"] in order else len(order)
    return [
        snapshot
        for run_id in merges["run_id"].iloc[start:stop]
        for snapshot in workdir.snapshots_of_run(VERIFIED_LABELS.folder, run_id)
    ]


def trace_label(workdir: Workdir, label_id: str) -> list[str]:
    """The chain of one verified label, one line per link."""
    labels = workdir.read(LABELS)
    match = labels[labels["label_id"] == label_id]
    if match.empty:
        raise KeyError(f"no verified label {label_id!r} in {workdir.root}")
    label = match.iloc[0]
    lines = [
        f"label {label_id}: {label['class_name']} at x={label['x']:.4f} y={label['y']:.4f} "
        f"w={label['w']:.4f} h={label['h']:.4f} "
        f"(source {label['source']}"
        f"{', retired by merge ' + label['retired_by'] if label['retired_by'] else ', active'})"
    ]
    lines += _image_origin(workdir, label["image_id"])
    if label["pre_label_id"]:
        pre_snapshots = workdir.snapshots_of_run(
            PRE_LABELS.folder, label["pre_label_run_id"]
        ) or workdir.first_snapshot_with_row(PRE_LABEL_BOXES, "box_id", label["pre_label_id"])
        lines.append(
            f"pre-label {label['pre_label_id']}: model {label['model_version']}, run {label['pre_label_run_id']}, "
            f"confidence {label['confidence']:.3f}, pre_labels snapshot {', '.join(pre_snapshots) or '?'}"
        )
    else:
        lines.append(
            "pre-label: none (drawn by a person)" if label["source"] != "gold" else "pre-label: none (gold answer)"
        )
    if label["source"] == "human":
        edits = workdir.read(EDITS)
        edit = edits[(edits["batch_id"] == label["review_batch_id"]) & (edits["image_id"] == label["image_id"])]
        original = edit[edit["pre_label_id"] == label["pre_label_id"]] if label["pre_label_id"] else edit.iloc[0:0]
        was = (
            f", was {original['original_class'].iloc[0]}"
            if len(original) and label["edit_kind"] == "relabelled"
            else ""
        )
        batch, revision = split_revision(label["review_batch_id"])
        # A revision is the batch's tasks edited in the labelling tool after an earlier merge.
        which = f"batch {batch} revision {revision}" if revision > 1 else f"batch {batch}"
        lines.append(f"review: {which} by {label['reviewer']} at {label['reviewed_at']}: {label['edit_kind']}{was}")
    elif label["source"] == "auto_accepted":
        lines.append(f"review: auto-accepted at merge {label['merge_id']} (confidence above the calibrated threshold)")
    snapshots = label_snapshots(workdir, label)
    lines.append(f"verified_labels snapshots: {', '.join(snapshots) or 'none'}")
    lines += [
        f"model {card['model_version']} trained on snapshot {card['training_snapshot']} "
        f"(mAP50 {card['metrics']['map50']:.3f})"
        for card in workdir.model_cards()
        if card["training_snapshot"] in snapshots
    ] or ["models trained on it: none yet"]
    return lines


def trace_image(workdir: Workdir, image_id: str) -> list[str]:
    """The chain of one image: its origin, then every verified label it has had."""
    labels = workdir.read(LABELS)
    lines = [f"image {image_id}"] + _image_origin(workdir, image_id)
    mine = labels[labels["image_id"] == image_id]
    if mine.empty:
        lines.append("verified labels: none yet")
    for label_id in mine["label_id"]:
        chain = trace_label(workdir, label_id)
        # The image's own origin was printed once above; each label adds its own links.
        lines += ["", chain[0], *chain[1 + len(_image_origin(workdir, image_id)) :]]
    return lines


def sample_label_ids(workdir: Workdir, count: int, *, seed: int = 0) -> list[str]:
    """``count`` random labels in force, for a spot audit."""
    ids = sorted(active(workdir.read(LABELS))["label_id"])
    rng = np.random.default_rng(seed)
    return [ids[i] for i in sorted(rng.choice(len(ids), size=min(count, len(ids)), replace=False))]


def _image_origin(workdir: Workdir, image_id: str) -> list[str]:
    raw = workdir.read(RAW_INDEX)
    cleaned = workdir.read(CLEANED)
    sources = raw[raw["image_id"] == image_id]
    lines = [
        f"raw file: {row.source_path} (sha256 {image_id}, ingested {row.ingested_at}, run {row.run_id})"
        for row in sources.itertuples()
    ] or [f"raw file: unknown image {image_id}"]
    row = cleaned[cleaned["image_id"] == image_id]
    if len(row):
        snapshots = workdir.snapshots_of_run(
            CLEANED_IMAGES.folder, row["run_id"].iloc[0]
        ) or workdir.first_snapshot_with_row(CLEANED, "image_id", image_id)
        lines.append(f"cleaned: {row['path'].iloc[0]} in cleaned_images snapshot {', '.join(snapshots) or '?'}")
    return lines
