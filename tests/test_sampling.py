"""Unit tests for labeling_dag.sampling."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labeling_dag.annotation_cost import expected_boxes
from labeling_dag.sampling import STRATEGIES, register, select_for_review, strategy_names

# Five images; each measure ranks them differently.
SCORES = {
    "least_confidence": np.array([0.5, 0.1, 0.2, 0.3, 0.4]),
    "margin": np.array([0.2, 0.3, 0.9, 0.1, 0.8]),
    "entropy": np.array([0.1, 0.9, 0.5, 0.9, 0.3]),
}


def _descending(n: int) -> dict[str, np.ndarray]:
    """Scores where image i is the i-th most uncertain under every measure."""
    u = np.linspace(1.0, 0.0, n)
    return {"least_confidence": u, "margin": u, "entropy": u}


def test_strategies() -> None:
    assert strategy_names() == ("least_confidence", "margin", "entropy", "random", "hybrid")


def test_a_registered_function_is_a_strategy() -> None:
    @register("lowest_index_first")
    def lowest_index_first(pool):
        return np.arange(pool.k)

    try:
        assert "lowest_index_first" in strategy_names()
        assert select_for_review(SCORES, k=3, strategy="lowest_index_first").tolist() == [0, 1, 2]
        with pytest.raises(ValueError, match="registered twice"):
            register("lowest_index_first")(lowest_index_first)
    finally:
        del STRATEGIES["lowest_index_first"]


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        # LC 0.5 > 0.4 > 0.3 -> images 0, 4, 3
        ("least_confidence", [0, 4, 3]),
        # margin 0.9 > 0.8 > 0.3 -> images 2, 4, 1
        ("margin", [2, 4, 1]),
        # entropy 0.9 = 0.9 > 0.5 -> images 1, 3 (tie, lower index first), then 2
        ("entropy", [1, 3, 2]),
    ],
)
def test_uncertainty_strategies_take_top_k(strategy: str, expected: list[int]) -> None:
    picked = select_for_review(SCORES, k=3, strategy=strategy)
    np.testing.assert_array_equal(picked, expected)
    assert np.issubdtype(picked.dtype, np.integer)


def test_single_measure_strategy_ignores_uncertainty_measure() -> None:
    picked = select_for_review(SCORES, k=2, strategy="margin", uncertainty_measure="entropy")
    np.testing.assert_array_equal(picked, [2, 4])


def test_k_larger_than_pool_returns_everything_in_priority_order() -> None:
    # entropy order: 1, 3 (tie at 0.9), 2 (0.5), 4 (0.3), 0 (0.1)
    picked = select_for_review(SCORES, k=50, strategy="entropy")
    np.testing.assert_array_equal(picked, [1, 3, 2, 4, 0])


def test_dataframe_scores() -> None:
    frame = pd.DataFrame(SCORES | {"image_id": list("abcde")})
    np.testing.assert_array_equal(select_for_review(frame, k=3, strategy="entropy"), [1, 3, 2])


def test_random_is_seeded_and_ignores_scores() -> None:
    scores = _descending(100)
    reversed_scores = {name: u[::-1] for name, u in scores.items()}
    first = select_for_review(scores, k=10, strategy="random", seed=7)
    again = select_for_review(scores, k=10, strategy="random", seed=7)
    other_scores = select_for_review(reversed_scores, k=10, strategy="random", seed=7)
    other_seed = select_for_review(scores, k=10, strategy="random", seed=8)
    assert len(set(first.tolist())) == 10
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first, other_scores)
    assert not np.array_equal(first, other_seed)


def test_random_needs_no_particular_measure() -> None:
    picked = select_for_review({"margin": np.zeros(4)}, k=9, strategy="random")
    assert sorted(picked.tolist()) == [0, 1, 2, 3]


def test_hybrid_splits_uncertain_then_random() -> None:
    scores = _descending(50)
    picked = select_for_review(scores, k=10, strategy="hybrid", random_fraction=0.2, seed=3)
    # round(10 * 0.8) = 8 by uncertainty: images 0..7, most uncertain first
    np.testing.assert_array_equal(picked[:8], np.arange(8))
    # the other 2 are drawn from images 8..49, without repeats
    assert len(picked) == 10
    assert len(set(picked.tolist())) == 10
    assert all(i >= 8 for i in picked[8:])
    np.testing.assert_array_equal(
        picked, select_for_review(scores, k=10, strategy="hybrid", random_fraction=0.2, seed=3)
    )


def test_hybrid_rounds_half_up() -> None:
    # 5 * (1 - 0.5) = 2.5 -> 3 by uncertainty (Python's round would give 2)
    picked = select_for_review(_descending(20), k=5, random_fraction=0.5)
    np.testing.assert_array_equal(picked[:3], [0, 1, 2])
    assert all(i >= 3 for i in picked[3:])


def test_hybrid_extremes_match_pure_strategies() -> None:
    scores = _descending(30)
    np.testing.assert_array_equal(
        select_for_review(scores, k=6, random_fraction=0.0),
        select_for_review(scores, k=6, strategy="entropy"),
    )
    np.testing.assert_array_equal(
        select_for_review(scores, k=6, random_fraction=1.0, seed=4),
        select_for_review(scores, k=6, strategy="random", seed=4),
    )


def test_hybrid_uses_the_chosen_measure() -> None:
    # k = 2, fraction 0.5: round(1.0) = 1 by margin -> image 2 (0.9)
    picked = select_for_review(SCORES, k=2, uncertainty_measure="margin", random_fraction=0.5)
    assert picked[0] == 2
    assert picked[1] != 2


# Three tight blobs of 10 images each, 120 degrees apart on the unit circle. Blob A
# (images 0-9) holds every high score, B (10-19) the middle, C (20-29) the low ones.
_ANGLES = np.repeat(np.deg2rad([0.0, 120.0, 240.0]), 10)
_JITTER = np.random.default_rng(0).normal(scale=0.01, size=(30, 2))
BLOB_EMBEDDINGS = 3.0 * np.column_stack([np.cos(_ANGLES), np.sin(_ANGLES)]) + _JITTER
BLOB_UNCERTAINTY = np.concatenate(
    [
        np.linspace(0.99, 0.90, 10),  # A: image 0 highest
        np.linspace(0.59, 0.50, 10),  # B: image 10 highest
        np.linspace(0.19, 0.10, 10),  # C: image 20 highest
    ]
)
BLOB_SCORES = {"entropy": BLOB_UNCERTAINTY}


def test_without_diversity_all_picks_come_from_one_blob() -> None:
    picked = select_for_review(BLOB_SCORES, k=3, strategy="entropy")
    np.testing.assert_array_equal(picked, [0, 1, 2])


def test_diversity_takes_the_most_uncertain_of_each_blob() -> None:
    # pool = top 10 * 3 = all 30; KMeans(3) recovers the blobs; each blob's most
    # uncertain member is its first image, and the three come out in score order.
    picked = select_for_review(
        BLOB_SCORES,
        k=3,
        strategy="entropy",
        diversity=True,
        embeddings=BLOB_EMBEDDINGS,
        candidate_pool_factor=10,
    )
    np.testing.assert_array_equal(picked, [0, 10, 20])


def test_diversity_only_clusters_the_candidate_pool() -> None:
    # pool = top 5 * 3 = 15 = blob A and images 10-14 of B: blob C cannot be picked
    picked = select_for_review(BLOB_SCORES, k=3, strategy="entropy", diversity=True, embeddings=BLOB_EMBEDDINGS)
    assert len(set(picked.tolist())) == 3
    assert all(i < 15 for i in picked)
    assert any(10 <= i < 15 for i in picked)


def test_diversity_in_hybrid_shapes_only_the_uncertain_part() -> None:
    # k = 5, fraction 0.4: round(3.0) = 3 diverse picks, then 2 random ones
    picked = select_for_review(
        BLOB_SCORES,
        k=5,
        random_fraction=0.4,
        diversity=True,
        embeddings=BLOB_EMBEDDINGS,
        candidate_pool_factor=10,
        seed=1,
    )
    np.testing.assert_array_equal(picked[:3], [0, 10, 20])
    assert len(set(picked.tolist())) == 5


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_diversity_with_coincident_embeddings_still_fills_the_batch() -> None:
    # one distinct point -> one cluster; the other two slots go to the next most uncertain
    picked = select_for_review(BLOB_SCORES, k=3, strategy="entropy", diversity=True, embeddings=np.ones((30, 4)))
    np.testing.assert_array_equal(picked, [0, 1, 2])


def _call(**overrides):
    kwargs = {"scores": SCORES, "k": 2} | overrides
    return select_for_review(kwargs.pop("scores"), **kwargs)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"k": 0}, "k must be a positive integer"),
        ({"k": -3}, "k must be a positive integer"),
        ({"k": 2.0}, "k must be a positive integer"),
        ({"strategy": "bald"}, "strategy must be one of"),
        ({"uncertainty_measure": "variance"}, "uncertainty_measure must be one of"),
        ({"random_fraction": 1.5}, "random_fraction"),
        ({"random_fraction": float("nan")}, "random_fraction"),
        ({"candidate_pool_factor": 0}, "candidate_pool_factor"),
        ({"diversity": True}, "needs embeddings"),
        ({"diversity": True, "embeddings": np.zeros((4, 2))}, r"shape \(n_images, dim\)"),
        ({"diversity": True, "embeddings": np.zeros(5)}, r"shape \(n_images, dim\)"),
        (
            {"diversity": True, "embeddings": np.full((5, 2), np.nan)},
            "embeddings contain NaN",
        ),
        ({"scores": SCORES | {"margin": np.zeros(4)}}, "common length"),
        ({"scores": {"entropy": np.zeros((5, 1))}}, "1-D"),
        ({"scores": {"image_id": np.arange(5)}}, "at least one of"),
        ({"scores": {"margin": np.zeros(5)}}, "no 'entropy' entry"),
        ({"scores": {"entropy": np.array([0.1, np.nan, 0.2])}}, "NaN"),
    ],
)
def test_rejects_bad_arguments(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _call(**overrides)


# drawn embeddings often coincide, which makes KMeans warn about finding fewer clusters
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    n=st.integers(0, 40),
    k=st.integers(1, 60),
    strategy=st.sampled_from(strategy_names()),
    random_fraction=st.floats(0.0, 1.0),
    diversity=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_selection_is_unique_in_range_and_sized(
    data: st.DataObject,
    n: int,
    k: int,
    strategy: str,
    random_fraction: float,
    diversity: bool,
    seed: int,
) -> None:
    unit = st.floats(0.0, 1.0)
    scores = {
        "least_confidence": np.array(data.draw(st.lists(unit, min_size=n, max_size=n))),
        "margin": np.array(data.draw(st.lists(unit, min_size=n, max_size=n))),
        "entropy": np.array(data.draw(st.lists(unit, min_size=n, max_size=n))),
    }
    embeddings = np.array(data.draw(st.lists(st.tuples(unit, unit), min_size=n, max_size=n))).reshape(n, 2)
    picked = select_for_review(
        scores,
        k=k,
        strategy=strategy,
        random_fraction=random_fraction,
        diversity=diversity,
        embeddings=embeddings,
        seed=seed,
    )
    assert picked.shape == (min(k, n),)
    assert len(set(picked.tolist())) == picked.size
    assert np.all((picked >= 0) & (picked < n))


def test_expected_boxes_prices_an_empty_prediction_like_an_average_image() -> None:
    # Found boxes on images 0, 1, 3 (mean 2); image 2's empty prediction costs that mean.
    assert expected_boxes([1, 3, 0, 2]).tolist() == [1.0, 3.0, 2.0, 2.0]
    # Nothing found anywhere: every image costs one box, never zero.
    assert expected_boxes([0, 0]).tolist() == [1.0, 1.0]


@pytest.mark.parametrize("bad", [[-1, 2], [np.nan, 1], [[1, 2]]])
def test_expected_boxes_rejects_negative_nan_or_misshaped_counts(bad) -> None:
    with pytest.raises(ValueError, match="n_boxes"):
        expected_boxes(bad)


def test_costs_rank_by_uncertainty_per_box() -> None:
    # entropy 0.1, 0.9, 0.5, 0.9, 0.3 over costs 1, 4, 1, 2, 1 -> per box 0.1, 0.225, 0.5, 0.45, 0.3
    costs = [1, 4, 1, 2, 1]
    picked = select_for_review(SCORES, k=3, strategy="entropy", costs=costs)
    assert picked.tolist() == [2, 3, 4]
    # Without costs the two most uncertain images are the two most expensive ones.
    assert select_for_review(SCORES, k=2, strategy="entropy").tolist() == [1, 3]


def test_costs_leave_the_random_part_unchanged() -> None:
    u = _descending(20)
    plain = select_for_review(u, k=10, strategy="hybrid", random_fraction=0.5, seed=3)
    costed = select_for_review(u, k=10, strategy="hybrid", random_fraction=0.5, seed=3, costs=np.ones(20))
    assert plain.tolist() == costed.tolist()  # unit costs: the same ranking, the same draw
    assert select_for_review(u, k=5, strategy="random", seed=1, costs=np.arange(1, 21)).tolist() == (
        select_for_review(u, k=5, strategy="random", seed=1).tolist()
    )


@pytest.mark.parametrize("bad", [[1, 1, 1], [1, 0, 1, 1, 1], [1, np.inf, 1, 1, 1]])
def test_costs_must_match_the_pool_and_be_positive(bad) -> None:
    with pytest.raises(ValueError, match="costs"):
        select_for_review(SCORES, k=2, strategy="entropy", costs=bad)
