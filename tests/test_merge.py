"""Unit tests for labeling_dag.merge: from a returned review batch to verified label tables.

Every case is hand-made and its expected rows are written out, so a change in what a row
means (an edit kind, a provenance field, a retirement) shows up as a failing line here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from labeling_dag.auto_accept import auto_accepted_rows, calibration_from_edits, image_gate_from_edits
from labeling_dag.calibration.class_thresholds import Calibration, calibrate
from labeling_dag.calibration.image_gate import ImageGate
from labeling_dag.contracts import (
    BOX_COLUMNS,
    EDIT_COLUMNS,
    GOLD_COLUMNS,
    LABEL_COLUMNS,
    QUALITY_COLUMNS,
    RETURNED_COLUMNS,
    VERIFIED_IMAGE_COLUMNS,
)
from labeling_dag.formats.label_studio import review_task
from labeling_dag.formats.label_studio_export import AnnotatedBox, TaskAnnotation
from labeling_dag.label_rows import human_rows, verified_image_rows
from labeling_dag.merge import active, current_edits, edit_rows, merge_verified, returned_rows
from labeling_dag.records import NormBox, PreLabel, ReviewImage
from labeling_dag.review_quality import quality_rows

NAN = np.nan


# --- builders ---------------------------------------------------------------------------


def _table(rows: list[dict[str, object]], columns: dict[str, str]) -> pd.DataFrame:
    """A frame with exactly ``columns`` (names, order and dtypes), as merge's tables have; quality
    rows that leave out the agreement columns get them empty (no image shared by two reviewers)."""
    if columns is QUALITY_COLUMNS:
        empty = {"matched_boxes": 0, "min_kappa": NAN, "min_box_agreement": NAN}
        rows = [{**empty, "kappa": NAN, "mean_iou": NAN, "box_agreement": NAN, **row} for row in rows]
    return pd.DataFrame(rows, columns=list(columns)).astype(columns)


def _pre_label(box_id: str, image_id: str, class_name: str, box: NormBox, confidence: float) -> PreLabel:
    return PreLabel(
        box_id=box_id,
        image_id=image_id,
        class_name=class_name,
        box=box,
        confidence=confidence,
        class_probs=(confidence, 1.0 - confidence),
        model_version="mv-1",
    )


def _annotation(
    image_id: str, reviewer: str, boxes: list[tuple[str, str, NormBox]], *, at: str = "2026-01-02T03:04:05+00:00"
) -> TaskAnnotation:
    """A reviewer's final annotation; ``boxes`` are ``(region_id, class_name, box)``."""
    return TaskAnnotation(
        task_id=None,
        image_id=image_id,
        batch_id="batch-1",
        reviewer=reviewer,
        annotated_at=at,
        boxes=tuple(AnnotatedBox(region_id=r, class_name=c, box=b) for r, c, b in boxes),
        prediction_region_ids=(),
    )


def _edit(**fields: object) -> dict[str, object]:
    """One edits-table row: a human-accepted cat box of model mv-1 unless told otherwise."""
    row: dict[str, object] = {
        "batch_id": "batch-1",
        "image_id": "img-a",
        "reviewer": "alice",
        "annotated_at": "2026-01-02T03:04:05+00:00",
        "edit_kind": "accepted",
        "pre_label_id": "pl-0",
        "region_id": "pl-0",
        "class_name": "cat",
        "x": 0.5,
        "y": 0.5,
        "w": 0.2,
        "h": 0.2,
        "original_class": "cat",
        "confidence": 0.9,
        "iou": 1.0,
        "prediction_correct": 1.0,
        "model_version": "mv-1",
        "pre_label_run_id": "run-p",
        "is_gold": False,
        "is_spot_check": False,
    }
    return row | fields


def _label(
    label_id: str, image_id: str, *, merge_id: str, source: str = "auto_accepted", retired_by: str = ""
) -> dict[str, object]:
    """One verified-label row; only the fields the merge looks at vary."""
    return {
        "label_id": label_id,
        "image_id": image_id,
        "class_name": "cat",
        "x": 0.5,
        "y": 0.5,
        "w": 0.2,
        "h": 0.2,
        "source": source,
        "model_version": "mv-1" if source != "gold" else "",
        "pre_label_id": "",
        "pre_label_run_id": "",
        "review_batch_id": "",
        "reviewer": "",
        "reviewed_at": "",
        "edit_kind": "accepted",
        "confidence": 0.9,
        "merge_id": merge_id,
        "retired_by": retired_by,
    }


def _image(image_id: str, *, source: str, merge_id: str, retired_by: str = "") -> dict[str, object]:
    return {"image_id": image_id, "source": source, "merge_id": merge_id, "retired_by": retired_by}


# --- edit_rows --------------------------------------------------------------------------


CAT_BOX = NormBox(0.2, 0.5, 0.2, 0.2)  # x in [0.1, 0.3]
DOG_BOX = NormBox(0.5, 0.5, 0.2, 0.2)  # x in [0.4, 0.6]
DOG_MOVED = NormBox(0.52, 0.5, 0.2, 0.2)  # x in [0.42, 0.62]: overlap 0.18 of union 0.22 wide
SMALL_CAT = NormBox(0.8, 0.5, 0.1, 0.1)
ADDED_DOG = NormBox(0.5, 0.2, 0.1, 0.1)


