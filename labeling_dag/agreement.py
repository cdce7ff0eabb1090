"""How reviewers changed the model's boxes and how well they match gold.

How several reviewers agree with each other is :mod:`labeling_dag.consensus`.

Pure functions over :class:`NormBox` records.  IoU comes from ``torchvision.ops.box_iou``
and one-to-one matching from the Hungarian algorithm (``scipy``); both are imported inside
the functions that use them so that importing this module stays cheap.

Every matching here is optimal one-to-one: each box is used at most once, and among the
pairs with IoU of at least ``min_iou`` the total IoU is maximised.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from labeling_dag.formats.label_studio_export import AnnotatedBox
from labeling_dag.records import NormBox

EditKind = Literal["accepted", "moved", "relabelled", "added", "deleted"]
EDIT_KINDS: tuple[EditKind, ...] = ("accepted", "moved", "relabelled", "added", "deleted")

# The PASCAL VOC / COCO AP50 criterion: a moved box that still overlaps its correction
# this much would have counted as a hit in detection metrics.
CORRECT_IOU = 0.5


@dataclass(frozen=True)
class PredictedBox:
    """One box the model proposed for an image, as sent to review."""

    box_id: str
    class_name: str
    box: NormBox
    confidence: float


@dataclass(frozen=True)
class BoxEdit:
    """What a reviewer did to one predicted box, or one box the reviewer added.

    Fields describing the prediction (``pre_label_id``, ``original_class``,
    ``original_box``, ``confidence``) are ``None`` for ``"added"``; fields describing the
    final annotation (``region_id``, ``class_name``, ``box``) are ``None`` for
    ``"deleted"``; ``iou`` is IoU(original box, final box) when both exist.
    """

    edit_kind: EditKind
    pre_label_id: str | None
    region_id: str | None
    class_name: str | None
    box: NormBox | None
    original_class: str | None
    original_box: NormBox | None
    confidence: float | None
    iou: float | None

    def __post_init__(self) -> None:
        if self.edit_kind not in EDIT_KINDS:
            raise ValueError(f"edit_kind must be one of {EDIT_KINDS}, got {self.edit_kind!r}")

    @property
    def prediction_correct(self) -> bool | None:
        """Whether the model's box was right, as a calibration target for its confidence.

        True for ``"accepted"`` and for ``"moved"`` with ``iou >= CORRECT_IOU``; False
        for ``"relabelled"``, ``"deleted"`` and a move further than that; ``None`` for
        ``"added"``, which has no prediction to judge.
        """
        if self.edit_kind == "added":
            return None
        if self.edit_kind == "accepted":
            return True
        if self.edit_kind == "moved":
            return self.iou is not None and self.iou >= CORRECT_IOU
        return False


def _check_threshold(value: float, name: str = "min_iou") -> None:
    # A threshold of 0 would "match" boxes that do not touch at all.
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{name} must be in (0, 1], got {value!r}")


def iou_matrix(a: Sequence[NormBox], b: Sequence[NormBox]) -> np.ndarray:
    """Pairwise IoU, shape ``(len(a), len(b))``, values in [0, 1]; higher means more overlap.

    A pair of zero-area boxes (IoU 0/0) counts as 0.
    """
    if not a or not b:
        return np.zeros((len(a), len(b)), dtype=np.float64)
    import torch
    from torchvision.ops import box_convert, box_iou

    def xyxy(boxes: Sequence[NormBox]) -> torch.Tensor:
        cxcywh = torch.tensor([[box.x, box.y, box.w, box.h] for box in boxes], dtype=torch.float64)
        return box_convert(cxcywh, in_fmt="cxcywh", out_fmt="xyxy")

    return np.nan_to_num(box_iou(xyxy(a), xyxy(b)).numpy(), nan=0.0)


def _match_iou(iou: np.ndarray, min_iou: float) -> list[tuple[int, int, float]]:
    from scipy.optimize import linear_sum_assignment

    if iou.size == 0:
        return []
    # Weak pairs are worth nothing to the solver, so one can never displace a pair that
    # passes the threshold just because it raises the raw IoU total.
    gain = np.where(iou >= min_iou, iou, 0.0)
    rows, cols = linear_sum_assignment(gain, maximize=True)
    return [(int(i), int(j), float(iou[i, j])) for i, j in zip(rows, cols) if iou[i, j] >= min_iou]


def match_boxes(a: Sequence[NormBox], b: Sequence[NormBox], *, min_iou: float = 0.5) -> list[tuple[int, int, float]]:
    """Optimal one-to-one matching of ``a`` to ``b`` maximising total IoU (Hungarian).

    Returns ``(index_in_a, index_in_b, iou)`` for every matched pair, ordered by
    ``index_in_a``; only pairs with ``iou >= min_iou`` take part.  Raises ``ValueError``
    unless ``0 < min_iou <= 1``.
    """
    _check_threshold(min_iou)
    return _match_iou(iou_matrix(a, b), min_iou)


def _edit(predicted: PredictedBox, annotated: AnnotatedBox, iou: float, same_box_iou: float) -> BoxEdit:
    # A class change is the bigger error, so it names the edit even if the box moved too.
    if annotated.class_name != predicted.class_name:
        kind: EditKind = "relabelled"
    elif iou >= same_box_iou:
        kind = "accepted"
    else:
        kind = "moved"
    return BoxEdit(
        edit_kind=kind,
        pre_label_id=predicted.box_id,
        region_id=annotated.region_id,
        class_name=annotated.class_name,
        box=annotated.box,
        original_class=predicted.class_name,
        original_box=predicted.box,
        confidence=predicted.confidence,
        iou=iou,
    )


def _require_unique(ids: Iterable[str], what: str) -> None:
    seen: set[str] = set()
    for item in ids:
        if item in seen:
            raise ValueError(f"{what} {item!r} appears twice")
        seen.add(item)


def classify_edits(
    predicted: Sequence[PredictedBox],
    annotated: Sequence[AnnotatedBox],
    *,
    same_box_iou: float = 0.98,
    match_iou: float = 0.5,
) -> list[BoxEdit]:
    """Classify what the reviewer did to each predicted box of one image.

    A region whose ``region_id`` equals a prediction's ``box_id`` came from that
    prediction (Label Studio keeps the id when an annotator starts from it).  Regions
    without such an id are matched to the remaining predictions by IoU
    (:func:`match_boxes`, class-agnostic, ``>= match_iou``), because some tools re-create
    a region under a new id when it is edited.  A matched pair is ``"relabelled"`` when
    the class changed (moved or not), else ``"accepted"`` when IoU >= ``same_box_iou``,
    else ``"moved"``.  Unmatched regions are ``"added"``, unmatched predictions
    ``"deleted"``.

    Output: one edit per prediction in ``predicted`` order, then one per added region in
    ``annotated`` order, so every prediction and every region appears exactly once.
    Raises ``ValueError`` on repeated box ids or region ids, or a threshold outside (0, 1].
    """
    _check_threshold(same_box_iou, "same_box_iou")
    _check_threshold(match_iou, "match_iou")
    _require_unique((p.box_id for p in predicted), "predicted box id")
    _require_unique((a.region_id for a in annotated), "annotated region id")
    iou = iou_matrix([p.box for p in predicted], [a.box for a in annotated])
    column = {a.region_id: j for j, a in enumerate(annotated)}

    partner: dict[int, int] = {}  # prediction index -> annotation index
    for i, prediction in enumerate(predicted):
        if prediction.box_id in column:
            partner[i] = column[prediction.box_id]
    free_rows = [i for i in range(len(predicted)) if i not in partner]
    taken = set(partner.values())
    free_cols = [j for j in range(len(annotated)) if j not in taken]
    for r, c, _ in _match_iou(iou[np.ix_(free_rows, free_cols)], match_iou):
        partner[free_rows[r]] = free_cols[c]

    edits: list[BoxEdit] = []
    for i, prediction in enumerate(predicted):
        if i in partner:
            j = partner[i]
            edits.append(_edit(prediction, annotated[j], float(iou[i, j]), same_box_iou))
        else:
            edits.append(
                BoxEdit(
                    edit_kind="deleted",
                    pre_label_id=prediction.box_id,
                    region_id=None,
                    class_name=None,
                    box=None,
                    original_class=prediction.class_name,
                    original_box=prediction.box,
                    confidence=prediction.confidence,
                    iou=None,
                )
            )
    matched = set(partner.values())
    edits.extend(
        BoxEdit(
            edit_kind="added",
            pre_label_id=None,
            region_id=region.region_id,
            class_name=region.class_name,
            box=region.box,
            original_class=None,
            original_box=None,
            confidence=None,
            iou=None,
        )
        for j, region in enumerate(annotated)
        if j not in matched
    )
    return edits


# --- gold images ------------------------------------------------------------------------


@dataclass(frozen=True)
class GoldScore:
    """One reviewer's boxes on one gold image, compared with the known truth."""

    reviewer: str
    image_id: str
    true_positives: int
    false_positives: int
    false_negatives: int

    @property
    def accuracy(self) -> float:
        """``tp / (tp + fp + fn)`` in [0, 1], higher is better.

        1.0 when all three are 0: an empty image correctly left empty.
        """
        return _accuracy(self.true_positives, self.false_positives, self.false_negatives)


