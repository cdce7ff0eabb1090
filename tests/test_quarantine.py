"""The gold gate decides per reviewer: a reviewer who fails a batch's gold items is quarantined
alone, the other reviewers' annotations of that batch are merged, and the images only the
quarantined reviewer answered go back to the pool.

Through the real merge (``review_annotations`` + its gate + ``verified_labels``) and
``review_batch`` over a small workdir (a cold start: no model, no training).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest
from labeling_dag.resources.storage import LabelStore

from labeling_dag import atomic
from labeling_dag.batch_states import quarantined_batches, quarantined_reviewers
from labeling_dag.contracts import (
    CLEANED,
    CLEANED_COLUMNS,
    GOLD_LABELS,
    LABELS,
    QUALITY,
    QUALITY_COLUMNS,
    REVIEW_BATCHES,
)
from labeling_dag.formats.label_studio import review_task
from labeling_dag.merge import active
from tests.faults.review_files import (
    CLASSES,
    EXCHANGE,
    MODEL,
    answer,
    batch_rows,
    merge_batch,
    review_image,
    select_next_batch,
)

BATCH = "batch-two-reviewers"
# Who answers which image, and with which class; the truth (and every pre-label's box) is a square.
ALICE = {**{f"g{i}": "square" for i in range(5)}, "p0": "square", "p1": "square", "shared": "square"}
BOB = {"g5": "triangle", "p2": "triangle", "p3": "triangle", "shared": "triangle"}
GOLD = [f"g{i}" for i in range(6)]


def _workdir(root: Path, alice: dict[str, str], bob: dict[str, str]) -> LabelStore:
    """A sent-out batch (gold items included), its gold answers, the cleaned pool, and the received
    export in which each reviewer answered their images with the classes given (bob after alice)."""
    store = LabelStore(workdir=str(root))
    store.set_class_names(CLASSES)
    ids = sorted({*alice, *bob})
    images = [review_image(image_id, index) for index, image_id in enumerate(ids)]
    tasks = [review_task(image, batch_id=BATCH, model_version=MODEL, pre_label_run_id="run-1") for image in images]
    EXCHANGE.export(store.root, BATCH, tasks)
    batch = batch_rows(BATCH, ids, is_gold=[image_id in GOLD for image_id in ids])
    store.write(REVIEW_BATCHES, batch)
    boxes = {image.image_id: image.pre_labels[0].box for image in images}
    gold = pd.DataFrame([{"image_id": i, "class_name": "square", **vars(boxes[i])} for i in GOLD])
    store.write(GOLD_LABELS, gold)
    paths = [f"cleaned_images/files/{i}.png" for i in ids]
    cleaned = pd.DataFrame({"image_id": ids, "path": paths, "width": 64, "height": 64})
    defaults = {"bool": False, "str": "", "int64": 0, "float64": 0.0}
    cleaned = cleaned.assign(**{c: defaults[t] for c, t in CLEANED_COLUMNS.items() if c not in cleaned})
    store.write(CLEANED, cleaned[list(CLEANED_COLUMNS)].astype(CLEANED_COLUMNS), batch="_root")

    def annotations(task: dict[str, Any], reviewer: str, classes: dict[str, str], first_id: int, delay: int) -> list:
        label = classes.get(task["data"]["image_id"])
        if label is None:
            return []
        return answer([task], reviewer=reviewer, label=label, first_id=first_id, delay=delay)[0]["annotations"]

    export = [
        {
            **task,
            "id": n + 1,
            "annotations": annotations(task, "alice", alice, n + 1, 0) + annotations(task, "bob", bob, n + 100, 600),
        }
        for n, task in enumerate(tasks)
    ]
    atomic.write_json(EXCHANGE.received_file(store.root, BATCH), export)
    return store


def test_a_reviewer_failing_gold_is_quarantined_alone_and_the_others_answers_are_merged(tmp_path: Path) -> None:
    """Bob gets his one gold item wrong, alice her five right: the batch-wide accuracy (5/7) passes,
    bob's does not. Alice's answers are merged (on the image both answered too, though bob's came
    later), bob's are not, and the images only bob answered go back to the pool."""
    store = _workdir(tmp_path / "work", ALICE, BOB)
    instance = dg.DagsterInstance.ephemeral()

    merge = merge_batch(store, instance, BATCH)

    assert merge.success, "a reviewer's failure alone does not block the merge"
    (gate,) = merge.get_asset_check_evaluations()
    assert not gate.passed and gate.severity == dg.AssetCheckSeverity.WARN
    quality = store.read(QUALITY).set_index("reviewer")
    assert quality.loc["*", "gold_accuracy"] >= quality.loc["*", "min_gold_accuracy"]
    assert quarantined_reviewers(quality.reset_index()) == {(BATCH, "bob")}
    assert quarantined_batches(quality.reset_index()) == set()
    metadata = merge.asset_materializations_for_node("review_annotations")[0].metadata
    assert metadata["quarantined_reviewers"].value == ["bob"]
    assert metadata["quarantined"].value is False

    labels = active(store.read(LABELS))
    human = labels[labels["source"] == "human"]
    assert sorted(human["image_id"]) == ["p0", "p1", "shared"]
    assert set(human["reviewer"]) == {"alice"} and set(human["class_name"]) == {"square"}
    assert set(labels.loc[labels["source"] == "gold", "image_id"]) == set(GOLD)

    assert set(select_next_batch(store, instance)["image_id"]) == {"p2", "p3"}


