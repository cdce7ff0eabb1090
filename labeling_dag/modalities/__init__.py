"""Modalities: the parts of the lifecycle that depend on what an item is.

Every stage (ingest, clean, pre-label, score, select, review, merge, calibrate, train, promote,
snapshot) is written once, over *items* and their *regions*. A region is a box of an image, or,
for a classification, the whole item (centre 0.5, 0.5, size 1 x 1, as an ultralytics
classification model's prediction already is), so calibration, gold items, consensus, lineage
and the DVC snapshots need no branch per modality. What has to know what an item is lives behind
one :class:`~labeling_dag.modalities.modality.Modality`: which files ingestion takes, how a raw
file is cleaned and its duplicates found, the labelling tool's interface and tasks and how its
answers are read back, and how verified labels become a training set.

A workdir holds one modality, fixed by ``labeling-dag init --modality`` in ``modality.json``
(a workdir without the file holds images for detection, as every workdir did before the seam);
:meth:`labeling_dag.resources.storage.LabelStore.modality` reads it. A new modality is one module
that builds a ``Modality`` plus one line in :data:`MODALITIES`.
"""

from __future__ import annotations

import json
from pathlib import Path

from labeling_dag.modalities.detection import DETECTION
from labeling_dag.modalities.modality import Modality
from labeling_dag.modalities.text import TEXT

MODALITY_FILE = "modality.json"
MODALITIES: dict[str, Modality] = {DETECTION.name: DETECTION, TEXT.name: TEXT}
DEFAULT_MODALITY = "detection"


def modality_named(name: str) -> Modality:
    """The registered modality called ``name``; ``ValueError`` naming the known ones otherwise."""
    try:
        return MODALITIES[name]
    except KeyError:
        raise ValueError(f"unknown modality {name!r}; choose one of {sorted(MODALITIES)}") from None


def workdir_modality(workdir: Path) -> Modality:
    """The modality recorded in ``workdir/modality.json``; detection where the file is absent.

    Raises ``ValueError`` naming the file when it is not a JSON string of a registered modality.
    """
    path = Path(workdir) / MODALITY_FILE
    if not path.exists():
        return MODALITIES[DEFAULT_MODALITY]
    try:
        name = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(name, str):
        raise ValueError(f"{path}: expected a JSON string naming the modality, got {name!r}")
    try:
        return modality_named(name)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
