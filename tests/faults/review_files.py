"""Review batches and Label Studio exports over a real workdir, for the review-path fault suites.

A batch is exported the way ``review_batch`` does it (the outbox file and its rows in the
batches table); its answer is a Label Studio JSON export written by hand (the simulated
reviewer would pull in torchvision, seconds of import). Files reach the inbox the documented
way (temporary name, then rename) with an mtime a minute in the past, so they count as
finished whatever settle time the inbox applies.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
from labeling_dag.resources.review_exchange import FileReviewExchange, FolderReview
from labeling_dag.resources.storage import LabelStore

from labeling_dag import atomic
from labeling_dag.contracts import BATCH_COLUMNS, REVIEW_BATCHES
from labeling_dag.formats.label_studio import review_task
from labeling_dag.records import NormBox, PreLabel, ReviewImage
from labeling_dag.sensors import review_complete_sensor

CLASSES = ("circle", "square", "triangle")
MODEL = "model-v1"
EXCHANGE = FileReviewExchange()
ANSWERED_AT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
# Where the sensor moves files; every other file of the workdir is "stored" state.
EXCHANGE_IN_FLIGHT = ("exchange/inbox", "exchange/quarantine")


def review_image(image_id: str, index: int) -> ReviewImage:
    """Image ``image_id``, the ``index``-th of its batch: 64x64, one predicted circle (placed by
    ``index``, so that a dozen images' boxes all lie inside the image), referenced the way
    review_batch does."""
    pre_label = PreLabel(
        box_id=f"{image_id}-b0",
        image_id=image_id,
        class_name="circle",
        box=NormBox(0.1 + 0.07 * index, 0.5, 0.1, 0.1),
        confidence=0.6,
        class_probs=(0.6, 0.3, 0.1),
        model_version=MODEL,
    )
    return ReviewImage(
        image_id=image_id,
        image_ref=f"/data/local-files/?d=cleaned_images/files/{image_id}.png",
        width=64,
        height=64,
        score=0.5,
        pre_labels=(pre_label,),
    )


def export_batch(store: LabelStore, batch_id: str, images: int = 3) -> list[dict[str, Any]]:
    """Export a batch as review_batch does (outbox file + batches rows); return its tasks."""
    chosen = [review_image(f"{batch_id}-img{index}", index) for index in range(images)]
    tasks = [review_task(image, batch_id=batch_id, model_version=MODEL, pre_label_run_id="run-1") for image in chosen]
    EXCHANGE.export(store.root, batch_id, tasks)
    rows = batch_rows(batch_id, [image.image_id for image in chosen])
    batches = store.read(REVIEW_BATCHES)
    store.write(REVIEW_BATCHES, pd.concat([batches, rows], ignore_index=True))
    return tasks


def batch_rows(batch_id: str, image_ids: list[str], **columns: Any) -> pd.DataFrame:
    """The review-batch rows of ``image_ids`` as review_batch writes them: a random batch of
    model ``MODEL``, one annotator each, nothing gold; ``columns`` override any column."""
    defaults = {
        "batch_id": batch_id,
        "image_id": image_ids,
        "position": range(len(image_ids)),
        "score": 0.5,
        "strategy": "random",
        "model_version": MODEL,
        "is_gold": False,
        "is_spot_check": False,
        "by_uncertainty": False,
        "is_re_review": False,
        "annotators": 1,
        "created_at": ANSWERED_AT.isoformat(),
        "run_id": "run-1",
    }
    return pd.DataFrame(defaults | columns, columns=list(BATCH_COLUMNS)).astype(BATCH_COLUMNS)


def answer(
    tasks: list[dict[str, Any]],
    *,
    reviewer: str = "reviewer-1",
    label: str = "square",
    first_id: int = 1,
    delay: int = 0,
) -> list[dict[str, Any]]:
    """A complete Label Studio export of ``tasks``: ``reviewer`` relabels every predicted box as ``label``."""
    answered = []
    for index, task in enumerate(tasks):
        regions = copy.deepcopy(task["predictions"][0]["result"])
        for region in regions:
            region.pop("score", None)
            region["value"]["rectanglelabels"] = [label]
        stamp = (ANSWERED_AT + timedelta(seconds=30 * index + delay)).isoformat().replace("+00:00", "Z")
        annotation = {
            "id": first_id + index,
            "completed_by": {"id": first_id + index, "email": reviewer},
            "result": regions,
            "was_cancelled": False,
            "created_at": stamp,
            "updated_at": stamp,
            "lead_time": 30.0,
        }
        answered.append({**copy.deepcopy(task), "id": index + 1, "annotations": [annotation]})
    return answered


def json_paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path (a tuple of keys and list indices) to a value inside a JSON document."""
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, child in node.items():
            found += json_paths(child, prefix + (key,))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            found += json_paths(child, prefix + (index,))
    return found


def inbox(store: LabelStore) -> Path:
    """The review inbox of a workdir."""
    return EXCHANGE.root(store.root) / "inbox"


def drop(store: LabelStore, name: str, content: Any) -> Path:
    """Put a finished file into the inbox: bytes as they are, anything else as JSON."""
    target = inbox(store) / name
    if isinstance(content, bytes):
        atomic.write_bytes(target, content)
    else:
        atomic.write_json(target, content)
    settled = time.time() - 60
    os.utime(target, (settled, settled))
    return target


def tick(store: LabelStore, instance: dg.DagsterInstance, cursor: str | None = None) -> dg.SensorExecutionData:
    """One evaluation of the real review sensor over ``store``."""
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={"store": store, "exchange": EXCHANGE, "review": FolderReview()},
    )
    return review_complete_sensor.evaluate_tick(context)


