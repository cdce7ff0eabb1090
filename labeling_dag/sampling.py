"""Query strategies: which eligible images go to human review next.

The scores come from :mod:`labeling_dag.uncertainty` (in [0, 1], higher = more uncertain);
this module only decides. Every strategy is deterministic for a given ``seed``.

* ``"least_confidence"``, ``"margin"``, ``"entropy"``: the k most uncertain images by that
  measure.
* ``"random"``: k images uniformly at random.
* ``"hybrid"``: most of the batch by uncertainty, the rest at random. Pure uncertainty
  sampling only ever shows the model the hard fringe of the pool, so the labelled set
  drifts away from the distribution it will be used on; the random share keeps the easy,
  representative region in the training data.

With ``costs`` (the boxes an annotator is expected to draw per image, from
:func:`expected_boxes`) the uncertainty part ranks by uncertainty per box rather than per
image: the "return on investment" rule of cost-sensitive active learning (Settles, Craven
and Friedland 2008, "Active Learning with Real Annotation Costs"). The budget that matters
is counted in boxes, and with max-aggregated image scores an image full of objects is
usually the most uncertain one, so ranking per image spends the budget on the most
expensive images.

With ``diversity=True`` the uncertainty part is spread over the embedding space as in
pre-filtered K-means batch selection (Zhdanov 2019, "Diverse mini-batch Active
Learning"): cluster the top ``candidate_pool_factor * k_u`` candidates into ``k_u``
clusters and take one image per cluster. Zhdanov takes the member nearest each centre;
we take the most uncertain member, because the clustering already supplies the diversity
and the per-cluster choice can then stay as informative as possible.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from labeling_dag.uncertainty import MEASURES


@dataclass(frozen=True)
class Pool:
    """What a strategy sees: the eligible images' scores and the batch's settings, validated.

    ``scores`` maps measure names to arrays of shape (n,); ``embeddings`` is (n, dim) when
    diversity is asked for (else None); ``costs`` is (n,) positive or None; ``k <= n``.
    """

    scores: Mapping[str, npt.ArrayLike]
    k: int
    uncertainty_measure: str
    random_fraction: float
    embeddings: np.ndarray | None
    candidate_pool_factor: int
    costs: np.ndarray | None
    seed: int


# A strategy returns up to ``pool.k`` distinct positional indices, highest priority first.
Strategy = Callable[[Pool], np.ndarray]
STRATEGIES: dict[str, Strategy] = {}


def register(name: str) -> Callable[[Strategy], Strategy]:
    """Register a strategy under ``name``: config validation and the CLI's choices read
    :data:`STRATEGIES`, so a new strategy is this decorator on one function."""

    def add(strategy: Strategy) -> Strategy:
        if name in STRATEGIES:
            raise ValueError(f"strategy {name!r} is registered twice")
        STRATEGIES[name] = strategy
        return strategy

    return add


def strategy_names() -> tuple[str, ...]:
    """The registered strategies' names, in registration order."""
    return tuple(STRATEGIES)


def _pool_size(scores: Mapping[str, npt.ArrayLike]) -> int:
    shapes = {name: np.shape(scores[name]) for name in MEASURES if name in scores}
    if not shapes:
        raise ValueError(f"scores must hold at least one of {MEASURES}; got keys {list(scores)}")
    distinct = set(shapes.values())
    if len(distinct) != 1 or len(next(iter(distinct))) != 1:
        raise ValueError(f"scores must be 1-D arrays of one common length (n_images,); got shapes {shapes}")
    return next(iter(distinct))[0]


def _ranking_scores(scores: Mapping[str, npt.ArrayLike], measure: str) -> np.ndarray:
    if measure not in scores:
        raise ValueError(f"scores has no {measure!r} entry; got keys {list(scores)}")
    u = np.asarray(scores[measure], dtype=np.float64)
    if not np.isfinite(u).all():
        raise ValueError(f"scores[{measure!r}] contains NaN or infinite values")
    return u


