"""Immutable dataset and model snapshots with DVC (and git, for DVC's model registry).

DVC runs as a separate tool (its own virtualenv, on PATH as ``dvc``) rather than a
library: its hydra dependency pins antlr4 4.9 while Dagster's asset-selection parser
needs 4.13, so the two cannot share an environment. Every DVC and git call takes an
argument list, never a shell string.
"""

from __future__ import annotations

import configparser
import json
import os
import shutil
import subprocess
import sys
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import dagster as dg
import yaml

from labeling_dag import atomic


class SnapshotError(RuntimeError):
    """A DVC or git command failed, or a snapshot id is unknown."""


class SnapshotStore(dg.ConfigurableResource):
    """Snapshots workdir folders with ``dvc add`` and pushes them to a DVC remote.

    The workdir is a git + DVC repository of its own. Every snapshot commits the folder's
    ``.dvc`` pointer and the snapshot history, so ``git log`` is the audit trail, and each
    pointer is also kept as ``snapshots/<folder>/<snapshot_id>.dvc``: all that is needed to
    bring that exact content back from the cache or the remote. Promoted models are tagged
    the way DVC's model registry (GTO) expects, so ``dvc artifacts get`` finds them.
    """

    # A local folder or any DVC remote URL (s3://bucket/path needs the dvc-s3 plugin, which
    # `make setup` installs); "" = $LABELING_DAG_DVC_REMOTE, else <workdir>/.dvc-storage.
    remote: str = ""
    # An S3-compatible service's URL (MinIO, Ceph, a local emulator); "" =
    # $LABELING_DAG_DVC_ENDPOINT_URL, else what boto resolves (AWS itself, or $AWS_ENDPOINT_URL).
    # Credentials only ever come from the environment, never from the committed DVC config.
    remote_endpoint_url: str = ""
    executable: str = "dvc"

    def snapshot(self, workdir: Path, folder: str, *, run_id: str) -> str:
        """Record the current content of ``workdir/folder``, push it, and return its snapshot id.

        The snapshot and the run that made it are appended to the folder's history, which is
        how lineage maps a run (and every row it wrote) to the snapshots holding it.
        """
        workdir = Path(workdir)
        with self._locked(workdir):
            self._ensure_repo(workdir)
        # The add takes the workdir's lock; the push does not: it only copies content-addressed
        # objects, so two snapshots push side by side and the lock is held for the add alone.
        pointer = self._add_and_push(workdir, folder)
        snapshot_id = snapshot_id_of(pointer)
        with self._locked(workdir):
            kept = self.pointer_path(workdir, folder, snapshot_id)
            if not kept.exists():
                atomic.write_bytes(kept, pointer.encode())
            # Recorded only once pushed: every snapshot in a history is on the remote.
            history = self.history(workdir, folder)
            history.append({"snapshot_id": snapshot_id, "run_id": run_id, "created_at": datetime.now(UTC).isoformat()})
            atomic.write_json(self.history_path(workdir, folder), history)
            # A partition folder (asset/batch) is ignored by git through its parent's .gitignore.
            ignores = sorted({".gitignore", str(Path(folder).parent / ".gitignore")})
            self._commit(
                workdir, f"{folder} snapshot {snapshot_id} (run {run_id})", f"{folder}.dvc", "snapshots", *ignores
            )
        return snapshot_id

    def tag_artifact(self, workdir: Path, name: str, *, version: int, message: str) -> str:
        """Tag the current commit as version ``version`` of artifact ``name`` (``name@vN.0.0``)."""
        tag = f"{name}@v{version}.0.0"
        with self._locked(workdir):
            self._git(Path(workdir), "tag", "--force", "--annotate", tag, "--message", message)
        return tag

    @staticmethod
    def history_path(workdir: Path, folder: str) -> Path:
        """The JSON list of ``{snapshot_id, run_id, created_at}`` of a folder, oldest first."""
        return Path(workdir) / "snapshots" / folder / "history.json"

    def history(self, workdir: Path, folder: str) -> list[dict[str, str]]:
        """Every snapshot taken of ``workdir/folder``, oldest first (re-materialisations included)."""
        path = self.history_path(workdir, folder)
        return json.loads(path.read_text()) if path.exists() else []

    def restore(self, workdir: Path, folder: str, snapshot_id: str) -> Path:
        """Bring ``workdir/folder`` back to the content of ``snapshot_id``, bit-exact.

        Reads the local cache and falls back to the remote when the cache lacks it.
        """
        workdir = Path(workdir)
        kept = self.pointer_path(workdir, folder, snapshot_id)
        if not kept.exists():
            known = sorted(p.stem for p in kept.parent.glob("*.dvc")) if kept.parent.exists() else []
            raise SnapshotError(f"{kept}: no snapshot {snapshot_id!r} of {folder}; known: {known}")
        with self._locked(workdir):
            self._ensure_repo(workdir)
            atomic.copy_file(kept, workdir / f"{folder}.dvc")
            self._dvc(workdir, "pull", "--force", "-r", "storage", f"{folder}.dvc")
        return workdir / folder

    @staticmethod
    def pointer_path(workdir: Path, folder: str, snapshot_id: str) -> Path:
        """Where the ``.dvc`` pointer of one snapshot is kept."""
        return Path(workdir) / "snapshots" / folder / f"{snapshot_id}.dvc"

    def remote_url(self, workdir: Path) -> str:
        """The DVC remote every snapshot is pushed to and restored from."""
        return self.remote or os.environ.get("LABELING_DAG_DVC_REMOTE") or str(Path(workdir) / ".dvc-storage")

    def _locked(self, workdir: Path) -> AbstractContextManager[None]:
        # DVC waits for its own lock, git does not: one add, restore, history write or commit at
        # a time per workdir, whatever process (step, sensor, CLI) takes it. The DVC process of
        # a snapshot takes the same lock itself, around its add (see _ADD_AND_PUSH).
        return atomic.file_lock(workdir / _LOCK_FILE)

    def _ensure_repo(self, workdir: Path) -> None:
        # Every setup step is checked on its own, every time: a process killed half-way through
        # setting up must leave nothing that a re-run would take for "done".
        if not (workdir / ".git").is_dir():
            self._git(workdir, "init", "--quiet")
        self._git(workdir, "config", "user.name", "labeling-dag")
        self._git(workdir, "config", "user.email", "labeling-dag@localhost")
        if not (workdir / ".dvc" / "config").is_file():
            self._dvc(workdir, "init", "--force")
        settings = _dvc_settings(workdir / ".dvc" / "config")
        if settings.get(("core", "analytics")) != "false":
            self._dvc(workdir, "config", "core.analytics", "false")
        if settings.get(("cache", "type")) != _CACHE_TYPE:
            # Hardlinks cost no disk; every writer here replaces files by rename, never in place.
            self._dvc(workdir, "config", "cache.type", _CACHE_TYPE)
        _write_if_changed(workdir / ".gitignore", b".snapshot.lock\n.dvc-storage/\n.claims.sqlite*\n.locks/\n")
        # The kept pointers are records, not outputs: DVC must not read them as .dvc files; an
        # atomic write's temporary file, left by a killed process, is never part of a snapshot.
        # Every `dvc add` walks each folder DVC does not ignore, looking for .dvc files: the raw
        # store (a folder per hash prefix, per batch) and the training runs are never DVC
        # outputs, and walking them made each snapshot slower as the pool grew (4.4 of 5.4 s
        # per 5000-image batch at 100 000 images).
        _write_if_changed(workdir / ".dvcignore", b"snapshots/\n.dvc-storage/\n.*.tmp\n/raw_images/\n/training/\n")
        _write_if_changed(
            workdir / "dvc.yaml", resources.files("labeling_dag").joinpath("dvc_template.yaml").read_bytes()
        )
        remote = self.remote_url(workdir)
        endpoint = self.remote_endpoint_url or os.environ.get("LABELING_DAG_DVC_ENDPOINT_URL", "")
        wanted = {"url": remote} | ({"endpointurl": endpoint} if endpoint else {})
        # A DVC process start costs ~0.3 s: configure the remote only when it changed.
        if _remote_settings(workdir / ".dvc" / "config") != wanted:
            self._dvc(workdir, "remote", "add", "--force", "--default", "storage", remote)
            if endpoint:
                self._dvc(workdir, "remote", "modify", "storage", "endpointurl", endpoint)
        self._commit(
            workdir, "labeling-dag workdir", ".dvc/config", ".dvc/.gitignore", ".dvcignore", ".gitignore", "dvc.yaml"
        )

    def _commit(self, workdir: Path, message: str, *paths: str) -> None:
        present = [path for path in paths if (workdir / path).exists()]
        self._git(workdir, "add", "--", *present)
        staged = subprocess.run(["git", "diff", "--cached", "--quiet"], cwd=workdir, check=False)
        if staged.returncode != 0:
            self._git(workdir, "commit", "--quiet", "--message", message)

    def _git(self, workdir: Path, *args: str) -> str:
        return _run(["git", *args], workdir, what=f"git {args[0]}")

    def _add_and_push(self, workdir: Path, folder: str) -> str:
        """``dvc add`` of one folder under the workdir's lock, then a push of what it recorded;
        returns the ``.dvc`` pointer the add wrote (its text).

        One DVC process when DVC is a Python install: each DVC start costs ~0.5 s, most of a
        small batch's snapshot.
        """
        lock = str(workdir / _LOCK_FILE)
        python = _interpreter_of(self._executable())
        if python is not None:
            return _run([python, "-c", _ADD_AND_PUSH, folder, lock], workdir, what=f"dvc add + push {folder}")
        with self._locked(workdir):  # a standalone DVC binary: two commands
            self._dvc(workdir, "add", folder)
            pointer = (workdir / f"{folder}.dvc").read_text()
        self._dvc(workdir, "push", "-r", "storage", f"{folder}.dvc")
        return pointer

    def _dvc(self, workdir: Path, *args: str) -> str:
        return _run([self._executable(), "--wait-for-lock", *args], workdir, what=f"dvc {' '.join(args)}")

    def _executable(self) -> str:
        # `make setup` installs DVC in .tools/ beside the project's .venv; found there even
        # when .tools/bin is not on PATH (e.g. `.venv/bin/labeling-dag` run directly).
        beside_venv = Path(sys.prefix).parent / ".tools" / "bin" / "dvc"
        executable = shutil.which(self.executable) or (str(beside_venv) if beside_venv.exists() else None)
        if executable is None:
            raise SnapshotError(
                f"DVC executable {self.executable!r} not found on PATH; run `make setup` "
                "(it installs DVC in .tools/) or configure SnapshotStore.executable"
            )
        return executable


