"""Where the pipeline keeps its files: one workdir per pipeline, one folder per asset."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager, closing
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
from upath import UPath

from labeling_dag import atomic
from labeling_dag.contracts import Table
from labeling_dag.ingest_batches import ROOT_BATCH, batch_key_problem
from labeling_dag.modalities import Modality, workdir_modality
from labeling_dag.tables import read


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

    def modality(self) -> Modality:
        """The workdir's modality (``modality.json``, fixed by ``labeling-dag init``): what its items
        are, how they are cleaned, reviewed and trained on. Detection where the file is absent."""
        return workdir_modality(self.root)

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

    def read(self, table: Table, *, batch: str | None = None, only: Sequence[str] | None = None) -> pd.DataFrame:
        """One of a stage's tables (:mod:`labeling_dag.contracts`); an empty frame with its schema when absent.

        For a stage partitioned by ingestion batch this is the whole pool (every batch's table,
        in batch order) or, given ``batch``, that batch's table. ``only`` reads just those columns.
        """
        if batch is not None and not table.partitioned:
            raise ValueError(f"{table.folder}/{table.name}: not partitioned by ingestion batch")
        return read(self.root, table, batch=None if batch is None else _checked(batch), only=only)

    def write(self, table: Table, frame: pd.DataFrame, *, batch: str | None = None) -> Path:
        """Atomically replace one of a stage's tables with ``frame``: ``batch``'s table for a
        stage partitioned by ingestion batch (where it is required), the stage's table otherwise."""
        if table.partitioned != (batch is not None):
            raise ValueError(f"{table.folder}/{table.name}: a batch is required exactly for a partitioned stage")
        folder = table.folder if batch is None else f"{table.folder}/{_checked(batch)}"
        path = self.folder(folder) / f"{table.name}.parquet"
        atomic.write_parquet(path, frame.reset_index(drop=True))
        return path

    def locked(self, name: str) -> AbstractContextManager[None]:
        """Hold the workdir's lock ``name`` (an exclusive file lock, shared by every process on the host)."""
        return atomic.file_lock(self.root / ".locks" / name)

    def claim_images(self, image_ids: Sequence[str], batch: str) -> dict[str, str]:
        """The ingestion batch that owns each of ``image_ids``: ``batch`` unless another batch
        claimed the image first.

        The same picture can arrive in two batches processed at the same time; a unique key
        decides which batch cleans and pre-labels it, so no image is counted twice. One SQLite
        transaction claims a whole batch: a file per image cost an inode and several file
        system calls each, which serialise between workers on the file system's journal.
        """
        _checked(batch)
        with closing(sqlite3.connect(self.root / ".claims.sqlite", timeout=_CLAIMS_TIMEOUT_S)) as claims, claims:
            claims.execute("CREATE TABLE IF NOT EXISTS claims (image_id TEXT PRIMARY KEY, batch TEXT NOT NULL)")
            claims.executemany(
                "INSERT OR IGNORE INTO claims VALUES (?, ?)", [(image_id, batch) for image_id in image_ids]
            )
            claims.execute("CREATE TEMP TABLE wanted (image_id TEXT PRIMARY KEY)")
            claims.executemany("INSERT OR IGNORE INTO wanted VALUES (?)", [(image_id,) for image_id in image_ids])
            return dict(claims.execute("SELECT claims.image_id, claims.batch FROM claims JOIN wanted USING (image_id)"))


# A claim transaction of any batch takes milliseconds; a writer waits this long for another.
_CLAIMS_TIMEOUT_S = 600.0


def _checked(batch: str) -> str:
    problem = batch_key_problem(batch)
    if problem:
        raise ValueError(f"ingestion batch {batch!r}: {problem}")
    return batch


# A source file: a local path, or a path on an object store (a UPath, not a pathlib.Path).
SourceFile = Path | UPath

# Listing keys that change when an object's content does, best first (S3, GCS, generic fsspec).
_VERSION_KEYS = ("ETag", "etag", "md5Hash", "LastModified", "mtime", "updated")


