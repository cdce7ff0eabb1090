"""Pre-labels of texts that weigh labeling functions against the model (weak supervision).

The model's class is one voter among the user's labeling functions; Snorkel's label model
(:func:`labeling_dag.weak_supervision.combine_votes`) turns their votes into one probability
vector per text, and that vector replaces the model's own in the pre-label: selection, the
auto-accept calibration and review all work on the combined probabilities. The votes themselves
are kept (``lf_votes`` table of the pre-labels stage) so that every function's coverage, conflicts
and accuracy on verified labels can be shown, and a label traced to the votes behind it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from labeling_dag.contracts import LF_VOTE_COLUMNS
from labeling_dag.labeling_functions import ABSTAIN, LabelingFunction, apply_labeling_functions
from labeling_dag.records import ImagePrediction


def combined_predictions(
    predictions: Sequence[ImagePrediction], votes: np.ndarray, *, seed: int = 0
) -> list[ImagePrediction]:
    """The predictions with their one whole-item region's class, confidence and class
    probabilities taken from the label model over ``votes`` (n_items, n_functions) and the model.

    Raises ``ValueError`` on a prediction that is not one region (labeling functions label whole
    texts) or a vote matrix of another length.
    """
    from labeling_dag.weak_supervision import combine_votes

    if len(votes) != len(predictions):
        raise ValueError(f"{len(votes)} rows of votes for {len(predictions)} predictions")
    for prediction in predictions:
        if prediction.class_probs.shape[0] != 1:
            raise ValueError(
                f"{prediction.path}: labeling functions label whole texts, not {len(prediction.class_probs)} regions"
            )
    if not predictions:
        return []
    model_probs = np.vstack([prediction.class_probs[0] for prediction in predictions]).astype(np.float64)
    combined = combine_votes(votes, n_classes=model_probs.shape[1], model_probs=model_probs, seed=seed)
    return [
        dataclasses.replace(
            prediction,
            class_ids=np.array([int(row.argmax())]),
            confidences=np.array([float(row.max())], dtype=np.float32),
            class_probs=row[None, :].astype(np.float32),
        )
        for prediction, row in zip(predictions, combined, strict=True)
    ]


def weigh_votes(
    pending: Sequence[tuple[str, ImagePrediction]],
    functions: Sequence[LabelingFunction],
    *,
    class_names: Sequence[str],
    run_id: str,
) -> tuple[list[tuple[str, ImagePrediction]], pd.DataFrame]:
    """The ``(item id, prediction)`` pairs with the label model's combination of ``functions``' votes
    on each prediction's text (the cleaned file it was made from) and the model's, and the votes as
    ``LF_VOTE_COLUMNS`` rows."""
    ids = [image_id for image_id, _ in pending]
    predictions = [prediction for _, prediction in pending]
    texts = [Path(prediction.path).read_text(encoding="utf-8") for prediction in predictions]
    votes = apply_labeling_functions(functions, texts, class_names)
    combined = combined_predictions(predictions, votes)
    names = [function.name for function in functions]
    rows = vote_rows(ids, votes, function_names=names, class_names=class_names, run_id=run_id)
    return list(zip(ids, combined, strict=True)), rows


def vote_rows(
    image_ids: Sequence[str],
    votes: np.ndarray,
    *,
    function_names: Sequence[str],
    class_names: Sequence[str],
    run_id: str,
) -> pd.DataFrame:
    """One ``LF_VOTE_COLUMNS`` row per function that voted on a text (abstentions are not stored)."""
    rows = [
        {"image_id": image_id, "function": function_names[j], "class_name": class_names[vote], "run_id": run_id}
        for image_id, row in zip(image_ids, votes, strict=True)
        for j, vote in enumerate(row)
        if vote != ABSTAIN
    ]
    return pd.DataFrame(rows, columns=list(LF_VOTE_COLUMNS)).astype(LF_VOTE_COLUMNS)


def vote_matrix(
    rows: pd.DataFrame, image_ids: Sequence[str], function_names: Sequence[str], class_names: Sequence[str]
) -> np.ndarray:
    """The (n_items, n_functions) matrix of class ids, -1 for abstain, that ``rows`` store."""
    items = {image_id: i for i, image_id in enumerate(image_ids)}
    functions = {name: j for j, name in enumerate(function_names)}
    classes = {name: k for k, name in enumerate(class_names)}
    votes = np.full((len(items), len(functions)), ABSTAIN, dtype=np.int64)
    for row in rows.itertuples(index=False):
        if row.image_id in items and row.function in functions and row.class_name in classes:
            votes[items[row.image_id], functions[row.function]] = classes[row.class_name]
    return votes


def function_report(
    rows: pd.DataFrame, function_names: Sequence[str], class_names: Sequence[str], verified: Mapping[str, str]
) -> pd.DataFrame:
    """Each function's coverage, overlaps, conflicts and accuracy on the verified texts
    (``verified``: image id -> its verified class), over every text ``rows`` voted on."""
    from labeling_dag.weak_supervision import lf_summary

    image_ids = sorted(set(rows["image_id"]) | set(verified))
    votes = vote_matrix(rows, image_ids, function_names, class_names)
    gold = np.array([class_names.index(verified[i]) if i in verified else ABSTAIN for i in image_ids], dtype=np.int64)
    return lf_summary(votes, list(function_names), gold=gold)