def listing(store: LabelStore, folder: str) -> list[str]:
    """File names in an exchange folder, sorted."""
    path = EXCHANGE.root(store.root) / folder
    return sorted(p.name for p in path.iterdir()) if path.is_dir() else []


def quarantined(store: LabelStore) -> list[tuple[Path, dict[str, Any]]]:
    """Each quarantined file with its parsed ``.error.json`` report."""
    folder = EXCHANGE.root(store.root) / "quarantine"
    if not folder.is_dir():
        return []
    files = sorted(p for p in folder.iterdir() if not p.name.endswith(".error.json"))
    return [(file, json.loads(file.with_name(file.name + ".error.json").read_text())) for file in files]


def stored_state(root: Path, *, ignore: tuple[str, ...] = EXCHANGE_IN_FLIGHT) -> dict[str, str]:
    """sha256 of every file under ``root`` by relative path, except under the ``ignore`` folders."""
    state = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if path.is_file() and not path.is_symlink() and not any(relative.startswith(f"{folder}/") for folder in ignore):
            state[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    return state


def merge_batch(store: LabelStore, instance: dg.DagsterInstance, batch_id: str) -> dg.ExecuteInJobResult:
    """The merge job's assets and the review-quality gate, as the sensor's run request configures
    them; a failed gate is a result, not an exception."""
    from labeling_dag.assets.annotations import review_annotations
    from labeling_dag.assets.verification import verified_labels
    from labeling_dag.resources.snapshots import SnapshotStore

    from labeling_dag.checks import review_quality_gate
    from labeling_dag.sensors import merge_run_config

    return dg.materialize(
        [review_annotations, verified_labels, review_quality_gate],
        run_config=merge_run_config(batch_id),
        resources={"store": store, "exchange": EXCHANGE, "snapshots": SnapshotStore()},
        instance=instance,
        raise_on_error=False,
    )


def select_next_batch(store: LabelStore, instance: dg.DagsterInstance) -> pd.DataFrame:
    """The rows of the next review batch (up to 20 pool images, no gold item, no calibration draw)."""
    from labeling_dag.assets.review import review_batch

    result = dg.materialize(
        [review_batch],
        run_config={"ops": {"review_batch": {"config": {"size": 20, "gold_rate": 0.0, "calibration_fraction": 0.0}}}},
        resources={"store": store, "exchange": EXCHANGE, "review": FolderReview()},
        instance=instance,
    )
    batches = store.read(REVIEW_BATCHES)
    return batches[batches["run_id"] == result.run_id]
