"""Reading the workdir's parquet tables, whole-pool views of partitioned assets included.

Dagster-free and read-only, so the audit CLI can use it on any workdir without creating one.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

# Assets partitioned by ingestion batch keep one sub-folder per batch: ``<folder>/<batch>/``.
PARTITIONED_FOLDERS = ("raw_images", "cleaned_images", "pre_labels", "uncertainty_scores")


def read_table(root: Path, folder: str, table: str, columns: dict[str, str]) -> pd.DataFrame:
    """``root/folder/table.parquet``, or for a partitioned folder every batch's table in batch order.

    An absent table reads as an empty frame with ``columns``.
    """
    base = Path(root) / folder
    if folder in PARTITIONED_FOLDERS:
        paths = sorted(base.glob(f"*/{table}.parquet"))
    else:
        paths = [base / f"{table}.parquet"] if (base / f"{table}.parquet").exists() else []
    frames = [frame for frame in (pd.read_parquet(path) for path in paths) if len(frame)]
    if not frames:
        return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in columns.items()})
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def snapshot_histories(root: Path, folder: str) -> list[Path]:
    """The snapshot-history files of an asset folder: one per batch for a partitioned folder."""
    base = Path(root) / "snapshots" / folder
    return sorted(base.glob("*/history.json")) if folder in PARTITIONED_FOLDERS else [base / "history.json"]
