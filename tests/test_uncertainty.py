"""Unit tests for labeling_dag.uncertainty against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from labeling_dag.uncertainty import MEASURES, entropy, image_scores, least_confidence, margin


def test_measures_names_in_order() -> None:
    assert MEASURES == ("least_confidence", "margin", "entropy")


def test_already_normalised_box() -> None:
    p = np.array([[0.9, 0.1, 0.0]])
    # LC = 1 - 0.9 = 0.1
    np.testing.assert_allclose(least_confidence(p), [0.1])
    # q = p (sums to 1); margin = 1 - (0.9 - 0.1) = 0.2
    np.testing.assert_allclose(margin(p), [0.2])
    # H = -(0.9 ln 0.9 + 0.1 ln 0.1 + 0) / ln 3
    #   = -(0.9 * -0.1053605 + 0.1 * -2.3025851) / 1.0986123 = 0.3250830 / 1.0986123 = 0.2959033
    np.testing.assert_allclose(entropy(p), [0.2959033], atol=1e-7)


def test_sigmoid_scores_are_normalised_for_margin_and_entropy_only() -> None:
    p = np.array([[0.6, 0.2], [0.3, 0.1]])
    # LC reads raw scores: 1 - 0.6 = 0.4, 1 - 0.3 = 0.7
    np.testing.assert_allclose(least_confidence(p), [0.4, 0.7])
    # both rows normalise to q = [0.75, 0.25] (0.6/0.8, 0.3/0.4): margin = 1 - 0.5 = 0.5
    np.testing.assert_allclose(margin(p), [0.5, 0.5])
    # H = -(0.75 log2 0.75 + 0.25 log2 0.25) = 0.75 * 0.4150375 + 0.25 * 2 = 0.8112781
    np.testing.assert_allclose(entropy(p), [0.8112781, 0.8112781], atol=1e-7)


def test_three_class_tie_at_the_top() -> None:
    p = np.array([[0.4, 0.4, 0.2]])
    # margin = 1 - (0.4 - 0.4) = 1
    np.testing.assert_allclose(margin(p), [1.0])
    # H = -(2 * 0.4 ln 0.4 + 0.2 ln 0.2) / ln 3
    #   = (0.8 * 0.9162907 + 0.2 * 1.6094379) / 1.0986123 = 1.0549201 / 1.0986123 = 0.9602297
    np.testing.assert_allclose(entropy(p), [0.9602297], atol=1e-7)


def test_extremes() -> None:
    p = np.array(
        [
            [1.0, 0.0, 0.0],  # one-hot: certain under every measure
            [0.5, 0.5, 0.5],  # q uniform
            [0.0, 0.0, 0.0],  # no mass: treated as uniform
        ]
    )
    # LC: 1 - 1 = 0, 1 - 0.5 = 0.5, 1 - 0 = 1
    np.testing.assert_allclose(least_confidence(p), [0.0, 0.5, 1.0])
    # margin: 1 - (1 - 0) = 0; q = [1/3]*3 so 1 - (1/3 - 1/3) = 1 twice
    np.testing.assert_allclose(margin(p), [0.0, 1.0, 1.0])
    # entropy: 0; uniform H = ln 3 / ln 3 = 1 twice
    np.testing.assert_allclose(entropy(p), [0.0, 1.0, 1.0])
    assert entropy(p).max() <= 1.0


def test_single_class() -> None:
    p = np.array([[0.7], [0.0]])
    # LC: 1 - 0.7 = 0.3, 1 - 0 = 1
    np.testing.assert_allclose(least_confidence(p), [0.3, 1.0])
    # q is always [1]: no runner-up, no spread
    np.testing.assert_array_equal(margin(p), [0.0, 0.0])
    np.testing.assert_array_equal(entropy(p), [0.0, 0.0])


def test_no_boxes() -> None:
    p = np.empty((0, 4))
    for measure in (least_confidence, margin, entropy):
        assert measure(p).shape == (0,)


@pytest.mark.parametrize("measure", [least_confidence, margin, entropy])
@pytest.mark.parametrize(
    ("probs", "message"),
    [
        (np.array([0.5, 0.5]), "2-D"),
        (np.empty((3, 0)), "at least one class"),
        (np.array([[0.5, np.nan]]), "NaN"),
        (np.array([[0.5, 1.2]]), r"\[0, 1\]"),
        (np.array([[-0.1, 0.5]]), r"\[0, 1\]"),
    ],
)
def test_measures_reject_bad_probs(measure, probs: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        measure(probs)


@settings(max_examples=100, deadline=None)
@given(
    arrays(
        np.float64,
        st.tuples(st.integers(0, 8), st.integers(1, 6)),
        elements=st.floats(0.0, 1.0, allow_nan=False),
    )
)
def test_measures_stay_in_unit_interval(p: np.ndarray) -> None:
    for measure in (least_confidence, margin, entropy):
        scores = measure(p)
        assert scores.shape == (p.shape[0],)
        assert np.all((scores >= 0.0) & (scores <= 1.0))


# Three boxes over four images: two on image 0, one on image 2, none on images 1 and 3.
BOX_IMAGE = np.array([0, 0, 2])
BOX_PROBS = np.array([[0.9, 0.1], [0.5, 0.5], [0.8, 0.2]])
# Per box, all already normalised:
#   LC      = [0.1, 0.5, 0.2]
#   margin  = [1 - 0.8, 1 - 0, 1 - 0.6] = [0.2, 1.0, 0.4]
#   entropy = [H2(0.1), H2(0.5), H2(0.2)] = [0.4689956, 1.0, 0.7219281]   (H2 = binary, bits)


def test_image_scores_max() -> None:
    out = image_scores(BOX_IMAGE, BOX_PROBS, 4)
    assert tuple(out) == MEASURES
    # image 0 = max of boxes 0 and 1; images 1, 3 empty -> 1.0; image 2 = box 2
    np.testing.assert_allclose(out["least_confidence"], [0.5, 1.0, 0.2, 1.0])
    np.testing.assert_allclose(out["margin"], [1.0, 1.0, 0.4, 1.0])
    np.testing.assert_allclose(out["entropy"], [1.0, 1.0, 0.7219281, 1.0], atol=1e-7)


def test_image_scores_mean() -> None:
    out = image_scores(BOX_IMAGE, BOX_PROBS, 4, aggregate="mean")
    # image 0: LC (0.1 + 0.5) / 2 = 0.3; margin (0.2 + 1.0) / 2 = 0.6;
    #          entropy (0.4689956 + 1.0) / 2 = 0.7344978
    np.testing.assert_allclose(out["least_confidence"], [0.3, 1.0, 0.2, 1.0])
    np.testing.assert_allclose(out["margin"], [0.6, 1.0, 0.4, 1.0])
    np.testing.assert_allclose(out["entropy"], [0.7344978, 1.0, 0.7219281, 1.0], atol=1e-7)


def test_image_scores_empty_score_zero_for_pools_with_true_negatives() -> None:
    out = image_scores(BOX_IMAGE, BOX_PROBS, 4, empty_score=0.0)
    np.testing.assert_allclose(out["least_confidence"], [0.5, 0.0, 0.2, 0.0])
    np.testing.assert_allclose(out["margin"], [1.0, 0.0, 0.4, 0.0])


def test_image_scores_max_keeps_a_zero_score_box() -> None:
    # a one-hot box scores 0 everywhere; its image must score 0, not empty_score
    out = image_scores(np.array([1]), np.array([[1.0, 0.0]]), 2)
    np.testing.assert_array_equal(out["margin"], [1.0, 0.0])


def test_image_scores_without_any_box() -> None:
    # np.asarray([]) is float64: an empty index is still accepted
    out = image_scores([], np.empty((0, 3)), 2, empty_score=0.25)
    for name in MEASURES:
        np.testing.assert_array_equal(out[name], [0.25, 0.25])
    assert all(v.shape == (0,) for v in image_scores([], np.empty((0, 3)), 0).values())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"box_image_index": np.array([0, 0])}, r"shape \(n_boxes,\)"),
        ({"box_image_index": np.array([[0, 0, 2]])}, r"shape \(n_boxes,\)"),
        ({"box_image_index": np.array([0.0, 0.0, 2.0])}, "integers"),
        ({"box_image_index": np.array([0, 0, 4])}, r"\[0, n_images\)"),
        ({"box_image_index": np.array([-1, 0, 2])}, r"\[0, n_images\)"),
        ({"n_images": -1}, "non-negative integer"),
        ({"n_images": 4.0}, "non-negative integer"),
        ({"aggregate": "median"}, "aggregate"),
        ({"empty_score": 1.5}, "empty_score"),
        ({"empty_score": float("nan")}, "empty_score"),
        ({"probs": np.array([[0.9, 0.1], [0.5, np.nan], [0.8, 0.2]])}, "NaN"),
        ({"probs": np.array([[0.9, 0.1], [0.5, 1.5], [0.8, 0.2]])}, r"\[0, 1\]"),
    ],
)
def test_image_scores_rejects_bad_input(kwargs: dict, message: str) -> None:
    args = {"box_image_index": BOX_IMAGE, "probs": BOX_PROBS, "n_images": 4} | kwargs
    with pytest.raises(ValueError, match=message):
        image_scores(args.pop("box_image_index"), args.pop("probs"), args.pop("n_images"), **args)
