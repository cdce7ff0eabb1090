"""The model registry: which weights exist, where they came from, which one is current.

Ultralytics checkpoints are pickles (``torch.load(weights_only=False)``) and so can run
code when loaded. The registry records the sha256 of every weights file it accepts and
hands a path out only after re-hashing it: a swapped or tampered file is refused, and so is
an entry pointing anywhere but the registry's own copy of those bytes.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from labeling_dag import atomic
from labeling_dag.contracts import MODEL_REGISTRY
from labeling_dag.records import ModelEntry

_SHA256 = re.compile(r"[0-9a-f]{64}")


class ModelIntegrityError(RuntimeError):
    """A weights file is missing, is not the registry's own copy, or no longer matches its sha256."""


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class ModelRegistry:
    """A folder of content-addressed weights (``<sha256>.pt``) and a ``registry.json`` index."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.folder = self.workdir / MODEL_REGISTRY.folder
        self.index_file = self.folder / "registry.json"

    def _load(self) -> dict:
        if not self.index_file.exists():
            return {"current": None, "models": {}}
        return json.loads(self.index_file.read_text())

    def entries(self) -> list[ModelEntry]:
        """Every registered model, oldest first."""
        models = self._load()["models"].values()
        return sorted((_entry(raw) for raw in models), key=lambda entry: entry.created_at)

    def get(self, model_version: str) -> ModelEntry:
        """The entry for ``model_version``; KeyError names the version when unknown."""
        raw = self._load()["models"].get(model_version)
        if raw is None:
            raise KeyError(f"model {model_version} is not in {self.index_file}")
        return _entry(raw)

    def current(self) -> ModelEntry | None:
        """The model that pre-labels the pool now, or None before the first model exists."""
        index = self._load()
        return _entry(index["models"][index["current"]]) if index["current"] else None

    def candidate(self) -> ModelEntry | None:
        """The latest retrained model awaiting promotion, or None."""
        index = self._load()
        return _entry(index["models"][index["candidate"]]) if index.get("candidate") else None

    def promote(self, model_version: str) -> ModelEntry:
        """Make a registered model current (it then pre-labels the pool)."""
        index = self._load()
        if model_version not in index["models"]:
            raise KeyError(f"model {model_version} is not in {self.index_file}")
        _make_current(index, model_version)
        atomic.write_json(self.index_file, index)
        return _entry(index["models"][model_version])

    def promotions(self) -> list[str]:
        """Versions of every model ever promoted, in promotion order (its release number is the position + 1)."""
        return list(self._load().get("promoted", []))

    def register(
        self,
        weights: Path,
        *,
        task: str,
        class_names: tuple[str, ...],
        source: str,
        parent: str | None = None,
        metrics: dict[str, float] | None = None,
        training_snapshot: str = "",
        make_current: bool = True,
        promoted: bool = False,
    ) -> ModelEntry:
        """Copy ``weights`` into the registry under its sha256 and record it as current (with
        ``make_current=False``: as the candidate awaiting promotion).

        Registering the same bytes twice returns the existing entry (idempotent: the index is
        not rewritten when nothing changes) and restores the stored copy if it went missing
        or was altered.

        ``promoted=True`` is for a promoted model brought back from a snapshot: it becomes current
        and counts as promoted, and a candidate awaiting promotion is left alone.
        """
        index = self._load()
        before = json.dumps(index, sort_keys=True)
        version, target = self._store_copy(index, weights)
        if version not in index["models"]:
            index["models"][version] = asdict(
                ModelEntry(
                    model_version=version,
                    path=str(target.relative_to(self.workdir)),
                    task=task,
                    class_names=tuple(class_names),
                    parent=parent,
                    source=source,
                    created_at=datetime.now(UTC).isoformat(),
                    metrics=dict(metrics or {}),
                    training_snapshot=training_snapshot,
                )
            )
        if promoted:
            _make_current(index, version)
        else:
            index["current" if make_current else "candidate"] = version
        self._save(index, before)
        return _entry(index["models"][version])

    def _store_copy(self, index: dict, weights: Path) -> tuple[str, Path]:
        """The version (sha256) of ``weights`` and the registry's copy of them, written when missing or altered."""
        version = file_sha256(weights)
        known = index["models"].get(version)
        # A model restored from its DVC snapshot (model_store/model.pt) keeps the copy it was registered with.
        target = self.workdir / known["path"] if known else self.folder / f"{version}{_suffix(weights)}"
        if target.is_symlink() or not target.exists() or file_sha256(target) != version:
            atomic.copy_file(weights, target)
        return version, target

    def _save(self, index: dict, before: str) -> None:
        if json.dumps(index, sort_keys=True) != before or not self.index_file.exists():
            atomic.write_json(self.index_file, index)

    def verified_path(self, entry: ModelEntry) -> Path:
        """The weights path of ``entry`` after checking its bytes still hash to its version.

        Only the registry's own copy, ``models/<sha256>.pt`` (``.json`` for a text model), a regular
        file, is ever handed
        out: an entry naming another path (an edited ``registry.json``) or a symlink put in
        the copy's place is refused before anything is read.
        """
        if not _SHA256.fullmatch(entry.model_version):
            raise ModelIntegrityError(
                f"{self.index_file}: model version {entry.model_version!r} is not a sha256; refusing to load"
            )
        copies = {
            str((self.folder / f"{entry.model_version}{suffix}").relative_to(self.workdir)) for suffix in _SUFFIXES
        }
        path = self.workdir / entry.path
        if entry.path not in copies:
            raise ModelIntegrityError(
                f"{self.index_file}: model {entry.model_version} is registered at {entry.path!r}, "
                f"not at the registry's copy {self.folder / entry.model_version}.*; refusing to load"
            )
        if path.is_symlink():
            raise ModelIntegrityError(f"{path}: weights of model {entry.model_version} are a symlink; refusing to load")
        if not path.exists():
            raise ModelIntegrityError(f"{path}: weights of model {entry.model_version} are missing")
        actual = file_sha256(path)
        if actual != entry.model_version:
            raise ModelIntegrityError(
                f"{path}: sha256 {actual} does not match registered model version {entry.model_version}; "
                "refusing to load"
            )
        return path


# The weights files the registry keeps, by suffix: ultralytics checkpoints, and the JSON of a text
# classifier (resources/text_classifier.py), kept as JSON so an auditor can read it.
_SUFFIXES = (".pt", ".json")


def _suffix(weights: Path) -> str:
    """The suffix of the registry's copy of ``weights``."""
    suffix = Path(weights).suffix.lower()
    return suffix if suffix in _SUFFIXES else ".pt"


def _make_current(index: dict, version: str) -> None:
    """Name ``version`` current in ``index``: it stops being the candidate and counts as promoted."""
    index["current"] = version
    if index.get("candidate") == version:
        index["candidate"] = None
    promoted = index.setdefault("promoted", [])
    if version not in promoted:
        promoted.append(version)


def _entry(raw: dict) -> ModelEntry:
    return ModelEntry(**{**raw, "class_names": tuple(raw["class_names"])})