# Run by DVC's own interpreter (its venv, which cannot import labeling_dag: hence its own flock
# on the same lock file as atomic.file_lock), the folder and lock file passed as arguments,
# never in the code. relink=False: the files are already in the cache (hard links) after the add;
# re-linking every workspace file again costs about 2 s per 3000 files.
# The push goes through DataCloud.push with the folder's objects, not Repo.push: Repo.push
# takes DVC's repo lock (so it could not run beside another snapshot's add) and first
# collects the data index of the workspace (1.56 s against 1.11 s for a 5000-file batch at
# 40 000 images).
_ADD_AND_PUSH = """import fcntl, os, sys
from pathlib import Path

from dvc.repo import Repo

folder, lock = sys.argv[1], sys.argv[2]
# stdout carries the pointer alone: DVC's own messages go to stderr.
pointer_out = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)
with Repo(".") as repo:
    with open(lock, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        (stage,) = repo.add(folder, relink=False)
        pointer = Path(folder + ".dvc").read_text()
        fcntl.flock(handle, fcntl.LOCK_UN)
    # A folder's objects: its .dir listing and every file in it (a .dir alone is not a push).
    objects = set().union(*stage.outs[0].get_used_objs().values())
    result = repo.cloud.push(objects, remote="storage")
    if result.failed:
        sys.exit(f"dvc push of {folder} failed for {len(result.failed)} objects")
pointer_out.write(pointer)
pointer_out.close()
"""


