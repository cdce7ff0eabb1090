"""A review batch's annotations merged into one per image: by consensus where several reviewers
answered (:mod:`.fusion`), the latest annotation elsewhere.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from labeling_dag.consensus.fusion import ImageConsensus, fuse
from labeling_dag.consensus.latest import latest_by_image, latest_per_reviewer
from labeling_dag.formats.label_studio_export import AnnotatedBox, TaskAnnotation


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
