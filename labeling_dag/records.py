"""Typed records exchanged between the pure modules, the resources and the assets.

Boxes are always YOLO-style normalised centre coordinates (``x``, ``y`` = box centre,
``w``, ``h`` = size, all as fractions of the image), whatever format they arrive in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class NormBox:
    """An axis-aligned box in normalised centre xywh."""

    x: float
    y: float
    w: float
    h: float


@dataclass(frozen=True)
class PreLabel:
    """One box proposed by a model for one image."""

    box_id: str
    image_id: str
    class_name: str
    box: NormBox
    confidence: float
    class_probs: tuple[float, ...]
    model_version: str


@dataclass(frozen=True)
class ReviewImage:
    """What a review task needs to know about one image."""

    image_id: str
    image_ref: str  # the URL or path the labelling tool opens
    width: int
    height: int
    score: float  # the selection score that put the image into the batch
    pre_labels: tuple[PreLabel, ...] = field(default_factory=tuple)


@dataclass(frozen=True, eq=False)
class ImagePrediction:
    """A model's output for one image, converted from ultralytics ``Results``.

    Arrays: ``boxes_xywhn`` (n, 4) normalised centre xywh; ``class_ids`` (n,);
    ``confidences`` (n,); ``class_probs`` (n, n_classes) raw per-class scores in [0, 1];
    ``embedding`` (d,) an image descriptor pooled from the model's own feature maps.
    A classification model yields one whole-image box (0.5, 0.5, 1, 1).
    """

    path: str
    width: int
    height: int
    boxes_xywhn: np.ndarray
    class_ids: np.ndarray
    confidences: np.ndarray
    class_probs: np.ndarray
    embedding: np.ndarray


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: the weights file is trusted only while its sha256 matches."""

    model_version: str  # sha256 of the weights file
    path: str  # relative to the workdir
    task: str  # "detect" or "classify"
    class_names: tuple[str, ...]
    parent: str | None
    source: str  # "seed_model", "cold_start", "retrained"
    created_at: str
    metrics: dict[str, float] = field(default_factory=dict)
    training_snapshot: str = ""  # the verified-labels snapshot it was trained on ("" for seed models)