class ImageSource(dg.ConfigurableResource):
    """The folder new raw images arrive in, one sub-folder per ingestion batch.

    Each sub-folder (searched recursively) is one batch, named after it; files lying
    directly in the folder form the batch ``_root``. Hidden files and folders are ignored.
    ``folder`` is a local path or any fsspec URL: ``s3://bucket/prefix`` makes each
    immediate sub-prefix a batch. Credentials and endpoint come from the environment
    (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``, ...), never
    from this configuration, so they are neither stored in run config nor logged.
    """

    folder: str

    def batches(self) -> tuple[list[str], list[str]]:
        """The batch keys present now (sorted), and a problem line for each unusable sub-folder."""
        root = self._root()
        if isinstance(root, UPath):
            return _object_batches(root)
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

    def files(self, batch: str) -> list[SourceFile]:
        """Every file of one ingestion batch, sorted."""
        root = self._root()
        if isinstance(root, UPath):
            return [root.joinpath(*relative.split("/")) for relative in _object_files(root, batch)]
        if batch == ROOT_BATCH:
            return sorted(path for path in root.iterdir() if path.is_file() and not path.name.startswith("."))
        folder = root / _checked(batch)
        if not folder.is_dir():
            raise FileNotFoundError(
                f"{folder}: ingestion batch {batch!r} is not in the source folder (moved or deleted?)"
            )
        return sorted(
            path
            for path in folder.rglob("*")
            if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parts)
        )

    def signature(self, batch: str) -> str:
        """Changes whenever a file of the batch is added, removed or rewritten.

        Local: count, bytes, newest mtime. Object store: count, bytes and a digest of every
        key's ETag (its content hash), all from one listing, without reading an object.
        """
        root = self._root()
        if isinstance(root, UPath):
            listed = _object_files(root, batch)
            versions = "\n".join(f"{key} {_version(info)}" for key, info in listed.items())
            digest = hashlib.sha256(versions.encode()).hexdigest()[:16]
            return f"{len(listed)}-{sum(int(info.get('size') or 0) for info in listed.values())}-{digest}"
        stats = [path.stat() for path in self.files(batch)]
        newest = max((stat.st_mtime_ns for stat in stats), default=0)
        return f"{len(stats)}-{sum(stat.st_size for stat in stats)}-{newest}"

    def _root(self) -> Path | UPath:
        location = UPath(self.folder)
        # Local folders stay plain pathlib paths: no fsspec layer on the common, fast path.
        if location.protocol in ("", "file", "local"):
            root = Path(self.folder if not location.protocol else location.path).expanduser()
            if not root.is_dir():
                raise FileNotFoundError(f"{root}: image source folder does not exist")
            return root
        # fsspec keeps one filesystem (and its listings cache) per process: a sensor polling
        # for new objects must list afresh every time.
        location.fs.invalidate_cache()
        if not location.fs.isdir(_key(location)):
            raise FileNotFoundError(f"{self.folder}: image source prefix does not exist (or holds no object)")
        return location


def _key(path: UPath) -> str:
    """The fsspec path of ``path`` (``bucket/prefix``), without a trailing slash."""
    return path.path.rstrip("/")


def _hidden(relative: str) -> bool:
    return any(part.startswith(".") for part in relative.split("/"))


def _object_batches(root: UPath) -> tuple[list[str], list[str]]:
    """``ImageSource.batches`` on an object store: one listing of the prefix's immediate children."""
    keys, problems = set(), []
    prefix = _key(root)
    for entry in root.fs.ls(prefix, detail=True):
        name = entry["name"].rstrip("/").rsplit("/", 1)[-1]
        if entry["name"].rstrip("/") == prefix or name.startswith("."):
            continue  # the prefix's own "folder" marker object, or a hidden entry
        if entry["type"] == "directory":
            problem = batch_key_problem(name)
            if problem:
                problems.append(f"{root / name}: not an ingestion batch: {problem}")
            else:
                keys.add(name)
        else:
            keys.add(ROOT_BATCH)
    return sorted(keys), sorted(problems)


def _object_files(root: UPath, batch: str) -> dict[str, dict[str, Any]]:
    """The files of one batch on an object store, by path relative to ``root``, sorted, with their listing info."""
    prefix = _key(root)
    if batch == ROOT_BATCH:
        listed = {entry["name"]: entry for entry in root.fs.ls(prefix, detail=True) if entry["type"] == "file"}
    else:
        folder = f"{prefix}/{_checked(batch)}"
        listed = root.fs.find(folder, detail=True)
        if not listed:
            raise FileNotFoundError(
                f"{root / batch}: ingestion batch {batch!r} is not in the source folder (moved or deleted?)"
            )
    # Keys ending in "/" are empty "folder" markers some tools create, not files.
    relative = {
        name.removeprefix(f"{prefix}/"): info
        for name, info in listed.items()
        if not name.endswith("/") and name != prefix
    }
    return {name: relative[name] for name in sorted(relative) if not _hidden(name)}


def _version(info: dict[str, Any]) -> str:
    """What identifies this content of an object in a listing (its ETag on S3)."""
    return next((str(info[key]) for key in _VERSION_KEYS if info.get(key)), "")
