"""Decide whether a file in the review inbox is a complete, valid export of a known batch.

A review file is untrusted input: whatever it holds, judging it either accepts it whole or
names the problem, and never raises. The image references in it (``data.image``) must stay
inside the data root (see :func:`check_image_ref`).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from labeling_dag.formats.label_studio_export import RECTANGLES, ReviewExportError, is_complete, parse_export
from labeling_dag.formats.review_interface import ReviewInterface

SAFE_BATCH_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")

# Label Studio serves files under its LOCAL_FILES_DOCUMENT_ROOT (the workdir) at this path,
# the file named by the ``d`` query parameter.
_LOCAL_FILES_PATH = "/data/local-files/"

# A file that is not yet a whole JSON document and changed less than this long ago is taken
# to be still on its way in (copied straight into the inbox rather than renamed into it).
# The review sensor runs every 10 s, so such a file is looked at again one tick later.
SETTLE_SECONDS = 10.0


@dataclass(frozen=True)
class Verdict:
    """The outcome of inspecting one inbox file: a batch id, and a problem unless it can be merged.

    ``pending`` marks a file to leave where it is and judge again on a later tick: it is still
    being written, or it is gone (another evaluation of the sensor took it). A pending verdict
    carries a problem too, so a caller that ignores the flag never accepts such a file.
    """

    file: Path
    batch_id: str | None
    problem: str | None
    pending: bool = False

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
    data_root: Path | None = None,
    settle_seconds: float = SETTLE_SECONDS,
    interface: ReviewInterface = RECTANGLES,
) -> Verdict:
    """Inspect a Label Studio JSON export dropped into the inbox.

    ``exported_tasks(batch_id)`` returns the tasks sent out for a batch (None when no such
    batch was exported); ``already_received(batch_id)`` says whether it was merged before.
    Every task's image reference is checked with :func:`check_image_ref` against
    ``data_root`` (the workdir, Label Studio's local-files document root); without it only
    the checks that need no file system run. Never raises: any problem is the verdict's.

    The verdict is ``pending`` (judge it again later) when the file vanished, changed while it
    was read, or is not valid JSON and changed less than ``settle_seconds`` ago: a writer
    still at work. Once it has stopped changing, broken JSON is refused like any other problem.
    """
    try:
        before = file.stat()
        text = file.read_bytes()
        after = file.stat()
    except FileNotFoundError:
        return Verdict(file, None, "gone from the inbox before it could be read (taken by another tick?)", pending=True)
    except OSError as error:
        return Verdict(file, None, f"not a readable JSON file ({error})")
    if (before.st_mtime_ns, before.st_size) != (after.st_mtime_ns, after.st_size):
        return Verdict(file, None, "changed while being read: still being written", pending=True)
    try:
        tasks = json.loads(text.decode("utf-8"))
    # ValueError covers malformed JSON and integers too long to convert; RecursionError,
    # nesting deeper than the parser's stack. Left uncaught, either would fail every tick.
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        age = time.time() - after.st_mtime
        if age < settle_seconds:
            problem = f"not a readable JSON file ({error}); it changed {age:.1f} s ago and may still be being written"
            return Verdict(file, None, problem, pending=True)
        return Verdict(file, None, f"not a readable JSON file ({error})")
    batch_id = _batch_id(tasks)
    if batch_id is None:
        return Verdict(file, None, "not a Label Studio export of a review batch: no data.batch_id in its first task")
    if not SAFE_BATCH_ID.fullmatch(batch_id):
        # The id becomes a file name under the exchange: no separators, no "..".
        return Verdict(file, None, f"batch id {batch_id!r} is not a plain name")
    try:
        exported = exported_tasks(batch_id)
        key = interface.data_key
        sent = None if exported is None else {task["data"]["image_id"]: task["data"].get(key) for task in exported}
    except (OSError, ValueError, TypeError, KeyError) as error:
        return Verdict(file, batch_id, f"the exported tasks of batch {batch_id!r} are unreadable ({error!r})")
    if sent is None:
        return Verdict(file, batch_id, f"unknown batch {batch_id!r}: no such batch was exported")
    if already_received(batch_id):
        return Verdict(
            file, batch_id, f"batch {batch_id!r} was already received (re-run merge_review to merge it again)"
        )
    if not is_complete(tasks):
        done = sum(is_complete([task]) for task in tasks) if isinstance(tasks, list) else 0
        return Verdict(
            file,
            batch_id,
            f"incomplete: {done} of {len(tasks)} tasks annotated (as many times as their data.annotators asks)",
        )
    try:
        annotations = parse_export(tasks, class_names=class_names, expected_batch_id=batch_id, interface=interface)
    except ReviewExportError as error:
        return Verdict(file, batch_id, str(error))
    returned = {annotation.image_id for annotation in annotations}
    if returned != set(sent):
        unknown, missing = sorted(returned - set(sent)), sorted(set(sent) - returned)
        return Verdict(
            file, batch_id, f"tasks do not match batch {batch_id!r}: unknown images {unknown}, missing images {missing}"
        )
    for task in tasks:  # parse_export vouched for the shape: a list of objects with a data object
        data = task["data"]
        if interface.data_key not in data and sent[data["image_id"]] is None:
            continue
        try:
            check_image_ref(data.get(interface.data_key), data_root=data_root, sent=sent[data["image_id"]])
        except ValueError as error:
            return Verdict(file, batch_id, f"task for image {task['data']['image_id']!r}: {error}")
    return Verdict(file, batch_id, None)


def check_image_ref(ref: Any, *, data_root: Path | None = None, sent: str | None = None) -> Path | None:
    """Check that an image reference from a review file cannot reach outside the data root.

    ``ref`` is a task's ``data.image``; ``sent`` the reference the batch was exported with.

    * Local references name a file under the data root: Label Studio's local-files URL
      ``/data/local-files/?d=<path>`` (with or without scheme and host) or a bare relative
      path. ``<path>`` must be relative, must have no ``..`` component and, when
      ``data_root`` is given, must resolve inside it with every symlink followed.
    * Anything else (an absolute path, a URL of the labelling tool's or another server)
      cannot be checked against the data root, so it must be exactly ``sent``: the
      pipeline's own reference, never one a review file substitutes. ``file:`` URLs and
      ``..`` path segments are refused even then.

    Returns:
        The resolved file for a local reference checked against ``data_root``, else None.

    Raises:
        ValueError: naming the reference and why it is refused.
    """
    if not isinstance(ref, str) or not ref:
        raise ValueError(f"image reference must be a non-empty string, got {ref!r}")
    parts = urlsplit(ref)
    scheme = parts.scheme.lower()
    if parts.path == _LOCAL_FILES_PATH and scheme in ("", "http", "https"):
        paths = parse_qs(parts.query, keep_blank_values=True).get("d", [])
        if len(paths) != 1 or not paths[0]:
            raise ValueError(f"image reference {ref!r} names no single local file (d=...)")
        local = paths[0]
    elif scheme == "file":
        raise ValueError(f"image reference {ref!r} is a file: URL, a path outside the data root")
    elif scheme or ref.startswith("/"):
        if ".." in PurePosixPath(unquote(parts.path)).parts:
            raise ValueError(f"image reference {ref!r} climbs out of its root with '..'")
        if ref != sent:
            kind = "a URL" if scheme else "an absolute path"
            raise ValueError(
                f"image reference {ref!r} is {kind} other than the one the batch was exported with ({sent!r})"
            )
        return None
    else:
        local = ref
    if "\x00" in local:  # no file name holds one; the OS would refuse it, or worse, cut there
        raise ValueError(f"image reference {ref!r} contains a NUL byte")
    path = PurePosixPath(local)
    if path.is_absolute():
        raise ValueError(f"image reference {ref!r} is an absolute path; only paths under the data root are allowed")
    if ".." in path.parts:
        raise ValueError(f"image reference {ref!r} climbs out of the data root with '..'")
    if data_root is None:
        return None
    root = Path(data_root).resolve()
    resolved = (root / path).resolve()
    if not resolved.is_relative_to(root):
        raise ValueError(f"image reference {ref!r} resolves to {resolved}, outside the data root {root} (a symlink)")
    return resolved


def _batch_id(tasks: Any) -> str | None:
    if isinstance(tasks, list) and tasks and isinstance(tasks[0], dict):
        data = tasks[0].get("data")
        if isinstance(data, dict) and isinstance(data.get("batch_id"), str):
            return data["batch_id"]
    return None
