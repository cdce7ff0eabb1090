"""The pipeline's Label Studio project: found or created, its labelling config checked, its image
folder connected. Functions over the REST client (:mod:`labeling_dag.resources.label_studio_api`)."""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from labeling_dag.resources.label_studio_api import LabelStudioApi
from labeling_dag.resources.review_exchange import ReviewBackendError

from labeling_dag.formats.label_studio import FROM_NAME, TO_NAME, labeling_config


def pipeline_project(
    api: LabelStudioApi, title: str, class_names: Sequence[str], *, url: Callable[[int], str]
) -> dict[str, Any]:
    """The pipeline's one project, titled ``title``: created with ``labeling_config(class_names)``
    if missing; an existing one whose labelling config differs in substance (another control or
    object name, not rectangles, another label set) raises ReviewBackendError. Two projects of that
    title raise too. ``url`` gives a project's page, for the messages."""
    config = labeling_config(class_names)
    found: list[dict[str, Any]] = []
    page_number = 1
    while True:
        page = api.call(
            "GET",
            "/api/projects/",
            params={"title": title, "page_size": 100, "page": page_number},
            doing=f"look up project {title!r}",
        )
        found += [project for project in page.get("results", []) if project.get("title") == title]
        if not page.get("next"):
            break
        page_number += 1
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
    problem = _config_problem(project.get("parsed_label_config"), class_names)
    if problem:
        raise ReviewBackendError(
            f"Label Studio project {title!r} ({url(project['id'])}) {problem}; "
            "set its labelling interface to the pipeline's config (labeling_config of the class list) "
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


def _config_problem(parsed: Any, class_names: Sequence[str]) -> str | None:
    """What makes a project's parsed labelling config unusable for the pipeline, or None."""
    control = parsed.get(FROM_NAME) if isinstance(parsed, Mapping) else None
    if not isinstance(control, Mapping) or control.get("type") != "RectangleLabels":
        return f"has no RectangleLabels control named {FROM_NAME!r}"
    if list(control.get("to_name") or []) != [TO_NAME]:
        return f"labels {control.get('to_name')!r}, not the image {TO_NAME!r}"
    inputs = [
        (item.get("type"), item.get("value")) for item in control.get("inputs") or [] if isinstance(item, Mapping)
    ]
    if ("Image", "image") not in inputs:
        return "does not show $image"
    labels = list(control.get("labels") or [])
    if sorted(labels) != sorted(class_names):
        return f"offers the labels {labels}, but the pipeline's classes are {list(class_names)}"
    return None
