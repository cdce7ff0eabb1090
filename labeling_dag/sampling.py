"""Which eligible images go to human review next: the registry of query strategies and
:func:`select_for_review`, which validates a batch's settings and runs one strategy on them.

A strategy is one function from a :class:`Pool` to positional indices, registered by name with
:func:`register`; config validation and the CLI's choices read the registry. The built-in ones
(:mod:`labeling_dag.query_strategies`) register themselves when this module is imported. With
``costs`` (:mod:`labeling_dag.annotation_cost`) the uncertainty part of a batch ranks by
uncertainty per box; with ``diversity=True`` it is spread over the embedding space
(:mod:`labeling_dag.diversity`).
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


def pool_size(scores: Mapping[str, npt.ArrayLike]) -> int:
    """How many images ``scores`` holds: the common length of its measures' 1-D arrays."""
    shapes = {name: np.shape(scores[name]) for name in MEASURES if name in scores}
    if not shapes:
        raise ValueError(f"scores must hold at least one of {MEASURES}; got keys {list(scores)}")
    distinct = set(shapes.values())
    if len(distinct) != 1 or len(next(iter(distinct))) != 1:
        raise ValueError(f"scores must be 1-D arrays of one common length (n_images,); got shapes {shapes}")
    return next(iter(distinct))[0]


def _as_embeddings(embeddings: npt.ArrayLike | None, n: int) -> np.ndarray:
    if embeddings is None:
        raise ValueError("diversity=True needs embeddings of shape (n_images, dim); got None")
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != n or x.shape[1] == 0:
        raise ValueError(f"embeddings must have shape (n_images, dim) = ({n}, dim >= 1); got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("embeddings contain NaN or infinite values")
    return x


def _as_costs(costs: npt.ArrayLike | None, n: int) -> np.ndarray | None:
    if costs is None:
        return None
    c = np.asarray(costs, dtype=np.float64)
    if c.shape != (n,):
        raise ValueError(f"costs must have shape (n_images,) = ({n},); got {c.shape}")
    if not np.isfinite(c).all() or (c <= 0).any():
        raise ValueError("costs must be finite and positive")
    return c


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
        diversity: spread the uncertainty part over ``embeddings`` (see
            :mod:`labeling_dag.diversity`). No effect on ``"random"``.
        embeddings: shape (n, dim), one row per image; required when ``diversity``.
        candidate_pool_factor: with ``diversity``, cluster the top
            ``candidate_pool_factor * k_u`` images by uncertainty; >= 1.
        costs: shape (n,), positive annotation cost of each image (e.g.
            :func:`~labeling_dag.annotation_cost.expected_boxes`); the uncertainty part then ranks
            by uncertainty / cost. None (the default) ranks by uncertainty alone.
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

    n = pool_size(scores)
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


# The built-in strategies register themselves on import; imported last, once the registry exists.
import labeling_dag.query_strategies  # noqa: E402, F401
