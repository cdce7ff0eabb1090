"""Several reviewers on one image: how well they agree, and the labels they agree on.

A review batch can send a share of its images to ``k`` annotators (``overlap_rate``,
``annotators_per_item``). Their answers are merged by consensus, not "latest wins": boxes are
fused with weighted box fusion (``ensemble-boxes``, Solovyev et al., 2021), each fused box is
kept with the class a strict majority of the ``k`` reviewers gave it, dropped where a strict
majority drew nothing there, and otherwise the image is *disputed*: it goes back to review as one
task that shows every fused box, for one annotator to settle. Agreement (:func:`agreement`) is
Cohen's kappa on matched boxes, their mean IoU and the share of boxes both sides drew, per
reviewer and per batch.

Pure functions over :class:`~labeling_dag.formats.label_studio_export.TaskAnnotation` records;
``ensemble_boxes`` (which loads numba) is imported only where boxes are fused.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter, defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from labeling_dag.agreement import match_boxes
from labeling_dag.contracts import DISPUTE_COLUMNS
from labeling_dag.formats.label_studio_export import AnnotatedBox, TaskAnnotation
from labeling_dag.records import NormBox

# What the pre-labels of a disputed image's adjudication task are recorded as coming from.
CONSENSUS_VERSION = "reviewer-consensus"


@dataclass(frozen=True)
class FusedBox:
    """One box the reviewers of an image drew (fused), with its votes.

    ``votes`` counts the reviewers whose box matched it, ``class_votes`` what each of them called
    it; ``class_name`` is the most voted class (ties: the first in alphabetical order) and
    ``agreed`` whether a strict majority of all reviewers settled it (kept with that class, or
    ``absent``: dropped because most reviewers drew nothing there).
    """

    region_id: str
    class_name: str
    box: NormBox
    votes: int
    class_votes: tuple[tuple[str, int], ...]
    agreed: bool
    absent: bool


@dataclass(frozen=True)
class ImageConsensus:
    """The reviewers of one image and what they agreed on."""

    image_id: str
    reviewers: tuple[str, ...]
    boxes: tuple[FusedBox, ...]

    @property
    def disputed(self) -> bool:
        """True where some box has no strict majority: the image goes back to review."""
        return not all(box.agreed for box in self.boxes)


@dataclass(frozen=True)
class AgreementScore:
    """How one reviewer (or the whole batch, ``reviewer == "*"``) agreed with the others.

    ``kappa`` is Cohen's kappa of the classes of the boxes both sides drew (matched one-to-one at
    IoU ``min_iou``), ``mean_iou`` the mean IoU of those pairs, and ``box_agreement`` the share of
    drawn boxes the other side drew too (``2 * matched / drawn``, a box-level F1): kappa alone
    never sees a box only one reviewer drew. ``None`` where there is nothing to measure.
    """

    reviewer: str
    matched: int
    kappa: float | None
    mean_iou: float | None
    box_agreement: float | None


def merge_annotations(
    annotations: Sequence[TaskAnnotation], *, shared: Collection[str], min_iou: float = 0.5
) -> tuple[list[TaskAnnotation], list[ImageConsensus]]:
    """One annotation per image to merge, and the consensus of every ``shared`` image.

    Images in ``shared`` (tasks that asked for several annotators) are merged by
    :func:`consensus`; on any other image the latest annotation wins, a later one being a
    correction (:func:`latest_by_image`). Images keep the order they
    first appear in ``annotations``; a disputed image has no merged annotation.
    """
    merged, settled = consensus([a for a in annotations if a.image_id in shared], min_iou=min_iou)
    merged += latest_by_image([a for a in annotations if a.image_id not in shared])
    order = {image_id: index for index, image_id in enumerate(dict.fromkeys(a.image_id for a in annotations))}
    return sorted(merged, key=lambda annotation: order[annotation.image_id]), settled


def consensus(
    annotations: Sequence[TaskAnnotation], *, min_iou: float = 0.5
) -> tuple[list[TaskAnnotation], list[ImageConsensus]]:
    """Merge every image's annotations into one, or report it disputed.

    Each reviewer's latest annotation of an image counts. An image one reviewer answered keeps
    that annotation. For ``k >= 2`` reviewers, their boxes are fused (:func:`fuse`); an image
    whose fused boxes are all agreed becomes one annotation by ``"a+b"`` (the reviewers joined,
    sorted) holding the kept boxes, stamped with the latest of their times. Returns the merged
    annotations (images in first-seen order) and the consensus of every image with several
    reviewers, disputed or not.
    """
    merged: list[TaskAnnotation] = []
    settled: list[ImageConsensus] = []
    for image_id, by_reviewer in latest_per_reviewer(annotations).items():
        if len(by_reviewer) == 1:
            merged.append(next(iter(by_reviewer.values())))
            continue
        outcome = fuse(image_id, by_reviewer, min_iou=min_iou)
        settled.append(outcome)
        if not outcome.disputed:
            merged.append(_agreed_annotation(outcome, by_reviewer))
    return merged, settled


def fuse(image_id: str, by_reviewer: dict[str, TaskAnnotation], *, min_iou: float = 0.5) -> ImageConsensus:
    """Fuse the boxes several reviewers drew on one image and count their votes.

    Boxes are clustered class-agnostically by weighted box fusion (equal weights, IoU
    ``min_iou``); each reviewer's boxes are then matched one-to-one to the fused boxes, and a box
    of a reviewer that no fused box took (two of their boxes in one cluster) stands alone with
    their one vote. A fused box's region id is the one most of its voters kept (a prediction's id
    when they accepted or moved it), or ``consensus-<image>-<n>`` where that id is taken.
    """
    from ensemble_boxes import weighted_boxes_fusion

    reviewers = tuple(sorted(by_reviewer))
    k = len(reviewers)
    drawn = [by_reviewer[reviewer].boxes for reviewer in reviewers]
    fused, _, _ = weighted_boxes_fusion(
        [[_xyxy(box.box) for box in boxes] or np.zeros((0, 4)) for boxes in drawn],
        [[1.0] * len(boxes) for boxes in drawn],
        [[0] * len(boxes) for boxes in drawn],
        iou_thr=min_iou,
        skip_box_thr=0.0,
    )
    centres = [_cxcywh(row) for row in fused]
    voters: dict[int, list[AnnotatedBox]] = defaultdict(list)
    for boxes in drawn:
        matched = {i: j for i, j, _ in match_boxes([box.box for box in boxes], centres, min_iou=min_iou)}
        for i, box in enumerate(boxes):
            if i in matched:
                voters[matched[i]].append(box)
            else:
                centres.append(box.box)
                voters[len(centres) - 1].append(box)
    used: set[str] = set()
    result = []
    for index, centre in enumerate(centres):
        votes = voters[index]
        if not votes:
            continue
        classes = Counter(box.class_name for box in votes).most_common()
        classes.sort(key=lambda item: (-item[1], item[0]))
        name, top = classes[0]
        absent = k - len(votes) > k / 2
        region = Counter(box.region_id for box in votes).most_common(1)[0][0]
        if region in used:
            region = f"consensus-{image_id[:8]}-{index}"
        used.add(region)
        result.append(
            FusedBox(
                region_id=region,
                class_name=name,
                box=centre,
                votes=len(votes),
                class_votes=tuple(classes),
                agreed=absent or top > k / 2,
                absent=absent,
            )
        )
    return ImageConsensus(image_id=image_id, reviewers=reviewers, boxes=tuple(result))


def agreement(annotations: Sequence[TaskAnnotation], *, min_iou: float = 0.5) -> list[AgreementScore]:
    """Agreement of every reviewer with the others on the images they shared, and of the batch.

    Every pair of reviewers of an image is compared (each one's latest annotation); a reviewer's
    figures pool the pairs they are part of, the batch's (``"*"``) every pair. Reviewers who shared
    no image are left out; the batch row is always there.
    """
    classes: dict[str, list[tuple[str, str]]] = defaultdict(list)
    ious: dict[str, list[float]] = defaultdict(list)
    drawn: Counter[str] = Counter()
    for (first, second), (rated, overlaps, boxes) in _compared_pairs(annotations, min_iou).items():
        for who in (first, second, "*"):
            classes[who].extend(rated)
            ious[who].extend(overlaps)
            drawn[who] += boxes
    classes.setdefault("*", [])
    return [
        AgreementScore(
            reviewer=who,
            matched=len(rated),
            kappa=cohens_kappa(rated),
            mean_iou=float(np.mean(ious[who])) if ious[who] else None,
            box_agreement=2 * len(rated) / drawn[who] if drawn[who] else None,
        )
        for who, rated in sorted(classes.items())
    ]


def dispute_rows(disputed: Sequence[ImageConsensus], *, batch_id: str) -> pd.DataFrame:
    """The fused boxes of disputed images, one row each (``DISPUTE_COLUMNS``), boxes most
    reviewers left out dropped: what the images' adjudication tasks show."""
    rows = [
        {
            "batch_id": batch_id,
            "image_id": outcome.image_id,
            "region_id": box.region_id,
            "class_name": box.class_name,
            "x": box.box.x,
            "y": box.box.y,
            "w": box.box.w,
            "h": box.box.h,
            "votes": box.votes,
            "reviewers": len(outcome.reviewers),
            "class_votes": json.dumps([list(item) for item in box.class_votes]),
            "agreed": box.agreed,
        }
        for outcome in disputed
        for box in outcome.boxes
        if not box.absent
    ]
    return pd.DataFrame(rows, columns=list(DISPUTE_COLUMNS)).astype(DISPUTE_COLUMNS)


def pairwise_kappa(annotations: Sequence[TaskAnnotation], *, min_iou: float = 0.5) -> dict[tuple[str, str], float]:
    """Cohen's kappa on matched boxes for every pair of reviewers who annotated the same images.

    Keys are ``(reviewer_a, reviewer_b)`` with ``reviewer_a < reviewer_b``, sorted; pairs with
    fewer than two matched boxes are left out, since kappa says nothing there.
    """
    kappas = {
        pair: cohens_kappa(rated) for pair, (rated, _, _) in sorted(_compared_pairs(annotations, min_iou).items())
    }
    return {pair: kappa for pair, kappa in kappas.items() if kappa is not None}


def cohens_kappa(pairs: Sequence[tuple[str, str]]) -> float | None:
    """Cohen's kappa of two raters over ``(label_a, label_b)`` items, in [-1, 1] (scikit-learn's).

    1 is perfect agreement, 0 agreement at chance level.  ``None`` for fewer than two
    items.  When both raters gave one and the same label to every item, chance agreement
    is 1 and the formula is 0/0 (sklearn returns nan); this returns 1.0 there, because
    the raters agreed on every item and an agreement report should show that rather than
    drop the pair.
    """
    if len(pairs) < 2:
        return None
    first = [label for label, _ in pairs]
    second = [label for _, label in pairs]
    if len(set(first) | set(second)) == 1:
        return 1.0
    from sklearn.metrics import cohen_kappa_score

    return float(cohen_kappa_score(first, second))


def latest_by_image(annotations: Sequence[TaskAnnotation], *, excluding: Collection[str] = ()) -> list[TaskAnnotation]:
    """Per image, the last of ``annotations`` made by a reviewer not in ``excluding``.

    ``annotations`` run oldest first within an image, as
    :func:`~labeling_dag.formats.label_studio_export.parse_all_annotations` returns them, so with nobody
    excluded this is the annotation :func:`~labeling_dag.formats.label_studio_export.parse_export` picks.
    Images keep the order they first appear in; an image only excluded reviewers annotated is
    left out.
    """
    chosen: dict[str, TaskAnnotation] = {}
    for annotation in annotations:
        if annotation.reviewer not in excluding:
            chosen[annotation.image_id] = annotation
    return list(chosen.values())


def latest_per_reviewer(annotations: Sequence[TaskAnnotation]) -> dict[str, dict[str, TaskAnnotation]]:
    """``image_id -> reviewer -> annotation``, keeping a reviewer's latest one of an image."""
    latest: dict[str, dict[str, tuple[datetime, TaskAnnotation]]] = defaultdict(dict)
    for annotation in annotations:
        stamp = datetime.fromisoformat(annotation.annotated_at)
        previous = latest[annotation.image_id].get(annotation.reviewer)
        # ">=" so that of two equally stamped annotations the later one in the input wins.
        if previous is None or stamp >= previous[0]:
            latest[annotation.image_id][annotation.reviewer] = (stamp, annotation)
    return {
        image_id: {reviewer: annotation for reviewer, (_, annotation) in mine.items()}
        for image_id, mine in latest.items()
    }


def _compared_pairs(
    annotations: Sequence[TaskAnnotation], min_iou: float
) -> dict[tuple[str, str], tuple[list[tuple[str, str]], list[float], int]]:
    """Per pair of reviewers, over the images both annotated: the classes of their matched boxes,
    the IoU of each match, and how many boxes the two drew."""
    pairs: dict[tuple[str, str], tuple[list[tuple[str, str]], list[float], int]] = {}
    for by_reviewer in latest_per_reviewer(annotations).values():
        for first, second in itertools.combinations(sorted(by_reviewer), 2):
            a, b = by_reviewer[first].boxes, by_reviewer[second].boxes
            matched = match_boxes([box.box for box in a], [box.box for box in b], min_iou=min_iou)
            rated, overlaps, drawn = pairs.get((first, second), ([], [], 0))
            rated.extend((a[i].class_name, b[j].class_name) for i, j, _ in matched)
            overlaps.extend(iou for _, _, iou in matched)
            pairs[(first, second)] = (rated, overlaps, drawn + len(a) + len(b))
    return pairs


def _agreed_annotation(outcome: ImageConsensus, by_reviewer: dict[str, TaskAnnotation]) -> TaskAnnotation:
    """One annotation holding the boxes the reviewers of an image agreed on."""
    annotations = [by_reviewer[reviewer] for reviewer in outcome.reviewers]
    latest = max(annotations, key=lambda annotation: annotation.annotated_at)
    return TaskAnnotation(
        task_id=latest.task_id,
        image_id=outcome.image_id,
        batch_id=latest.batch_id,
        reviewer="+".join(outcome.reviewers),
        annotated_at=latest.annotated_at,
        boxes=tuple(
            AnnotatedBox(region_id=box.region_id, class_name=box.class_name, box=box.box)
            for box in outcome.boxes
            if not box.absent
        ),
        prediction_region_ids=latest.prediction_region_ids,
    )


def _xyxy(box: NormBox) -> list[float]:
    """Corners clipped to the image, as weighted box fusion wants them."""
    return [
        min(max(box.x - box.w / 2, 0.0), 1.0),
        min(max(box.y - box.h / 2, 0.0), 1.0),
        min(max(box.x + box.w / 2, 0.0), 1.0),
        min(max(box.y + box.h / 2, 0.0), 1.0),
    ]


def _cxcywh(corners: Sequence[float]) -> NormBox:
    x1, y1, x2, y2 = (float(value) for value in corners)
    return NormBox((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1)
