"""Tests for labeling functions (writing, loading, applying) and for combining their votes."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from labeling_dag.labeling_functions import (
    ABSTAIN,
    LabelingFunction,
    apply_labeling_functions,
    keyword_lf,
    labeling_function,
    load_labeling_functions,
    regex_lf,
)
from labeling_dag.weak_supervision import combine_votes, lf_summary

CLASSES = ("business", "politics", "sport")


def _noisy_votes(
    accuracies: tuple[float, ...], *, n_texts: int = 300, n_classes: int = 3, coverage: float = 0.5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Votes of independent labeling functions with the given accuracies, and the true classes."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, n_classes, n_texts)
    votes = np.full((n_texts, len(accuracies)), ABSTAIN)
    for column, accuracy in enumerate(accuracies):
        votes_here = rng.random(n_texts) < coverage
        wrong_class = (truth + rng.integers(1, n_classes, n_texts)) % n_classes
        guess = np.where(rng.random(n_texts) < accuracy, truth, wrong_class)
        votes[votes_here, column] = guess[votes_here]
    return votes, truth


# --- writing labeling functions ---------------------------------------------------------


def test_decorator_names_the_function_and_votes_or_abstains() -> None:
    @labeling_function()
    def mentions_goal(text: str) -> str | None:
        return "sport" if "goal" in text else None

    @labeling_function(name="renamed")
    def other(text: str) -> str | None:
        return None

    assert isinstance(mentions_goal, LabelingFunction)
    assert mentions_goal.name == "mentions_goal"
    assert other.name == "renamed"
    assert mentions_goal("a late goal") == "sport"
    assert mentions_goal("a budget") is None


def test_decorator_without_parentheses_says_how_to_write_it() -> None:
    def bare(text: str) -> str | None:
        return None

    with pytest.raises(TypeError, match=r"@labeling_function\(\).*'bare'"):
        labeling_function(bare)  # type: ignore[arg-type]


def test_keyword_lf_matches_whole_words_ignoring_case() -> None:
    lf = keyword_lf("art", ["art", "C++"], "business")
    assert lf.name == "art"
    assert lf("Modern ART on show") == "business"
    assert lf("written in c++, mostly") == "business"
    assert lf("a party in the park") is None
    assert lf("c++x") is None


def test_keyword_lf_substrings_when_asked() -> None:
    lf = keyword_lf("art", ["art"], "business", whole_words=False)
    assert lf("a party in the park") == "business"
    assert lf("nothing here") is None


def test_regex_lf_ignores_case_by_default_and_honours_flags() -> None:
    default = regex_lf("profit", r"\bq[1-4] profit", "business")
    strict = regex_lf("profit_strict", r"\bq[1-4] profit", "business", flags=0)
    assert default("Q3 Profit rose") == "business"
    assert strict("Q3 Profit rose") is None
    assert strict("q3 profit rose") == "business"
    assert default("profit in q5") is None


def test_regex_lf_with_invalid_pattern_names_the_function() -> None:
    with pytest.raises(ValueError, match="regex_lf 'broken': invalid pattern"):
        regex_lf("broken", "(unclosed", "business")


# --- loading a user's file --------------------------------------------------------------

LF_FILE = """
from labeling_dag.labeling_functions import labeling_function

def _normalise(text):
    return text.lower()

@labeling_function()
def zebra_first(text):
    return "sport" if "match" in _normalise(text) else None

@labeling_function(name="alpha_second")
def second(text):
    return None
