"""Where each review batch stands: pending with reviewers, merged, or quarantined by the gold gate
or the agreement floors, and which of a merged batch's images its merge did not take in.
"""

from __future__ import annotations

import pandas as pd


def quarantined_reviewers(quality: pd.DataFrame) -> set[tuple[str, str]]:
    """``(batch_id, reviewer)`` of every reviewer whose gold accuracy in a batch fell below its threshold.

    The gold gate decides per reviewer: such a reviewer's annotations of that batch are
    quarantined (never merged, no calibration evidence), the other reviewers' are merged. A
    reviewer who answered no gold item of the batch has given no evidence either way and is
    trusted, as the review-quality gate treats them.
    """
    reviewers = quality[(quality["reviewer"] != "*") & (quality["gold_tasks"] > 0)]
    failed = reviewers[reviewers["gold_accuracy"] < reviewers["min_gold_accuracy"]]
    return set(zip(failed["batch_id"], failed["reviewer"]))


def quarantined_batches(quality: pd.DataFrame) -> set[str]:
    """Batches never merged, their images released to the pool: those in which every reviewer
    was quarantined (:func:`quarantined_reviewers`), and those whose reviewers agreed less than
    a floor (:func:`disagreeing_batches`).

    The batch-wide gold row (``reviewer == "*"``) takes no part: it fails only where some reviewer
    does (a micro-average of accuracies at or above the threshold is at or above it), and a
    batch with a reviewer left who passed is merged with that reviewer's annotations.
    """
    failed = quarantined_reviewers(quality)
    reviewers = quality[quality["reviewer"] != "*"]
    trusted = {pair[0] for pair in zip(reviewers["batch_id"], reviewers["reviewer"]) if pair not in failed}
    return ({batch for batch, _ in failed} - trusted) | disagreeing_batches(quality)


def disagreeing_batches(quality: pd.DataFrame) -> set[str]:
    """Batches whose trusted reviewers, on the images they shared, agreed less than a floor of
    the batch row: Cohen's kappa below ``min_kappa`` or box agreement below ``min_box_agreement``.

    Two careful annotators disagree on few boxes; a batch where they disagree a lot says the
    guidelines or the reviewers are wrong, and merging its consensus would bake that in. A batch
    without shared images has no agreement figures and passes.
    """
    batch = quality[quality["reviewer"] == "*"]
    low = (batch["kappa"] < batch["min_kappa"]) | (batch["box_agreement"] < batch["min_box_agreement"])
    return set(batch.loc[low, "batch_id"])


def unmerged_rows(batches: pd.DataFrame, returned: pd.DataFrame, *, merged: set[str]) -> pd.Series:
    """Which rows of ``batches`` belong to a merged batch whose merge did not take their image in.

    These are the images only quarantined reviewers answered (:func:`quarantined_reviewers`):
    their batch no longer holds them, so they may be selected again. ``returned`` has a row per
    batch and image its merge covers (``RETURNED_COLUMNS``); the result is aligned with ``batches``.
    """
    covered = pd.MultiIndex.from_frame(returned[["batch_id", "image_id"]])
    rows = pd.MultiIndex.from_frame(batches[["batch_id", "image_id"]])
    return pd.Series(batches["batch_id"].isin(merged).to_numpy() & ~rows.isin(covered), index=batches.index)


def pending_batches(batches: pd.DataFrame, *, merged: set[str], quarantined: set[str] = frozenset()) -> set[str]:
    """Batches sent out and neither merged nor quarantined: their images are with reviewers."""
    return set(batches["batch_id"]) - merged - quarantined
