"""``labeling-dag init``: a workdir's modality, class list, seed model and gold items, from the operator's own files.

Every input is read and checked before anything is written, so a bad input leaves the
workdir as it was; every write is atomic and skipped when the content is already there,
so running init again with the same arguments changes nothing.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from labeling_dag import atomic
from labeling_dag.class_map import ClassMapError, class_order, remap_weights
from labeling_dag.contracts import GOLD_COLUMNS, GOLD_LABELS
from labeling_dag.formats.label_studio import labeling_config
from labeling_dag.formats.yolo import load_data_yaml
from labeling_dag.gold.importing import gold_table, read_gold
from labeling_dag.gold.items import GoldImportError, GoldItem
from labeling_dag.modalities import DEFAULT_MODALITY, MODALITY_FILE, modality_named, workdir_modality
from labeling_dag.model_registry import ModelRegistry, file_sha256
from labeling_dag.tables import read

CLASSES_FILE = "classes.json"
# The ingestion batch (a sub-folder of the image source) that gold images are copied into.
GOLD_BATCH = "gold"


class InitError(ValueError):
    """An input init refuses; the message names the file or option and the problem."""


@dataclass(frozen=True)
class InitRequest:
    """What ``labeling-dag init`` was asked to set up."""

    workdir: Path
    classes: tuple[str, ...]
    seed_model: Path | None = None
    class_map: Mapping[str, str] = field(default_factory=dict)
    gold: Path | None = None
    gold_images: Path | None = None  # the folder gold image references are relative to
    source: Path | None = None  # the pipeline's image source: gold images are copied into <source>/gold/
    modality: str = DEFAULT_MODALITY  # a name in labeling_dag.modalities.MODALITIES
    # Texts: what each class is about, in words the zero-shot first model compares texts with
    # (labeling_dag.text_model); a class without one is described by its name.
    class_descriptions: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class InitReport:
    """What init found and what it changed."""

    modality: str
    modality_written: bool
    classes: tuple[str, ...]
    classes_written: bool
    model_version: str
    model_remapped_from: str
    model_registered: bool
    gold_images: int
    gold_boxes: int
    gold_without_boxes: int
    gold_written: bool
    copied_to_source: int


def classes_from_text(text: str) -> tuple[str, ...]:
    """``"cat,dog"`` as a checked class list (names a Label Studio config can hold, each once)."""
    return _checked_classes(tuple(name.strip() for name in text.split(",") if name.strip()), "--classes")


def class_descriptions_from_json(path: Path | None) -> dict[str, str]:
    """The class descriptions of a JSON file (an object: class name -> what the class is about);
    none without a file."""
    if path is None:
        return {}
    try:
        descriptions = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InitError(f"{path}: not a readable JSON file ({error})") from error
    if not isinstance(descriptions, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in descriptions.items()
    ):
        raise InitError(f"{path}: expected a JSON object of class name -> non-empty description")
    return descriptions


def classes_from_data_yaml(path: Path) -> tuple[str, ...]:
    """The class list of a YOLO ``data.yaml`` (its ``names``)."""
    try:
        names = load_data_yaml(path).names
    except (ValueError, OSError) as error:
        raise InitError(f"--classes-from: {error}") from error
    return _checked_classes(names, str(Path(path).resolve()))


def init_workdir(request: InitRequest) -> InitReport:
    """Check every input of ``request``, then write the class list, the seed model and the gold items."""
    workdir = Path(request.workdir).expanduser().resolve()
    modality_written = _checked_modality(workdir, request.modality)
    classes = _checked_classes(request.classes, "--classes")
    existing = _existing_classes(workdir)
    if existing and existing != classes:
        raise InitError(
            f"{workdir / CLASSES_FILE}: the workdir's class list is {list(existing)}, not {list(classes)}; "
            "changing classes would corrupt its labels: start a new workdir"
        )
    with tempfile.TemporaryDirectory(prefix="labeling-dag-init-") as scratch:
        model = _checked_model(request, workdir, classes, Path(scratch)) if request.seed_model else None
        if model is None and request.modality == "text":
            model = _zero_shot_model(request, workdir, classes, Path(scratch))
        gold = _checked_gold(request, classes) if request.gold else []
        # Every input is good: from here on only writes, each skipped when already done.
        workdir.mkdir(parents=True, exist_ok=True)
        if modality_written:
            atomic.write_json(workdir / MODALITY_FILE, request.modality)
        if not existing:
            atomic.write_json(workdir / CLASSES_FILE, list(classes))
        registered = False
        if model is not None:
            registry = ModelRegistry(workdir)
            registered = registry.current() is None
            registry.register(
                model.weights,
                task=model.task,
                class_names=classes,
                source="seed_model",
                parent=model.remapped_from or None,
            )
    with_boxes = [item for item in gold if item.boxes]
    gold_written = _write_gold(workdir, with_boxes) if with_boxes else False
    copied = _copy_to_source(request.source, with_boxes) if request.source and with_boxes else 0
    return InitReport(
        modality=request.modality,
        modality_written=modality_written,
        classes=classes,
        classes_written=not existing,
        model_version=model.version if model else "",
        model_remapped_from=model.remapped_from if model else "",
        model_registered=registered,
        gold_images=len(with_boxes),
        gold_boxes=sum(len(item.boxes) for item in with_boxes),
        gold_without_boxes=len(gold) - len(with_boxes),
        gold_written=gold_written,
        copied_to_source=copied,
    )


@dataclass(frozen=True)
class _SeedModel:
    weights: Path  # the file to register: the seed model itself, or its remapped copy
    task: str
    version: str
    remapped_from: str  # the seed model's own sha256 when its classes were remapped, else ""


def _checked_modality(workdir: Path, name: str) -> bool:
    """Whether ``modality.json`` is still to be written. InitError on an unknown modality, an
    unreadable file, or a workdir that already holds another modality (one with a class list and
    no ``modality.json`` holds detection's images)."""
    try:
        modality_named(name)
    except ValueError as error:
        raise InitError(f"--modality: {error}") from error
    if (workdir / MODALITY_FILE).exists():
        try:
            recorded = workdir_modality(workdir).name
        except ValueError as error:
            raise InitError(str(error)) from error
    elif (workdir / CLASSES_FILE).exists():
        recorded = DEFAULT_MODALITY
    else:
        return True
    if recorded != name:
        raise InitError(
            f"{workdir / MODALITY_FILE}: the workdir holds {recorded!r} items, not {name!r}; start a new workdir"
        )
    return not (workdir / MODALITY_FILE).exists()


def _checked_classes(names: Sequence[str], where: str) -> tuple[str, ...]:
    try:
        labeling_config(names)
    except ValueError as error:
        raise InitError(f"{where}: {error}") from error
    return tuple(names)


def _existing_classes(workdir: Path) -> tuple[str, ...]:
    path = workdir / CLASSES_FILE
    if not path.exists():
        return ()
    try:
        names = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InitError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise InitError(f"{path}: expected a JSON list of class names")
    return tuple(names)


def _zero_shot_model(request: InitRequest, workdir: Path, classes: tuple[str, ...], scratch: Path) -> _SeedModel | None:
    """A text workdir's first model, zero-shot from the class descriptions; None where the workdir
    already has a current model (the first model is registered once)."""
    from labeling_dag.text_model import zero_shot_weights

    unknown = sorted(set(request.class_descriptions) - set(classes))
    if unknown:
        raise InitError(f"--class-descriptions: {unknown} are not in the class list {list(classes)}")
    if ModelRegistry(workdir).current() is not None:
        return None
    weights = zero_shot_weights(classes, scratch / "zero-shot.json", descriptions=request.class_descriptions)
    return _SeedModel(weights=weights, task="classify", version=file_sha256(weights), remapped_from="")


def _checked_text_model(weights: Path, classes: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    """The task and classes of a text classifier's weights, which must be the project's own."""
    from labeling_dag.text_model import read_text_model

    try:
        names = read_text_model(weights).class_names
    except ValueError as error:
        raise InitError(str(error)) from error
    if names != classes:
        raise InitError(f"{weights}: the model's classes {list(names)} differ from the class list {list(classes)}")
    return "classify", names


def _checked_model(request: InitRequest, workdir: Path, classes: tuple[str, ...], scratch: Path) -> _SeedModel:
    from labeling_dag.resources.detector import model_info

    weights = Path(request.seed_model).expanduser().resolve()
    if not weights.is_file():
        raise InitError(f"{weights}: seed model does not exist")
    if request.modality == "text":
        task, _ = _checked_text_model(weights, classes)
        return _SeedModel(weights=weights, task=task, version=_first_model(workdir, weights), remapped_from="")
    try:
        task, names = model_info(weights)
    except Exception as error:  # ultralytics raises anything from pickle, torch or its own checks
        raise InitError(f"{weights}: not an ultralytics model ({type(error).__name__}: {error})") from error
    remapped_from = ""
    if names != classes:
        if not request.class_map:
            raise InitError(
                f"{weights}: the model's classes {list(names)} differ from the class list {list(classes)}; "
                "map them with --class-map MODEL_CLASS=PROJECT_CLASS,..."
            )
        try:
            order = class_order(names, classes, request.class_map)
            remapped = remap_weights(weights, scratch / "seed-model.pt", order=order, names=classes)
        except ClassMapError as error:
            raise InitError(f"{weights}: {error}") from error
        remapped_from, weights = file_sha256(weights), remapped
    return _SeedModel(weights=weights, task=task, version=_first_model(workdir, weights), remapped_from=remapped_from)


def _first_model(workdir: Path, weights: Path) -> str:
    """The version of ``weights``; InitError where the workdir already has another current model."""
    version = file_sha256(weights)
    current = ModelRegistry(workdir).current()
    if current is not None and current.model_version != version:
        raise InitError(
            f"{workdir / 'models' / 'registry.json'}: the workdir already has current model {current.model_version}; "
            "a seed model is registered only in a workdir without one"
        )
    return version


def _checked_gold(request: InitRequest, classes: tuple[str, ...]) -> list[GoldItem]:
    try:
        return read_gold(
            request.gold,
            class_names=classes,
            class_map=request.class_map,
            images_root=request.gold_images,
            item_suffixes=modality_named(request.modality).item_suffixes,
        )
    except GoldImportError as error:
        raise InitError(str(error)) from error


def _write_gold(workdir: Path, items: Sequence[GoldItem]) -> bool:
    """Put ``items``' answers into the gold table (replacing earlier answers for the same images);
    False when the table already holds exactly them."""
    current = read(workdir, GOLD_LABELS)
    new = gold_table(items)
    merged = pd.concat([current[~current["image_id"].isin(new["image_id"])], new], ignore_index=True).astype(
        GOLD_COLUMNS
    )
    merged = merged.sort_values("image_id", kind="stable").reset_index(drop=True)
    if merged.equals(current.reset_index(drop=True)):
        return False
    atomic.write_parquet(workdir / GOLD_LABELS.folder / f"{GOLD_LABELS.name}.parquet", merged)
    return True


def _copy_to_source(source: Path, items: Sequence[GoldItem]) -> int:
    """Copy gold images into ``source/gold/`` under their file names; returns how many were copied.

    A name already taken by other bytes gets the image id's first 12 characters appended.
    """
    folder = Path(source).expanduser().resolve() / GOLD_BATCH
    present = {file_sha256(p): p for p in folder.iterdir() if p.is_file()} if folder.is_dir() else {}
    copied = 0
    for item in items:
        if item.image_id in present:
            continue
        target = folder / item.image.name
        if target.exists():
            target = folder / f"{item.image.stem}-{item.image_id[:12]}{item.image.suffix}"
        atomic.copy_file(item.image, target)
        present[item.image_id] = target
        copied += 1
    return copied