def test_edit_rows_classify_accept_move_delete_add_against_the_exported_task() -> None:
    """Pins edit_rows on one exported task: one row per prediction (in prediction order) then
    one per added region; edit kind, final box, confidence from the exported prediction,
    prediction_correct 1/1/0/NaN (a move above IoU 0.5 still counts as correct), model
    version and pre-label run id from the task, gold / spot-check flags from the given sets."""
    image = ReviewImage(
        image_id="img-a",
        image_ref="/data/img-a.jpg",
        width=100,
        height=100,
        score=0.7,
        pre_labels=(
            _pre_label("pl-0", "img-a", "cat", CAT_BOX, 0.9),
            _pre_label("pl-1", "img-a", "dog", DOG_BOX, 0.7),
            _pre_label("pl-2", "img-a", "cat", SMALL_CAT, 0.4),
        ),
    )
    task = review_task(image, batch_id="batch-1", model_version="mv-1", pre_label_run_id="run-p")
    annotation = _annotation(
        "img-a",
        "alice",
        [("pl-0", "cat", CAT_BOX), ("pl-1", "dog", DOG_MOVED), ("new-1", "dog", ADDED_DOG)],
    )

    edits = edit_rows([annotation], [task], batch_id="batch-1", gold_ids=set(), spot_check_ids={"img-a"})

    common = {
        "batch_id": "batch-1",
        "image_id": "img-a",
        "reviewer": "alice",
        "annotated_at": "2026-01-02T03:04:05+00:00",
        "model_version": "mv-1",
        "pre_label_run_id": "run-p",
        "is_gold": False,
        "is_spot_check": True,
    }
    moved_iou = (0.18 * 0.2) / (2 * 0.04 - 0.18 * 0.2)  # 9/11
    expected = _table(
        [
            common
            | {
                "edit_kind": "accepted",
                "pre_label_id": "pl-0",
                "region_id": "pl-0",
                "class_name": "cat",
                "x": 0.2,
                "y": 0.5,
                "w": 0.2,
                "h": 0.2,
                "original_class": "cat",
                "confidence": 0.9,
                "iou": 1.0,
                "prediction_correct": 1.0,
            },
            common
            | {
                "edit_kind": "moved",
                "pre_label_id": "pl-1",
                "region_id": "pl-1",
                "class_name": "dog",
                "x": 0.52,
                "y": 0.5,
                "w": 0.2,
                "h": 0.2,
                "original_class": "dog",
                "confidence": 0.7,
                "iou": moved_iou,
                "prediction_correct": 1.0,
            },
            common
            | {
                "edit_kind": "deleted",
                "pre_label_id": "pl-2",
                "region_id": "",
                "class_name": "",
                "x": NAN,
                "y": NAN,
                "w": NAN,
                "h": NAN,
                "original_class": "cat",
                "confidence": 0.4,
                "iou": NAN,
                "prediction_correct": 0.0,
            },
            common
            | {
                "edit_kind": "added",
                "pre_label_id": "",
                "region_id": "new-1",
                "class_name": "dog",
                "x": 0.5,
                "y": 0.2,
                "w": 0.1,
                "h": 0.1,
                "original_class": "",
                "confidence": NAN,
                "iou": NAN,
                "prediction_correct": NAN,
            },
        ],
        EDIT_COLUMNS,
    )
    # Coordinates went through Label Studio percent and back, hence a tolerance.
    pd.testing.assert_frame_equal(edits, expected, check_exact=False, rtol=1e-9, atol=1e-12)


def test_edit_rows_gold_flag_and_task_join_by_image_id() -> None:
    """Pins that edit_rows joins each annotation to its task by image_id (not position) and
    sets is_gold from gold_ids, is_spot_check from spot_check_ids, each per image."""
    tasks = [
        review_task(
            ReviewImage("img-b", "/data/img-b.jpg", 100, 100, 0.5, (_pre_label("pl-b", "img-b", "cat", CAT_BOX, 0.8),)),
            batch_id="batch-1",
            model_version="mv-1",
            pre_label_run_id="run-b",
        ),
        review_task(
            ReviewImage("img-g", "/data/img-g.jpg", 100, 100, 0.5, (_pre_label("pl-g", "img-g", "dog", DOG_BOX, 0.6),)),
            batch_id="batch-1",
            model_version="mv-1",
            pre_label_run_id="run-g",
        ),
    ]
    annotations = [
        _annotation("img-g", "bob", [("pl-g", "dog", DOG_BOX)]),
        _annotation("img-b", "bob", [("pl-b", "dog", CAT_BOX)]),  # class changed
    ]

    edits = edit_rows(annotations, tasks, batch_id="batch-1", gold_ids={"img-g"}, spot_check_ids={"img-b"})

    assert edits["image_id"].tolist() == ["img-g", "img-b"]
    assert edits["pre_label_id"].tolist() == ["pl-g", "pl-b"]
    assert edits["pre_label_run_id"].tolist() == ["run-g", "run-b"]
    assert edits["edit_kind"].tolist() == ["accepted", "relabelled"]
    assert edits["original_class"].tolist() == ["dog", "cat"]
    assert edits["confidence"].tolist() == pytest.approx([0.6, 0.8])
    assert edits["prediction_correct"].tolist() == [1.0, 0.0]
    assert edits["is_gold"].tolist() == [True, False]
    assert edits["is_spot_check"].tolist() == [False, True]


# --- quality_rows -----------------------------------------------------------------------