"""


def test_load_returns_the_decorated_functions_in_definition_order(tmp_path: Path) -> None:
    path = tmp_path / "lfs.py"
    path.write_text(LF_FILE)

    lfs = load_labeling_functions(path)

    assert [lf.name for lf in lfs] == ["zebra_first", "alpha_second"]
    assert lfs[0]("A MATCH report") == "sport"


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        (None, "not found"),
        ("def broken(:\n", "syntax error at line 1"),
        ("import labeling_dag_no_such_module\n", "ModuleNotFoundError"),
        ("def helper(text):\n    return None\n", "no labeling functions"),
        (
            "from labeling_dag.labeling_functions import keyword_lf, labeling_function\n"
            "same = keyword_lf('dup', ['x'], 'sport')\n"
            "@labeling_function(name='dup')\ndef other(text):\n    return None\n",
            "more than one labeling function is named 'dup'",
        ),
    ],
    ids=["missing", "syntax", "import", "empty", "duplicate"],
)
def test_load_errors_name_the_file_and_the_problem(tmp_path: Path, source: str | None, problem: str) -> None:
    path = tmp_path / "user_lfs.py"
    if source is not None:
        path.write_text(source)

    with pytest.raises(ValueError) as raised:
        load_labeling_functions(path)

    assert str(path) in str(raised.value)
    assert problem in str(raised.value)


# --- applying them ----------------------------------------------------------------------


def test_apply_builds_the_vote_matrix_with_abstains() -> None:
    sport = keyword_lf("sport", ["match"], "sport")
    politics = keyword_lf("politics", ["vote"], "politics")

    votes = apply_labeling_functions([sport, politics], ["match report", "vote today", "weather"], CLASSES)

    assert votes.tolist() == [[2, ABSTAIN], [ABSTAIN, 1], [ABSTAIN, ABSTAIN]]
    assert apply_labeling_functions([], ["text"], CLASSES).shape == (1, 0)


def test_apply_reports_a_vote_for_an_unknown_class_with_the_function_name() -> None:
    lf = keyword_lf("weather_lf", ["rain"], "weather")

    with pytest.raises(ValueError, match=r"'weather_lf' voted 'weather' for text 1, which is not one of the classes"):
        apply_labeling_functions([lf], ["sunny", "rain"], CLASSES)


def test_apply_reports_an_exception_with_the_function_name_and_text_index() -> None:
    @labeling_function()
    def fragile(text: str) -> str | None:
        return "sport" if text.split()[1] == "match" else None

    with pytest.raises(ValueError, match=r"'fragile' failed on text 2: IndexError"):
        apply_labeling_functions([fragile], ["a match", "a vote", "single"], CLASSES)


def test_apply_rejects_a_vote_that_is_not_a_class_name() -> None:
    @labeling_function()
    def returns_id(text: str) -> str | None:
        return 2  # type: ignore[return-value]

    with pytest.raises(ValueError, match="'returns_id' returned 2 for text 0"):
        apply_labeling_functions([returns_id], ["text"], CLASSES)


# --- combining votes --------------------------------------------------------------------


def test_label_model_beats_the_worst_function_on_covered_texts() -> None:
    votes, truth = _noisy_votes((0.9, 0.8, 0.7, 0.6))
    covered = (votes != ABSTAIN).any(axis=1)
    worst = min(
        (votes[votes[:, j] != ABSTAIN, j] == truth[votes[:, j] != ABSTAIN]).mean() for j in range(votes.shape[1])
    )

    probs = combine_votes(votes, n_classes=3, seed=0)

    assert probs.shape == (300, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    accuracy = (probs.argmax(axis=1)[covered] == truth[covered]).mean()
    assert accuracy > worst + 0.1
    np.testing.assert_allclose(probs[~covered], 1 / 3)


def test_combine_votes_is_reproducible_and_leaves_global_rngs_alone() -> None:
    votes, _ = _noisy_votes((0.9, 0.8, 0.7), n_texts=60)
    np.random.seed(7)
    expected_draw = np.random.random()

    np.random.seed(7)
    first = combine_votes(votes, n_classes=3, seed=3)
    draw_after = np.random.random()
    second = combine_votes(votes, n_classes=3, seed=3)

    assert draw_after == expected_draw
    np.testing.assert_array_equal(first, second)


def test_model_probs_fill_rows_no_function_covers() -> None:
    votes, truth = _noisy_votes((0.9, 0.8, 0.7), n_texts=120, seed=1)
    rng = np.random.default_rng(1)
    model_probs = rng.dirichlet(np.ones(3), size=len(votes))
    uncovered = (votes == ABSTAIN).all(axis=1)
    assert uncovered.any()

    probs = combine_votes(votes, n_classes=3, model_probs=model_probs)

    np.testing.assert_allclose(probs[uncovered], model_probs[uncovered])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)


def test_fewer_than_three_voters_fall_back_to_majority_with_model_tie_break() -> None:
    votes = np.array([[0], [1], [ABSTAIN]])
    model_probs = np.array([[0.2, 0.8], [0.3, 0.7], [0.6, 0.4]])

    probs = combine_votes(votes, n_classes=2, model_probs=model_probs)

    # Row 0: the function (class 0) and the model (class 1) tie; the model's probabilities decide.
    np.testing.assert_allclose(probs, [[0.0, 1.0], [0.0, 1.0], [0.6, 0.4]])


def test_two_functions_without_a_model_use_majority_and_split_ties() -> None:
    votes = np.array([[0, 0], [1, ABSTAIN], [0, 1], [ABSTAIN, ABSTAIN]])

    probs = combine_votes(votes, n_classes=2)

    np.testing.assert_allclose(probs, [[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.5, 0.5]])


def test_combine_votes_rejects_malformed_input() -> None:
    with pytest.raises(ValueError, match="class ids"):
        combine_votes(np.array([[0, 3]]), n_classes=3)
    with pytest.raises(ValueError, match="model_probs has shape"):
        combine_votes(np.array([[0]]), n_classes=3, model_probs=np.ones((2, 3)) / 3)


# --- summarising functions --------------------------------------------------------------


def test_lf_summary_agrees_with_a_hand_count() -> None:
    votes = np.array(
        [
            [0, 0, ABSTAIN],  # a, b overlap and agree
            [0, 1, ABSTAIN],  # a, b conflict
            [ABSTAIN, 1, 1],  # b, c overlap and agree
            [1, ABSTAIN, ABSTAIN],  # a alone
        ]
    )
    gold = np.array([0, 1, ABSTAIN, 0])

    summary = lf_summary(votes, ["a", "b", "c"], gold=gold)

    assert list(summary.index) == ["a", "b", "c"]
    assert list(summary.columns) == [
        "coverage",
        "overlaps",
        "conflicts",
        "correct",
        "incorrect",
        "empirical_accuracy",
    ]
    np.testing.assert_allclose(summary["coverage"], [3 / 4, 3 / 4, 1 / 4])
    np.testing.assert_allclose(summary["overlaps"], [2 / 4, 3 / 4, 1 / 4])
    np.testing.assert_allclose(summary["conflicts"], [1 / 4, 1 / 4, 0])
    assert summary["correct"].tolist() == [1, 2, 0]
    assert summary["incorrect"].tolist() == [2, 0, 0]
    np.testing.assert_allclose(summary["empirical_accuracy"], [1 / 3, 1.0, np.nan])


def test_lf_summary_accuracy_matches_the_known_gold() -> None:
    votes, truth = _noisy_votes((0.9, 0.6), n_texts=200, seed=2)
    gold = truth.copy()
    gold[::2] = ABSTAIN  # only half the gold is known

    summary = lf_summary(votes, ["good", "poor"], gold=gold)

    for j, name in enumerate(["good", "poor"]):
        scored = (votes[:, j] != ABSTAIN) & (gold != ABSTAIN)
        assert summary.loc[name, "empirical_accuracy"] == pytest.approx((votes[scored, j] == gold[scored]).mean())
    assert summary.loc["good", "empirical_accuracy"] > summary.loc["poor", "empirical_accuracy"]
    assert lf_summary(votes, ["good", "poor"])["empirical_accuracy"].isna().all()


def test_lf_summary_rejects_mismatched_names() -> None:
    with pytest.raises(ValueError, match=re.escape("do not match 3 function names")):
        lf_summary(np.zeros((2, 2), dtype=int), ["a", "b", "c"])