def _accuracy(tp: int, fp: int, fn: int) -> float:
    total = tp + fp + fn
    return 1.0 if total == 0 else tp / total


def score_against_gold(
    reviewer: str,
    image_id: str,
    annotated: Sequence[tuple[str, NormBox]],
    truth: Sequence[tuple[str, NormBox]],
    *,
    min_iou: float = 0.5,
    whole_item: bool = False,
) -> GoldScore:
    """Score a reviewer's ``(class_name, box)`` list for one image against the gold truth.

    Boxes are matched one-to-one within each class (:func:`match_boxes`); a matched pair
    is a true positive, an unmatched reviewer box a false positive, an unmatched truth box
    a false negative.  A box with the wrong class is therefore both an FP and an FN. For a
    ``whole_item`` classification (one region, the item) a wrong class is one wrong answer: an FP.
    """
    _check_threshold(min_iou)
    true_positives = 0
    for class_name in {name for name, _ in annotated} & {name for name, _ in truth}:
        mine = [box for name, box in annotated if name == class_name]
        gold = [box for name, box in truth if name == class_name]
        true_positives += len(match_boxes(mine, gold, min_iou=min_iou))
    wrong_classes = min(len(annotated), len(truth)) - true_positives if whole_item else 0
    return GoldScore(
        reviewer=reviewer,
        image_id=image_id,
        true_positives=true_positives,
        false_positives=len(annotated) - true_positives,
        false_negatives=len(truth) - true_positives - wrong_classes,
    )


def overall_accuracy(scores: Sequence[GoldScore]) -> float | None:
    """Micro-averaged accuracy ``sum tp / sum (tp + fp + fn)`` over ``scores``, in [0, 1].

    Micro-averaging weighs every box equally, so a crowded image counts for more than an
    empty one.  ``None`` when ``scores`` is empty (no gold evidence is not perfection);
    1.0 when every scored image was empty and left empty.  Pass one batch's scores for a
    per-batch figure.
    """
    if not scores:
        return None
    return _accuracy(
        sum(s.true_positives for s in scores),
        sum(s.false_positives for s in scores),
        sum(s.false_negatives for s in scores),
    )


def accuracy_by_reviewer(scores: Sequence[GoldScore]) -> dict[str, float]:
    """Micro-averaged gold accuracy per reviewer (see :func:`overall_accuracy`), sorted by name."""
    grouped: dict[str, list[GoldScore]] = defaultdict(list)
    for score in scores:
        grouped[score.reviewer].append(score)
    return {
        reviewer: _accuracy(
            sum(s.true_positives for s in own),
            sum(s.false_positives for s in own),
            sum(s.false_negatives for s in own),
        )
        for reviewer, own in sorted(grouped.items())
    }
