"""Content-addressed ingestion of raw item files: images, texts, and tables of texts.

An item's id is the sha256 of its bytes, so the same picture (or text) arriving twice under
two names is stored once, and re-running ingestion over the same folder adds nothing.
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
from labeling_dag.text_tables import table_texts

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
    tables: tuple[str, ...] = (),
) -> tuple[pd.DataFrame, list[Path | UPath]]:
    """Copy files not seen before into ``workdir/store_folder/files`` under their content id.

    ``index`` is the raw-images table so far (``RAW_COLUMNS``). Returns the rows to append
    (one per new source file; a new name for known bytes gets a row with the existing id,
    so no source file is ever silently dropped) and the files skipped for their extension (not among
    ``suffixes``, the modality's item files, nor ``tables``).
    A file already indexed with the same path, size and mtime is not even re-hashed.
    ``files`` may lie on an object store (``UPath``s): their bytes are fetched once, for
    both the hash and the copy.

    A file whose extension is among ``tables`` (see :data:`labeling_dag.text_tables.TABLE_SUFFIXES`)
    is taken apart by :func:`~labeling_dag.text_tables.table_texts`: each row is an item whose
    bytes are its text in UTF-8, stored as a ``.txt`` file, with ``source_path`` ``"{table}#{row id}"``
    and the table's size and mtime. A table indexed under any of its rows with the same size and
    mtime is not read again (one with no rows is, having left nothing to recognise it by). A table
    that cannot be read raises the ``ValueError`` naming it before any of its rows is stored.
    """
    seen = {
        (row.source_path, row.size_bytes, row.source_mtime_ns)
        for row in index[["source_path", "size_bytes", "source_mtime_ns"]].itertuples(index=False)
    }
    seen_tables = {(table, size, mtime) for source, size, mtime in seen for table in _table_paths(source)}
    stored = dict(zip(index["image_id"], index["stored_path"]))
    now = datetime.now(UTC).isoformat()
    rows: list[dict[str, object]] = []
    skipped: list[Path | UPath] = []
    copied = False
    for path in files:
        suffix = path.suffix.lower()
        if suffix not in suffixes and suffix not in tables:
            skipped.append(path)
            continue
        stat = path.stat()
        source = (str(path), stat.st_size, stat.st_mtime_ns)
        if source in (seen_tables if suffix in tables else seen):
            continue
        for source_path, data, item_suffix in _items(path, table=suffix in tables):
            image_id = file_sha256(path) if data is None else hashlib.sha256(data).hexdigest()
            if image_id not in stored:
                target = workdir / store_folder / "files" / image_id[:2] / f"{image_id}{item_suffix}"
                # Not flushed one by one: all are flushed below, before the index that names
                # them is written. Until then the index, not a file's presence, says what is stored.
                if data is None:
                    atomic.copy_file(path, target, sync=False)
                else:
                    atomic.write_bytes(target, data, sync=False)
                stored[image_id] = str(target.relative_to(workdir))
                copied = True
            rows.append(
                {
                    "image_id": image_id,
                    "source_path": source_path,
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


def _items(path: Path | UPath, *, table: bool) -> list[tuple[str, bytes | None, str]]:
    """(source path, bytes, stored suffix) of each item of one source file: the file itself, or
    every row of a table. Bytes are None for a local file, which is hashed and copied from disk."""
    if table:
        return [(f"{path}#{row_id}", text.encode("utf-8"), ".txt") for row_id, text in table_texts(path)]
    return [(str(path), None if isinstance(path, Path) else path.read_bytes(), path.suffix.lower())]


def _table_paths(source_path: str) -> list[str]:
    """Every table path a ``"{table}#{row id}"`` source path may stand for: a path or an id may
    itself hold a ``#``, so each one is a possible split."""
    parts = source_path.split("#")
    return ["#".join(parts[:end]) for end in range(1, len(parts))]
