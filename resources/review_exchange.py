"""The file-based review exchange: batches go out as Label Studio task JSON files.

This is the embedded default review backend: an outbox folder a labelling tool (or a
person with Label Studio's import dialog) reads, keyed by batch id.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg

from labeling_dag import atomic


class FileReviewExchange(dg.ConfigurableResource):
    """Review batches as files under ``folder`` (default ``<workdir>/exchange``)."""

    folder: str = ""

    def root(self, workdir: Path) -> Path:
        """The exchange folder for a workdir."""
        return Path(self.folder).expanduser() if self.folder else Path(workdir) / "exchange"

    def export(self, workdir: Path, batch_id: str, tasks: list[dict[str, Any]]) -> Path:
        """Write the batch's tasks to ``outbox/<batch_id>.json`` (atomically; same id overwrites)."""
        target = self.root(workdir) / "outbox" / f"{batch_id}.json"
        atomic.write_json(target, tasks)
        return target
