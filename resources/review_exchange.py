"""The file-based review exchange: the embedded default review backend.

Batches go out as Label Studio task JSON (``outbox/<batch_id>.json``); completed batches come
back as Label Studio JSON exports dropped into ``inbox/``. Whoever drops a file there writes
it under a temporary or hidden name and renames it, so a half-written file is never seen;
names starting with "." or ending in ".tmp" / ".part" are ignored for that reason.
Accepted files move to ``received/``, rejected ones to ``quarantine/`` next to an error
report. Nothing is ever deleted.

A merged batch edited in the labelling tool comes back as a revision (``<batch_id>.r<n>``,
see :mod:`labeling_dag.revisions`): the changed tasks, with an outbox file of their own.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg

from labeling_dag import atomic
from labeling_dag.batch_states import quarantined_batches
from labeling_dag.contracts import MERGES, QUALITY
from labeling_dag.modalities import workdir_modality
from labeling_dag.review_intake import SAFE_BATCH_ID
from labeling_dag.revisions import (
    as_revision,
    changed_tasks,
    merged_labels,
    revision_id,
    revision_watch,
    split_revision,
)

if TYPE_CHECKING:
    from labeling_dag.resources.storage import LabelStore

_INCOMPLETE_SUFFIXES = (".tmp", ".part")


@dataclass(frozen=True)
class CollectedBatch:
    """A batch a labelling tool reports complete: its tasks in Label Studio's JSON export shape."""

    batch_id: str
    tasks: list[dict[str, Any]]


@dataclass(frozen=True)
class Edits:
    """Tasks of settled batches updated in a labelling tool since its last check.

    ``batches`` hold, per batch (its own id, not a revision's), only the updated tasks, in
    Label Studio's JSON export shape; ``checkpoint`` is what the backend records once they
    are delivered (:meth:`ReviewBackend.checked`), so that a tick that dies before that
    looks at the same tasks again.
    """

    batches: list[CollectedBatch] = field(default_factory=list)
    checkpoint: Mapping[str, str] = field(default_factory=dict)


class ReviewBackendError(RuntimeError):
    """A review backend could not be used; the message names the cause and never a secret."""


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

    def edited(self, workdir: Path, *, settled: Collection[str], unsettled: Collection[str]) -> Edits:
        """Tasks of ``settled`` batches updated in the tool since the last check (one cheap query).

        Tasks of ``unsettled`` batches (something of them awaits its merge) are not returned
        and stay unchecked, to be looked at once the batch is settled.
        """
        raise NotImplementedError

    def checked(self, workdir: Path, edits: Edits) -> None:
        """Record that ``edits`` were delivered: the next :meth:`edited` starts after them."""
        raise NotImplementedError

    def deliver_revisions(self, store: LabelStore, exchange: FileReviewExchange) -> list[str]:
        """Put into the inbox, as revisions, the labels of merged batches changed in the tool since the last check.

        Returns the problems: tasks edited into labels that cannot be merged, each named
        (they are not delivered, the rest of their batch's edits are, and they come back
        once fixed in the tool), and batches whose exchange files cannot be read (their
        edits wait, and nothing is recorded as checked). Raises what :meth:`edited` raises
        when the tool cannot be asked.
        """
        workdir = store.root
        merged = set(store.read(MERGES)["merge_id"])
        quarantined = quarantined_batches(store.read(QUALITY))
        settled, unsettled = revision_watch(exchange.handed_over(workdir), merged=merged, quarantined=quarantined)
        if not settled and not unsettled:
            return []
        edits = self.edited(workdir, settled=settled, unsettled=unsettled)
        problems: list[str] = []
        blocked = False
        for batch in edits.batches:
            try:
                problems += exchange.deliver_revision(workdir, batch, merged=merged, class_names=store.class_names())
            except (OSError, ValueError, KeyError, TypeError) as error:
                problems.append(
                    f"edits of batch {batch.batch_id!r} wait: its exchange files are unreadable ({error!r})"
                )
                blocked = True
        # Unchecked, the same tasks come back next tick; those just delivered then wait for their merge.
        if not blocked:
            self.checked(workdir, edits)
        return problems