GOLD_TRUTH = [
    ("cat", NormBox(0.2, 0.2, 0.2, 0.2)),
    ("cat", NormBox(0.7, 0.2, 0.2, 0.2)),
    ("dog", NormBox(0.5, 0.7, 0.3, 0.3)),
]


def _gold(rows: list[tuple[str, str, NormBox]]) -> pd.DataFrame:
    return _table(
        [{"image_id": i, "class_name": c, "x": b.x, "y": b.y, "w": b.w, "h": b.h} for i, c, b in rows], GOLD_COLUMNS
    )


def test_quality_rows_per_reviewer_and_micro_averaged_batch_row() -> None:
    """Pins quality_rows: per-reviewer gold accuracy tp/(tp+fp+fn), a "*" row micro-averaged
    over every gold task of the batch, min_gold_accuracy and run_id copied onto every row,
    reviewers sorted, annotations of non-gold images ignored (a reviewer with none on gold
    gets gold_tasks 0 and NaN accuracy)."""
    gold = _gold([("img-g", name, box) for name, box in GOLD_TRUTH])
    annotations = [
        # alice: all three gold boxes -> tp 3, fp 0, fn 0
        _annotation("img-g", "alice", [(f"a{i}", name, box) for i, (name, box) in enumerate(GOLD_TRUTH)]),
        # bob misses the dog -> tp 2, fp 0, fn 1 -> 2/3
        _annotation("img-g", "bob", [(f"b{i}", name, box) for i, (name, box) in enumerate(GOLD_TRUTH[:2])]),
        # not a gold image: must not count for anyone (it would be an fp)
        _annotation("img-x", "bob", [("x0", "cat", NormBox(0.5, 0.5, 0.1, 0.1))]),
        _annotation("img-x", "carol", [("x1", "cat", NormBox(0.5, 0.5, 0.1, 0.1))]),
    ]

    quality = quality_rows(annotations, gold, batch_id="batch-1", min_gold_accuracy=0.8, run_id="run-q")

    expected = _table(
        [
            {
                "batch_id": "batch-1",
                "reviewer": "alice",
                "gold_tasks": 1,
                "gold_accuracy": 1.0,
                "min_gold_accuracy": 0.8,
                "run_id": "run-q",
            },
            {
                "batch_id": "batch-1",
                "reviewer": "bob",
                "gold_tasks": 1,
                "gold_accuracy": 2 / 3,
                "min_gold_accuracy": 0.8,
                "run_id": "run-q",
            },
            {
                "batch_id": "batch-1",
                "reviewer": "carol",
                "gold_tasks": 0,
                "gold_accuracy": NAN,
                "min_gold_accuracy": 0.8,
                "run_id": "run-q",
            },
            # micro average: tp (3 + 2) / (tp 5 + fp 0 + fn 1) = 5/6. The mean of the two
            # reviewers' rates happens to be 5/6 too; the next test tells the two apart.
            {
                "batch_id": "batch-1",
                "reviewer": "*",
                "gold_tasks": 2,
                "gold_accuracy": 5 / 6,
                "min_gold_accuracy": 0.8,
                "run_id": "run-q",
            },
        ],
        QUALITY_COLUMNS,
    )
    pd.testing.assert_frame_equal(quality, expected)


def test_quality_rows_batch_row_weighs_boxes_not_tasks() -> None:
    """Pins that the "*" row is micro-averaged over boxes: a perfect 3-box task and a
    1-box task with the box missed give 3/4, not the task mean (1.0 + 0.0) / 2."""
    gold = _gold([("img-g", name, box) for name, box in GOLD_TRUTH] + [("img-h", "dog", NormBox(0.5, 0.5, 0.4, 0.4))])
    annotations = [
        _annotation("img-g", "alice", [(f"a{i}", name, box) for i, (name, box) in enumerate(GOLD_TRUTH)]),
        _annotation("img-h", "alice", []),
    ]

    quality = quality_rows(annotations, gold, batch_id="batch-1", min_gold_accuracy=0.9, run_id="run-q")

    assert quality["reviewer"].tolist() == ["alice", "*"]
    assert quality["gold_tasks"].tolist() == [2, 2]
    assert quality["gold_accuracy"].tolist() == pytest.approx([3 / 4, 3 / 4])
    assert quality["min_gold_accuracy"].tolist() == [0.9, 0.9]


def test_quality_rows_without_gold_give_a_batch_row_with_nan_accuracy() -> None:
    """Pins that a batch with no gold task still gets its "*" row, with gold_tasks 0 and NaN
    accuracy (no evidence is not perfection), and each reviewer likewise NaN."""
    annotations = [_annotation("img-x", "alice", [("x0", "cat", NormBox(0.5, 0.5, 0.1, 0.1))])]

    quality = quality_rows(annotations, _gold([]), batch_id="batch-1", min_gold_accuracy=0.8, run_id="run-q")

    expected = _table(
        [
            {
                "batch_id": "batch-1",
                "reviewer": "alice",
                "gold_tasks": 0,
                "gold_accuracy": NAN,
                "min_gold_accuracy": 0.8,
                "run_id": "run-q",
            },
            {
                "batch_id": "batch-1",
                "reviewer": "*",
                "gold_tasks": 0,
                "gold_accuracy": NAN,
                "min_gold_accuracy": 0.8,
                "run_id": "run-q",
            },
        ],
        QUALITY_COLUMNS,
    )
    pd.testing.assert_frame_equal(quality, expected)