def _interpreter_of(executable: str) -> str | None:
    """The Python interpreter of a pip-installed console script (its shebang), or None."""
    with open(Path(executable).resolve(), "rb") as script:
        first = script.readline(512)
    if not first.startswith(b"#!"):
        return None
    interpreter = first[2:].decode(errors="replace").strip()
    return interpreter if Path(interpreter).name.startswith("python") and Path(interpreter).is_file() else None


def _run(command: list[str], workdir: Path, *, what: str) -> str:
    env = os.environ | {"DVC_NO_ANALYTICS": "1", "GIT_TERMINAL_PROMPT": "0"}
    completed = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise SnapshotError(
            f"`{what}` failed in {workdir} (exit {completed.returncode}): "
            f"{completed.stderr.strip() or completed.stdout.strip()}"
        )
    return completed.stdout


_CACHE_TYPE = "reflink,hardlink,copy"
_LOCK_FILE = ".snapshot.lock"


def _write_if_changed(path: Path, content: bytes) -> None:
    if not path.is_file() or path.read_bytes() != content:
        atomic.write_bytes(path, content)


def _dvc_settings(config: Path) -> dict[tuple[str, str], str]:
    """Every ``(section, key) -> value`` of a DVC config file."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(config)
    return {(section, key): value for section in parser.sections() for key, value in parser[section].items()}


def _remote_settings(config: Path) -> dict[str, str]:
    """The settings of the ``storage`` remote in a DVC config file (empty when absent)."""
    section = "'remote \"storage\"'"
    return {key: value for (name, key), value in _dvc_settings(config).items() if name == section}


def snapshot_id_of(pointer: str) -> str:
    """The content hash a ``.dvc`` pointer's text records (DVC's md5 of the folder, without ``.dir``)."""
    outs = yaml.safe_load(pointer)["outs"]
    return str(outs[0]["md5"]).removesuffix(".dir")
