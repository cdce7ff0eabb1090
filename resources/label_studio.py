"""Label Studio as the review backend: push a batch's tasks in, pull completed batches out.

Only the two ends of a review live here. :meth:`LabelStudioReview.export` imports a batch's
tasks (built by :func:`labeling_dag.formats.label_studio.review_task`, predictions included)
into ONE project per pipeline; :meth:`LabelStudioReview.collect` hands back each complete
batch as a list of tasks in Label Studio's JSON export shape. Everything after that (the
sensor's checks, ``parse_export``, the merge) is the same file path as the folder exchange.

Written against the REST API of Label Studio Community 1.23.2, with a legacy token
(``Authorization: Token <token>``; the server needs ``LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true``
or legacy tokens allowed for the organisation). Endpoints used:

* ``GET  /api/projects/?title=…`` (a case-insensitive substring filter: the exact title is
  matched here) and ``POST /api/projects/`` to find or create the project;
* ``PATCH /api/projects/<id>/`` to point the project's ``model_version`` at the batch's model:
  the labelling stream shows annotators only the predictions of that version, so without it
  the pre-labels of every batch after a retrain would be invisible;
* ``POST /api/projects/<id>/import?return_task_ids=true``: bulk import, synchronous in the
  Community edition, answering the new task ids in input order (Enterprise imports
  asynchronously and answers only an import id: not supported here);
* ``GET  /api/tasks/?project=<id>&query=<filters>``: the data manager's task list, filtered on
  ``data.batch_id``; without ``fields=all`` it carries ``data`` and ``total_annotations`` but no
  annotation bodies, which makes the poll cheap; with ``fields=all`` it carries annotations and
  the full prediction objects. The same list filtered on ``updated_at`` (a ``Datetime`` filter,
  value in ``%Y-%m-%dT%H:%M:%S.%fZ``, UTC, compared strictly and to the microsecond) finds the
  tasks edited since the last check: saving an annotation updates its task's ``updated_at``;
* ``PATCH /api/tasks/<id>/`` with ``{"overlap": k}`` for a task that asks for ``k`` annotators
  (``data.annotators``, consensus): the labelling stream then hands it to ``k`` annotators, and
  :meth:`LabelStudioReview.collect` waits for ``k`` annotations;
* ``GET/POST /api/storages/localfiles/`` when ``local_files_path`` is set (see Images).

Why not ``GET /api/projects/<id>/export``: in 1.23 its JSON lists each task's predictions as
bare ids. ``parse_export`` reads that form too (it is what a user gets from Export -> JSON and
drops into the inbox), but ids carry no predicted regions, so the received file would no longer
show what the annotators were offered; the task list with ``fields=all`` has the full prediction
objects, so a complete batch costs one request and needs no join.

Images: tasks reference ``/data/local-files/?d=<path relative to the workdir>``. Label Studio
serves such a URL only when (1) it runs with ``LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true``
and ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=<workdir>`` and (2) the project has a local-files
import storage whose path (a strict subfolder of the document root, e.g.
``<workdir>/cleaned_images``) contains the file; otherwise the browser gets 404 (or 403 with
serving disabled). Set ``local_files_path`` to that folder and :meth:`export` connects it
(never synced: a sync would turn every file in the folder into a task).

Edits after the merge: :meth:`LabelStudioReview.edited` asks once per tick, per project, for
the tasks updated since the last check (``exchange/label_studio/_checked_until.json``, one
stamp per project), with their annotations. Those of settled batches go back to the sensor,
which files the ones whose labels changed as revisions (:mod:`labeling_dag.revisions`); those
of unsettled batches hold the stamp below them, so they are asked for again once settled.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Collection, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from labeling_dag.resources.label_studio_api import LabelStudioApi, NotFound, display_url
from labeling_dag.resources.label_studio_project import connect_local_files, pipeline_project
from labeling_dag.resources.label_studio_tasks import (
    ask_for_annotators,
    batch_tasks,
    import_tasks,
    present_tasks,
    show_predictions_of,
)
from labeling_dag.resources.review_exchange import CollectedBatch, Edits, ReviewBackend, ReviewBackendError
from pydantic import Field

from labeling_dag import atomic
from labeling_dag.formats.label_studio_export import is_complete, required_annotations
from labeling_dag.modalities import workdir_modality
from labeling_dag.review_intake import SAFE_BATCH_ID
from labeling_dag.revisions import checked_until

# The keys of a task in Label Studio's JSON export; the data manager adds display-only ones.
_EXPORT_KEYS = (
    "id",
    "data",
    "meta",
    "annotations",
    "drafts",
    "predictions",
    "created_at",
    "updated_at",
    "inner_id",
    "total_annotations",
    "cancelled_annotations",
    "total_predictions",
    "project",
)
# The data manager's Datetime filter value (strptime, naive, read as UTC: the server's TIME_ZONE).
_FILTER_STAMP = "%Y-%m-%dT%H:%M:%S.%fZ"
# Not a batch id (those start with a letter or digit), so never a batch record's name.
_CHECKED_FILE = "_checked_until.json"


class LabelStudioReview(ReviewBackend):
    """Review batches in a Label Studio server: one project per pipeline, tasks tagged by batch.

    ``workdir/exchange/label_studio/<batch_id>.json`` records, per exported batch, the
    project and the Label Studio task ids, in task order: :meth:`collect` compares it with
    the server to tell a deleted task from an unfinished one.
    """

    url: str = Field(description="Base URL of the Label Studio server, e.g. http://localhost:8080")
    api_token: str = Field(repr=False, description="Legacy API token (Authorization: Token …)")
    project_title: str = Field(default="labeling-dag", description="Title of the pipeline's one project")
    import_chunk_size: int = Field(default=500, description="Tasks per import request")
    timeout_seconds: float = Field(default=10.0, description="Per-request timeout")
    local_files_path: str = Field(
        default="",
        description=(
            "Folder holding the images as the server sees it (a subfolder of its "
            "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT); when set, export connects it to the project as "
            "local-files storage so /data/local-files/ image URLs resolve. Empty: not connected."
        ),
    )

    def record_file(self, workdir: Path, batch_id: str) -> Path:
        """Where the project id and task ids of an exported batch are recorded."""
        if not SAFE_BATCH_ID.fullmatch(batch_id):
            # The id becomes a file name under the exchange: no separators, no "..".
            raise ValueError(f"batch id {batch_id!r} is not a plain name")
        return Path(workdir) / "exchange" / "label_studio" / f"{batch_id}.json"

    def project_url(self, project_id: int) -> str:
        """The project's page in the Label Studio UI."""
        return f"{display_url(self.url)}/projects/{project_id}/"

    def export(self, workdir: Path, batch_id: str, tasks: list[dict[str, Any]], class_names: Sequence[str]) -> str:
        """Import a batch's tasks (with their predictions) into the pipeline's project.

        The project is found by ``project_title`` or created with the labelling config of the
        workdir's modality for ``class_names``. An existing project whose labelling config differs
        in substance (another control or object name, another region type, another label set)
        raises ReviewBackendError instead of
        being rewritten: annotations already in it were made against its config, and Label
        Studio refuses to drop labels that are in use anyway. Cosmetic edits (colours,
        hotkeys, instructions) are accepted.

        Idempotent: tasks of this batch already in the project (matched on ``data.image_id``)
        are not imported again, so a retry after a failure part-way completes the batch, and a
        task deleted in the UI is re-created. Raises ``ValueError`` on an empty batch, a task
        of another batch or a repeated image, ReviewBackendError on any server problem.
        Returns the project's URL.
        """
        record = self.record_file(workdir, batch_id)
        wanted = _image_ids(tasks, batch_id)
        size = self.import_chunk_size
        if size < 1:
            raise ValueError(f"import_chunk_size must be at least 1, got {size}")
        with self._api() as api:
            interface = workdir_modality(workdir).review
            project = pipeline_project(api, self.project_title, class_names, url=self.project_url, interface=interface)
            project_id = int(project["id"])
            if self.local_files_path:
                connect_local_files(api, project_id, self.local_files_path)
            present = present_tasks(api, project_id, batch_id, wanted, url=self.project_url)
            todo = [task for task, image_id in zip(tasks, wanted) if image_id not in present]
            for start in range(0, len(todo), size):
                chunk = todo[start : start + size]
                present.update(zip(_image_ids(chunk, batch_id), import_tasks(api, project_id, batch_id, chunk)))
            ask_for_annotators(api, batch_id, tasks, [present[image_id] for image_id in wanted])
            show_predictions_of(api, project, tasks)
        atomic.write_json(record, {"project_id": project_id, "task_ids": [present[image_id] for image_id in wanted]})
        return self.project_url(project_id)

    def collect(self, workdir: Path, *, open_batches: Sequence[str]) -> list[CollectedBatch]:
        """Return the open batches whose every task has a (non-cancelled) annotation.

        One light request per project (paginated by 1000 tasks) learns which batches are
        complete; one more, only when some are, fetches their annotations. Tasks come back
        in the order they were exported, with the keys of Label Studio's JSON export and
        full prediction objects, ready for ``parse_export``. Batches never exported here (no
        record) are skipped. Raises ReviewBackendError when the project or a task of an open batch was
        deleted in Label Studio (re-exporting the batch re-creates deleted tasks), or on any
        server problem.
        """
        task_ids: dict[str, list[int]] = {}
        by_project: dict[int, list[str]] = {}
        for batch_id in open_batches:
            record = self._read_record(workdir, batch_id)
            if record is not None:
                task_ids[batch_id] = record[1]
                by_project.setdefault(record[0], []).append(batch_id)
        collected: list[CollectedBatch] = []
        if not by_project:
            return collected
        with self._api() as api:
            for project_id, batch_ids in by_project.items():
                listed = batch_tasks(api, project_id, batch_ids, full=False, url=self.project_url)
                # list() first: every batch is checked for deleted tasks, finished or not.
                recorded = {
                    batch_id: list(_recorded_tasks(listed, batch_id, task_ids[batch_id], project_id))
                    for batch_id in batch_ids
                }
                complete = [
                    batch_id
                    for batch_id, tasks in recorded.items()
                    if all(int(task.get("total_annotations") or 0) >= required_annotations(task) for task in tasks)
                ]
                if not complete:
                    continue
                full = batch_tasks(api, project_id, complete, full=True, url=self.project_url)
                for batch_id in complete:
                    tasks = [
                        {key: task[key] for key in _EXPORT_KEYS if key in task}
                        for task in _recorded_tasks(full, batch_id, task_ids[batch_id], project_id)
                    ]
                    # An annotation may have been deleted between the two requests.
                    if is_complete(tasks):
                        collected.append(CollectedBatch(batch_id=batch_id, tasks=tasks))
        return collected

    def edited(self, workdir: Path, *, settled: Collection[str], unsettled: Collection[str]) -> Edits:
        """Tasks of ``settled`` batches updated in Label Studio since the last check, with their annotations.

        One request per project holding a recorded batch (paginated by 1000 tasks): the
        tasks updated after the project's recorded stamp, or all of them on its first check.
        Tasks of ``unsettled`` batches are left out and keep the new stamp below theirs, so
        they are asked for again; tasks of other batches (still open, or never merged) are
        not edits of a merged batch. A project deleted since has nothing left to edit.
        Raises ReviewBackendError on any server problem.
        """
        projects: dict[int, None] = {}
        for batch_id in sorted({*settled, *unsettled}):
            record = self._read_record(workdir, batch_id)
            if record is not None:
                projects[record[0]] = None
        if not projects:
            return Edits()
        checked = self._read_checked(workdir)
        batches: dict[str, list[dict[str, Any]]] = {}
        checkpoint: dict[str, str] = {}
        with self._api() as api:
            for project_id in projects:
                since = checked.get(str(project_id))
                after = [
                    {"filter": "filter:tasks:updated_at", "operator": "greater", "type": "Datetime", "value": since}
                ]
                updated = {"conjunction": "and", "items": after if since else []}
                try:
                    tasks = api.tasks(
                        project_id,
                        updated,
                        full=True,
                        doing=f"list the tasks updated in project {project_id} since {since or 'its start'}",
                        missing=f"Label Studio project {project_id} no longer exists",
                    )
                except NotFound:
                    continue
                stamps, held = [], []
                for task in tasks:
                    batch_id = task.get("data", {}).get("batch_id")
                    stamp = _updated_at(task, project_id)
                    stamps.append(stamp)
                    if batch_id in unsettled:
                        held.append(stamp)
                    elif batch_id in settled:
                        batches.setdefault(batch_id, []).append({key: task[key] for key in _EXPORT_KEYS if key in task})
                until = checked_until(stamps, held=held, previous=_parse_stamp(since) if since else None)
                if until is not None and until.strftime(_FILTER_STAMP) != since:
                    checkpoint[str(project_id)] = until.strftime(_FILTER_STAMP)
        return Edits(
            batches=[CollectedBatch(batch_id=batch_id, tasks=tasks) for batch_id, tasks in sorted(batches.items())],
            checkpoint=checkpoint,
        )

    def checked(self, workdir: Path, edits: Edits) -> None:
        """Record the stamps of ``edits``: the next :meth:`edited` asks only for tasks updated after them."""
        if edits.checkpoint:
            atomic.write_json(self._checked_file(workdir), {**self._read_checked(workdir), **edits.checkpoint})

    # --- helpers -------------------------------------------------------------------------

    def _api(self) -> LabelStudioApi:
        return LabelStudioApi(self.url, self.api_token, self.timeout_seconds)

    def _checked_file(self, workdir: Path) -> Path:
        return Path(workdir) / "exchange" / "label_studio" / _CHECKED_FILE

    def _read_checked(self, workdir: Path) -> dict[str, str]:
        """Project id -> the filter stamp of its last check for edits."""
        path = self._checked_file(workdir)
        if not path.exists():
            return {}
        try:
            checked = json.loads(path.read_text())
            for stamp in checked.values():
                datetime.strptime(stamp, _FILTER_STAMP)
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            raise ReviewBackendError(
                f"{path} (when Label Studio was last checked for edits) is unreadable ({exc!r}): delete it "
                "to check every task again"
            ) from exc
        return {str(project_id): stamp for project_id, stamp in checked.items()}

    def _read_record(self, workdir: Path, batch_id: str) -> tuple[int, list[int]] | None:
        path = self.record_file(workdir, batch_id)
        if not path.exists():
            return None
        try:
            record = json.loads(path.read_text())
            return int(record["project_id"]), [int(task_id) for task_id in record["task_ids"]]
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise ReviewBackendError(
                f"the Label Studio record {path} of batch {batch_id!r} is unreadable ({exc!r})"
            ) from exc


