"""Take the verified dataset out: YOLO, COCO or Label Studio files, with a provenance sidecar.

Pure (no Dagster): the ``export`` command and the ``dataset_export`` asset both call
:func:`export_dataset`. The labels are the active verified labels, or those of one
``verified_labels`` DVC snapshot read from the workdir's DVC cache; the images are the
cleaned files, hard-linked (copied across file systems) under their original file names.
The export is built beside ``out_dir`` and swapped into place: a reader sees the old
export or the new one, never half of one.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from labeling_dag import atomic
from labeling_dag.contracts import CLEANED, LABELS, VERIFIED_IMAGES, VERIFIED_LABELS
from labeling_dag.formats.exports import WRITERS, ExportedImage
from labeling_dag.merge import active
from labeling_dag.modalities import workdir_modality
from labeling_dag.tables import read, snapshot_files

FORMATS = tuple(WRITERS)
SOURCES = ("human", "auto_accepted", "gold")
SPLITS = ("train", "val", "test")
PROVENANCE_FILE = "provenance.csv"
PROVENANCE_COLUMNS = (
    "label_id",
    "image_id",
    "file",
    "split",
    "class_name",
    "source",
    "model_version",
    "reviewer",
    "review_batch_id",
    "merge_id",
    "reviewed_at",
    "snapshot",
)


class ExportError(ValueError):
    """An export that cannot be made; the message names the input and the problem."""


@dataclass(frozen=True)
class ExportRequest:
    """What to export and how. ``snapshot`` "" = the active verified labels."""

    format: str = "yolo"
    sources: tuple[str, ...] = SOURCES
    split: tuple[tuple[str, float], ...] = (("train", 1.0),)
    seed: int = 0
    snapshot: str = ""
    image_url_prefix: str = "/data/local-files/?d="


@dataclass(frozen=True)
class ExportSummary:
    """What an export holds."""

    out_dir: Path
    format: str
    snapshot: str  # the verified_labels snapshot the labels come from ("" when none was taken yet)
    images: int
    labels: int
    per_split: dict[str, int] = field(default_factory=dict)


def parse_split(text: str) -> tuple[tuple[str, float], ...]:
    """``"train=0.8,val=0.1,test=0.1"`` as ``(("train", 0.8), ...)``; fractions must sum to 1."""
    parts: dict[str, float] = {}
    for item in (part.strip() for part in text.split(",") if part.strip()):
        name, sep, value = item.partition("=")
        if not sep or name not in SPLITS:
            raise ExportError(f"--split: {item!r} is not SPLIT=FRACTION with SPLIT one of {SPLITS}")
        if name in parts:
            raise ExportError(f"--split: {name} is given twice")
        try:
            parts[name] = float(value)
        except ValueError:
            raise ExportError(f"--split: {item!r}: {value!r} is not a number") from None
        if not 0.0 <= parts[name] <= 1.0:
            raise ExportError(f"--split: {item!r}: the fraction must lie in [0, 1]")
    if "train" not in parts:
        raise ExportError(f"--split {text!r}: a train split is needed")
    if abs(sum(parts.values()) - 1.0) > 1e-6:
        raise ExportError(f"--split {text!r}: fractions sum to {sum(parts.values()):g}, not 1")
    return tuple((name, parts[name]) for name in SPLITS if name in parts)


def parse_sources(text: str) -> tuple[str, ...]:
    """``"human,gold"`` as a checked tuple of label sources."""
    sources = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = sorted(set(sources) - set(SOURCES))
    if unknown or not sources:
        raise ExportError(f"--sources {text!r}: choose among {SOURCES}")
    return sources


def export_dataset(workdir: Path, out_dir: Path, request: ExportRequest) -> ExportSummary:
    """Export the workdir's verified labels to ``out_dir`` as ``request`` says; see the module doc."""
    workdir, out_dir = Path(workdir).resolve(), Path(out_dir).resolve()
    if request.format not in WRITERS:
        raise ExportError(f"unknown format {request.format!r}; choose one of {FORMATS}")
    parse_sources(",".join(request.sources))
    class_names = _class_names(workdir)
    labels, images, snapshot = _verified(workdir, request.snapshot)
    images = images[images["source"].isin(request.sources)]
    labels = labels[labels["image_id"].isin(images["image_id"])]
    unknown = sorted(set(labels["class_name"]) - set(class_names))
    if unknown:
        raise ExportError(
            f"{workdir / LABELS.folder}: labels of classes {unknown} outside the class list {list(class_names)}"
        )
    exported = _exported_images(workdir, sorted(images["image_id"]), request)
    _refuse_foreign(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the export is for others to read
    try:
        for image in exported:
            atomic.link_file(image.source, staging / image.file)
        WRITERS[request.format](
            staging,
            exported,
            labels,
            class_names,
            image_url_prefix=request.image_url_prefix,
            interface=workdir_modality(workdir).review,
        )
        _provenance(exported, labels, snapshot).to_csv(staging / PROVENANCE_FILE, index=False)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    atomic.replace_folder(staging, out_dir)
    return ExportSummary(
        out_dir=out_dir,
        format=request.format,
        snapshot=snapshot,
        images=len(exported),
        labels=len(labels),
        per_split={name: sum(image.split == name for image in exported) for name, _ in request.split},
    )


def _class_names(workdir: Path) -> tuple[str, ...]:
    path = workdir / "classes.json"
    if not path.is_file():
        raise ExportError(f"{path}: no class list; is {workdir} a labeling-dag workdir (see `labeling-dag init`)?")
    return tuple(json.loads(path.read_text(encoding="utf-8")))


def _verified(workdir: Path, snapshot: str) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Active verified labels and images, of ``snapshot`` or of now, and the snapshot they belong to."""
    history_file = workdir / "snapshots" / VERIFIED_LABELS.folder / "history.json"
    history = [entry["snapshot_id"] for entry in json.loads(history_file.read_text())] if history_file.exists() else []
    if not snapshot:
        labels = read(workdir, LABELS)
        images = read(workdir, VERIFIED_IMAGES)
        return active(labels), active(images), history[-1] if history else ""
    if snapshot not in history:
        raise ExportError(f"{history_file}: no verified_labels snapshot {snapshot!r}; known: {history}")
    files = snapshot_files(workdir, snapshot)
    if files is None or not {f"{LABELS.name}.parquet", f"{VERIFIED_IMAGES.name}.parquet"} <= set(files):
        raise ExportError(
            f"verified_labels snapshot {snapshot} is not in the local DVC cache of {workdir}; "
            f"bring it back with `labeling-dag restore verified_labels {snapshot} --workdir {workdir}` first"
        )
    labels = pd.read_parquet(files[f"{LABELS.name}.parquet"]).astype(LABELS.columns)
    images = pd.read_parquet(files[f"{VERIFIED_IMAGES.name}.parquet"]).astype(VERIFIED_IMAGES.columns)
    return active(labels), active(images), snapshot


def _exported_images(workdir: Path, image_ids: Sequence[str], request: ExportRequest) -> list[ExportedImage]:
    """Each image's cleaned file, export name and split; names unique whatever the file system's case rules."""
    cleaned = read(workdir, CLEANED).drop_duplicates("image_id").set_index("image_id")
    missing = sorted(set(image_ids) - set(cleaned.index))
    if missing:
        raise ExportError(f"{workdir / CLEANED.folder}: verified images {missing[:5]} have no cleaned file")
    splits = _assign_splits(image_ids, request.split, request.seed)
    wanted = []
    for image_id in image_ids:
        row = cleaned.loc[image_id]
        suffix = Path(row["path"]).suffix.lower()
        stem = Path(row["source_path"]).stem or image_id[:16]
        wanted.append((stem, suffix, image_id))
    taken: set[str] = set()
    exported = []
    # Sorted by name, then id: the first picture of a name keeps it, the others get their id appended.
    for stem, suffix, image_id in sorted(wanted):
        name = stem
        length = 8
        while name.casefold() in taken:
            name, length = f"{stem}-{image_id[:length]}", length + 8
        taken.add(name.casefold())
        row = cleaned.loc[image_id]
        exported.append(
            ExportedImage(
                image_id=image_id,
                source=workdir / row["path"],
                split=splits[image_id],
                file=f"images/{splits[image_id]}/{name}{suffix}",
                width=int(row["width"]),
                height=int(row["height"]),
            )
        )
    return sorted(exported, key=lambda image: image.file)


def _assign_splits(image_ids: Sequence[str], split: Sequence[tuple[str, float]], seed: int) -> dict[str, str]:
    """A seeded shuffle of the sorted ids cut into the splits' shares (largest remainders round)."""
    ids = sorted(image_ids)
    shares = np.array([fraction for _, fraction in split]) * len(ids)
    counts = np.floor(shares).astype(int)
    for index in np.argsort(-(shares - counts), kind="stable")[: len(ids) - counts.sum()]:
        counts[index] += 1
    order = np.random.default_rng(seed).permutation(len(ids))
    names = np.repeat([name for name, _ in split], counts)
    return {ids[position]: str(name) for position, name in zip(order, names, strict=True)}


def _provenance(images: Sequence[ExportedImage], labels: pd.DataFrame, snapshot: str) -> pd.DataFrame:
    where = pd.DataFrame(
        {"image_id": [i.image_id for i in images], "file": [i.file for i in images], "split": [i.split for i in images]}
    )
    rows = labels.merge(where, on="image_id").assign(snapshot=snapshot)
    return rows[list(PROVENANCE_COLUMNS)].sort_values(["file", "label_id"]).reset_index(drop=True)


def _refuse_foreign(out_dir: Path) -> None:
    """Only an empty folder or an earlier export may be replaced."""
    if out_dir.exists() and (
        not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / PROVENANCE_FILE).exists())
    ):
        raise ExportError(
            f"{out_dir}: exists and is not an earlier export (no {PROVENANCE_FILE}); refusing to replace it"
        )
