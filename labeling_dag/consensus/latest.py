"""Which annotation of an image counts: per image the latest, or per image each reviewer's latest."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from datetime import datetime

from labeling_dag.formats.label_studio_export import TaskAnnotation


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
