"""Where the pipeline keeps its files: one workdir per pipeline, one folder per asset."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import dagster as dg
import pandas as pd

from labeling_dag import atomic


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
        """Read ``workdir/folder/table.parquet``; an empty frame with ``columns`` when absent."""
        path = self.root / folder / f"{table}.parquet"
        if not path.exists():
            return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in columns.items()})
        return pd.read_parquet(path)

    def write_table(self, folder: str, table: str, frame: pd.DataFrame) -> Path:
        """Atomically replace ``workdir/folder/table.parquet`` with ``frame``."""
        path = self.folder(folder) / f"{table}.parquet"
        atomic.write_parquet(path, frame.reset_index(drop=True))
        return path


class ImageSource(dg.ConfigurableResource):
    """The folder new raw images arrive in (searched recursively)."""

    folder: str

    def files(self) -> list[Path]:
        """Every file under the folder, sorted, hidden files and folders excluded."""
        root = Path(self.folder).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: image source folder does not exist")
        return sorted(
            path
            for path in root.rglob("*")
            if path.is_file() and not any(part.startswith(".") for part in path.relative_to(root).parts)
        )
