"""Combining labeling-function votes into probabilistic labels, in the style of Snorkel.

The input is the vote matrix of :func:`labeling_dag.labeling_functions.apply_labeling_functions`:
one row per text, one column per labeling function, class ids with -1 for abstain.
:func:`combine_votes` turns it into one probability distribution over the classes per text
with Snorkel's ``LabelModel``, which learns each function's accuracy from how the functions
agree and disagree, without gold labels.  :func:`lf_summary` reports each function's
coverage, overlaps, conflicts and, where gold labels are known, its accuracy.

Snorkel (and through it torch) is imported inside the functions so that importing this
module, and with it the Dagster code location, stays cheap.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import pandas as pd

from labeling_dag.labeling_functions import ABSTAIN

MIN_LABEL_MODEL_VOTERS = 3
"""Fewer voter columns than this leave the label model ill-posed: with two voters the
accuracies cannot be told apart from the class balance (Snorkel's estimate needs the
agreement of at least three conditionally independent voters), so majority vote is used."""

LABEL_MODEL_EPOCHS = 500
"""Optimisation steps for the label model: Snorkel's tutorials use 500; each step is one
cheap full-batch update over the (n_voters * n_classes)^2 agreement matrix, so it is fast."""

_SNORKEL_SUMMARY_COLUMNS = {
    "Coverage": "coverage",
    "Overlaps": "overlaps",
    "Conflicts": "conflicts",
    "Correct": "correct",
    "Incorrect": "incorrect",
    "Emp. Acc.": "empirical_accuracy",
}


def combine_votes(
    votes: np.ndarray, *, n_classes: int, model_probs: np.ndarray | None = None, seed: int = 0
) -> np.ndarray:
    """Combine the (n_texts, n_lfs) vote matrix into (n_texts, n_classes) class probabilities.

    Where ``model_probs`` (n_texts, n_classes) is given, the model's pre-label (its argmax)
    joins the labeling functions as one more voter, so the label model weighs the model
    against the heuristics.  With at least ``MIN_LABEL_MODEL_VOTERS`` voter columns the
    result is Snorkel's ``LabelModel.predict_proba`` (fitted on CPU with ``seed``, so it is
    reproducible).  With fewer, it is majority vote: all mass on the class with most votes,
    ties broken by the model's probabilities where given and otherwise split evenly.

    Rows on which every labeling function abstains carry no evidence beyond the model: they
    get ``model_probs`` where given, otherwise the uniform distribution.
    """
    votes = _checked_votes(votes, n_classes)
    model_probs = _checked_model_probs(model_probs, len(votes), n_classes)
    combined = np.full((len(votes), n_classes), 1.0 / n_classes) if model_probs is None else model_probs.copy()
    covered = (votes != ABSTAIN).any(axis=1)
    if not covered.any():
        return combined
    voters = votes if model_probs is None else np.column_stack([votes, model_probs.argmax(axis=1)])
    if voters.shape[1] >= MIN_LABEL_MODEL_VOTERS:
        combined[covered] = _label_model_probs(voters, n_classes, seed)[covered]
    else:
        combined[covered] = _majority_probs(voters[covered], n_classes, _rows(model_probs, covered))
    return combined


def lf_summary(votes: np.ndarray, lf_names: Sequence[str], *, gold: np.ndarray | None = None) -> pd.DataFrame:
    """One row per labeling function (indexed by name): how much it votes and how well.

    ``coverage`` is the fraction of texts it votes on, ``overlaps`` the fraction it votes
    on together with another function, ``conflicts`` the fraction where another function
    votes a different class (Snorkel's ``LFAnalysis`` definitions).  ``correct``,
    ``incorrect`` and ``empirical_accuracy`` count only texts whose ``gold`` class id is
    known (not -1); ``empirical_accuracy`` is NaN for a function that voted on none of them.
    """
    from snorkel.labeling import LFAnalysis

    votes = np.asarray(votes, dtype=np.int64)
    if votes.ndim != 2 or votes.shape[1] != len(lf_names):
        raise ValueError(f"lf_summary: votes of shape {votes.shape} do not match {len(lf_names)} function names")
    gold = _checked_gold(gold, len(votes))
    index = pd.Index(list(lf_names), name="labeling_function")
    if votes.size == 0:
        # LFAnalysis cannot reduce an empty matrix; with no texts there is nothing to measure.
        return pd.DataFrame(
            {
                "coverage": np.nan,
                "overlaps": np.nan,
                "conflicts": np.nan,
                "correct": 0,
                "incorrect": 0,
                "empirical_accuracy": np.nan,
            },
            index=index,
        )
    known = gold != ABSTAIN
    with _quiet_snorkel():
        summary = LFAnalysis(L=votes).lf_summary()
        scored = LFAnalysis(L=votes[known]).lf_summary(Y=gold[known]) if known.any() else None
    summary = summary.rename(columns=_SNORKEL_SUMMARY_COLUMNS)[["coverage", "overlaps", "conflicts"]]
    summary.index = index
    summary["correct"] = 0 if scored is None else scored["Correct"].to_numpy()
    summary["incorrect"] = 0 if scored is None else scored["Incorrect"].to_numpy()
    # Snorkel reports 0 for a function with no scored votes; unknown is not the same as wrong.
    scored_votes = summary["correct"] + summary["incorrect"]
    summary["empirical_accuracy"] = (summary["correct"] / scored_votes.where(scored_votes > 0)).astype(float)
    return summary


def _label_model_probs(voters: np.ndarray, n_classes: int, seed: int) -> np.ndarray:
    """Fit Snorkel's label model on all rows and return its probabilities for each row."""
    from snorkel.labeling.model import LabelModel

    with _quiet_snorkel(), _global_rngs_restored():
        label_model = LabelModel(cardinality=n_classes, verbose=False, device="cpu")
        label_model.fit(voters, n_epochs=LABEL_MODEL_EPOCHS, log_freq=LABEL_MODEL_EPOCHS, seed=seed, progress_bar=False)
        return label_model.predict_proba(voters)


def _majority_probs(voters: np.ndarray, n_classes: int, model_probs: np.ndarray | None) -> np.ndarray:
    """All mass on the most-voted class; ties go to the model's likeliest, else are split evenly."""
    counts = np.stack([(voters == class_id).sum(axis=1) for class_id in range(n_classes)], axis=1)
    winners = counts == counts.max(axis=1, keepdims=True)
    if model_probs is not None:
        tie_scores = np.where(winners, model_probs, -np.inf)
        winners = tie_scores == tie_scores.max(axis=1, keepdims=True)
    return winners / winners.sum(axis=1, keepdims=True)


def _checked_votes(votes: np.ndarray, n_classes: int) -> np.ndarray:
    if n_classes < 2:
        raise ValueError(f"combine_votes: need at least 2 classes, got n_classes={n_classes}")
    votes = np.asarray(votes, dtype=np.int64)
    if votes.ndim != 2:
        raise ValueError(f"combine_votes: votes must be a (n_texts, n_lfs) matrix, got shape {votes.shape}")
    if votes.size and (votes.min() < ABSTAIN or votes.max() >= n_classes):
        raise ValueError(f"combine_votes: votes must be class ids in [0, {n_classes}) or {ABSTAIN} for abstain")
    return votes


def _checked_model_probs(model_probs: np.ndarray | None, n_texts: int, n_classes: int) -> np.ndarray | None:
    if model_probs is None:
        return None
    model_probs = np.asarray(model_probs, dtype=np.float64)
    if model_probs.shape != (n_texts, n_classes):
        raise ValueError(f"combine_votes: model_probs has shape {model_probs.shape}, expected {(n_texts, n_classes)}")
    if (model_probs < 0).any() or not np.allclose(model_probs.sum(axis=1), 1.0, atol=1e-4):
        raise ValueError("combine_votes: each row of model_probs must be a probability distribution")
    return model_probs


def _checked_gold(gold: np.ndarray | None, n_texts: int) -> np.ndarray:
    """Gold class ids as an array, all unknown (-1) where none are given."""
    if gold is None:
        return np.full(n_texts, ABSTAIN, dtype=np.int64)
    gold = np.asarray(gold, dtype=np.int64)
    if gold.shape != (n_texts,):
        raise ValueError(f"lf_summary: gold has shape {gold.shape}, expected ({n_texts},)")
    return gold


def _rows(array: np.ndarray | None, mask: np.ndarray) -> np.ndarray | None:
    return None if array is None else array[mask]


@contextmanager
def _quiet_snorkel() -> Iterator[None]:
    """Silence the FutureWarning scipy raises inside Snorkel's LFAnalysis; it is not ours to fix."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        yield


@contextmanager
def _global_rngs_restored() -> Iterator[None]:
    """Undo the reseeding of Python's, numpy's and torch's global RNGs that ``LabelModel.fit`` does.

    Without this, combining votes would silently make every later use of those RNGs in
    the same process deterministic.
    """
    import torch

    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)
