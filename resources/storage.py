"""Where the pipeline keeps its files: one workdir per pipeline, one folder per asset."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path

import dagster as dg
import pandas as pd

from labeling_dag import atomic
from labeling_dag.ingest_batches import ROOT_BATCH, batch_key_problem
from labeling_dag.tables import read_table


class ClassListChanged(ValueError):
    """A model or dataset brings a class list other than the project's."""


class LabelStore(dg.ConfigurableResource):
    """The pipeline's workdir. Each asset owns one folder named after it.

    Tables are parquet files replaced atomically, so a killed run leaves the previous
    version readable and a re-run starts from a consistent state.
    """

    workdir: str

    @property
    def root(self) -> Path:
        """The workdir as a path (created on first use)."""
        path = Path(self.workdir).expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path

    def folder(self, name: str) -> Path:
        """``workdir/name``, created on first use."""
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def class_names(self) -> tuple[str, ...]:
        """The project's class list (``classes.json``), fixed when the first model or labels arrive.

        Empty before that. Every model and every review export is checked against it.
        """
        path = self.root / "classes.json"
        return tuple(json.loads(path.read_text())) if path.exists() else ()

    def set_class_names(self, names: Sequence[str]) -> tuple[str, ...]:
        """Fix the class list on first use; afterwards only the same list is accepted."""
        current = self.class_names()
        if current and tuple(names) != current:
            raise ClassListChanged(
                f"{self.root / 'classes.json'}: class list is {list(current)}, got {list(names)}; "
                "changing classes between rounds would corrupt labels: start a new workdir"
            )
        if not current:
            atomic.write_json(self.root / "classes.json", list(names))
        return tuple(names)

    def read_table(self, folder: str, table: str, columns: dict[str, str]) -> pd.DataFrame:
        """Read ``workdir/folder/table.parquet``; an empty frame with ``columns`` when absent.

        For a folder partitioned by ingestion batch this is the whole pool: every batch's
        table, in batch order.
        """
        return read_table(self.root, folder, table, columns)

    def write_table(self, folder: str, table: str, frame: pd.DataFrame) -> Path:
        """Atomically replace ``workdir/folder/table.parquet`` with ``frame``."""
        path = self.folder(folder) / f"{table}.parquet"
        atomic.write_parquet(path, frame.reset_index(drop=True))
        return path

    def read_partition(self, folder: str, batch: str, table: str, columns: dict[str, str]) -> pd.DataFrame:
        """One ingestion batch's table of a partitioned asset folder."""
        return read_table(self.root, f"{folder}/{_checked(batch)}", table, columns)

    def write_partition(self, folder: str, batch: str, table: str, frame: pd.DataFrame) -> Path:
        """Atomically replace one ingestion batch's table of a partitioned asset folder."""
        return self.write_table(f"{folder}/{_checked(batch)}", table, frame)

    def locked(self, name: str) -> AbstractContextManager[None]:
        """Hold the workdir's lock ``name`` (an exclusive file lock, shared by every process on the host)."""
        return atomic.file_lock(self.root / ".locks" / name)

    def claim_image(self, image_id: str, batch: str) -> str:
        """The ingestion batch that owns ``image_id``: ``batch`` unless another batch claimed it first.

        The same picture can arrive in two batches processed at the same time; an exclusive
        create decides which batch cleans and pre-labels it, so no image is counted twice.
        """
        claim = self.root / ".claims" / image_id[:2] / image_id
        claim.parent.mkdir(parents=True, exist_ok=True)
        # Written whole under a private name, then linked in: the link fails if another batch
        # got there first, and a claim is never seen empty.
        private = claim.with_name(f".{image_id}.{_checked(batch)}.{os.getpid()}")
        private.write_text(batch)
        try:
            os.link(private, claim)
        except FileExistsError:
            pass
        finally:
            private.unlink()
        return claim.read_text()


def _checked(batch: str) -> str:
    problem = batch_key_problem(batch)
    if problem:
        raise ValueError(f"ingestion batch {batch!r}: {problem}")
    return batch


class ImageSource(dg.ConfigurableResource):
    """The folder new raw images arrive in, one sub-folder per ingestion batch.

    Each sub-folder (searched recursively) is one batch, named after it; files lying
    directly in the folder form the batch ``_root``. Hidden files and folders are ignored.
    """

    folder: str

    def batches(self) -> tuple[list[str], list[str]]:
        """The batch keys present now (sorted), and a problem line for each unusable sub-folder."""
        root = self._root()
        keys, problems = [], []
        for entry in sorted(root.iterdir()):
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                problem = batch_key_problem(entry.name)
                if problem:
                    problems.append(f"{entry}: not an ingestion batch: {problem}")
                else:
                    keys.append(entry.name)
            elif entry.is_file() and ROOT_BATCH not in keys:
                keys.append(ROOT_BATCH)
        return sorted(keys), problems

    def files(self, batch: str) -> list[Path]:
        """Every file of one ingestion batch, sorted."""
        root = self._root()
        if batch == ROOT_BATCH:
            return sorted(path for path in root.iterdir() if path.is_file() and not path.name.startswith("."))
        folder = root / _checked(batch)
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: ingestion batch {batch!r} is not in the source folder (moved or deleted?)")
        return sorted(
            path
            for path in folder.rglob("*")
            if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parts)
        )

    def signature(self, batch: str) -> str:
        """Changes whenever a file of the batch is added, removed or rewritten (count, bytes, newest mtime)."""
        stats = [path.stat() for path in self.files(batch)]
        newest = max((stat.st_mtime_ns for stat in stats), default=0)
        return f"{len(stats)}-{sum(stat.st_size for stat in stats)}-{newest}"

    def _root(self) -> Path:
        root = Path(self.folder).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: image source folder does not exist")
        return root