# --- calibration_from_edits -------------------------------------------------------------


def test_calibration_from_edits_uses_only_judged_non_gold_edits_of_the_model() -> None:
    """Pins the evidence calibration_from_edits fits on: edits of the given model version,
    with a prediction_correct value (added boxes excluded), not on gold tasks.

    Evidence kept (target 1.0, min_support 1): cat 0.9 ok, 0.8 ok, 0.7 wrong -> cat
    threshold 0.8; dog 0.6 ok -> 0.6. Each excluded row would change that if it leaked in:
    the other model's wrong cat at 0.95 would leave cat with no threshold, the gold wrong
    dog at 0.65 would leave dog with none, the gold correct cat at 0.75 would lower cat to
    0.75, and the added box (original_class "", confidence NaN) would make calibrate raise.
    """
    edits = _table(
        [
            _edit(original_class="cat", confidence=0.9, prediction_correct=1.0),
            _edit(edit_kind="moved", original_class="cat", confidence=0.8, prediction_correct=1.0),
            _edit(edit_kind="deleted", original_class="cat", confidence=0.7, prediction_correct=0.0),
            _edit(original_class="dog", class_name="dog", confidence=0.6, prediction_correct=1.0),
            _edit(
                model_version="mv-2", original_class="cat", confidence=0.95, prediction_correct=0.0, edit_kind="deleted"
            ),
            _edit(is_gold=True, original_class="dog", confidence=0.65, prediction_correct=0.0, edit_kind="relabelled"),
            _edit(is_gold=True, original_class="cat", confidence=0.75, prediction_correct=1.0),
            _edit(
                edit_kind="added", pre_label_id="", original_class="", confidence=NAN, iou=NAN, prediction_correct=NAN
            ),
        ],
        EDIT_COLUMNS,
    )

    calibration = calibration_from_edits(
        edits, model_version="mv-1", class_names=["cat", "dog"], target_precision=1.0, min_support=1
    )

    assert dict(calibration.support) == {"cat": 3, "dog": 1}
    assert dict(calibration.thresholds) == {"cat": 0.8, "dog": 0.6}
    assert calibration == calibrate(
        ["cat", "cat", "cat", "dog"],
        [0.9, 0.8, 0.7, 0.6],
        [True, True, False, True],
        class_names=["cat", "dog"],
        target_precision=1.0,
        min_support=1,
    )


def test_current_edits_keep_each_images_latest_revision() -> None:
    """Pins current_edits: per batch and image, only the rows of the highest revision that
    holds the image (revision numbers compared as numbers: r10 after r9); images a revision
    did not touch keep their batch's rows, and another batch's rows of the same image stay."""
    edits = _table(
        [
            _edit(batch_id="batch-1", image_id="img-a", pre_label_id="pl-a"),
            _edit(batch_id="batch-1", image_id="img-b", pre_label_id="pl-b"),
            _edit(batch_id="batch-1.r9", image_id="img-a", pre_label_id="pl-a", edit_kind="moved"),
            _edit(batch_id="batch-1.r10", image_id="img-a", pre_label_id="pl-a", edit_kind="deleted"),
            _edit(batch_id="batch-1.r10", image_id="img-a", pre_label_id="", edit_kind="added"),
            _edit(batch_id="batch-2", image_id="img-a", pre_label_id="pl-a2"),
        ],
        EDIT_COLUMNS,
    )

    current = current_edits(edits)

    assert current[["batch_id", "image_id", "edit_kind"]].values.tolist() == [
        ["batch-1", "img-b", "accepted"],
        ["batch-1.r10", "img-a", "deleted"],
        ["batch-1.r10", "img-a", "added"],
        ["batch-2", "img-a", "accepted"],
    ]
    assert current_edits(_table([], EDIT_COLUMNS)).empty


def test_calibration_counts_a_revised_judgement_once_as_revised() -> None:
    """A cat box first accepted, then deleted in the labelling tool after the merge (revision
    r2), counts once, as a wrong prediction: the evidence is that judgement and the other
    image's, not the superseded accept."""
    edits = _table(
        [
            _edit(image_id="img-a", original_class="cat", confidence=0.9, prediction_correct=1.0),
            _edit(image_id="img-b", original_class="cat", confidence=0.7, prediction_correct=1.0),
            _edit(
                batch_id="batch-1.r2",
                image_id="img-a",
                edit_kind="deleted",
                original_class="cat",
                confidence=0.9,
                prediction_correct=0.0,
            ),
        ],
        EDIT_COLUMNS,
    )

    calibration = calibration_from_edits(
        edits, model_version="mv-1", class_names=["cat"], target_precision=1.0, min_support=1
    )

    assert dict(calibration.support) == {"cat": 2}
    assert calibration == calibrate(
        ["cat", "cat"], [0.7, 0.9], [True, False], class_names=["cat"], target_precision=1.0, min_support=1
    )


def test_returned_rows_one_per_answered_image_boxes_or_not() -> None:
    """Pins returned_rows: one row per annotation, in order, an image without boxes included."""
    annotations = [_annotation("img-a", "alice", [("r1", "cat", CAT_BOX)]), _annotation("img-b", "alice", [])]

    pd.testing.assert_frame_equal(
        returned_rows(annotations, batch_id="batch-1.r2"),
        _table(
            [{"batch_id": "batch-1.r2", "image_id": "img-a"}, {"batch_id": "batch-1.r2", "image_id": "img-b"}],
            RETURNED_COLUMNS,
        ),
    )


