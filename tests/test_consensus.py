"""Several annotators per image: boxes fused and merged by majority, disputes sent back as one
adjudication task, agreement per reviewer and per batch, and a blocking gate on its floor.

The pure functions against hand-worked cases and scikit-learn's kappa; the pipeline through the
real merge (``review_annotations`` + its gate + ``verified_labels``) and ``review_batch`` over a
small workdir (a cold start: no model, no training), as the quarantine tests do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest
from labeling_dag.resources.storage import LabelStore
from sklearn.metrics import cohen_kappa_score

from labeling_dag import atomic
from labeling_dag.batch_states import quarantined_batches
from labeling_dag.consensus.agreement import agreement, cohens_kappa, pairwise_kappa
from labeling_dag.consensus.disputes import CONSENSUS_VERSION
from labeling_dag.consensus.merging import consensus, merge_annotations
from labeling_dag.contracts import (
    CLEANED,
    CLEANED_COLUMNS,
    DISPUTES,
    EFFORT,
    LABELS,
    QUALITY,
    REVIEW_BATCHES,
    VERIFIED_IMAGES,
)
from labeling_dag.formats.label_studio import review_task
from labeling_dag.formats.label_studio_export import AnnotatedBox, TaskAnnotation, is_complete
from labeling_dag.merge import active
from labeling_dag.records import NormBox
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

# --- the pure functions ------------------------------------------------------------------


def _annotation(reviewer: str, boxes: list[tuple[str, str, NormBox]], image_id: str = "img", at: int = 0):
    return TaskAnnotation(
        task_id=1,
        image_id=image_id,
        batch_id="b",
        reviewer=reviewer,
        annotated_at=f"2026-01-01T00:00:{at:02d}+00:00",
        boxes=tuple(AnnotatedBox(region, name, box) for region, name, box in boxes),
        prediction_region_ids=(),
    )


A = NormBox(0.3, 0.3, 0.2, 0.2)
B = NormBox(0.7, 0.7, 0.2, 0.2)
C = NormBox(0.1, 0.8, 0.1, 0.1)


def test_two_annotators_who_agree_are_merged_into_one_fused_annotation() -> None:
    """Boxes of the same class that overlap are fused (weighted box fusion: here the mean) and
    keep the region id both kept; the merged annotation names both reviewers."""
    moved = NormBox(0.32, 0.3, 0.2, 0.2)
    merged, settled = consensus(
        [
            _annotation("alice", [("p1", "cat", A), ("p2", "dog", B)]),
            _annotation("bob", [("p1", "cat", moved), ("x", "dog", B)], at=5),
        ]
    )
    (annotation,) = merged
    assert annotation.reviewer == "alice+bob" and annotation.annotated_at.endswith(":05+00:00")
    cat, dog = annotation.boxes
    assert (cat.region_id, cat.class_name) == ("p1", "cat") and cat.box.x == pytest.approx(0.31, abs=1e-6)
    assert dog.class_name == "dog" and dog.box.y == pytest.approx(0.7, abs=1e-6)
    assert not settled[0].disputed and [box.votes for box in settled[0].boxes] == [2, 2]


@pytest.mark.parametrize(
    ("bob", "why"),
    [
        pytest.param([("p1", "dog", A)], "class", id="a-tie-on-the-class"),
        pytest.param([("p1", "cat", A), ("x", "cat", C)], "extra", id="a-box-only-one-drew"),
    ],
)
def test_two_annotators_who_disagree_leave_the_image_disputed(bob, why) -> None:
    """With two annotators any difference is a tie: nothing is merged, and the dispute lists every
    fused box with its votes."""
    merged, (outcome,) = consensus([_annotation("alice", [("p1", "cat", A)]), _annotation("bob", bob)])
    assert merged == [] and outcome.disputed
    votes = {box.region_id: box.class_votes for box in outcome.boxes}
    if why == "class":
        assert votes == {"p1": (("cat", 1), ("dog", 1))}
    else:
        assert votes == {"p1": (("cat", 2),), "x": (("cat", 1),)}


def test_three_annotators_settle_by_majority() -> None:
    """Of three, two decide: the majority class wins, and a box only one drew is dropped."""
    merged, (outcome,) = consensus(
        [
            _annotation("alice", [("p1", "cat", A)]),
            _annotation("bob", [("p1", "cat", A), ("x", "dog", C)]),
            _annotation("carol", [("p1", "dog", A)]),
        ]
    )
    (annotation,) = merged
    assert [(box.class_name, box.region_id) for box in annotation.boxes] == [("cat", "p1")]
    assert annotation.reviewer == "alice+bob+carol" and not outcome.disputed
    assert [box.absent for box in outcome.boxes] == [False, True]


def test_only_tasks_that_asked_for_several_annotators_are_merged_by_consensus() -> None:
    """Elsewhere a later annotation is a correction and the latest wins."""
    first = _annotation("alice", [("p1", "cat", A)], image_id="corrected")
    later = _annotation("bob", [("p1", "dog", A)], image_id="corrected", at=9)
    shared = [_annotation("alice", [], image_id="shared"), _annotation("bob", [], image_id="shared")]
    merged, settled = merge_annotations([first, *shared, later], shared={"shared"})
    assert [(a.image_id, a.reviewer) for a in merged] == [("corrected", "bob"), ("shared", "alice+bob")]
    assert [outcome.image_id for outcome in settled] == ["shared"]


def test_agreement_is_kappa_on_matched_boxes_their_iou_and_the_share_both_drew() -> None:
    """Kappa is scikit-learn's on the classes of matched boxes; a box only one drew lowers box
    agreement, not kappa; each reviewer pools the pairs they are in."""
    alice = [("a", "cat", A), ("b", "dog", B), ("c", "cat", C)]
    bob = [("a", "cat", A), ("b", "cat", B)]
    carol = [("a", "cat", A), ("b", "dog", B), ("c", "cat", C)]
    annotations = [_annotation("alice", alice), _annotation("bob", bob), _annotation("carol", carol)]
    scores = {score.reviewer: score for score in agreement(annotations)}

    pairs = [
        ("cat", "cat"),
        ("dog", "cat"),
        ("cat", "cat"),
        ("dog", "dog"),
        ("cat", "cat"),
        ("cat", "cat"),
        ("cat", "dog"),
    ]
    assert scores["*"].matched == 7
    assert scores["*"].kappa == pytest.approx(cohen_kappa_score(*zip(*pairs)))
    assert scores["*"].box_agreement == pytest.approx(2 * 7 / (5 + 6 + 5))
    assert scores["*"].mean_iou == pytest.approx(1.0)
    assert scores["carol"].box_agreement == pytest.approx(2 * 5 / (5 + 6))
    assert scores["alice"].matched == 5 and scores["bob"].matched == 4


def test_cohens_kappa_hand_computed() -> None:
    pairs = (
        [("car", "car")] * 3
        + [("person", "person")] * 2
        + [("car", "bicycle"), ("bicycle", "person"), ("car", "person")]
    )
    # 8 items.  Rows = rater a, columns = rater b:
    #            car  person  bicycle | row total
    #   car       3     1       1     |   5
    #   person    0     2       0     |   2
    #   bicycle   0     1       0     |   1
    #   column    3     4       1     |   8
    # po = (3 + 2) / 8 = 5/8;  pe = (5*3 + 2*4 + 1*1) / 8**2 = 3/8;  kappa = (2/8) / (5/8) = 2/5
    assert cohens_kappa(pairs) == pytest.approx(0.4)
    assert cohens_kappa(pairs) == pytest.approx(cohen_kappa_score(*zip(*pairs)))


def test_cohens_kappa_edge_cases() -> None:
    assert cohens_kappa([]) is None
    assert cohens_kappa([("car", "car")]) is None
    # One label everywhere: chance agreement is 1, kappa is 0/0; reported as full agreement.
    assert cohens_kappa([("car", "car")] * 3) == 1.0
    # Total disagreement over two labels: po = 0, pe = 1/2, kappa = -1
    assert cohens_kappa([("car", "person"), ("person", "car")]) == pytest.approx(-1.0)


def test_pairwise_kappa_takes_each_reviewers_latest_annotation_of_the_images_they_shared() -> None:
    """ann's first annotation of img-1 is superseded; carl and dan share only an empty image (no
    matched box, no kappa); nobody else saw img-4."""
    annotations = [
        _annotation("ann", [("r0", "person", A)], image_id="img-1", at=1),
        _annotation("bob", [("r0", "car", A), ("r1", "car", B)], image_id="img-1", at=2),
        _annotation("ann", [("r0", "car", A), ("r1", "person", B)], image_id="img-1", at=3),
        _annotation("ann", [("r0", "car", C), ("r1", "car", NormBox(0.5, 0.5, 0.05, 0.05))], image_id="img-2"),
        _annotation("bob", [("r0", "car", C)], image_id="img-2"),
        _annotation("carl", [], image_id="img-3"),
        _annotation("dan", [], image_id="img-3"),
        _annotation("ann", [("r0", "car", A)], image_id="img-4"),
    ]
    # ann vs bob, matched boxes: (car, car), (person, car), (car, car); ann's small box on img-2
    # matches nothing (it counts against box agreement, not kappa).
    expected = cohen_kappa_score(["car", "person", "car"], ["car", "car", "car"])
    assert pairwise_kappa(annotations) == pytest.approx({("ann", "bob"): expected})


def test_a_task_asking_for_two_annotators_is_complete_only_with_two() -> None:
    task = review_task(review_image("i", 0), batch_id="b", model_version=MODEL, pre_label_run_id="", annotators=2)
    assert task["data"]["annotators"] == 2
    once = answer([task])
    assert not is_complete(once)
    twice = [{**once[0], "annotations": once[0]["annotations"] + answer([task], reviewer="bob")[0]["annotations"]}]
    assert is_complete(twice)


# --- through the pipeline ----------------------------------------------------------------

BATCH = "batch-overlap"
IMAGES = [f"s{i}" for i in range(6)]
TRUE = dict(zip(IMAGES, ["square", "triangle", "circle"] * 2))


def _workdir(root: Path, bob: dict[str, str]) -> LabelStore:
    """A sent-out batch whose every image asks for two annotators, the cleaned pool, and the
    received export: alice gives each image its true class, bob the class in ``bob`` (else the
    true one), five minutes later."""
    store = LabelStore(workdir=str(root))
    store.set_class_names(CLASSES)
    images = [review_image(image_id, index) for index, image_id in enumerate(IMAGES)]
    tasks = [
        review_task(image, batch_id=BATCH, model_version=MODEL, pre_label_run_id="run-1", annotators=2)
        for image in images
    ]
    EXCHANGE.export(store.root, BATCH, tasks)
    batch = batch_rows(BATCH, IMAGES, annotators=2)
    store.write(REVIEW_BATCHES, batch)
    paths = [f"cleaned_images/files/{i}.png" for i in IMAGES]
    cleaned = pd.DataFrame({"image_id": IMAGES, "path": paths, "width": 64, "height": 64})
    defaults = {"bool": False, "str": "", "int64": 0, "float64": 0.0}
    cleaned = cleaned.assign(**{c: defaults[t] for c, t in CLEANED_COLUMNS.items() if c not in cleaned})
    store.write(CLEANED, cleaned[list(CLEANED_COLUMNS)].astype(CLEANED_COLUMNS), batch="_root")

    def annotations(task: dict[str, Any], reviewer: str, label: str, first_id: int, delay: int) -> list:
        return answer([task], reviewer=reviewer, label=label, first_id=first_id, delay=delay)[0]["annotations"]

    export = []
    for n, task in enumerate(tasks):
        image_id = task["data"]["image_id"]
        both = annotations(task, "alice", TRUE[image_id], n + 1, 0) + annotations(
            task, "bob", bob.get(image_id, TRUE[image_id]), n + 100, 300
        )
        export.append({**task, "id": n + 1, "annotations": both})
    atomic.write_json(EXCHANGE.received_file(store.root, BATCH), export)
    return store


def test_agreed_images_are_merged_by_consensus_and_a_disputed_one_is_adjudicated(tmp_path: Path) -> None:
    """Bob calls one circle a triangle: five images are merged with both reviewers named, the
    sixth waits (not merged, not auto-accepted) and comes back alone as one task showing the
    disputed box; its single answer is then merged. Agreement is in the UI, both looks are paid."""
    store = _workdir(tmp_path / "work", {"s5": "triangle"})
    instance = dg.DagsterInstance.ephemeral()

    merge = merge_batch(store, instance, BATCH)

    assert merge.success
    (gate,) = merge.get_asset_check_evaluations()
    assert gate.passed
    metadata = merge.asset_materializations_for_node("review_annotations")[0].metadata
    assert metadata["images_with_consensus"].value == 6 and metadata["images_disputed"].value == 1
    assert metadata["tasks_merged"].value == 5
    # Matched classes: five agree, one circle/triangle. Kappa (5/6 - 1/3) / (2/3) = 0.75.
    assert metadata["kappa"].value == pytest.approx(0.75) and metadata["box_agreement"].value == 1.0
    assert set(metadata["agreement_by_reviewer"].value) == {"alice", "bob"}
    labels = active(store.read(LABELS))
    assert sorted(labels["image_id"]) == IMAGES[:5] and set(labels["reviewer"]) == {"alice+bob"}
    assert dict(zip(labels["image_id"], labels["class_name"])) == {i: TRUE[i] for i in IMAGES[:5]}
    assert "s5" not in set(active(store.read(VERIFIED_IMAGES))["image_id"])
    (dispute,) = store.read(DISPUTES).itertuples()
    assert (dispute.image_id, dispute.votes, dispute.agreed) == ("s5", 2, False)
    assert json.loads(dispute.class_votes) == [["circle", 1], ["triangle", 1]]
    # Two looks and two relabels (every pre-label is a circle) for a square: 2 x (1.0 + 3.0) s.
    effort = store.read(EFFORT).set_index("image_id")
    assert effort.loc["s0", "modelled_seconds"] == pytest.approx(8.0)

    batch = select_next_batch(store, instance)
    assert batch["image_id"].tolist() == ["s5"]
    assert batch["model_version"].tolist() == [CONSENSUS_VERSION] and batch["annotators"].tolist() == [1]
    adjudication_id = batch["batch_id"].iloc[0]
    (task,) = EXCHANGE.exported_tasks(store.root, adjudication_id)
    (region,) = task["predictions"][0]["result"]
    assert region["value"]["rectanglelabels"] == ["circle"] and region["score"] == 1.0
    assert "annotators" not in task["data"]

    settled = answer([task], reviewer="carol", label="triangle")
    atomic.write_json(EXCHANGE.received_file(store.root, adjudication_id), settled)
    assert merge_batch(store, instance, adjudication_id).success
    labels = active(store.read(LABELS)).set_index("image_id")
    assert (labels.loc["s5", "class_name"], labels.loc["s5", "reviewer"]) == ("triangle", "carol")
    assert select_next_batch(store, instance).empty


def test_a_batch_whose_annotators_agree_too_little_is_not_merged(tmp_path: Path) -> None:
    """Bob gets four of six classes wrong: kappa falls below its floor, the gate blocks the merge
    (severity ERROR), nothing is merged and every image goes back to the pool."""
    store = _workdir(tmp_path / "work", {"s0": "circle", "s1": "square", "s2": "triangle", "s3": "triangle"})
    instance = dg.DagsterInstance.ephemeral()

    merge = merge_batch(store, instance, BATCH)

    assert not merge.success
    (gate,) = merge.get_asset_check_evaluations()
    assert not gate.passed and gate.severity == dg.AssetCheckSeverity.ERROR
    quality = store.read(QUALITY).set_index("reviewer")
    assert quality.loc["*", "kappa"] < quality.loc["*", "min_kappa"] == 0.6
    assert quarantined_batches(quality.reset_index()) == {BATCH}
    assert store.read(LABELS).empty and store.read(DISPUTES).empty
    assert set(select_next_batch(store, instance)["image_id"]) == set(IMAGES)
