"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every writer puts its bytes in a temporary file in the destination folder (same file
system, so the rename is atomic), flushes it to disk and renames it over the target.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import pandas as pd


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it over ``target`` on success.

    On an exception the temporary file is removed and ``target`` is left untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _write_with(target: Path, mode: str, write: Callable[[IO[Any]], None]) -> None:
    with atomic_path(target) as tmp, open(tmp, mode) as handle:
        write(handle)


def write_bytes(target: Path, data: bytes) -> None:
    """Atomically write ``data`` to ``target``."""
    _write_with(target, "wb", lambda handle: handle.write(data))


def write_json(target: Path, payload: Any) -> None:
    """Atomically write ``payload`` as indented UTF-8 JSON."""
    text = json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n"
    _write_with(target, "w", lambda handle: handle.write(text))


def write_parquet(target: Path, frame: pd.DataFrame) -> None:
    """Atomically write ``frame`` as a parquet file (without the pandas index)."""
    with atomic_path(target) as tmp:
        frame.to_parquet(tmp, index=False)


def copy_file(source: Path, target: Path) -> None:
    """Atomically copy ``source`` to ``target``, preserving nothing but the bytes."""
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing), shared by every process on the host."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
