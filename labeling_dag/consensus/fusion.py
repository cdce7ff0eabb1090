"""Weighted box fusion of the boxes several reviewers drew on one image, and their votes on
each fused box: kept with a strict majority's class, dropped where most drew nothing, else disputed.

``ensemble_boxes`` (which loads numba) is imported only where boxes are fused.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from labeling_dag.agreement import match_boxes
from labeling_dag.formats.label_studio_export import AnnotatedBox, TaskAnnotation
from labeling_dag.records import NormBox


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