class FolderReview(ReviewBackend):
    """The embedded default: the outbox file is the hand-over and people drop exports in the inbox."""

    def export(self, workdir: Path, batch_id: str, tasks: list[dict[str, Any]], class_names: Sequence[str]) -> str:
        """Nothing beyond the outbox file: point the annotators at it."""
        return f"import {FileReviewExchange().outbox_file(workdir, batch_id)} into Label Studio"

    def collect(self, workdir: Path, *, open_batches: Sequence[str]) -> list[CollectedBatch]:
        """Nothing to fetch: completed exports arrive in the inbox by hand."""
        return []

    def edited(self, workdir: Path, *, settled: Collection[str], unsettled: Collection[str]) -> Edits:
        """Nothing to ask: people hand files in, and a file once received is final."""
        return Edits()

    def checked(self, workdir: Path, edits: Edits) -> None:
        """Nothing to record."""


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

    def handed_over(self, workdir: Path) -> list[str]:
        """Batch and revision ids received or waiting in the inbox (two directory listings, no reads).

        A file dropped in the inbox by hand may have any name; only names that can be batch
        ids (those a labelling tool delivers under) count.
        """
        received = self.root(workdir) / "received"
        names = {path.stem for path in received.glob("*.json")} if received.is_dir() else set()
        names |= {path.stem for path in self.inbox_files(workdir) if path.suffix == ".json"}
        return sorted(name for name in names if SAFE_BATCH_ID.fullmatch(name))

    def received_revisions(self, workdir: Path, batch_id: str) -> dict[str, Path]:
        """The received files of a batch and of its revisions, by id, oldest revision first."""
        received = self.root(workdir) / "received"
        found = (
            [path for path in received.glob("*.json") if split_revision(path.stem)[0] == batch_id]
            if received.is_dir()
            else []
        )
        return {path.stem: path for path in sorted(found, key=lambda path: split_revision(path.stem)[1])}

    def deliver_revision(
        self, workdir: Path, batch: CollectedBatch, *, merged: Collection[str], class_names: Sequence[str]
    ) -> list[str]:
        """File the updated tasks of a settled batch whose labels changed as its next revision.

        ``batch`` holds tasks of batch ``batch.batch_id`` as the tool has them now; each is
        compared with the labels the batch's merged revisions (``merged``: merge ids)
        brought in. The changed ones go to the inbox as revision ``<batch_id>.r<n>`` (n one
        past the last received), with an outbox file holding their exported tasks, so the
        revision passes the same checks as any batch. Nothing changed, nothing written.
        Returns the problems: tasks edited into labels that cannot be merged, each named.
        Raises ``OSError`` or ``ValueError`` (``KeyError``, ``TypeError`` for a malformed
        outbox file) when the batch's received or exported files cannot be read.
        """
        revisions = self.received_revisions(workdir, batch.batch_id)
        merged_tasks = {
            revision: json.loads(path.read_text()) for revision, path in revisions.items() if revision in merged
        }
        read = {"class_names": class_names, "interface": workdir_modality(workdir).review}
        labels = merged_labels(merged_tasks, **read)
        changed, problems = changed_tasks(batch.tasks, labels, batch_id=batch.batch_id, **read)
        if not changed:
            return problems
        revision = revision_id(batch.batch_id, max(split_revision(name)[1] for name in revisions) + 1)
        images = {task["data"]["image_id"] for task in changed}
        exported = [task for task in self.exported_tasks(workdir, batch.batch_id) if task["data"]["image_id"] in images]
        # The outbox file first: the inbox file is taken as soon as it appears.
        atomic.write_json(self.outbox_file(workdir, revision), as_revision(exported, revision))
        self.deliver(workdir, CollectedBatch(batch_id=revision, tasks=as_revision(changed, revision)))
        return problems

    def inbox_files(self, workdir: Path) -> list[Path]:
        """Finished files waiting in the inbox, oldest first (one directory listing, no reads)."""
        inbox = self.root(workdir) / "inbox"
        if not inbox.is_dir():
            return []
        entries = [
            entry
            for entry in os.scandir(inbox)
            if entry.is_file() and not entry.name.startswith(".") and not entry.name.endswith(_INCOMPLETE_SUFFIXES)
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
