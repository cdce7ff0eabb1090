"""The pipeline's Label Studio project: found or created, its labelling config checked, its image
folder connected. Functions over the REST client (:mod:`labeling_dag.resources.label_studio_api`)."""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Sequence
from typing import Any

from labeling_dag.resources.label_studio_api import LabelStudioApi
from labeling_dag.resources.review_exchange import ReviewBackendError

from labeling_dag.formats.label_studio_export import RECTANGLES
from labeling_dag.formats.review_interface import ReviewInterface


def pipeline_project(
    api: LabelStudioApi,
    title: str,
    class_names: Sequence[str],
    *,
    url: Callable[[int], str],
    interface: ReviewInterface = RECTANGLES,
) -> dict[str, Any]:
    """The pipeline's one project, titled ``title``: created with the modality's labelling config
    (``interface.labeling_config(class_names)``) if missing; an existing one whose labelling config
    differs in substance (``interface.config_problem``: another control or object name, another
    region type, another label set) raises ReviewBackendError. Two projects of that title raise
    too. ``url`` gives a project's page, for the messages."""
    config = interface.labeling_config(class_names)
    found: list[dict[str, Any]] = []
    params = {"title": title, "page_size": 100}
    for page in api.pages("/api/projects/", params, doing=f"look up project {title!r}"):
        found += [project for project in page.get("results", []) if project.get("title") == title]
        if not page.get("next"):
            break
    if len(found) > 1:
        raise ReviewBackendError(
            f"{len(found)} Label Studio projects at {api.shown} are titled {title!r} "
            f"(ids {sorted(p['id'] for p in found)}): rename all but one, or set project_title"
        )
    if not found:
        return api.call(
            "POST",
            "/api/projects/",
            body={
                "title": title,
                "label_config": config,
                "description": "Review batches of the labeling-dag pipeline (one batch per data.batch_id).",
            },
            doing=f"create project {title!r}",
        )
    project = found[0]
    problem = interface.config_problem(project.get("parsed_label_config"), class_names)
    if problem:
        raise ReviewBackendError(
            f"Label Studio project {title!r} ({url(project['id'])}) {problem}; "
            "set its labelling interface to the pipeline's config (the labelling config of the class list) "
            "or set project_title to start a new project"
        )
    return project


def connect_local_files(api: LabelStudioApi, project_id: int, path: str) -> None:
    """Connect ``path`` (a folder as the server sees it) to the project as local-files storage,
    once, so that ``/data/local-files/`` image URLs resolve."""
    wanted = posixpath.normpath(path)
    storages = api.call(
        "GET", "/api/storages/localfiles/", params={"project": project_id}, doing="list local-files storages"
    )
    if any(posixpath.normpath(str(storage.get("path", ""))) == wanted for storage in storages):
        return
    api.call(
        "POST",
        "/api/storages/localfiles/",
        # A regex that no file name matches: pressing "Sync" in the UI must not turn images into tasks.
        body={"project": project_id, "path": wanted, "title": "labeling-dag images", "regex_filter": "^$"},
        doing=f"connect {wanted} as local-files storage",
    )