def test_a_batch_where_every_reviewer_fails_gold_is_quarantined_whole(tmp_path: Path) -> None:
    """Alice and bob both get their gold items wrong: nothing is merged, the gate blocks the merge,
    and every pool image of the batch goes back to the pool."""
    store = _workdir(tmp_path / "work", {image_id: "triangle" for image_id in ALICE}, BOB)
    instance = dg.DagsterInstance.ephemeral()

    merge = merge_batch(store, instance, BATCH)

    assert not merge.success
    (gate,) = merge.get_asset_check_evaluations()
    assert not gate.passed and gate.severity == dg.AssetCheckSeverity.ERROR
    assert not any(e.asset_key == dg.AssetKey("verified_labels") for e in merge.get_asset_materialization_events())
    quality = store.read(QUALITY)
    assert quarantined_reviewers(quality) == {(BATCH, "alice"), (BATCH, "bob")}
    assert quarantined_batches(quality) == {BATCH}
    assert set(select_next_batch(store, instance)["image_id"]) == {"p0", "p1", "p2", "p3", "shared"}


@pytest.mark.parametrize(
    ("rows", "reviewers", "batches"),
    [
        pytest.param([("a", 4, 1.0), ("b", 2, 0.5), ("*", 6, 0.8)], {"b"}, set(), id="one-fails-batch-row-passes"),
        pytest.param([("a", 1, 1.0), ("b", 2, 0.0), ("*", 3, 0.33)], {"b"}, set(), id="one-fails-batch-row-fails"),
        pytest.param([("a", 0, float("nan")), ("b", 2, 0.0), ("*", 2, 0.0)], {"b"}, set(), id="no-gold-no-verdict"),
        pytest.param([("a", 2, 0.5), ("*", 2, 0.5)], {"a"}, {"x"}, id="single-reviewer-fails"),
        pytest.param([("a", 2, 0.5), ("b", 1, 0.0), ("*", 3, 0.33)], {"a", "b"}, {"x"}, id="everyone-fails"),
    ],
)
def test_quarantine_is_decided_per_reviewer(
    rows: list[tuple[str, int, float]], reviewers: set[str], batches: set[str]
) -> None:
    """A reviewer below the threshold on gold is quarantined, one without gold items is not; a batch
    only when none of its reviewers is left, whatever its batch-wide row says."""
    reviewer, gold_tasks, accuracy = zip(*rows)
    quality = (
        pd.DataFrame({"batch_id": "x", "reviewer": reviewer, "gold_tasks": gold_tasks, "gold_accuracy": accuracy})
        .assign(min_gold_accuracy=0.7, run_id="", matched_boxes=0)
        .reindex(columns=list(QUALITY_COLUMNS))
        .astype(QUALITY_COLUMNS)
    )
    assert quarantined_reviewers(quality) == {("x", reviewer) for reviewer in reviewers}
    assert quarantined_batches(quality) == batches