def _as_embeddings(embeddings: npt.ArrayLike | None, n: int) -> np.ndarray:
    if embeddings is None:
        raise ValueError("diversity=True needs embeddings of shape (n_images, dim); got None")
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != n or x.shape[1] == 0:
        raise ValueError(f"embeddings must have shape (n_images, dim) = ({n}, dim >= 1); got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("embeddings contain NaN or infinite values")
    return x


def expected_boxes(n_boxes: npt.ArrayLike) -> np.ndarray:
    """Boxes a human is expected to draw on each image: its pre-label count, or, where the
    model found nothing, the mean count of the images where it found something (1 if it
    found nothing anywhere). A model misses objects far more often than it invents whole
    images of them, so an empty prediction is priced like an average image, not as free.

    Args:
        n_boxes: shape (n,), non-negative pre-label counts per image.

    Returns:
        shape (n,), every entry >= 1.

    Raises:
        ValueError: on a mis-shaped input, or negative or non-finite counts.
    """
    counts = np.asarray(n_boxes, dtype=np.float64)
    if counts.ndim != 1:
        raise ValueError(f"n_boxes must have shape (n,); got {counts.shape}")
    if not np.isfinite(counts).all() or (counts < 0).any():
        raise ValueError("n_boxes must hold finite, non-negative counts")
    found = counts > 0
    prior = max(1.0, float(counts[found].mean())) if found.any() else 1.0
    return np.where(found, np.maximum(counts, 1.0), prior)


def _as_costs(costs: npt.ArrayLike | None, n: int) -> np.ndarray | None:
    if costs is None:
        return None
    c = np.asarray(costs, dtype=np.float64)
    if c.shape != (n,):
        raise ValueError(f"costs must have shape (n_images,) = ({n},); got {c.shape}")
    if not np.isfinite(c).all() or (c <= 0).any():
        raise ValueError("costs must be finite and positive")
    return c


def _top(u: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest entries of ``u`` (n,), largest first, ties by lower index."""
    return np.argsort(-u, kind="stable")[:k]


def _diverse_top(u: np.ndarray, k: int, embeddings: np.ndarray, *, pool_factor: int, seed: int) -> np.ndarray:
    """k indices into ``u`` (n,): the most uncertain member of each of k clusters formed
    over the top ``pool_factor * k`` candidates' rows of ``embeddings`` (n, dim)."""
    candidates = _top(u, pool_factor * k)
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


def select_for_review(
    scores: Mapping[str, npt.ArrayLike],
    *,
    k: int,
    strategy: str = "hybrid",
    uncertainty_measure: str = "entropy",
    random_fraction: float = 0.2,
    diversity: bool = False,
    embeddings: npt.ArrayLike | None = None,
    candidate_pool_factor: int = 5,
    costs: npt.ArrayLike | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Pick up to ``k`` images for human review, in priority order.

    Args:
        scores: per-image scores of the eligible images only (the caller drops reviewed
            and rejected ones), keyed by measure name as returned by
            :func:`labeling_dag.uncertainty.image_scores`; each of shape (n,), higher =
            more uncertain. A pandas DataFrame with those columns works too. Must hold at
            least the measure the strategy ranks by (any measure, for ``"random"``).
        k: batch size, >= 1. The result has ``min(k, n)`` entries.
        strategy: a name in :data:`STRATEGIES` (see :func:`register`).
        uncertainty_measure: the measure ``"hybrid"`` ranks by, one of
            :data:`~labeling_dag.uncertainty.MEASURES`. The single-measure strategies rank
            by their own measure.
        random_fraction: share of a ``"hybrid"`` batch drawn at random, in [0, 1]; the
            uncertainty part is ``round(min(k, n) * (1 - random_fraction))``, halves
            rounded up.
        diversity: spread the uncertainty part over ``embeddings`` (see the module
            docstring). No effect on ``"random"``.
        embeddings: shape (n, dim), one row per image; required when ``diversity``.
        candidate_pool_factor: with ``diversity``, cluster the top
            ``candidate_pool_factor * k_u`` images by uncertainty; >= 1.
        costs: shape (n,), positive annotation cost of each image (e.g.
            :func:`expected_boxes`); the uncertainty part then ranks by uncertainty / cost.
            None (the default) ranks by uncertainty alone.
        seed: seeds the random draw and KMeans.

    Returns:
        shape (min(k, n),), distinct positional indices into ``scores``. The uncertainty
        part comes first, most uncertain first (ties to the lower index); the random part
        follows in draw order.

    Raises:
        ValueError: on an unknown strategy or measure, ``k <= 0``, ``random_fraction``
            outside [0, 1], ``candidate_pool_factor < 1``, missing or mis-shaped
            embeddings with ``diversity``, scores of mismatched length or with NaN, or
            mis-shaped or non-positive costs.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {strategy_names()}; got {strategy!r}")
    if uncertainty_measure not in MEASURES:
        raise ValueError(f"uncertainty_measure must be one of {MEASURES}; got {uncertainty_measure!r}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise ValueError(f"k must be a positive integer; got {k!r}")
    if not 0.0 <= random_fraction <= 1.0:  # also rejects NaN
        raise ValueError(f"random_fraction must lie in [0, 1]; got {random_fraction!r}")
    if (
        isinstance(candidate_pool_factor, bool)
        or not isinstance(candidate_pool_factor, (int, np.integer))
        or candidate_pool_factor < 1
    ):
        raise ValueError(f"candidate_pool_factor must be an integer >= 1; got {candidate_pool_factor!r}")

    n = _pool_size(scores)
    pool = Pool(
        scores=scores,
        k=min(int(k), n),
        uncertainty_measure=uncertainty_measure,
        random_fraction=random_fraction,
        embeddings=_as_embeddings(embeddings, n) if diversity else None,
        candidate_pool_factor=int(candidate_pool_factor),
        costs=_as_costs(costs, n),
        seed=seed,
    )
    return np.asarray(STRATEGIES[strategy](pool), dtype=np.intp)


def _uncertain_then_random(pool: Pool, measure: str, n_uncertain: int) -> np.ndarray:
    """The ``n_uncertain`` most uncertain images by ``measure`` (per unit of cost, spread over
    the embeddings where given), then the rest of the batch drawn at random."""
    n = _pool_size(pool.scores)
    if n_uncertain == 0:
        uncertain = np.empty(0, dtype=np.intp)
    else:
        u = _ranking_scores(pool.scores, measure)
        if pool.costs is not None:
            u = u / pool.costs
        if pool.embeddings is None:
            uncertain = _top(u, n_uncertain)
        else:
            uncertain = _diverse_top(
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
