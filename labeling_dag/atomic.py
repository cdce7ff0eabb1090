"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every writer puts its bytes in a temporary file in the destination folder (same file
system, so the rename is atomic), flushes it to disk and renames it over the target.
"""

from __future__ import annotations

import errno
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
def atomic_path(target: Path, *, sync: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it over ``target`` on success.

    On an exception the temporary file is removed and ``target`` is left untouched.
    ``sync=False`` skips the flush to disk, for a writer of many files that makes them
    durable together with :func:`sync_all` before anything names them.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if sync:
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _write_with(target: Path, mode: str, write: Callable[[IO[Any]], None], *, sync: bool = True) -> None:
    with atomic_path(target, sync=sync) as tmp, open(tmp, mode) as handle:
        write(handle)


def write_bytes(target: Path, data: bytes, *, sync: bool = True) -> None:
    """Atomically write ``data`` to ``target`` (``sync``: see :func:`atomic_path`)."""
    _write_with(target, "wb", lambda handle: handle.write(data), sync=sync)


def write_json(target: Path, payload: Any) -> None:
    """Atomically write ``payload`` as indented UTF-8 JSON."""
    text = json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n"
    _write_with(target, "w", lambda handle: handle.write(text))


def write_parquet(target: Path, frame: pd.DataFrame) -> None:
    """Atomically write ``frame`` as a parquet file (without the pandas index)."""
    with atomic_path(target) as tmp:
        frame.to_parquet(tmp, index=False)


def copy_file(source: Path, target: Path, *, sync: bool = True) -> None:
    """Atomically copy ``source`` to ``target``, preserving nothing but the bytes
    (``sync``: see :func:`atomic_path`)."""
    with atomic_path(target, sync=sync) as tmp:
        shutil.copyfile(source, tmp)


def sync_all() -> None:
    """Flush every file written so far to disk: one call in place of an fsync per file.

    Thousands of small files each flushed on its own cost a journal commit apiece, and
    workers running side by side queue on those commits.
    """
    os.sync()


def link_file(source: Path, target: Path) -> None:
    """Atomically make ``target`` another name of ``source``'s bytes: a hard link, which
    writes no data, or a copy where the two paths lie on different file systems.

    Only for sources that are never changed in place: every writer here replaces a file by
    rename, so the two names can never come to differ.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # The same hidden ``.*.tmp`` form as atomic_path's, which snapshots ignore when a killed
    # process leaves one behind.
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        os.link(source, tmp)
    except OSError as error:
        if error.errno != errno.EXDEV:
            raise
        copy_file(source, target)
        return
    try:
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def replace_folder(staging: Path, target: Path) -> None:
    """Put the finished folder ``staging`` in place of ``target`` (which may not exist): the old
    one is moved aside first and deleted after, so a crash leaves either the old folder or the
    new one at ``target``, never a half-written one."""
    retired = target.with_name(f".{target.name}.old")
    shutil.rmtree(retired, ignore_errors=True)
    if target.exists():
        os.replace(target, retired)
    os.replace(staging, target)
    shutil.rmtree(retired, ignore_errors=True)


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