# --- image_gate_from_edits --------------------------------------------------------------


def test_image_gate_counts_a_missing_box_against_an_image_whose_boxes_all_cleared() -> None:
    """The judged images are those whose boxes all cleared THRESHOLDS (cat 0.8, dog 0.6):
    img-a (0.95, right), img-b (0.9, right but the reviewer drew a box the model missed),
    img-c (0.85, right). img-d has a cat at 0.7 (below 0.8) and is not judged; gold and other
    models' images never count. Sorted by least confidence: 0.95 ok, 0.9 missed, 0.85 ok, so
    at target 1.0 only img-a's tail qualifies (min_support 1): the gate is 0.95, and an image
    gate fitted on boxes alone (img-b's box was right) would have let 0.85 through."""
    edits = _table(
        [
            _edit(image_id="img-a", confidence=0.95),
            _edit(image_id="img-b", confidence=0.9),
            _edit(
                image_id="img-b",
                edit_kind="added",
                pre_label_id="",
                original_class="",
                confidence=NAN,
                prediction_correct=NAN,
            ),
            _edit(image_id="img-c", confidence=0.85),
            _edit(image_id="img-c", original_class="dog", class_name="dog", confidence=0.97),
            _edit(image_id="img-d", confidence=0.7),
            _edit(image_id="img-e", confidence=0.99, is_gold=True, edit_kind="deleted", prediction_correct=0.0),
            _edit(image_id="img-f", confidence=0.99, model_version="mv-2", edit_kind="deleted", prediction_correct=0.0),
        ],
        EDIT_COLUMNS,
    )

    gate = image_gate_from_edits(edits, THRESHOLDS, model_version="mv-1", target_accuracy=1.0, min_support=1)
    assert gate == ImageGate(threshold=0.95, accuracy=1.0, support=3)

    loose = image_gate_from_edits(edits, THRESHOLDS, model_version="mv-1", target_accuracy=0.6, min_support=3)
    assert loose == ImageGate(threshold=0.85, accuracy=pytest.approx(2 / 3), support=3)
    assert (
        image_gate_from_edits(edits, THRESHOLDS, model_version="mv-1", target_accuracy=0.6, min_support=4).threshold
        is None
    )


def test_auto_accepted_rows_apply_the_image_gate() -> None:
    """A gate at 0.9 keeps img-a (least box 0.92) and drops img-b (0.85, clears its box threshold
    0.8); a gate without a threshold accepts nothing."""
    boxes = _boxes([("a1", "img-a", "cat", 0.92), ("a2", "img-a", "dog", 0.95), ("b1", "img-b", "cat", 0.85)])
    gate = ImageGate(threshold=0.9, accuracy=1.0, support=12)
    assert set(auto_accepted_rows(boxes, {"img-a", "img-b"}, THRESHOLDS, gate, merge_id="m1")["image_id"]) == {"img-a"}
    closed = ImageGate(threshold=None, accuracy=None, support=3)
    assert auto_accepted_rows(boxes, {"img-a", "img-b"}, THRESHOLDS, closed, merge_id="m1").empty


# --- auto_accepted_rows -----------------------------------------------------------------


def _boxes(rows: list[tuple[str, str, str, float]]) -> pd.DataFrame:
    """Pre-label box rows ``(box_id, image_id, class_name, confidence)`` of model mv-1, run run-p."""
    return _table(
        [
            {
                "box_id": box_id,
                "image_id": image_id,
                "class_id": {"cat": 0, "dog": 1}[class_name],
                "class_name": class_name,
                "x": 0.1 * (k + 1),
                "y": 0.5,
                "w": 0.1,
                "h": 0.2,
                "confidence": confidence,
                "class_probs": [confidence],
                "model_version": "mv-1",
                "run_id": "run-p",
            }
            for k, (box_id, image_id, class_name, confidence) in enumerate(rows)
        ],
        BOX_COLUMNS,
    )


THRESHOLDS = Calibration(
    target_precision=0.95,
    thresholds={"cat": 0.8, "dog": 0.6},
    global_threshold=None,
    support={"cat": 30, "dog": 25},
    estimated_precision={"cat": 0.96, "dog": 0.97},
)
OPEN_GATE = ImageGate(threshold=0.0, accuracy=None, support=0)


def test_auto_accepted_rows_take_candidate_images_whose_every_box_clears() -> None:
    """Pins auto_accepted_rows: an image is accepted only if it is a candidate and every box
    clears its class threshold (>=, so a box exactly at it clears); each of its boxes
    becomes a label row with source auto_accepted, edit_kind accepted, label_id
    vl-<merge>-<box_id>, pre_label_id = box_id, the box's model version, run id and
    confidence, and no reviewer fields."""
    boxes = _boxes(
        [
            ("pl-a0", "img-a", "cat", 0.8),  # exactly at the cat threshold
            ("pl-a1", "img-a", "dog", 0.9),
            ("pl-b0", "img-b", "cat", 0.95),
            ("pl-b1", "img-b", "dog", 0.59),  # one low box keeps img-b for humans
            ("pl-c0", "img-c", "cat", 0.99),  # confident, but not a candidate
        ]
    )

    rows = auto_accepted_rows(boxes, {"img-a", "img-b"}, THRESHOLDS, OPEN_GATE, merge_id="m1")

    provenance = {
        "source": "auto_accepted",
        "model_version": "mv-1",
        "pre_label_run_id": "run-p",
        "review_batch_id": "",
        "reviewer": "",
        "reviewed_at": "",
        "edit_kind": "accepted",
        "merge_id": "m1",
        "retired_by": "",
    }
    expected = _table(
        [
            {
                "label_id": "vl-m1-pl-a0",
                "image_id": "img-a",
                "class_name": "cat",
                "x": 0.1,
                "y": 0.5,
                "w": 0.1,
                "h": 0.2,
                "pre_label_id": "pl-a0",
                "confidence": 0.8,
            }
            | provenance,
            {
                "label_id": "vl-m1-pl-a1",
                "image_id": "img-a",
                "class_name": "dog",
                "x": 0.2,
                "y": 0.5,
                "w": 0.1,
                "h": 0.2,
                "pre_label_id": "pl-a1",
                "confidence": 0.9,
            }
            | provenance,
        ],
        LABEL_COLUMNS,
    )
    pd.testing.assert_frame_equal(rows, expected)


