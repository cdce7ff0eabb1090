"""Diversity: spread a batch's uncertainty part over the embedding space.

As in pre-filtered K-means batch selection (Zhdanov 2019, "Diverse mini-batch Active
Learning"): cluster the top ``candidate_pool_factor * k_u`` candidates into ``k_u`` clusters and
take one image per cluster. Zhdanov takes the member nearest each centre; we take the most
uncertain member, because the clustering already supplies the diversity and the per-cluster
choice can then stay as informative as possible.
"""

from __future__ import annotations

import numpy as np


def diverse_top(u: np.ndarray, k: int, embeddings: np.ndarray, *, pool_factor: int, seed: int) -> np.ndarray:
    """k indices into ``u`` (n,): the most uncertain member of each of k clusters formed
    over the top ``pool_factor * k`` candidates' rows of ``embeddings`` (n, dim)."""
    candidates = np.argsort(-u, kind="stable")[: pool_factor * k]  # most uncertain first, ties by lower index
    if candidates.size <= k:
        return candidates
    x = embeddings[candidates]
    # Cluster on direction only: backbone feature norms track contrast and object count
    # more than content.
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
    # Imported here: scikit-learn (with SciPy) takes over a second to import, a cost that the
    # code location, every run and every worker would otherwise pay on load.
    from sklearn.cluster import KMeans

    labels = KMeans(n_clusters=k, random_state=seed, n_init="auto").fit_predict(x)
    # candidates are in priority order, so a cluster's first member is its most uncertain.
    _, first = np.unique(labels, return_index=True)
    reps = np.sort(first)
    if reps.size < k:
        # KMeans returns fewer clusters than asked for when candidates coincide; fill the
        # batch with the next most uncertain candidates rather than return it short.
        rest = np.setdiff1d(np.arange(candidates.size), reps)
        reps = np.concatenate([reps, rest[: k - reps.size]])
    return candidates[reps]