def _parse_stamp(raw: str) -> datetime:
    """A Label Studio timestamp (ISO 8601, ``Z`` or an offset) as an aware UTC datetime."""
    stamp = datetime.fromisoformat(raw)
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).astimezone(UTC)


def _updated_at(task: Mapping[str, Any], project_id: int) -> datetime:
    try:
        return _parse_stamp(task["updated_at"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ReviewBackendError(
            f"Label Studio task {task.get('id')!r} of project {project_id} has no readable updated_at "
            f"({task.get('updated_at')!r}): is this Label Studio 1.23?"
        ) from exc


def _image_ids(tasks: Sequence[Mapping[str, Any]], batch_id: str) -> list[str]:
    """Each task's ``data.image_id``; raises ValueError unless all belong to ``batch_id``, once each."""
    if not tasks:
        raise ValueError(f"batch {batch_id!r} has no tasks to export")
    image_ids: list[str] = []
    for index, task in enumerate(tasks):
        data = task.get("data") if isinstance(task, Mapping) else None
        if not isinstance(data, Mapping) or not isinstance(data.get("image_id"), str):
            raise ValueError(f"task #{index} of batch {batch_id!r} has no data.image_id")
        if data.get("batch_id") != batch_id:
            raise ValueError(
                f"task #{index} ({data['image_id']!r}) belongs to batch {data.get('batch_id')!r}, not {batch_id!r}"
            )
        image_ids.append(data["image_id"])
    repeated = sorted(image_id for image_id, count in Counter(image_ids).items() if count > 1)
    if repeated:
        raise ValueError(f"batch {batch_id!r} holds images {repeated} more than once")
    return image_ids


def _recorded_tasks(
    listed: Sequence[Mapping[str, Any]], batch_id: str, task_ids: Sequence[int], project_id: int
) -> Iterator[Mapping[str, Any]]:
    """The recorded tasks of a batch in recorded order; ReviewBackendError naming the first deleted one."""
    by_id = {int(task["id"]): task for task in listed if task.get("data", {}).get("batch_id") == batch_id}
    for task_id in task_ids:
        if task_id not in by_id:
            raise ReviewBackendError(
                f"Label Studio task {task_id} of review batch {batch_id!r} is gone from project {project_id} "
                "(deleted in the UI?): re-export the batch to re-create it"
            )
        yield by_id[task_id]
