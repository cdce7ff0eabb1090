"""Reading the workdir's parquet tables, whole-pool views of partitioned assets included.

Dagster-free and read-only, so the audit CLI can use it on any workdir without creating one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from labeling_dag.contracts import PARTITIONED_FOLDERS, Table


def read(root: Path, table: Table, *, batch: str | None = None, only: Sequence[str] | None = None) -> pd.DataFrame:
    """``table`` of the workdir ``root``: for a partitioned stage every batch's table in batch
    order (the whole pool), or just ``batch``'s.

    ``only`` reads just those columns: a whole-pool view of a few columns stays cheap however
    many embeddings the tables hold. An absent table reads as an empty frame with the schema.
    """
    columns = table.columns
    base = Path(root) / table.folder
    if batch is not None:
        base = base / batch
    if table.partitioned and batch is None:
        paths = sorted(base.glob(f"*/{table.name}.parquet"))
    else:
        paths = [base / f"{table.name}.parquet"] if (base / f"{table.name}.parquet").exists() else []
    wanted = list(only) if only is not None else None
    names = wanted if wanted is not None else list(columns)
    frames = [_with_columns(path, names, columns, everything=wanted is None) for path in paths]
    frames = [frame for frame in frames if len(frame)]
    if not frames:
        return pd.DataFrame({name: pd.Series(dtype=columns[name]) for name in names})
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def rows_frame(rows: Sequence[Mapping[str, object]], columns: Mapping[str, str]) -> pd.DataFrame:
    """``rows`` (one dict each) as a frame of the schema ``columns``: its columns in order, each
    of its dtype, also when there are no rows."""
    return pd.DataFrame(rows, columns=list(columns)).astype(columns)


# What a column added to a schema reads as in a table written before it existed.
_ABSENT = {"bool": False, "str": "", "int64": 0}


def _with_columns(path: Path, names: Sequence[str], columns: Mapping[str, str], *, everything: bool) -> pd.DataFrame:
    """The table at ``path`` (``everything`` it stores, or just ``names``), where a column of
    ``names`` the file predates reads as its dtype's empty value (False, "", 0, NaN): a workdir
    written before a column was added reads as it did."""
    stored = pq.read_schema(path).names
    frame = pd.read_parquet(path, columns=None if everything else [name for name in names if name in stored])
    for name in names:
        if name not in stored:
            frame[name] = pd.Series(_ABSENT.get(columns[name], float("nan")), index=frame.index, dtype=columns[name])
    return frame


def snapshot_histories(root: Path, folder: str) -> list[Path]:
    """The snapshot-history files of an asset folder: one per batch for a partitioned folder."""
    base = Path(root) / "snapshots" / folder
    return sorted(base.glob("*/history.json")) if folder in PARTITIONED_FOLDERS else [base / "history.json"]


def snapshot_files(root: Path, snapshot_id: str) -> dict[str, Path] | None:
    """The files of one folder snapshot in the workdir's local DVC cache, ``{relpath: cache file}``;
    None when the snapshot's listing is not in the local cache (e.g. only on the remote)."""
    cache = Path(root) / ".dvc" / "cache" / "files" / "md5"
    listing = cache / snapshot_id[:2] / f"{snapshot_id[2:]}.dir"
    if not listing.exists():
        return None
    return {item["relpath"]: cache / item["md5"][:2] / item["md5"][2:] for item in json.loads(listing.read_text())}
