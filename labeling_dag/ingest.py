"""Content-addressed ingestion of raw image files.

An image's id is the sha256 of its bytes, so the same picture arriving twice under two
names is stored once, and re-running ingestion over the same folder adds nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from upath import UPath

from labeling_dag import atomic
from labeling_dag.contracts import RAW_COLUMNS
from labeling_dag.model_registry import file_sha256

# The image files worth decoding, by extension; whether they really are images is decided by
# the cleaning step, which rejects impostors with a reason.
INGESTED_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


def ingest(
    files: Iterable[Path | UPath],
    index: pd.DataFrame,
    *,
    workdir: Path,
    store_folder: str,
    run_id: str,
    suffixes: tuple[str, ...] = INGESTED_SUFFIXES,
) -> tuple[pd.DataFrame, list[Path | UPath]]:
    """Copy files not seen before into ``workdir/store_folder/files`` under their content id.

    ``index`` is the raw-images table so far (``RAW_COLUMNS``). Returns the rows to append
    (one per new source file; a new name for known bytes gets a row with the existing id,
    so no source file is ever silently dropped) and the files skipped for their extension (not among
    ``suffixes``, the modality's item files).
    A file already indexed with the same path, size and mtime is not even re-hashed.
    ``files`` may lie on an object store (``UPath``s): their bytes are fetched once, for
    both the hash and the copy.
    """
    seen = {
        (row.source_path, row.size_bytes, row.source_mtime_ns)
        for row in index[["source_path", "size_bytes", "source_mtime_ns"]].itertuples(index=False)
    }
    stored = dict(zip(index["image_id"], index["stored_path"]))
    now = datetime.now(UTC).isoformat()
    rows: list[dict[str, object]] = []
    skipped: list[Path | UPath] = []
    copied = False
    for path in files:
        if path.suffix.lower() not in suffixes:
            skipped.append(path)
            continue
        stat = path.stat()
        if (str(path), stat.st_size, stat.st_mtime_ns) in seen:
            continue
        remote = None if isinstance(path, Path) else path.read_bytes()
        image_id = file_sha256(path) if remote is None else hashlib.sha256(remote).hexdigest()
        if image_id not in stored:
            target = workdir / store_folder / "files" / image_id[:2] / f"{image_id}{path.suffix.lower()}"
            # Not flushed one by one: all are flushed below, before the index that names
            # them is written. Until then the index, not a file's presence, says what is stored.
            if remote is None:
                atomic.copy_file(path, target, sync=False)
            else:
                atomic.write_bytes(target, remote, sync=False)
            stored[image_id] = str(target.relative_to(workdir))
            copied = True
        rows.append(
            {
                "image_id": image_id,
                "source_path": str(path),
                "stored_path": stored[image_id],
                "size_bytes": stat.st_size,
                "source_mtime_ns": stat.st_mtime_ns,
                "ingested_at": now,
                "run_id": run_id,
            }
        )
    if copied:
        atomic.sync_all()
    return pd.DataFrame(rows, columns=list(RAW_COLUMNS)).astype(RAW_COLUMNS), skipped
