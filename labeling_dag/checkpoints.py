"""Reproducible weights files: the same weights always give the same bytes.

A model's version is the sha256 of its weights file (the registry checks it before anything
is unpickled). Ultralytics' ``best.pt`` also holds the training date, wall-clock epoch times,
the git commit and every absolute path of the run (data, project, save dir), so two trainings
with identical weights would get different versions, and a run re-done after a crash could
not be compared with the uninterrupted one. :func:`write_reproducible` keeps what loading and
fine-tuning need and drops the rest.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from labeling_dag import atomic

# Training arguments that name a place on this machine or depend on the clock.
_MACHINE_SPECIFIC_ARGS = frozenset({"data", "model", "project", "name", "save_dir", "source", "cfg", "resume"})
# Checkpoint entries written by ultralytics that are not the same from one training to the next.
_VOLATILE_ENTRIES = ("date", "git", "train_results", "train_metrics")


def portable_args(train_args: dict[str, Any]) -> dict[str, Any]:
    """``train_args`` without the entries that name paths on the training machine."""
    return {key: value for key, value in train_args.items() if key not in _MACHINE_SPECIFIC_ARGS}


def write_reproducible(checkpoint: Path, target: Path) -> Path:
    """Write ``checkpoint`` (a trusted ultralytics ``.pt`` this process just trained) to ``target``
    without its dates, times and paths, atomically, and return ``target``.

    Only call this on a file the pipeline trained itself: loading a checkpoint runs pickle.
    """
    import torch

    content = torch.load(checkpoint, map_location="cpu", weights_only=False)
    for entry in _VOLATILE_ENTRIES:
        content.pop(entry, None)
    content["train_args"] = portable_args(content.get("train_args") or {})
    model = content.get("model")
    if model is not None:
        if isinstance(getattr(model, "args", None), dict):
            model.args = portable_args(model.args)
        # Set by ultralytics when a model is loaded from a file: the parent's path on this machine.
        if hasattr(model, "pt_path"):
            del model.pt_path
    # Saved to memory: written to a file, the zip's folder names would carry the temp file's name.
    buffer = io.BytesIO()
    torch.save(content, buffer)
    atomic.write_bytes(target, buffer.getvalue())
    return target
