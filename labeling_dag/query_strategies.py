"""The built-in query strategies, each registered by name in :mod:`labeling_dag.sampling`.

The scores come from :mod:`labeling_dag.uncertainty` (in [0, 1], higher = more uncertain);
a strategy only decides. Every strategy is deterministic for a given ``seed``.

* ``"least_confidence"``, ``"margin"``, ``"entropy"``: the k most uncertain images by that
  measure.
* ``"random"``: k images uniformly at random.
* ``"hybrid"``: most of the batch by uncertainty, the rest at random. Pure uncertainty
  sampling only ever shows the model the hard fringe of the pool, so the labelled set
  drifts away from the distribution it will be used on; the random share keeps the easy,
  representative region in the training data.

The uncertainty part ranks by uncertainty per unit of cost where the pool has costs
(:mod:`labeling_dag.annotation_cost`) and is spread over the embedding space where it has
embeddings (:mod:`labeling_dag.diversity`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from labeling_dag.diversity import diverse_top
from labeling_dag.sampling import Pool, Strategy, pool_size, register
from labeling_dag.uncertainty import MEASURES


def _ranking_scores(scores: Mapping[str, npt.ArrayLike], measure: str) -> np.ndarray:
    if measure not in scores:
        raise ValueError(f"scores has no {measure!r} entry; got keys {list(scores)}")
    u = np.asarray(scores[measure], dtype=np.float64)
    if not np.isfinite(u).all():
        raise ValueError(f"scores[{measure!r}] contains NaN or infinite values")
    return u


def _top(u: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest entries of ``u`` (n,), largest first, ties by lower index."""
    return np.argsort(-u, kind="stable")[:k]


def _uncertain_then_random(pool: Pool, measure: str, n_uncertain: int) -> np.ndarray:
    """The ``n_uncertain`` most uncertain images by ``measure`` (per unit of cost, spread over
    the embeddings where given), then the rest of the batch drawn at random."""
    n = pool_size(pool.scores)
    if n_uncertain == 0:
        uncertain = np.empty(0, dtype=np.intp)
    else:
        u = _ranking_scores(pool.scores, measure)
        if pool.costs is not None:
            u = u / pool.costs
        if pool.embeddings is None:
            uncertain = _top(u, n_uncertain)
        else:
            uncertain = diverse_top(
                u, n_uncertain, pool.embeddings, pool_factor=pool.candidate_pool_factor, seed=pool.seed
            )
    rest = np.setdiff1d(np.arange(n), uncertain)
    drawn = np.random.default_rng(pool.seed).choice(rest, size=pool.k - n_uncertain, replace=False)
    return np.concatenate([uncertain, drawn]).astype(np.intp)


def _by_measure(measure: str) -> Strategy:
    def most_uncertain(pool: Pool) -> np.ndarray:
        return _uncertain_then_random(pool, measure, pool.k)

    most_uncertain.__doc__ = f"The k most uncertain images by {measure}."
    return most_uncertain


for _measure in MEASURES:
    register(_measure)(_by_measure(_measure))


@register("random")
def random_batch(pool: Pool) -> np.ndarray:
    """k images uniformly at random (costs and diversity play no part)."""
    return _uncertain_then_random(pool, pool.uncertainty_measure, 0)


@register("hybrid")
def hybrid(pool: Pool) -> np.ndarray:
    """``1 - random_fraction`` of the batch by ``uncertainty_measure``, the rest at random."""
    return _uncertain_then_random(
        pool, pool.uncertainty_measure, int(np.floor(pool.k * (1.0 - pool.random_fraction) + 0.5))
    )
