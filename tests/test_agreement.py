"""Tests for edit classification, gold scoring and inter-reviewer agreement."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labeling_dag.agreement import (
    EDIT_KINDS,
    BoxEdit,
    GoldScore,
    PredictedBox,
    accuracy_by_reviewer,
    classify_edits,
    iou_matrix,
    match_boxes,
    overall_accuracy,
    score_against_gold,
)
from labeling_dag.formats.label_studio_export import AnnotatedBox
from labeling_dag.records import NormBox


def _strip(left: float, right: float) -> NormBox:
    """A box spanning [left, right] horizontally at a fixed height, so IoU is 1-D arithmetic."""
    return NormBox((left + right) / 2, 0.5, right - left, 0.2)


# --- IoU and matching -------------------------------------------------------------------


def test_iou_of_simple_boxes() -> None:
    half_left = NormBox(0.25, 0.5, 0.5, 1.0)  # x in [0, 0.5]
    middle = NormBox(0.5, 0.5, 0.5, 1.0)  # x in [0.25, 0.75]
    big = NormBox(0.5, 0.5, 0.4, 0.4)  # area 0.16
    small = NormBox(0.5, 0.5, 0.2, 0.2)  # area 0.04, inside big
    far = NormBox(0.9, 0.9, 0.1, 0.1)
    iou = iou_matrix([half_left, big], [half_left, middle, small, far])
    assert iou.shape == (2, 4)
    assert iou[0, 0] == pytest.approx(1.0)
    # overlap [0.25, 0.5] = 0.25 wide, union [0, 0.75] = 0.75 wide: 1/3
    assert iou[0, 1] == pytest.approx(1 / 3)
    # small lies inside big: 0.04 / 0.16
    assert iou[1, 2] == pytest.approx(0.25)
    assert iou[0, 3] == 0.0 and iou[1, 3] == 0.0


def test_iou_matrix_of_empty_lists() -> None:
    assert iou_matrix([], [NormBox(0.5, 0.5, 0.1, 0.1)]).shape == (0, 1)
    assert iou_matrix([NormBox(0.5, 0.5, 0.1, 0.1)], []).shape == (1, 0)


def test_hungarian_beats_greedy() -> None:
    a0, a1 = _strip(0.0, 1.0), _strip(0.0, 0.54)
    b0, b1 = _strip(0.0, 0.9), _strip(0.4, 1.0)
    # a0-b0: 0.9/1.0 = 0.9    a0-b1: 0.6/1.0 = 0.6
    # a1-b0: 0.54/0.9 = 0.6   a1-b1: overlap [0.4, 0.54] = 0.14 over union 1.0 = 0.14
    # Greedy takes the best pair a0-b0 first and leaves a1-b1 (0.14, below 0.5): one match.
    # Hungarian pairs a0-b1 and a1-b0: total 1.2 > 0.9 + 0.14, and both pass 0.5.
    matches = match_boxes([a0, a1], [b0, b1], min_iou=0.5)
    assert [(i, j) for i, j, _ in matches] == [(0, 1), (1, 0)]
    assert [iou for _, _, iou in matches] == pytest.approx([0.6, 0.6])


def test_weak_pairs_do_not_displace_a_valid_match() -> None:
    a0, a1 = _strip(0.0, 1.0), _strip(0.0, 0.2475)
    b0, b1 = _strip(0.0, 0.55), _strip(0.55, 1.0)
    # a0-b0: 0.55   a0-b1: 0.45   a1-b0: 0.2475/0.55 = 0.45   a1-b1: 0
    # The raw IoU total prefers a0-b1 + a1-b0 (0.9 > 0.55), both below the threshold,
    # which would leave no match at all; a0-b0 is the one pair that counts.
    matches = match_boxes([a0, a1], [b0, b1], min_iou=0.5)
    assert [(i, j) for i, j, _ in matches] == [(0, 0)]
    assert matches[0][2] == pytest.approx(0.55)


def test_match_boxes_drops_pairs_below_threshold_and_validates_it() -> None:
    a, b = _strip(0.0, 0.5), _strip(0.25, 0.75)  # IoU 1/3
    assert match_boxes([a], [b], min_iou=0.5) == []
    assert [(i, j) for i, j, _ in match_boxes([a], [b], min_iou=0.3)] == [(0, 0)]
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="min_iou"):
            match_boxes([a], [b], min_iou=bad)


# --- edit classification ----------------------------------------------------------------


def _pred(box_id: str, class_name: str, box: NormBox, confidence: float = 0.8) -> PredictedBox:
    return PredictedBox(box_id=box_id, class_name=class_name, box=box, confidence=confidence)


def _ann(region_id: str, class_name: str, box: NormBox) -> AnnotatedBox:
    return AnnotatedBox(region_id=region_id, class_name=class_name, box=box)


CAR_BOX = NormBox(0.5, 0.5, 0.2, 0.4)
PERSON_BOX = NormBox(0.25, 0.25, 0.1, 0.3)  # x in [0.2, 0.3]
PERSON_NUDGED = NormBox(0.27, 0.25, 0.1, 0.3)  # x in [0.22, 0.32]: IoU 0.08 / 0.12 = 2/3


def test_accepted_by_id() -> None:
    (edit,) = classify_edits([_pred("p1", "car", CAR_BOX, 0.9)], [_ann("p1", "car", CAR_BOX)])
    assert edit == BoxEdit(
        edit_kind="accepted",
        pre_label_id="p1",
        region_id="p1",
        class_name="car",
        box=CAR_BOX,
        original_class="car",
        original_box=CAR_BOX,
        confidence=0.9,
        iou=pytest.approx(1.0),
    )
    assert edit.prediction_correct is True


def test_moved_by_id() -> None:
    (edit,) = classify_edits([_pred("p2", "person", PERSON_BOX)], [_ann("p2", "person", PERSON_NUDGED)])
    assert edit.edit_kind == "moved" and edit.pre_label_id == edit.region_id == "p2"
    assert edit.iou == pytest.approx(2 / 3)
    assert edit.box == PERSON_NUDGED and edit.original_box == PERSON_BOX
    assert edit.prediction_correct is True  # 2/3 >= 0.5: the model's box was a hit


def test_far_move_is_not_a_correct_prediction() -> None:
    # [0, 0.5] dragged to [0.25, 0.75]: IoU 1/3 < 0.5
    (edit,) = classify_edits([_pred("p", "car", _strip(0.0, 0.5))], [_ann("p", "car", _strip(0.25, 0.75))])
    assert edit.edit_kind == "moved" and edit.iou == pytest.approx(1 / 3)
    assert edit.prediction_correct is False


def test_relabelled_by_id() -> None:
    (edit,) = classify_edits([_pred("p3", "car", CAR_BOX)], [_ann("p3", "person", CAR_BOX)])
    assert edit.edit_kind == "relabelled"
    assert (edit.original_class, edit.class_name) == ("car", "person")
    assert edit.iou == pytest.approx(1.0)
    assert edit.prediction_correct is False


def test_relabelled_and_moved_is_relabelled() -> None:
    (edit,) = classify_edits([_pred("p2", "person", PERSON_BOX)], [_ann("p2", "car", PERSON_NUDGED)])
    assert edit.edit_kind == "relabelled" and edit.iou == pytest.approx(2 / 3)


def test_added_and_deleted() -> None:
    far = NormBox(0.9, 0.9, 0.1, 0.1)
    deleted, added = classify_edits([_pred("p5", "bicycle", CAR_BOX, 0.3)], [_ann("Xq3n9", "car", far)])
    assert deleted == BoxEdit("deleted", "p5", None, None, None, "bicycle", CAR_BOX, 0.3, None)
    assert added == BoxEdit("added", None, "Xq3n9", "car", far, None, None, None, None)
    assert deleted.prediction_correct is False
    assert added.prediction_correct is None


def test_recreated_region_is_matched_by_iou() -> None:
    # A tool that re-creates regions gives the same box a fresh id: still accepted / moved.
    edits = classify_edits(
        [_pred("p6", "dog", CAR_BOX), _pred("p7", "person", PERSON_BOX)],
        [_ann("new-2", "person", PERSON_NUDGED), _ann("new-1", "dog", CAR_BOX)],
    )
    assert [(e.edit_kind, e.pre_label_id, e.region_id) for e in edits] == [
        ("accepted", "p6", "new-1"),
        ("moved", "p7", "new-2"),
    ]


def test_id_match_takes_precedence_over_iou() -> None:
    # p1's own region was dragged away; a new region sits exactly on p1's old box.
    away = NormBox(0.2, 0.8, 0.2, 0.2)
    edits = classify_edits([_pred("p1", "car", CAR_BOX)], [_ann("fresh", "car", CAR_BOX), _ann("p1", "car", away)])
    assert [(e.edit_kind, e.pre_label_id, e.region_id) for e in edits] == [
        ("moved", "p1", "p1"),
        ("added", None, "fresh"),
    ]
    assert edits[0].iou == 0.0


def test_edit_order_is_predictions_then_added() -> None:
    predicted = [
        _pred("p1", "car", CAR_BOX),
        _pred("p2", "person", PERSON_BOX),
        _pred("p5", "bicycle", NormBox(0.1, 0.9, 0.1, 0.1)),
    ]
    annotated = [
        _ann("a1", "car", NormBox(0.9, 0.1, 0.1, 0.1)),
        _ann("p2", "person", PERSON_NUDGED),
        _ann("a2", "car", NormBox(0.9, 0.5, 0.1, 0.1)),
        _ann("p1", "car", CAR_BOX),
    ]
    edits = classify_edits(predicted, annotated)
    assert [(e.edit_kind, e.pre_label_id or e.region_id) for e in edits] == [
        ("accepted", "p1"),
        ("moved", "p2"),
        ("deleted", "p5"),
        ("added", "a1"),
        ("added", "a2"),
    ]


def test_classify_edits_rejects_repeated_ids() -> None:
    with pytest.raises(ValueError, match="p1"):
        classify_edits([_pred("p1", "car", CAR_BOX), _pred("p1", "car", PERSON_BOX)], [])
    with pytest.raises(ValueError, match="r1"):
        classify_edits([], [_ann("r1", "car", CAR_BOX), _ann("r1", "car", PERSON_BOX)])


def test_box_edit_rejects_unknown_kind() -> None:
    with pytest.raises(ValueError, match="edit_kind"):
        BoxEdit("nudged", "p", "p", "car", CAR_BOX, "car", CAR_BOX, 0.5, 1.0)  # type: ignore[arg-type]


_CLASSES = ("car", "person")
_boxes = st.builds(
    NormBox,
    x=st.sampled_from([0.3, 0.4, 0.5, 0.6]),
    y=st.sampled_from([0.4, 0.5]),
    w=st.sampled_from([0.2, 0.3]),
    h=st.sampled_from([0.2, 0.3]),
)


@st.composite
def _reviews(draw: st.DrawFn) -> tuple[list[PredictedBox], list[AnnotatedBox]]:
    predicted = [
        _pred(f"p{i}", draw(st.sampled_from(_CLASSES)), draw(_boxes), draw(st.floats(0.0, 1.0)))
        for i in range(draw(st.integers(0, 5)))
    ]
    kept = draw(st.lists(st.sampled_from([p.box_id for p in predicted]), unique=True)) if predicted else []
    region_ids = kept + [f"new{i}" for i in range(draw(st.integers(0, 4)))]
    region_ids = draw(st.permutations(region_ids))
    annotated = [_ann(rid, draw(st.sampled_from(_CLASSES)), draw(_boxes)) for rid in region_ids]
    return predicted, annotated


@settings(max_examples=200, deadline=None)
@given(_reviews())
def test_classify_edits_is_a_partition(review: tuple[list[PredictedBox], list[AnnotatedBox]]) -> None:
    predicted, annotated = review
    edits = classify_edits(predicted, annotated)
    assert all(e.edit_kind in EDIT_KINDS for e in edits)
    from_predictions = [e for e in edits if e.edit_kind != "added"]
    from_regions = [e for e in edits if e.edit_kind != "deleted"]
    assert [e.pre_label_id for e in from_predictions] == [p.box_id for p in predicted]
    assert edits[: len(predicted)] == from_predictions  # predictions first, in their order
    assert Counter(e.region_id for e in from_regions) == Counter(a.region_id for a in annotated)
    assert all(e.pre_label_id is None for e in edits if e.edit_kind == "added")
    assert all(e.region_id is None for e in edits if e.edit_kind == "deleted")
    for edit in edits:
        if edit.edit_kind in ("accepted", "moved", "relabelled"):
            assert edit.iou is not None and (edit.class_name != edit.original_class) == (edit.edit_kind == "relabelled")
        if edit.edit_kind == "accepted":
            assert edit.iou >= 0.98  # type: ignore[operator]


# --- gold scoring -----------------------------------------------------------------------


def test_score_against_gold_counts() -> None:
    truth = [("car", _strip(0.0, 0.2)), ("car", _strip(0.4, 0.6)), ("person", _strip(0.7, 0.9))]
    annotated = [
        ("car", _strip(0.0, 0.18)),  # IoU 0.18/0.2 = 0.9 with the first car: TP
        ("person", _strip(0.4, 0.6)),  # on the second car but the wrong class: FP, and that car FN
        ("person", _strip(0.7, 0.9)),  # TP
        ("car", _strip(0.9, 1.0)),  # nothing there: FP
    ]
    score = score_against_gold("ann", "img-1", annotated, truth)
    assert score == GoldScore("ann", "img-1", true_positives=2, false_positives=2, false_negatives=1)
    assert score.accuracy == pytest.approx(2 / 5)


def test_gold_empty_image() -> None:
    assert score_against_gold("ann", "img-0", [], []).accuracy == 1.0
    missed = score_against_gold("ann", "img-0", [], [("car", CAR_BOX)])
    assert (missed.true_positives, missed.false_positives, missed.false_negatives) == (0, 0, 1)
    assert missed.accuracy == 0.0


def test_accuracy_is_micro_averaged_per_reviewer() -> None:
    scores = [
        GoldScore("bob", "img-1", 1, 0, 0),
        GoldScore("ann", "img-1", 2, 2, 1),
        GoldScore("ann", "img-2", 0, 0, 0),  # empty image left empty: adds no boxes
        GoldScore("bob", "img-2", 0, 1, 2),
    ]
    by_reviewer = accuracy_by_reviewer(scores)
    assert list(by_reviewer) == ["ann", "bob"]
    # ann: 2 / (2 + 2 + 1) = 0.4 (the per-image mean would be (0.4 + 1.0) / 2 = 0.7)
    # bob: 1 / (1 + 1 + 2) = 0.25 (the per-image mean would be (1.0 + 0.0) / 2 = 0.5)
    assert by_reviewer == pytest.approx({"ann": 0.4, "bob": 0.25})
    # all: 3 / (3 + 3 + 3)
    assert overall_accuracy(scores) == pytest.approx(1 / 3)
    assert overall_accuracy([]) is None
    assert accuracy_by_reviewer([]) == {}
    assert overall_accuracy([GoldScore("ann", "img-2", 0, 0, 0)]) == 1.0


def test_a_wrong_class_of_a_whole_item_is_one_wrong_answer() -> None:
    whole = NormBox(0.5, 0.5, 1.0, 1.0)
    sport = [("sport", whole)]
    right = [score_against_gold("r", f"t{i}", sport, sport, whole_item=True) for i in range(3)]
    wrong = score_against_gold("r", "t3", [("business", whole)], [("sport", whole)], whole_item=True)
    assert (wrong.true_positives, wrong.false_positives, wrong.false_negatives) == (0, 1, 0)
    assert overall_accuracy([*right, wrong]) == pytest.approx(0.75)
    # As boxes, the same slip is a false box and a missed one.
    boxes = score_against_gold("r", "t3", [("business", whole)], [("sport", whole)])
    assert (boxes.false_positives, boxes.false_negatives) == (1, 1)