def test_auto_accepted_rows_never_accept_a_class_without_threshold() -> None:
    """Pins that a box of a class whose threshold is None blocks its image, and that no
    candidate accepted gives an empty frame with the label columns."""
    calibration = Calibration(
        target_precision=0.95,
        thresholds={"cat": 0.8, "dog": None},
        global_threshold=None,
        support={"cat": 30, "dog": 25},
        estimated_precision={"cat": 0.96, "dog": None},
    )
    boxes = _boxes([("pl-a0", "img-a", "cat", 0.99), ("pl-a1", "img-a", "dog", 1.0)])

    rows = auto_accepted_rows(boxes, {"img-a"}, calibration, OPEN_GATE, merge_id="m1")

    pd.testing.assert_frame_equal(rows, _table([], LABEL_COLUMNS))


# --- human_rows -------------------------------------------------------------------------


def test_human_rows_keep_reviewed_boxes_without_deleted_or_gold() -> None:
    """Pins human_rows: deleted edits and gold-task edits give no label; kept, moved,
    relabelled and added boxes give source human rows with reviewer provenance; an added box
    has empty model_version and pre_label_run_id (no model proposed it) and NaN confidence;
    label ids are vl-<merge>-<image_id[:16]>-<running index>."""
    edits = _table(
        [
            _edit(edit_kind="accepted", pre_label_id="pl-0", confidence=0.9),
            _edit(
                edit_kind="deleted",
                pre_label_id="pl-1",
                region_id="",
                class_name="",
                x=NAN,
                y=NAN,
                w=NAN,
                h=NAN,
                confidence=0.3,
                prediction_correct=0.0,
            ),
            _edit(
                edit_kind="relabelled",
                pre_label_id="pl-2",
                class_name="dog",
                x=0.3,
                confidence=0.6,
                prediction_correct=0.0,
            ),
            _edit(
                edit_kind="added",
                pre_label_id="",
                region_id="new-1",
                class_name="dog",
                x=0.7,
                original_class="",
                confidence=NAN,
                iou=NAN,
                prediction_correct=NAN,
            ),
            _edit(image_id="img-g", is_gold=True, pre_label_id="pl-g"),
            _edit(
                image_id="img-b",
                edit_kind="moved",
                pre_label_id="pl-b",
                x=0.45,
                confidence=0.7,
                reviewer="bob",
                pre_label_run_id="run-b",
            ),
        ],
        EDIT_COLUMNS,
    )

    rows = human_rows(edits, merge_id="m2")

    reviewed = {
        "source": "human",
        "review_batch_id": "batch-1",
        "reviewed_at": "2026-01-02T03:04:05+00:00",
        "merge_id": "m2",
        "retired_by": "",
        "y": 0.5,
        "w": 0.2,
        "h": 0.2,
    }
    expected = _table(
        [
            reviewed
            | {
                "label_id": "vl-m2-img-a-000",
                "image_id": "img-a",
                "class_name": "cat",
                "x": 0.5,
                "model_version": "mv-1",
                "pre_label_id": "pl-0",
                "pre_label_run_id": "run-p",
                "reviewer": "alice",
                "edit_kind": "accepted",
                "confidence": 0.9,
            },
            reviewed
            | {
                "label_id": "vl-m2-img-a-001",
                "image_id": "img-a",
                "class_name": "dog",
                "x": 0.3,
                "model_version": "mv-1",
                "pre_label_id": "pl-2",
                "pre_label_run_id": "run-p",
                "reviewer": "alice",
                "edit_kind": "relabelled",
                "confidence": 0.6,
            },
            reviewed
            | {
                "label_id": "vl-m2-img-a-002",
                "image_id": "img-a",
                "class_name": "dog",
                "x": 0.7,
                "model_version": "",
                "pre_label_id": "",
                "pre_label_run_id": "",
                "reviewer": "alice",
                "edit_kind": "added",
                "confidence": NAN,
            },
            reviewed
            | {
                "label_id": "vl-m2-img-b-003",
                "image_id": "img-b",
                "class_name": "cat",
                "x": 0.45,
                "model_version": "mv-1",
                "pre_label_id": "pl-b",
                "pre_label_run_id": "run-b",
                "reviewer": "bob",
                "edit_kind": "moved",
                "confidence": 0.7,
            },
        ],
        LABEL_COLUMNS,
    )
    pd.testing.assert_frame_equal(rows, expected)


