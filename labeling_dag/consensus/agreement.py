"""How well reviewers agree on the images they shared: Cohen's kappa of the classes of matched
boxes, their mean IoU and the share of boxes both sides drew, per reviewer and per batch.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from labeling_dag.agreement import match_boxes
from labeling_dag.consensus.latest import latest_per_reviewer
from labeling_dag.formats.label_studio_export import TaskAnnotation


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
