"""Fit a seed model of another class list to the project's: rename, reorder and drop its classes.

A detector's class ``i`` is output channel ``i`` of its classification head, and the pipeline
reads a model's class ``i`` as the project's class ``i``. So a model whose classes differ from
the project's is usable only once its head's class outputs are put in the project's order:
:func:`class_order` decides, from the model's names, the project's names and a user's map,
which model output becomes which project class (refusing what cannot be matched), and
:func:`remap_weights` writes a new checkpoint whose head has exactly those outputs.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from labeling_dag import atomic


class ClassMapError(ValueError):
    """A class map that is malformed or does not match a model to the project's classes."""


def parse_class_map(text: str) -> dict[str, str]:
    """``"person=pedestrian,car=vehicle"`` as ``{model class: project class}``."""
    mapping: dict[str, str] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        source, sep, target = (side.strip() for side in item.partition("="))
        if not sep or not source or not target:
            raise ClassMapError(f"--class-map: {item!r} is not MODEL_CLASS=PROJECT_CLASS")
        if source in mapping:
            raise ClassMapError(f"--class-map: model class {source!r} is mapped twice")
        mapping[source] = target
    return mapping


def class_order(model_names: Sequence[str], project_names: Sequence[str], class_map: Mapping[str, str]) -> list[int]:
    """For each project class, in order, the index of the model class that predicts it.

    A model class takes its mapped name (``class_map``), else keeps its own; model classes
    whose name is then no project class are dropped. Raises :class:`ClassMapError` when the
    map names a class the model lacks or a class outside the project, when a project class
    has no model class, or when two model classes would predict the same project class.
    """
    unknown = sorted(set(class_map) - set(model_names))
    if unknown:
        raise ClassMapError(
            f"--class-map names {unknown}, which the model does not have (its classes: {list(model_names)})"
        )
    outside = sorted(set(class_map.values()) - set(project_names))
    if outside:
        raise ClassMapError(f"--class-map maps to {outside}, which are not project classes {list(project_names)}")
    sources: dict[str, list[int]] = {}
    for index, name in enumerate(model_names):
        sources.setdefault(class_map.get(name, name), []).append(index)
    order = []
    for name in project_names:
        found = sources.get(name, [])
        if not found:
            raise ClassMapError(
                f"project class {name!r} has no model class (model classes: {list(model_names)}); "
                f"map one with --class-map MODEL_CLASS={name}"
            )
        if len(found) > 1:
            raise ClassMapError(
                f"model classes {[model_names[i] for i in found]} would all predict project class {name!r}"
            )
        order.append(found[0])
    return order


def remap_weights(weights: Path, target: Path, *, order: Sequence[int], names: Sequence[str]) -> Path:
    """Write ``weights`` to ``target`` with head outputs ``order`` (model class indices), named ``names``.

    Detection heads (and their segment / pose / end-to-end variants) keep the box branch and
    take rows ``order`` of the last convolution of every class branch; classification heads
    take rows ``order`` of their linear layer. The same input always gives the same bytes, so
    the remapped model's version (its sha256) is stable. Loading ``weights`` runs pickle:
    call this only on a file its owner trusts (a seed model they chose).
    """
    import torch

    content = torch.load(weights, map_location="cpu", weights_only=False)
    if not isinstance(content, dict) or content.get("model") is None:
        raise ClassMapError(f"{weights}: not an ultralytics checkpoint (no 'model' entry)")
    for key in ("model", "ema"):
        if content.get(key) is not None:
            _remap_model(content[key], list(order), list(names), weights)
    content.pop("optimizer", None)
    # Saved to memory first: a file name would end up inside the zip and change the bytes.
    buffer = io.BytesIO()
    torch.save(content, buffer)
    atomic.write_bytes(target, buffer.getvalue())
    return target


def _remap_model(model: Any, order: list[int], names: list[str], weights: Path) -> None:
    from torch import nn

    head = model.model[-1]
    if hasattr(head, "cv3"):
        for branches in (head.cv3, getattr(head, "one2one_cv3", None)):
            for branch in branches or ():
                branch[-1] = _rows(branch[-1], order)
        head.nc = len(order)
        head.no = head.nc + head.reg_max * 4
    elif isinstance(getattr(head, "linear", None), nn.Linear):
        head.linear = _rows(head.linear, order)
    else:
        raise ClassMapError(
            f"{weights}: cannot remap classes of a {type(head).__name__} head (detect or classify only)"
        )
    model.names = dict(enumerate(names))
    if isinstance(getattr(model, "yaml", None), dict):
        model.yaml["nc"] = len(names)


def _rows(layer: Any, order: list[int]) -> Any:
    """A copy of a ``Conv2d`` (1x1 class branch) or ``Linear`` layer keeping output rows ``order``."""
    import torch
    from torch import nn

    index = torch.tensor(order, dtype=torch.long)
    if isinstance(layer, nn.Conv2d):
        fresh = nn.Conv2d(
            layer.in_channels, len(order), layer.kernel_size, layer.stride, layer.padding, bias=layer.bias is not None
        )
    elif isinstance(layer, nn.Linear):
        fresh = nn.Linear(layer.in_features, len(order), bias=layer.bias is not None)
    else:
        raise ClassMapError(f"unexpected class layer {type(layer).__name__}")
    fresh = fresh.to(dtype=layer.weight.dtype)
    with torch.no_grad():
        fresh.weight.copy_(layer.weight[index])
        if layer.bias is not None:
            fresh.bias.copy_(layer.bias[index])
    fresh.requires_grad_(layer.weight.requires_grad)
    return fresh