# --- merge_verified and active ----------------------------------------------------------


def _empty_tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    return _table([], LABEL_COLUMNS), _table([], VERIFIED_IMAGE_COLUMNS)


def _first_merge() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Merge m1 onto empty tables: img-a (two boxes) and img-b (one box), both auto-accepted."""
    additions = _table(
        [
            _label("vl-m1-a0", "img-a", merge_id="m1"),
            _label("vl-m1-a1", "img-a", merge_id="m1"),
            _label("vl-m1-b0", "img-b", merge_id="m1"),
        ],
        LABEL_COLUMNS,
    )
    covered = verified_image_rows({"img-a": "auto_accepted", "img-b": "auto_accepted"}, merge_id="m1")
    labels, images = merge_verified(*_empty_tables(), additions, covered, merge_id="m1")
    return labels, images, additions, covered


def test_first_merge_adds_its_rows() -> None:
    """Pins (a): merging onto empty tables yields exactly the new label and image rows, all
    active, with the table dtypes."""
    labels, images, additions, covered = _first_merge()

    pd.testing.assert_frame_equal(labels, additions)
    pd.testing.assert_frame_equal(
        images,
        _table(
            [
                _image("img-a", source="auto_accepted", merge_id="m1"),
                _image("img-b", source="auto_accepted", merge_id="m1"),
            ],
            VERIFIED_IMAGE_COLUMNS,
        ),
    )
    pd.testing.assert_frame_equal(images, covered)


def _second_merge_inputs() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Merge m2: humans reviewed img-a (one box kept) and the new img-c (one box)."""
    additions = _table(
        [
            _label("vl-m2-a0", "img-a", merge_id="m2", source="human"),
            _label("vl-m2-c0", "img-c", merge_id="m2", source="human"),
        ],
        LABEL_COLUMNS,
    )
    return additions, verified_image_rows({"img-a": "human", "img-c": "human"}, merge_id="m2")


def test_second_merge_retires_superseded_rows_and_adds_its_own() -> None:
    """Pins (b): a merge covering an image retires that image's active rows (label and image
    rows alike, retired_by = the new merge id), never deletes them, leaves other images'
    rows alone, and appends its rows after the existing ones."""
    labels, images, _, _ = _first_merge()
    additions, covered = _second_merge_inputs()

    labels, images = merge_verified(labels, images, additions, covered, merge_id="m2")

    expected_labels = _table(
        [
            _label("vl-m1-a0", "img-a", merge_id="m1", retired_by="m2"),
            _label("vl-m1-a1", "img-a", merge_id="m1", retired_by="m2"),
            _label("vl-m1-b0", "img-b", merge_id="m1"),
            _label("vl-m2-a0", "img-a", merge_id="m2", source="human"),
            _label("vl-m2-c0", "img-c", merge_id="m2", source="human"),
        ],
        LABEL_COLUMNS,
    )
    expected_images = _table(
        [
            _image("img-a", source="auto_accepted", merge_id="m1", retired_by="m2"),
            _image("img-b", source="auto_accepted", merge_id="m1"),
            _image("img-a", source="human", merge_id="m2"),
            _image("img-c", source="human", merge_id="m2"),
        ],
        VERIFIED_IMAGE_COLUMNS,
    )
    pd.testing.assert_frame_equal(labels, expected_labels)
    pd.testing.assert_frame_equal(images, expected_images)


def test_a_later_merge_keeps_earlier_retirements() -> None:
    """Pins that a row keeps the retired_by of the merge that first superseded it: a third
    merge covering img-a retires m2's rows, while m1's stay retired by m2."""
    labels, images, _, _ = _first_merge()
    labels, images = merge_verified(labels, images, *_second_merge_inputs(), merge_id="m2")
    additions = _table([_label("vl-m3-a0", "img-a", merge_id="m3", source="human")], LABEL_COLUMNS)

    labels, images = merge_verified(
        labels, images, additions, verified_image_rows({"img-a": "human"}, merge_id="m3"), merge_id="m3"
    )

    img_a = labels[labels["image_id"] == "img-a"]
    assert img_a[["label_id", "retired_by"]].values.tolist() == [
        ["vl-m1-a0", "m2"],
        ["vl-m1-a1", "m2"],
        ["vl-m2-a0", "m3"],
        ["vl-m3-a0", ""],
    ]
    assert images[images["image_id"] == "img-a"][["merge_id", "retired_by"]].values.tolist() == [
        ["m1", "m2"],
        ["m2", "m3"],
        ["m3", ""],
    ]


def test_rerunning_a_merge_gives_identical_tables() -> None:
    """Pins (c), idempotence: applying the same merge a second time first undoes it (drops
    its rows, revives what it retired), so the tables equal those of a single run."""
    labels, images, _, _ = _first_merge()
    additions, covered = _second_merge_inputs()

    once = merge_verified(labels, images, additions, covered, merge_id="m2")
    twice = merge_verified(*once, additions, covered, merge_id="m2")

    pd.testing.assert_frame_equal(twice[0], once[0])
    pd.testing.assert_frame_equal(twice[1], once[1])
    # The first merge is idempotent on its own too (nothing to revive there).
    first = _first_merge()
    again = merge_verified(first[0], first[1], first[2], first[3], merge_id="m1")
    pd.testing.assert_frame_equal(again[0], first[0])
    pd.testing.assert_frame_equal(again[1], first[1])


