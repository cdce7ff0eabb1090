"""Decide whether a file in the review inbox is a complete, valid export of a known batch."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labeling_dag.label_studio_format import ReviewExportError, is_complete, parse_export


SAFE_BATCH_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


@dataclass(frozen=True)
class Verdict:
    """The outcome of inspecting one inbox file: a batch id, and a problem unless it can be merged."""

    file: Path
    batch_id: str | None
    problem: str | None

    @property
    def accepted(self) -> bool:
        """True when the file is a complete, valid export of a known, not yet received batch."""
        return self.problem is None


def judge_review_file(
    file: Path,
    *,
    exported_tasks: Callable[[str], list[dict[str, Any]] | None],
    already_received: Callable[[str], bool],
    class_names: Sequence[str],
) -> Verdict:
    """Inspect a Label Studio JSON export dropped into the inbox.

    ``exported_tasks(batch_id)`` returns the tasks sent out for a batch (None when no such
    batch was exported); ``already_received(batch_id)`` says whether it was merged before.
    """
    try:
        tasks = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return Verdict(file, None, f"not a readable JSON file ({error})")
    batch_id = _batch_id(tasks)
    if batch_id is None:
        return Verdict(file, None, "not a Label Studio export of a review batch: no data.batch_id in its first task")
    if not SAFE_BATCH_ID.fullmatch(batch_id):
        # The id becomes a file name under the exchange: no separators, no "..".
        return Verdict(file, None, f"batch id {batch_id!r} is not a plain name")
    try:
        exported = exported_tasks(batch_id)
        sent = None if exported is None else {task["data"]["image_id"] for task in exported}
    except (OSError, ValueError, TypeError, KeyError) as error:
        return Verdict(file, batch_id, f"the exported tasks of batch {batch_id!r} are unreadable ({error!r})")
    if sent is None:
        return Verdict(file, batch_id, f"unknown batch {batch_id!r}: no such batch was exported")
    if already_received(batch_id):
        return Verdict(file, batch_id, f"batch {batch_id!r} was already received (re-run merge_review to merge it again)")
    if not is_complete(tasks):
        done = sum(is_complete([task]) for task in tasks) if isinstance(tasks, list) else 0
        return Verdict(file, batch_id, f"incomplete: {done} of {len(tasks)} tasks annotated")
    try:
        annotations = parse_export(tasks, class_names=class_names, expected_batch_id=batch_id)
    except ReviewExportError as error:
        return Verdict(file, batch_id, str(error))
    returned = {annotation.image_id for annotation in annotations}
    if returned != sent:
        unknown, missing = sorted(returned - sent), sorted(sent - returned)
        return Verdict(file, batch_id, f"tasks do not match batch {batch_id!r}: unknown images {unknown}, missing images {missing}")
    return Verdict(file, batch_id, None)


def _batch_id(tasks: Any) -> str | None:
    if isinstance(tasks, list) and tasks and isinstance(tasks[0], dict):
        data = tasks[0].get("data")
        if isinstance(data, dict) and isinstance(data.get("batch_id"), str):
            return data["batch_id"]
    return None
