"""Revisions of a merged review batch: labels changed in the labelling tool after the merge.

A batch is merged once. When an annotator later edits one of its tasks, the tasks whose
labels changed come back as the batch's next revision, ``<batch_id>.r<n>`` (n = 2, 3, …): a
small batch of its own, exported and received like any other, that takes the normal path
(inbox, checks, ``merge_review``). Its merge retires the verified rows of exactly those images
and adds the new ones, so every earlier revision stays in the lineage.

Revisions of one batch are merged one at a time, in order: a batch is *settled* once it and
every revision handed over since are merged (or quarantined); only a settled batch gets its
next revision, and the labels it is compared with are those its merges brought in.
"""

from __future__ import annotations

import copy
import re
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from labeling_dag.formats.label_studio_export import (
    RECTANGLES,
    ReviewExportError,
    TaskAnnotation,
    is_complete,
    parse_export,
)
from labeling_dag.formats.review_interface import ReviewInterface
from labeling_dag.review_intake import SAFE_BATCH_ID

_REVISION = re.compile(r"(?P<base>.+)\.r(?P<number>[2-9]|[1-9][0-9]+)")

# What a merge takes from an annotation: the boxes (class and geometry), in any order.
Labels = tuple[tuple[str, float, float, float, float], ...]


def split_revision(batch_id: str) -> tuple[str, int]:
    """``(batch, revision number)`` of a batch or revision id; a batch itself is revision 1."""
    match = _REVISION.fullmatch(batch_id)
    return (match["base"], int(match["number"])) if match else (batch_id, 1)


def revision_id(batch_id: str, number: int) -> str:
    """The id of revision ``number`` (2 or more) of ``batch_id``.

    Raises ``ValueError`` when ``batch_id`` is itself a revision id, or when the result would
    not be a plain name (it becomes a file name under the exchange).
    """
    if number < 2:
        raise ValueError(f"revision numbers start at 2 (the batch itself is revision 1), got {number}")
    if split_revision(batch_id)[1] != 1:
        raise ValueError(f"{batch_id!r} is already a revision id")
    revision = f"{batch_id}.r{number}"
    if not SAFE_BATCH_ID.fullmatch(revision):
        raise ValueError(f"revision id {revision!r} is not a plain name")
    return revision


def revision_watch(
    handed_over: Iterable[str], *, merged: Collection[str], quarantined: Collection[str]
) -> tuple[set[str], set[str]]:
    """Split the batches handed to the pipeline (received or in the inbox) into ``(settled, unsettled)``.

    ``handed_over`` holds batch and revision ids. A batch is settled when it was merged and
    every revision of it handed over since is merged or quarantined: its edits may become the
    next revision. It is unsettled while something of it awaits its merge: its edits wait.
    A batch quarantined at its first merge is neither: it was never merged, its images went
    back to the pool, and nothing edited in it is taken.
    """
    revisions: dict[str, list[str]] = defaultdict(list)
    for batch_id in handed_over:
        revisions[split_revision(batch_id)[0]].append(batch_id)
    settled: set[str] = set()
    unsettled: set[str] = set()
    for base, ids in revisions.items():
        if base in quarantined:
            continue
        if base in merged and all(batch_id in merged or batch_id in quarantined for batch_id in ids):
            settled.add(base)
        else:
            unsettled.add(base)
    return settled, unsettled


def labels_of(annotation: TaskAnnotation) -> Labels:
    """An annotation's boxes as a merge sees them: region ids, reviewer and time do not count."""
    return tuple(sorted((box.class_name, box.box.x, box.box.y, box.box.w, box.box.h) for box in annotation.boxes))


def merged_labels(
    revisions: Mapping[str, Any], *, class_names: Sequence[str], interface: ReviewInterface = RECTANGLES
) -> dict[str, Labels]:
    """Each image's labels as last merged, from ``revisions`` (merged revision id -> its received tasks).

    A later revision overrides an earlier one for the images it holds. Raises
    ``ReviewExportError`` when a received file no longer parses.
    """
    labels: dict[str, Labels] = {}
    for revision in sorted(revisions, key=lambda batch_id: split_revision(batch_id)[1]):
        tasks = revisions[revision]
        for annotation in parse_export(tasks, class_names=class_names, expected_batch_id=revision, interface=interface):
            labels[annotation.image_id] = labels_of(annotation)
    return labels


def changed_tasks(
    tasks: Sequence[Mapping[str, Any]],
    merged: Mapping[str, Labels],
    *,
    batch_id: str,
    class_names: Sequence[str],
    interface: ReviewInterface = RECTANGLES,
) -> tuple[list[dict[str, Any]], list[str]]:
    """The tasks of ``batch_id`` whose labels differ from ``merged`` (image id -> labels), and the problems.

    A task re-saved without a change, one no longer annotated (it waits for its new
    annotation) and one of an image the batch never merged are not changes. A task edited
    into labels that cannot be merged (an unknown class, a broken box) is left out and named
    in the problems instead, so that the other edits still come back.
    """
    changed: list[dict[str, Any]] = []
    problems: list[str] = []
    for task in tasks:
        data = task.get("data")
        image_id = data.get("image_id") if isinstance(data, Mapping) else None
        if image_id not in merged or not is_complete([task]):
            continue
        try:
            (annotation,) = parse_export([task], class_names=class_names, interface=interface)
        except ReviewExportError as error:
            cause = error.__cause__ or error
            problems.append(
                f"task {task.get('id')!r} (image {image_id!r}) of merged batch {batch_id!r} was edited into labels "
                f"that cannot be merged ({cause}); fix it in the labelling tool"
            )
            continue
        if labels_of(annotation) != merged[image_id]:
            changed.append(dict(task))
    return changed, problems


def as_revision(tasks: Iterable[Mapping[str, Any]], revision: str) -> list[dict[str, Any]]:
    """Copies of ``tasks`` that belong to ``revision`` (their ``data.batch_id``)."""
    copies = []
    for task in tasks:
        task = copy.deepcopy(dict(task))
        task["data"] = {**task["data"], "batch_id": revision}
        copies.append(task)
    return copies


def checked_until(
    stamps: Iterable[datetime], *, held: Iterable[datetime], previous: datetime | None
) -> datetime | None:
    """How far a check for edits has seen all it need not see again.

    ``stamps`` are the update times of the tasks the check saw, ``held`` those of tasks it
    must see again (their batch was not settled). The result is the latest stamp earlier than
    every held one, never before ``previous``; a check asking for tasks updated after it sees
    every held task again, and each edit made since.
    """
    first_held = min(held, default=None)
    seen = [stamp for stamp in stamps if first_held is None or stamp < first_held]
    candidates = [stamp for stamp in (previous, max(seen, default=None)) if stamp is not None]
    return max(candidates, default=None)
