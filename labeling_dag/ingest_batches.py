"""Ingestion batches: the unit raw images arrive in, and the partition key of the pre-label path.

A batch is a sub-folder of the source folder (or an object-store prefix); files lying at the
top of the source form the batch ``_root``. The key becomes a folder name in the workdir and
a Dagster partition key, so only plain names are accepted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

ROOT_BATCH = "_root"
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def batch_key_problem(key: str) -> str | None:
    """Why ``key`` cannot name an ingestion batch, or None when it can."""
    if key == ROOT_BATCH:
        return None
    if not _KEY.fullmatch(key):
        return "a batch name must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"
    if ".." in key:
        return "a batch name must not contain '..'"
    return None


@dataclass(frozen=True)
class ScoredBatch:
    """The last scoring of one batch: the model that made its pre-labels ("" = none yet) and
    how many of its images were still unverified then."""

    model_version: str
    unsettled: int


def stale_batches(batches: Sequence[str], scored: Mapping[str, ScoredBatch], *, model_version: str) -> list[str]:
    """Batches whose pre-labels must be made again for ``model_version``.

    A batch never scored is stale. A batch scored with another model is stale only while it
    still had unverified images: re-running a settled batch would predict nothing.
    """
    return [
        batch
        for batch in batches
        if batch not in scored or (scored[batch].model_version != model_version and scored[batch].unsettled > 0)
    ]
