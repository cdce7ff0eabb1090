"""A client of Label Studio's REST API that turns every failure into :class:`ReviewBackendError`.

One session per use (a context manager), the legacy-token header, one error message per kind of
failure (unreachable, slow, token refused, not found, refused, not JSON) that names the server
without credentials and never the token, paginated lists, and the data manager's task list.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any, Self
from urllib.parse import urlsplit, urlunsplit

import requests
from labeling_dag.resources.review_exchange import ReviewBackendError

# Large enough that a typical poll is one request, small enough to bound one response.
_PAGE_SIZE = 1000
_ERROR_DETAIL_CHARS = 500


class NotFound(ReviewBackendError):
    """Label Studio answered 404 where the caller named what is missing."""


def display_url(url: str) -> str:
    """The server URL without credentials, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", "")).rstrip("/")


def _detail(response: requests.Response) -> str:
    try:
        body: Any = response.json()
    except ValueError:
        return response.text[:_ERROR_DETAIL_CHARS]
    if isinstance(body, Mapping) and "detail" in body:
        body = body.get("validation_errors") or body["detail"]
    return json.dumps(body)[:_ERROR_DETAIL_CHARS]


class LabelStudioApi:
    """A session against one Label Studio server that turns every failure into ReviewBackendError."""

    def __init__(self, url: str, token: str, timeout: float) -> None:
        self.base = url.rstrip("/")
        self.shown = display_url(url)
        self._timeout = timeout
        self._session = requests.Session()
        self._session.headers["Authorization"] = f"Token {token}"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._session.close()

    def call(
        self,
        method: str,
        path: str,
        *,
        doing: str,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        missing: str | None = None,
    ) -> Any:
        """Send one request and return its JSON; ``missing`` is the message for a 404."""
        try:
            response = self._session.request(method, self.base + path, params=params, json=body, timeout=self._timeout)
        except requests.ConnectionError as exc:
            raise ReviewBackendError(
                f"Label Studio at {self.shown} is unreachable (could not {doing}): is the server "
                "running and LABEL_STUDIO_URL right?"
            ) from exc
        except requests.Timeout as exc:
            raise ReviewBackendError(
                f"Label Studio at {self.shown} did not answer within {self._timeout:g} s (could not {doing})"
            ) from exc
        except requests.RequestException as exc:
            raise ReviewBackendError(
                f"request to Label Studio at {self.shown} failed (could not {doing}): {type(exc).__name__}"
            ) from exc
        if response.status_code in (401, 403):
            raise ReviewBackendError(
                f"Label Studio at {self.shown} rejected the API token (HTTP {response.status_code}, could not "
                f"{doing}): check LABEL_STUDIO_API_TOKEN; it must be a legacy token of a user of the "
                "project's organisation, with legacy tokens enabled on the server"
            )
        if response.status_code == 404 and missing is not None:
            raise NotFound(missing)
        if response.status_code >= 400:
            raise ReviewBackendError(
                f"Label Studio at {self.shown} refused to {doing}: HTTP {response.status_code} {_detail(response)}"
            )
        try:
            return response.json()
        except ValueError as exc:
            raise ReviewBackendError(
                f"{self.shown} answered with something other than JSON (could not {doing}): "
                "is LABEL_STUDIO_URL the Label Studio server?"
            ) from exc

    def tasks(
        self, project_id: int, filters: Mapping[str, Any], *, full: bool, doing: str, missing: str
    ) -> list[dict[str, Any]]:
        """The project's tasks matching data-manager ``filters``, by id, every page; ``missing``: the 404 message."""
        params: dict[str, Any] = {
            "project": project_id,
            "page_size": _PAGE_SIZE,
            "resolve_uri": "false",
            "query": json.dumps({"filters": filters, "ordering": ["tasks:id"]}),
        }
        if full:
            params["fields"] = "all"
        tasks: list[dict[str, Any]] = []
        for body in self.pages("/api/tasks/", params, doing=doing, missing=missing):
            tasks += body.get("tasks", [])
            if not body.get("tasks") or len(tasks) >= int(body.get("total", 0)):
                break
        # A task that starts matching between two pages shifts the next page by one.
        return list({int(task["id"]): task for task in tasks}.values())

    def pages(self, path: str, params: Mapping[str, Any], *, doing: str, missing: str | None = None) -> Iterator[Any]:
        """Each page of a paginated GET (``page`` 1, 2, ...) until the caller stops reading;
        ``missing``: the 404 message of page 1."""
        page = 1
        while True:
            # Past page 1 a 404 is a page that emptied meanwhile, not a missing project.
            yield self.call(
                "GET", path, params={**params, "page": page}, doing=doing, missing=None if page > 1 else missing
            )
            page += 1
