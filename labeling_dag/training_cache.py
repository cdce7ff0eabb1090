"""A store of trained weights keyed by everything the training read.

Training here is deterministic on one machine (fixed seed, ``deterministic=True``, no loader
workers) and :func:`labeling_dag.checkpoints.write_reproducible` makes the weights file's bytes
depend on the weights alone. Two training requests with the same images, labels, base weights,
arguments, library versions and thread count therefore give the same file, and the second
one can take the first one's result instead of training again. Experiments that replay one
history many times (the label-savings benchmark runs every selection strategy from the same
seed round) use this; a production run leaves it off.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from labeling_dag import atomic
from labeling_dag.checkpoints import portable_args
from labeling_dag.formats.yolo import label_path_for, load_data_yaml

_IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})


def training_key(data_yaml: Path, base: str, args: dict[str, Any], *, environment: dict[str, Any]) -> str:
    """The sha256 naming one training request.

    ``base`` is what training starts from: the architecture YAML name (from scratch) or the
    sha256 of the weights it starts from (a fine-tune's parent, or pretrained weights of other
    classes), so another starting point is another training; ``args`` are the trainer
    arguments (paths are left out: where the data lies does not change the weights);
    ``environment`` names what else decides the numbers (library versions, torch's thread
    count). Every image and label file of both splits is read, so a relabelled box or a
    replaced image gives another key.
    """
    spec = load_data_yaml(data_yaml)
    digest = hashlib.sha256()
    header = {"base": base, "args": portable_args(args), "environment": environment, "names": list(spec.names)}
    digest.update(json.dumps(header, sort_keys=True, default=str).encode())
    for split, folder in (("train", spec.train_images), ("val", spec.val_images)):
        for image in sorted(p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES):
            label = label_path_for(image)
            digest.update(f"{split}/{image.name}\0".encode())
            digest.update(hashlib.sha256(image.read_bytes()).digest())
            digest.update(label.read_bytes() if label.is_file() else b"\0no-label")
    return digest.hexdigest()


def cached_weights(cache: Path, key: str) -> Path | None:
    """The stored weights of ``key``, or None when that training has not been done."""
    path = Path(cache) / f"{key}.pt"
    return path if path.is_file() else None


def store_weights(cache: Path, key: str, weights: Path) -> None:
    """Keep ``weights`` as the result of ``key`` (atomically: a reader never sees half a file)."""
    atomic.copy_file(weights, Path(cache) / f"{key}.pt")
