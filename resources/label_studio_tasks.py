"""A review batch's tasks in the pipeline's Label Studio project: listed, imported, and set up for
the labelling stream. Functions over the REST client (:mod:`labeling_dag.resources.label_studio_api`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from labeling_dag.resources.label_studio_api import LabelStudioApi
from labeling_dag.resources.review_exchange import ReviewBackendError

from labeling_dag.formats.label_studio_export import required_annotations


def batch_tasks(
    api: LabelStudioApi, project_id: int, batch_ids: Sequence[str], *, full: bool, url: Callable[[int], str]
) -> list[dict[str, Any]]:
    """The project's tasks of ``batch_ids``: light (data and counts) or ``full`` (annotations too)."""
    filters = {
        "conjunction": "or",
        "items": [
            {"filter": "filter:tasks:data.batch_id", "operator": "equal", "type": "String", "value": batch_id}
            for batch_id in batch_ids
        ],
    }
    return api.tasks(
        project_id,
        filters,
        full=full,
        doing=f"list the tasks of batches {list(batch_ids)} in project {project_id}",
        missing=f"Label Studio project {project_id} ({url(project_id)}) no longer exists "
        f"(deleted?); batches {list(batch_ids)} cannot come back from it: re-export them",
    )


def present_tasks(
    api: LabelStudioApi, project_id: int, batch_id: str, wanted: Sequence[str], *, url: Callable[[int], str]
) -> dict[str, int]:
    """Image id -> task id of this batch's tasks already in the project."""
    present: dict[str, int] = {}
    for task in batch_tasks(api, project_id, [batch_id], full=False, url=url):
        image_id = task.get("data", {}).get("image_id")
        if image_id in present:
            raise ReviewBackendError(
                f"batch {batch_id!r} holds image {image_id!r} twice in {url(project_id)} "
                f"(tasks {present[image_id]} and {task['id']}): delete one"
            )
        present[image_id] = int(task["id"])
    foreign = sorted(set(present) - set(wanted))
    if foreign:
        raise ReviewBackendError(
            f"batch {batch_id!r} in {url(project_id)} already holds images this export "
            f"lacks ({foreign[:5]}…): the batch changed since it was first exported; delete its tasks there"
        )
    return present


def import_tasks(api: LabelStudioApi, project_id: int, batch_id: str, chunk: list[dict[str, Any]]) -> list[int]:
    """Import ``chunk`` (tasks with their predictions) synchronously; the new task ids, in order."""
    body = api.call(
        "POST",
        f"/api/projects/{project_id}/import",
        params={"return_task_ids": "true"},
        body=chunk,
        doing=f"import {len(chunk)} tasks of batch {batch_id!r} into project {project_id}",
        missing=f"Label Studio project {project_id} vanished while batch {batch_id!r} was being imported",
    )
    task_ids = body.get("task_ids") if isinstance(body, Mapping) else None
    if not isinstance(task_ids, list) or len(task_ids) != len(chunk):
        raise ReviewBackendError(
            f"Label Studio did not answer the ids of the {len(chunk)} tasks imported for batch {batch_id!r} "
            "(an asynchronous import, as in Label Studio Enterprise, is not supported)"
        )
    return [int(task_id) for task_id in task_ids]


def ask_for_annotators(
    api: LabelStudioApi, batch_id: str, tasks: Sequence[Mapping[str, Any]], task_ids: Sequence[int]
) -> None:
    """Set the overlap of each task that asks for several annotators (``data.annotators``):
    Label Studio then hands it to that many annotators, one annotation each. Per task, not the
    project's ``maximum_annotations``, whose overlap cohort Label Studio draws itself."""
    for task, task_id in zip(tasks, task_ids):
        wanted = required_annotations(task)
        if wanted > 1:
            api.call(
                "PATCH",
                f"/api/tasks/{task_id}/",
                body={"overlap": wanted},
                doing=f"ask for {wanted} annotators on task {task_id} of batch {batch_id!r}",
            )


def show_predictions_of(api: LabelStudioApi, project: Mapping[str, Any], tasks: Sequence[Mapping[str, Any]]) -> None:
    """Point the project's model_version at the batch's model: the labelling stream shows only
    the predictions of that version (see :mod:`labeling_dag.resources.label_studio`)."""
    versions = Counter(
        prediction.get("model_version", "") for task in tasks for prediction in task.get("predictions") or []
    )
    version = versions.most_common(1)[0][0] if versions else ""
    if version and project.get("model_version") != version:
        api.call(
            "PATCH",
            f"/api/projects/{project['id']}/",
            body={"model_version": version},
            doing=f"show the predictions of model {version!r} in project {project['id']}",
        )
