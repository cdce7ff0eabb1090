"""How the simulated loop starts from a seed model: warm, pretrained or cold.

A seed model whose classes are the pool's, or become them through a class map (renamed,
reordered, extra classes dropped), pre-labels the first review batch: a warm start. A seed
model of other classes cannot pre-label, but its weights are a better starting point than
random ones: the first model trains from them (ultralytics keeps the tensors that fit and
builds a new class head) after a random seed round, a pretrained start. Without a seed model
the first model trains from the detector's YAML, a cold start.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from labeling_dag.class_map import ClassMapError, class_order, remap_weights

STARTS = ("warm", "pretrained", "cold")


class SeedModelError(ValueError):
    """A seed model or class map the loop cannot start from; the message names the file."""


@dataclass(frozen=True)
class LoopStart:
    """Which start a seed model gives the loop (``kind``, one of :data:`STARTS`).

    ``weights`` is the seed model (None on a cold start); ``order`` is, on a warm start whose
    model classes are not the pool's as they are, the model class that predicts each pool class.
    """

    kind: str
    weights: Path | None = None
    order: tuple[int, ...] | None = None


def loop_start(seed_model: Path | None, class_map: Mapping[str, str], class_names: Sequence[str]) -> LoopStart:
    """Decide the start; reads the seed model's class names and writes nothing.

    Without a class map, a model whose classes include the pool's starts warm and any other
    starts pretrained; a class map is a demand for a warm start, so one that does not fit the
    model to the pool raises :class:`SeedModelError` (as does a missing file or a non-detector).
    """
    from labeling_dag.resources.detector import NotADetectorError, detector_classes

    if seed_model is None:
        if class_map:
            raise SeedModelError("a class map maps a seed model's classes: give a seed model too")
        return LoopStart("cold")
    weights = Path(seed_model).expanduser().resolve()
    try:
        names = detector_classes(weights, role="seed model")
    except NotADetectorError as error:
        raise SeedModelError(str(error)) from error
    if names == tuple(class_names) and not class_map:
        return LoopStart("warm", weights)
    try:
        order = class_order(names, class_names, class_map)
    except ClassMapError as error:
        if class_map:
            raise SeedModelError(f"{weights}: {error}") from error
        return LoopStart("pretrained", weights)
    identity = names == tuple(class_names) and order == list(range(len(class_names)))
    return LoopStart("warm", weights, None if identity else tuple(order))


def warm_seed_model(start: LoopStart, class_names: Sequence[str], folder: Path) -> Path:
    """The weights that pre-label the first batch of a warm start: the seed model itself, or its copy
    in ``folder`` whose class head is the pool's (the same inputs give the same bytes)."""
    if start.kind != "warm" or start.weights is None:
        raise ValueError(f"a {start.kind} start has no seed model to pre-label with")
    if start.order is None:
        return start.weights
    return remap_weights(start.weights, Path(folder) / "seed-model.pt", order=start.order, names=class_names)
