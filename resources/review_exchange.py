"""The file-based review exchange: the embedded default review backend.

Batches go out as Label Studio task JSON (``outbox/<batch_id>.json``); completed batches come
back as Label Studio JSON exports dropped into ``inbox/``. Whoever drops a file there writes
it under a temporary or hidden name and renames it, so a half-written file is never seen;
names starting with "." or ending in ".tmp" / ".part" are ignored for that reason.
Accepted files move to ``received/``, rejected ones to ``quarantine/`` next to an error
report. Nothing is ever deleted.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg

from labeling_dag import atomic

_INCOMPLETE_SUFFIXES = (".tmp", ".part")


@dataclass(frozen=True)
class CollectedBatch:
    """A batch a labelling tool reports complete: its tasks in Label Studio's JSON export shape."""

    batch_id: str
    tasks: list[dict[str, Any]]


class ReviewBackend(dg.ConfigurableResource):
    """Where annotators work. Two implementations, chosen by deployment configuration:
    :class:`FolderReview` (the embedded default: people move files) and
    ``labeling_dag.resources.label_studio.LabelStudioReview`` (a Label Studio server).

    Both keep the exchange folder as the record: the outbox copy of every batch, and the
    inbox into which completed batches arrive, whoever delivers them.
    """

    def export(self, workdir: Path, batch_id: str, tasks: list[dict[str, Any]], class_names: Sequence[str]) -> str:
        """Hand a batch's tasks to the annotators; return where they will find it."""
        raise NotImplementedError

    def collect(self, workdir: Path, *, open_batches: Sequence[str]) -> list[CollectedBatch]:
        """The open batches now completely annotated in the tool (one cheap query)."""
        raise NotImplementedError


class FolderReview(ReviewBackend):
    """The embedded default: the outbox file is the hand-over and people drop exports in the inbox."""

    def export(self, workdir: Path, batch_id: str, tasks: list[dict[str, Any]], class_names: Sequence[str]) -> str:
        """Nothing beyond the outbox file: point the annotators at it."""
        return f"import {FileReviewExchange().outbox_file(workdir, batch_id)} into Label Studio"

    def collect(self, workdir: Path, *, open_batches: Sequence[str]) -> list[CollectedBatch]:
        """Nothing to fetch: completed exports arrive in the inbox by hand."""
        return []


class FileReviewExchange(dg.ConfigurableResource):
    """Review batches as files under ``folder`` (default ``<workdir>/exchange``)."""

    folder: str = ""

    def root(self, workdir: Path) -> Path:
        """The exchange folder for a workdir."""
        return Path(self.folder).expanduser() if self.folder else Path(workdir) / "exchange"

    def outbox_file(self, workdir: Path, batch_id: str) -> Path:
        """Where the tasks of ``batch_id`` were exported."""
        return self.root(workdir) / "outbox" / _file_name(batch_id)

    def received_file(self, workdir: Path, batch_id: str) -> Path:
        """Where the accepted export of ``batch_id`` is kept."""
        return self.root(workdir) / "received" / _file_name(batch_id)

    def export(self, workdir: Path, batch_id: str, tasks: list[dict[str, Any]]) -> Path:
        """Write the batch's tasks to the outbox (atomically; the same id overwrites)."""
        target = self.outbox_file(workdir, batch_id)
        atomic.write_json(target, tasks)
        return target

    def exported_tasks(self, workdir: Path, batch_id: str) -> list[dict[str, Any]]:
        """The tasks exported for ``batch_id``."""
        return json.loads(self.outbox_file(workdir, batch_id).read_text())

    def open_batches(self, workdir: Path) -> list[str]:
        """Batches exported and not received yet (two directory listings)."""
        outbox, received = self.root(workdir) / "outbox", self.root(workdir) / "received"
        sent = {p.stem for p in outbox.glob("*.json")} if outbox.is_dir() else set()
        back = {p.stem for p in received.glob("*.json")} if received.is_dir() else set()
        return sorted(sent - back)

    def deliver(self, workdir: Path, batch: CollectedBatch) -> Path | None:
        """Put a batch collected from a labelling tool into the inbox, unless it is already there."""
        target = self.root(workdir) / "inbox" / _file_name(batch.batch_id)
        if target.exists() or self.received_file(workdir, batch.batch_id).exists():
            return None
        atomic.write_json(target, batch.tasks)
        return target

    def inbox_files(self, workdir: Path) -> list[Path]:
        """Finished files waiting in the inbox, oldest first (one directory listing, no reads)."""
        inbox = self.root(workdir) / "inbox"
        if not inbox.is_dir():
            return []
        entries = [
            entry
            for entry in os.scandir(inbox)
            if entry.is_file()
            and not entry.name.startswith(".")
            and not entry.name.endswith(_INCOMPLETE_SUFFIXES)
        ]
        return [Path(entry.path) for entry in sorted(entries, key=lambda e: (e.stat().st_mtime_ns, e.name))]

    def receive(self, workdir: Path, file: Path, batch_id: str) -> Path:
        """Move an accepted export out of the inbox to ``received/<batch_id>.json``."""
        target = self.received_file(workdir, batch_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(file, target)
        return target

    def quarantine(self, workdir: Path, file: Path, problem: str) -> Path:
        """Move a rejected file to ``quarantine/`` with an ``.error.json`` report beside it."""
        folder = self.root(workdir) / "quarantine"
        folder.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        target = folder / f"{stamp}-{file.name}"
        os.replace(file, target)
        atomic.write_json(
            target.with_name(target.name + ".error.json"),
            {"file": str(file), "quarantined_as": str(target), "problem": problem, "at": stamp},
        )
        return target


def _file_name(batch_id: str) -> str:
    # Batch ids come back from review files: they must never reach outside the exchange.
    if Path(batch_id).name != batch_id or batch_id in ("", ".", ".."):
        raise ValueError(f"batch id {batch_id!r} is not a plain name")
    return f"{batch_id}.json"