def test_rerunning_a_merge_with_changed_rows_replaces_its_previous_result() -> None:
    """Pins that a re-run is a replacement, not an addition: if the merge now covers fewer
    images, the rows it retired last time for the dropped image are active again."""
    labels, images, _, _ = _first_merge()
    once = merge_verified(labels, images, *_second_merge_inputs(), merge_id="m2")
    only_c = _table([_label("vl-m2-c0", "img-c", merge_id="m2", source="human")], LABEL_COLUMNS)

    labels, images = merge_verified(
        *once, only_c, verified_image_rows({"img-c": "human"}, merge_id="m2"), merge_id="m2"
    )

    assert active(labels)["label_id"].tolist() == ["vl-m1-a0", "vl-m1-a1", "vl-m1-b0", "vl-m2-c0"]
    assert active(images)[["image_id", "merge_id"]].values.tolist() == [
        ["img-a", "m1"],
        ["img-b", "m1"],
        ["img-c", "m2"],
    ]
    assert (labels["retired_by"] == "").all() and (images["retired_by"] == "").all()


def test_an_image_reviewed_empty_is_verified_and_loses_its_old_labels() -> None:
    """Pins (d): an image a merge covers with no label rows (the reviewer removed every
    box) still gets an active verified image row, and its earlier labels are retired, so
    it trains as a negative example rather than keeping the rejected boxes."""
    labels, images, _, _ = _first_merge()

    labels, images = merge_verified(
        labels, images, _table([], LABEL_COLUMNS), verified_image_rows({"img-b": "human"}, merge_id="m2"), merge_id="m2"
    )

    assert labels.loc[labels["image_id"] == "img-b", "retired_by"].tolist() == ["m2"]
    assert active(labels)["image_id"].tolist() == ["img-a", "img-a"]
    pd.testing.assert_frame_equal(
        active(images).reset_index(drop=True),
        _table(
            [_image("img-a", source="auto_accepted", merge_id="m1"), _image("img-b", source="human", merge_id="m2")],
            VERIFIED_IMAGE_COLUMNS,
        ),
    )


def test_active_keeps_only_rows_not_retired() -> None:
    """Pins active(): the rows whose retired_by is empty, in table order, for labels and
    images alike."""
    labels = _table(
        [
            _label("l1", "img-a", merge_id="m1", retired_by="m2"),
            _label("l2", "img-b", merge_id="m1"),
            _label("l3", "img-a", merge_id="m2"),
        ],
        LABEL_COLUMNS,
    )
    images = _table(
        [
            _image("img-a", source="human", merge_id="m1", retired_by="m2"),
            _image("img-a", source="human", merge_id="m2"),
        ],
        VERIFIED_IMAGE_COLUMNS,
    )

    assert active(labels)["label_id"].tolist() == ["l2", "l3"]
    assert active(images)["merge_id"].tolist() == ["m2"]
    assert active(_table([], LABEL_COLUMNS)).empty


def test_a_revision_retires_only_the_images_it_holds_and_keeps_the_old_rows() -> None:
    """Pins a revision's merge: batch-1 verified img-a (two boxes) and img-b; its revision
    batch-1.r2 holds img-a only (one box moved). img-a's rows from batch-1 are retired by
    batch-1.r2 and kept; img-b's stay in force; every image has its boxes from exactly one
    merge in force (nothing lost, nothing doubled); a re-run changes nothing."""
    batch = _table(
        [
            _label("vl-batch-1-a0", "img-a", merge_id="batch-1", source="human"),
            _label("vl-batch-1-a1", "img-a", merge_id="batch-1", source="human"),
            _label("vl-batch-1-b0", "img-b", merge_id="batch-1", source="human"),
        ],
        LABEL_COLUMNS,
    )
    labels, images = merge_verified(
        *_empty_tables(),
        batch,
        verified_image_rows({"img-a": "human", "img-b": "human"}, merge_id="batch-1"),
        merge_id="batch-1",
    )
    revised = _table(
        [
            _label("vl-batch-1.r2-a0", "img-a", merge_id="batch-1.r2", source="human"),
            _label("vl-batch-1.r2-a1", "img-a", merge_id="batch-1.r2", source="human") | {"x": 0.55},
        ],
        LABEL_COLUMNS,
    )
    covered = verified_image_rows({"img-a": "human"}, merge_id="batch-1.r2")

    once = merge_verified(labels, images, revised, covered, merge_id="batch-1.r2")
    labels, images = once

    assert labels[["label_id", "retired_by"]].values.tolist() == [
        ["vl-batch-1-a0", "batch-1.r2"],
        ["vl-batch-1-a1", "batch-1.r2"],
        ["vl-batch-1-b0", ""],
        ["vl-batch-1.r2-a0", ""],
        ["vl-batch-1.r2-a1", ""],
    ]
    current = active(labels)
    assert current.groupby("image_id")["merge_id"].unique().map(list).to_dict() == {
        "img-a": ["batch-1.r2"],
        "img-b": ["batch-1"],
    }
    assert current.loc[current["image_id"] == "img-a", "x"].tolist() == [0.5, 0.55]
    assert active(images)[["image_id", "merge_id"]].values.tolist() == [["img-b", "batch-1"], ["img-a", "batch-1.r2"]]
    twice = merge_verified(*once, revised, covered, merge_id="batch-1.r2")
    pd.testing.assert_frame_equal(twice[0], once[0])
    pd.testing.assert_frame_equal(twice[1], once[1])
