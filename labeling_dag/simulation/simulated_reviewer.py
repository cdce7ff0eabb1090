"""A simulated reviewer that answers exported review tasks from a dataset's true labels.

Benchmarks and the demo need review batches answered without a person. This reviewer
works like a careful annotator: it starts from the model's boxes, keeps good ones,
corrects or deletes bad ones and draws the objects the model missed. At a chosen rate
it also makes the mistakes real annotators make (wrong class, missed object, sloppy box),
so that gold checks and agreement measures have something to catch.

Only this module may read the true labels. The pipeline learns them solely through the
Label Studio export that :func:`simulate_review` writes.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from labeling_dag.formats.label_studio_export import RECTANGLES
from labeling_dag.formats.review_interface import ReviewInterface
from labeling_dag.formats.yolo import label_path_for, load_data_yaml, read_yolo_labels
from labeling_dag.ingest import INGESTED_SUFFIXES
from labeling_dag.model_registry import file_sha256
from labeling_dag.records import NormBox

_MATCH_IOU = 0.5  # least IoU for a prediction to count as an attempt at a true box
ACCEPT_IOU = 0.85  # a careful reviewer leaves a box this close alone
# A box shifted by 30 % of its size along both axes still covers 0.7 * 0.7 = 49 % of
# the true box, so its IoU with the truth is at most 0.49, clipped or not.
_SLOPPY_SHIFT = 0.3
# The mistakes a reviewer of boxes makes; a reviewer of whole-item classes can only choose a wrong class.
BOX_MISTAKES = ("wrong_class", "missed", "sloppy_box")
CLASS_MISTAKES = ("wrong_class",)
MISTAKES = {"detection": BOX_MISTAKES, "text": CLASS_MISTAKES}  # by modality


@dataclass(frozen=True)
class TrueBox:
    """One true object of an image: its class name and its normalised centre box."""

    class_name: str
    box: NormBox


def load_truth(
    data_yaml: Path, split: str = "train", suffixes: tuple[str, ...] = INGESTED_SUFFIXES
) -> dict[str, tuple[TrueBox, ...]]:
    """Read the true boxes of one split of a YOLO dataset, keyed by image id.

    The key is the sha256 hex of the image file's bytes, the id the pipeline gives an
    ingested image; class ids become names through the data.yaml ``names``. The split
    (``"train"`` or ``"val"``) must be an image folder; images are found in it
    recursively by ``suffixes`` (the modality's item files). An image without a label file has
    no objects, as in Ultralytics.

    Raises ``ValueError`` on an unknown split, a split that is not a folder, a class id
    outside ``names``, a malformed label file, or two files with identical bytes but
    different labels.
    """
    spec = load_data_yaml(data_yaml)
    folders = {"train": spec.train_images, "val": spec.val_images}
    if split not in folders:
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    folder = folders[split]
    if not folder.is_dir():
        raise ValueError(f"{folder}: the {split!r} split is not an image folder")
    image_paths = sorted(path for path in folder.rglob("*") if path.suffix.lower() in suffixes and path.is_file())
    truth: dict[str, tuple[TrueBox, ...]] = {}
    for image_path in image_paths:
        label_file = label_path_for(image_path)
        rows = read_yolo_labels(label_file) if label_file.exists() else []
        boxes: list[TrueBox] = []
        for class_id, xc, yc, w, h in rows:
            if class_id >= len(spec.names):
                raise ValueError(
                    f"{label_file}: class id {class_id} is not in data.yaml names (0..{len(spec.names) - 1})"
                )
            boxes.append(TrueBox(class_name=spec.names[class_id], box=NormBox(xc, yc, w, h)))
        image_id = file_sha256(image_path)
        # Identical bytes are one image to the pipeline, so they must carry one truth.
        if truth.setdefault(image_id, tuple(boxes)) != tuple(boxes):
            raise ValueError(f"{image_path}: same bytes as another image in the split but different labels")
    return truth


def simulate_review(
    tasks: Sequence[Mapping[str, Any]],
    truth: Mapping[str, Sequence[TrueBox]],
    *,
    class_names: Sequence[str],
    error_rate: float = 0.0,
    seed: int = 0,
    reviewer: str = "reviewer-1",
    reviewer_id: int = 1,
    annotated_at: datetime | None = None,
    seconds_per_task: float = 30.0,
    interface: ReviewInterface = RECTANGLES,
    mistakes: tuple[str, ...] = BOX_MISTAKES,
) -> list[dict[str, Any]]:
    """Answer exported review tasks like a careful human, in Label Studio's JSON export format.

    Each returned task is a deep copy of the input task (``predictions`` unchanged) with
    ``id`` (``index + 1`` when the task has none) and one annotation appended to its
    ``annotations``: ``id`` ``index + 1`` (counted on from the largest integer annotation
    id already in ``tasks``), ``completed_by`` ``{"id": reviewer_id, "email": reviewer}``,
    ``created_at`` = ``updated_at`` = ``annotated_at + index * seconds_per_task`` (ISO
    8601, UTC, ``Z``; ``annotated_at=None`` means now), ``lead_time``, ``was_cancelled``
    False and the ``result`` regions. Feeding the output back in with another reviewer
    (and another ``seed``, or it repeats the same mistakes) gives tasks with several
    annotations, as agreement between reviewers needs.

    The predicted regions of ``predictions[0]`` are matched one-to-one to the true boxes
    of ``truth[task["data"]["image_id"]]`` (Hungarian on IoU, class-agnostic, IoU >= 0.5).
    A match of the right class with IoU >= 0.85 is kept exactly as predicted; any other
    match keeps the region id and gets the true class and box; unmatched predictions are
    deleted; unmatched true boxes are drawn as regions with id
    ``f"sim-{image_id[:8]}-{k}"`` (``k``: the box's index in the truth).

    With probability ``error_rate``, independently per true box, the reviewer makes one
    mistake on it, chosen uniformly among ``mistakes``: a wrong class (another of ``class_names``;
    not offered when there is only one class), missing it (no region, and its matched
    prediction is deleted), or a sloppy box (the true box shifted by 30 % of its size on
    both axes and clipped to the image, IoU with the truth <= 0.49). The draws come from
    ``seed`` and the image id alone, so an image gets the same answer whatever the order
    or composition of the batch, and raising ``error_rate`` only adds mistakes.

    Regions are read and written by the modality's ``interface`` (boxes by default; a whole-item
    class for a text). Region sizes (``original_width``/``original_height``) come from the predicted
    regions, or from ``data["width"]``/``data["height"]`` when the task has them.

    Raises ``KeyError`` naming an image that is not in ``truth``; ``ValueError`` on bad
    settings, a true class missing from ``class_names``, a malformed task, or a task that
    needs a region but tells no image size.
    """
    names = tuple(class_names)
    if not names or len(set(names)) != len(names):
        raise ValueError(f"class_names must be non-empty and unique, got {names!r}")
    if not 0.0 <= error_rate <= 1.0:  # also rejects NaN
        raise ValueError(f"error_rate must be in [0, 1], got {error_rate!r}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if not isinstance(reviewer, str) or not reviewer:
        raise ValueError(f"reviewer must be a non-empty string, got {reviewer!r}")
    if not seconds_per_task > 0:
        raise ValueError(f"seconds_per_task must be > 0, got {seconds_per_task!r}")
    if annotated_at is not None and annotated_at.tzinfo is None:
        raise ValueError("annotated_at must be timezone-aware")
    start = datetime.now(UTC) if annotated_at is None else annotated_at.astimezone(UTC)

    existing = [_existing_annotations(task, index) for index, task in enumerate(tasks)]
    last_id = max(
        (
            annotation["id"]
            for annotations in existing
            for annotation in annotations
            if isinstance(annotation.get("id"), int) and not isinstance(annotation["id"], bool)
        ),
        default=0,
    )
    answered: list[dict[str, Any]] = []
    for index, task in enumerate(tasks):
        data = task.get("data")
        image_id = data.get("image_id") if isinstance(data, Mapping) else None
        if not isinstance(image_id, str) or not image_id:
            raise ValueError(f"task #{index} has no data.image_id")
        if image_id not in truth:
            raise KeyError(f"image {image_id!r} of task #{index} is not in the truth")
        try:
            result = _answer(task, image_id, tuple(truth[image_id]), names, error_rate, seed, interface, mistakes)
        except ValueError as exc:
            raise ValueError(f"task #{index} (image {image_id!r}): {exc}") from exc
        stamp = (start + timedelta(seconds=index * seconds_per_task)).isoformat(timespec="microseconds")
        out = copy.deepcopy(dict(task))
        out.setdefault("id", index + 1)
        out["annotations"] = [
            *out.get("annotations", []),
            {
                "id": last_id + index + 1,
                "completed_by": {"id": reviewer_id, "email": reviewer},
                "result": result,
                "was_cancelled": False,
                "created_at": stamp.replace("+00:00", "Z"),
                "updated_at": stamp.replace("+00:00", "Z"),
                "lead_time": seconds_per_task,
            },
        ]
        answered.append(out)
    return answered


def _existing_annotations(task: Any, index: int) -> list[Mapping[str, Any]]:
    """The annotations a task already carries, checked to be a list of objects."""
    if not isinstance(task, Mapping):
        raise ValueError(f"task #{index} must be an object, got {type(task).__name__}")
    annotations = task.get("annotations", [])
    if not isinstance(annotations, list) or not all(isinstance(a, Mapping) for a in annotations):
        raise ValueError(f"task #{index}: annotations must be a list of objects")
    return annotations


def _answer(
    task: Mapping[str, Any],
    image_id: str,
    true_boxes: tuple[TrueBox, ...],
    class_names: tuple[str, ...],
    error_rate: float,
    seed: int,
    interface: ReviewInterface,
    kinds_of_mistake: tuple[str, ...],
) -> list[dict[str, Any]]:
    """The result regions a reviewer submits for one task."""
    unknown = sorted({t.class_name for t in true_boxes} - set(class_names))
    if unknown:
        raise ValueError(f"true classes {unknown} are not in class_names")
    predicted = _predicted_regions(task, interface)
    matches, iou = _match([box for _, box, _ in predicted], [t.box for t in true_boxes])

    mistakes = tuple(m for m in kinds_of_mistake if m != "wrong_class" or len(class_names) > 1)
    # Every draw is made for every box whatever the rate (the class draw even with one
    # class), so the same seed gives nested sets of mistakes as error_rate grows.
    rng = _image_rng(seed, image_id)
    n = len(true_boxes)
    slips = rng.random(n) < error_rate
    kinds = rng.integers(max(len(mistakes), 1), size=n)
    other_class = rng.integers(max(len(class_names) - 1, 1), size=n)
    shift_signs = rng.choice((-1.0, 1.0), size=(n, 2))

    answers: list[tuple[str, dict[str, Any]]] = []
    for k, true in enumerate(true_boxes):
        target = _clipped(true.box)
        match = matches.get(k)
        if match is None:
            region_id, value = f"sim-{image_id[:8]}-{k}", interface.region_value(target, true.class_name)
        else:
            region, _, predicted_class = predicted[match]
            region_id = region["id"]
            if predicted_class == true.class_name and iou[k, match] >= ACCEPT_IOU:
                value = copy.deepcopy(dict(region["value"]))
            else:
                value = interface.region_value(target, true.class_name)
        if slips[k] and mistakes:
            mistake = mistakes[kinds[k]]
            if mistake == "missed":
                continue
            if mistake == "wrong_class":
                others = [name for name in class_names if name != true.class_name]
                value[interface.result_type] = [others[other_class[k]]]
            else:
                dx, dy = shift_signs[k]
                sloppy = NormBox(
                    x=target.x + dx * _SLOPPY_SHIFT * target.w,
                    y=target.y + dy * _SLOPPY_SHIFT * target.h,
                    w=target.w,
                    h=target.h,
                )
                value = interface.region_value(_clipped(sloppy), true.class_name)
        answers.append((region_id, value))

    kept_ids = [region_id for region_id, _ in answers]
    if len(set(kept_ids)) != len(kept_ids):
        raise ValueError(f"region ids repeat in the answer: {kept_ids}")
    if not answers:
        return []
    width, height = _image_size(task, predicted)
    return [interface.result_item(region_id, value, width, height) for region_id, value in answers]


def _predicted_regions(
    task: Mapping[str, Any], interface: ReviewInterface
) -> list[tuple[Mapping[str, Any], NormBox, str]]:
    """The regions of the task's first prediction, with their box and class."""
    predictions = task.get("predictions") or []
    if not isinstance(predictions, list):
        raise ValueError(f"predictions must be a list, got {type(predictions).__name__}")
    if not predictions:
        return []
    result = predictions[0].get("result") if isinstance(predictions[0], Mapping) else None
    if not isinstance(result, list):
        raise ValueError("the first prediction has no result list")
    regions: list[tuple[Mapping[str, Any], NormBox, str]] = []
    for item in result:
        if not isinstance(item, Mapping) or item.get("type") != interface.result_type:
            continue
        value = item.get("value")
        if not isinstance(value, Mapping):
            raise ValueError(f"predicted region {item.get('id')!r} has no value object")
        try:
            class_name, box = interface.read_value(value)
        except ValueError as exc:
            raise ValueError(f"predicted region {item.get('id')!r}: {exc}") from exc
        if not isinstance(item.get("id"), str) or not item["id"]:
            raise ValueError(f"predicted region id must be a non-empty string, got {item.get('id')!r}")
        regions.append((item, box, class_name))
    return regions


def _image_size(task: Mapping[str, Any], predicted: list[tuple[Mapping[str, Any], NormBox, str]]) -> tuple[int, int]:
    """The image size in pixels that the task's regions and data agree on."""
    # A region without geometry (a text's choice) tells no size.
    sizes = {
        (region.get("original_width"), region.get("original_height"))
        for region, _, _ in predicted
        if "original_width" in region or "original_height" in region
    }
    data = task["data"]
    if "width" in data or "height" in data:
        sizes.add((data.get("width"), data.get("height")))
    if not sizes:
        raise ValueError(
            "no predicted region and no data.width/data.height to tell the image size that new regions need"
        )
    if len(sizes) > 1:
        raise ValueError(f"the task's regions and data disagree on the image size: {sorted(sizes, key=repr)}")
    ((width, height),) = sizes
    for what, size in (("width", width), ("height", height)):
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise ValueError(f"image {what} must be a positive integer, got {size!r}")
    return width, height


def _match(predicted: Sequence[NormBox], true: Sequence[NormBox]) -> tuple[dict[int, int], np.ndarray]:
    """One-to-one matches ``{true index: predicted index}`` and the (true, predicted) IoU matrix."""
    if not predicted or not true:
        return {}, np.zeros((len(true), len(predicted)))
    from torchvision.ops import box_iou

    iou = box_iou(_xyxy(true), _xyxy(predicted)).numpy()
    # Pairs below the threshold weigh nothing, so they cannot displace an eligible pair.
    rows, cols = linear_sum_assignment(np.where(iou >= _MATCH_IOU, iou, 0.0), maximize=True)
    matches = {int(r): int(c) for r, c in zip(rows, cols, strict=True) if iou[r, c] >= _MATCH_IOU}
    return matches, iou


def _xyxy(boxes: Sequence[NormBox]) -> Any:
    """Corner coordinates as a float64 tensor of shape (n, 4)."""
    import torch

    return torch.tensor(
        [[b.x - b.w / 2, b.y - b.h / 2, b.x + b.w / 2, b.y + b.h / 2] for b in boxes],
        dtype=torch.float64,
    )


def _clipped(box: NormBox) -> NormBox:
    """The part of ``box`` inside the image; a reviewer cannot draw past the border."""
    left, right = max(box.x - box.w / 2, 0.0), min(box.x + box.w / 2, 1.0)
    top, bottom = max(box.y - box.h / 2, 0.0), min(box.y + box.h / 2, 1.0)
    return NormBox(x=(left + right) / 2, y=(top + bottom) / 2, w=right - left, h=bottom - top)


def _image_rng(seed: int, image_id: str) -> np.random.Generator:
    """A generator that depends only on the seed and the image, not on the batch."""
    # Hashed because image ids are arbitrary strings to this module.
    digest = int.from_bytes(hashlib.sha256(image_id.encode("utf-8")).digest(), "big")
    return np.random.default_rng(np.random.SeedSequence([seed, digest]))
