"""Label errors among human-verified images, found with cleanlab's object-detection scores.

Reviewers err a few per cent of the time: a missed object, a wrong class, a sloppy box. cleanlab
(``cleanlab.object_detection``, the ObjectLab method) compares each image's verified boxes with
a detector's predictions for it and gives three per-kind scores in [0, 1], lower = worse:

* ``overlooked``: a confident prediction that overlaps no verified box (an object left out);
* ``swapped``: a verified box on which a confident prediction of another class sits;
* ``badly_located``: a verified box that the predictions of its class only partly overlap.

Their geometric mean is the image's ``label_quality`` (cleanlab's own aggregation, equal weights),
and the images are ranked by it, worst first. An image with a kind scoring below
``ISSUE_THRESHOLD`` (0.5) is a suspect, named by its worst kind.

**Out-of-sample predictions only.** A model reproduces the labels it trained on, mistakes
included, so its predictions for those images vouch for nothing. Every image a human verified
was pre-labelled before its review by the model then current, which had not trained on it; those
predictions travel in the review batch's exported tasks (per box: class, box, ``score``). This
module takes them from there (:mod:`labeling_dag.issue_evidence`: per image, the latest batch
that sent it out before it was first verified). They are what was stored, not what cleanlab would
ideally see: pre-labels are made at the detector's confidence floor (``Detector.conf``, 0.25 by
default), so no lower-confidence box is available, and a batch exported before any model existed
(a cold start's random seed round) has no predictions: its images are left unscored. Gold images
(known answers) and auto-accepted ones (their labels ARE the model's predictions) are not scored.

Pure functions over plain records and frames, no Dagster; cleanlab is imported inside the
functions that use it (it pulls in scikit-learn and SciPy).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from labeling_dag.agreement import PredictedBox
from labeling_dag.cleanlab_scores import (
    HIGH_PROBABILITY_THRESHOLD,
    ISSUE_KINDS,
    LOW_PROBABILITY_THRESHOLD,
    cleanlab_inputs,
    kind_scores,
    label_quality,
)
from labeling_dag.contracts import ISSUE_COLUMNS
from labeling_dag.records import NormBox

# A kind is named for an image when its per-kind score is below this; an image with a named kind
# is a suspect. One kind at 0.5 and the others clean give a label quality of 0.5 ** (1/3) = 0.79.
ISSUE_THRESHOLD = 0.5


@dataclass(frozen=True)
class VerifiedImage:
    """A human-verified image: its boxes, and what a model that never trained on it predicted.

    ``labels`` are ``(class_name, box)`` pairs; ``predictions`` carry each box's confidence in
    its class. ``width`` and ``height`` are the image's pixels: cleanlab's similarity of two boxes
    mixes their IoU with the distance of their centres in pixels.
    """

    image_id: str
    width: int
    height: int
    labels: tuple[tuple[str, NormBox], ...]
    predictions: tuple[PredictedBox, ...]
    model_version: str
    review_batch_id: str
    merge_id: str = ""


def score_label_issues(
    images: Sequence[VerifiedImage],
    *,
    class_names: Sequence[str],
    high_probability_threshold: float = HIGH_PROBABILITY_THRESHOLD,
    low_probability_threshold: float = LOW_PROBABILITY_THRESHOLD,
    issue_threshold: float = ISSUE_THRESHOLD,
) -> pd.DataFrame:
    """Every image scored and ranked, worst first (``ISSUE_COLUMNS``, one row per image).

    ``issue_kinds`` lists the kinds scoring below ``issue_threshold`` (worst first), an image
    with any is a ``suspect``, and a suspect's ``issue`` is its worst kind. Ties rank by image
    id, so the same input gives the same table.
    """
    for name, value in (
        ("high_probability_threshold", high_probability_threshold),
        ("low_probability_threshold", low_probability_threshold),
        ("issue_threshold", issue_threshold),
    ):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    if len({image.image_id for image in images}) != len(images):
        raise ValueError("an image appears twice among the images to score")
    if not images:
        return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in ISSUE_COLUMNS.items()})
    labels, predictions = cleanlab_inputs(images, class_names)
    kinds = kind_scores(
        labels,
        predictions,
        high_probability_threshold=high_probability_threshold,
        low_probability_threshold=low_probability_threshold,
    )
    quality = label_quality(kinds)
    rows = []
    for i, image in enumerate(images):
        named = [ISSUE_KINDS[k] for k in np.argsort(kinds[i], kind="stable") if kinds[i][k] < issue_threshold]
        rows.append(
            {
                "image_id": image.image_id,
                "rank": 0,
                "label_quality": float(quality[i]),
                **{kind: float(score) for kind, score in zip(ISSUE_KINDS, kinds[i])},
                "suspect": bool(named),
                "issue": named[0] if named else "",
                "issue_kinds": ",".join(named),
                "boxes": len(image.labels),
                "predicted_boxes": len(image.predictions),
                "model_version": image.model_version,
                "review_batch_id": image.review_batch_id,
                "merge_id": image.merge_id,
            }
        )
    table = pd.DataFrame(rows, columns=list(ISSUE_COLUMNS)).sort_values(
        ["label_quality", "image_id"], kind="stable", ignore_index=True
    )
    table["rank"] = np.arange(1, len(table) + 1)
    return table.astype(ISSUE_COLUMNS)


def suspects(scores: pd.DataFrame) -> pd.DataFrame:
    """The suspects of a :func:`score_label_issues` table, worst first."""
    return scores[scores["suspect"]].sort_values("rank", ignore_index=True)


def open_suspects(suspects: pd.DataFrame, already_sent: Collection[str], k: int) -> list[str]:
    """The image ids of the worst ``k`` suspects not in ``already_sent``, worst first.

    ``suspects`` is the ``label_issues`` asset's table (``ISSUE_COLUMNS``; non-suspect rows are
    skipped); ``already_sent`` the images already put in a batch for re-review, so that no
    suspect goes back twice: a re-review that confirms the labels leaves the image a suspect
    (it is still judged by the same out-of-sample predictions).
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    candidates = suspects[suspects["suspect"] & ~suspects["image_id"].isin(set(already_sent))]
    return candidates.sort_values(["rank", "image_id"])["image_id"].head(k).tolist()
