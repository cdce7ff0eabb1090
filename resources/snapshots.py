"""Immutable dataset snapshots with DVC, driven through its command line.

DVC runs as a separate tool (its own virtualenv, on PATH as ``dvc``) rather than a
library: its hydra dependency pins antlr4 4.9 while Dagster's asset-selection parser
needs 4.13, so the two cannot share an environment. Every call takes an argument list,
never a shell string.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import dagster as dg
import yaml

from labeling_dag import atomic


class SnapshotError(RuntimeError):
    """A DVC command failed or a snapshot id is unknown."""


class SnapshotStore(dg.ConfigurableResource):
    """Snapshots workdir folders with ``dvc add`` and pushes them to a DVC remote.

    The workdir is its own DVC repository (``dvc init --no-scm``). Each snapshot's ``.dvc``
    file is kept under ``snapshots/<folder>/<snapshot_id>.dvc``, which is all that is
    needed to bring that exact content back from the cache or the remote.
    """

    remote: str = ""  # a local folder or any DVC remote URL; "" = <workdir>/.dvc-storage
    executable: str = "dvc"

    def snapshot(self, workdir: Path, folder: str, *, run_id: str) -> str:
        """Record the current content of ``workdir/folder``, push it, and return its snapshot id.

        The snapshot and the run that made it are appended to the folder's history, which is
        how lineage maps a run (and every row it wrote) to the snapshots holding it.
        """
        workdir = Path(workdir)
        self._ensure_repo(workdir)
        self._dvc(workdir, "add", folder)
        pointer = workdir / f"{folder}.dvc"
        snapshot_id = snapshot_id_of(pointer)
        kept = self.pointer_path(workdir, folder, snapshot_id)
        if not kept.exists():
            atomic.copy_file(pointer, kept)
        self._dvc(workdir, "push", "-r", "storage", str(pointer.name))
        history = self.history(workdir, folder)
        history.append({"snapshot_id": snapshot_id, "run_id": run_id, "created_at": datetime.now(UTC).isoformat()})
        atomic.write_json(self.history_path(workdir, folder), history)
        return snapshot_id

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
        self._ensure_repo(workdir)
        atomic.copy_file(kept, workdir / f"{folder}.dvc")
        self._dvc(workdir, "pull", "--force", "-r", "storage", f"{folder}.dvc")
        return workdir / folder

    @staticmethod
    def pointer_path(workdir: Path, folder: str, snapshot_id: str) -> Path:
        """Where the ``.dvc`` pointer of one snapshot is kept."""
        return Path(workdir) / "snapshots" / folder / f"{snapshot_id}.dvc"

    def _ensure_repo(self, workdir: Path) -> None:
        remote = self.remote or str(workdir / ".dvc-storage")
        if not (workdir / ".dvc").is_dir():
            workdir.mkdir(parents=True, exist_ok=True)
            self._dvc(workdir, "init", "--no-scm", "--force")
            self._dvc(workdir, "config", "core.analytics", "false")
            # Hardlinks cost no disk; every writer here replaces files by rename, never in place.
            self._dvc(workdir, "config", "cache.type", "reflink,hardlink,copy")
            (workdir / ".dvcignore").write_text("snapshots/\n.dvc-storage/\n")
        template = resources.files("labeling_dag").joinpath("dvc_template.yaml").read_text()
        if not (workdir / "dvc.yaml").exists() or (workdir / "dvc.yaml").read_text() != template:
            atomic.write_bytes(workdir / "dvc.yaml", template.encode())
        self._dvc(workdir, "remote", "add", "--force", "--default", "storage", remote)

    def _dvc(self, workdir: Path, *args: str) -> str:
        # `make setup` installs DVC in .tools/ beside the project's .venv; found there even
        # when .tools/bin is not on PATH (e.g. `.venv/bin/labeling-dag` run directly).
        beside_venv = Path(sys.prefix).parent / ".tools" / "bin" / "dvc"
        executable = shutil.which(self.executable) or (str(beside_venv) if beside_venv.exists() else None)
        if executable is None:
            raise SnapshotError(
                f"DVC executable {self.executable!r} not found on PATH; run `make setup` "
                "(it installs DVC in .tools/) or configure SnapshotStore.executable"
            )
        env = os.environ | {"DVC_NO_ANALYTICS": "1"}
        command = [executable, "--wait-for-lock", *args]
        completed = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, check=False)
        if completed.returncode != 0:
            raise SnapshotError(
                f"`dvc {' '.join(args)}` failed in {workdir} (exit {completed.returncode}): "
                f"{completed.stderr.strip() or completed.stdout.strip()}"
            )
        return completed.stdout


def snapshot_id_of(pointer: Path) -> str:
    """The content hash a ``.dvc`` pointer records (DVC's md5 of the folder, without ``.dir``)."""
    outs = yaml.safe_load(pointer.read_text())["outs"]
    return str(outs[0]["md5"]).removesuffix(".dir")
