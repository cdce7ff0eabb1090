"""Which images go to human review next, and the batch records that remember it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from labeling_dag.consensus import CONSENSUS_VERSION
from labeling_dag.records import NormBox, PreLabel, ReviewImage
from labeling_dag.revisions import split_revision
from labeling_dag.sampling import expected_boxes, select_for_review
from labeling_dag.uncertainty import MEASURES


def batch_id_for(scores: pd.DataFrame, settings: Mapping[str, object], *, closed_batches: set[str]) -> str:
    """A batch id determined by the scores, the selection settings and the batches closed so far.

    Re-running the selection on unchanged inputs yields the same id, which is how the
    review batch stays idempotent: the existing batch is re-exported, not a second one made.
    A merge or a quarantine closes a batch and so leads to a new one, even on unchanged scores.
    """
    digest = hashlib.sha256()
    digest.update(json.dumps({"settings": dict(settings), "closed": sorted(closed_batches)}, sort_keys=True).encode())
    columns = [c for c in scores.columns if c != "embedding"]
    digest.update(pd.util.hash_pandas_object(scores[columns], index=False).to_numpy().tobytes())
    return f"batch-{digest.hexdigest()[:12]}"


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


def eligible_images(
    scores: pd.DataFrame,
    cleaned: pd.DataFrame,
    batches: pd.DataFrame,
    *,
    batch_id: str,
    released_batches: set[str],
    verified: set[str],
    excluded: set[str],
    skip_near_duplicates: bool,
) -> pd.DataFrame:
    """Scored images that no other live batch holds, not ``verified``, not ``excluded``, not
    exact copies, and (with ``skip_near_duplicates``) no near-duplicate of an unlabelled image.

    A near-duplicate waits until the image it resembles is verified: two near-identical pictures
    in one batch pay twice for one look, and once the first is labelled the model has learnt it,
    so the second is cheap to review or is auto-accepted. It is part of the pool all the same
    (:func:`labeling_dag.cleaning.pool_images`), so it is never left out for good.
    Images of ``released_batches`` (quarantined ones) may be selected again.
    """
    holding = batches[(batches["batch_id"] != batch_id) & ~batches["batch_id"].isin(released_batches)]
    duplicates = cleaned["is_exact_duplicate"]
    if skip_near_duplicates:
        duplicates = duplicates | (cleaned["is_near_duplicate"] & ~cleaned["near_duplicate_of"].isin(verified))
    excluded = excluded | verified | set(holding["image_id"]) | set(cleaned.loc[duplicates, "image_id"])
    return scores[~scores["image_id"].isin(excluded)].reset_index(drop=True)


def cold_start_scores(cleaned: pd.DataFrame) -> pd.DataFrame:
    """Scores for a pool no model has seen: every image equally (un)certain, no embedding.

    Only random selection is meaningful on them; the first batch is a random sample.
    """
    return pd.DataFrame(
        {
            "image_id": cleaned["image_id"],
            "model_version": "",
            "least_confidence": 1.0,
            "margin": 1.0,
            "entropy": 1.0,
            "embedding": [[] for _ in range(len(cleaned))],
        }
    )


def extra_items(candidates: Sequence[str], *, count: int, batch_id: str) -> list[str]:
    """``count`` of ``candidates`` drawn at random, seeded by the batch id (gold items, spot checks)."""
    if count <= 0 or not candidates:
        return []
    rng = np.random.default_rng(int(hashlib.sha256(batch_id.encode()).hexdigest()[:15], 16))
    picked = rng.choice(len(candidates), size=min(count, len(candidates)), replace=False)
    return [candidates[i] for i in sorted(picked)]


def shuffled(items: Sequence[str], *, batch_id: str) -> list[str]:
    """``items`` in an order seeded by the batch id, so gold items sit at no telling position."""
    rng = np.random.default_rng(int(hashlib.sha256(f"order:{batch_id}".encode()).hexdigest()[:15], 16))
    return [items[i] for i in rng.permutation(len(items))]


def calibration_evidence(edits: pd.DataFrame, batches: pd.DataFrame) -> pd.DataFrame:
    """The ``edits`` of images that were drawn at random, the sample auto-accept is fitted on.

    Thresholds and the image gate are fitted on human judgements and applied to the images
    nobody reviewed, so the judged images must be a random sample of those, given their
    confidence. An image picked for its uncertainty is not: it was picked because something
    about it (a near-miss box, an object half found) looks wrong in ways its least box
    confidence does not show, so its errors would close the gate on the easy images it is
    applied to. A re-review shows an image's verified labels, not a model's boxes, so it is left
    out too. Kept: the random strategy's picks, the calibration sample, spot checks and gold rows
    (callers drop gold themselves). ``edits`` of a revision count with their batch.
    """
    picked = batches.loc[batches["by_uncertainty"] | batches["is_re_review"], ["batch_id", "image_id"]]
    base = edits["batch_id"].map(lambda batch_id: split_revision(batch_id)[0])
    keys = pd.MultiIndex.from_arrays([base, edits["image_id"]])
    return edits[~keys.isin(pd.MultiIndex.from_frame(picked))]


def choose(
    candidates: pd.DataFrame,
    *,
    k: int,
    strategy: str,
    uncertainty_measure: str,
    random_fraction: float,
    diversity: bool,
    seed: int,
    cost_aware: bool,
    calibration_fraction: float = 0.0,
) -> pd.DataFrame:
    """The selected rows of ``candidates`` in priority order, with their selection ``score``
    (the image's uncertainty) and ``by_uncertainty`` (picked by a non-random strategy's ranking,
    not drawn at random). ``cost_aware`` ranks by uncertainty per expected box
    (:func:`~labeling_dag.sampling.expected_boxes` of the ``n_boxes`` column).

    ``calibration_fraction`` of ``k`` (not for the ``random`` strategy, whose batches are a sample
    of everything already) is drawn at random from the images with boxes, after the strategy's
    picks (:func:`calibration_sample`); where too few images have boxes, the strategy fills the
    batch. Auto-accept is fitted on those draws only
    (:func:`calibration_evidence`): the strategy's picks were chosen for looking wrong, so they
    are no sample of the images auto-accept decides about.
    """
    if candidates.empty:
        return candidates.assign(score=pd.Series(dtype="float64"), by_uncertainty=pd.Series(dtype="bool"))
    embeddings = np.array(candidates["embedding"].tolist(), dtype=np.float64) if diversity else None
    calibrating = 0 if strategy == "random" else round(calibration_fraction * k)

    def ranked(positions: np.ndarray, count: int) -> list[int]:
        """The strategy's ``count`` picks among ``positions`` of the candidates."""
        if count <= 0 or not len(positions):
            return []
        order = select_for_review(
            candidates.iloc[positions],
            k=count,
            strategy=strategy,
            uncertainty_measure=uncertainty_measure,
            random_fraction=random_fraction,
            diversity=diversity,
            embeddings=None if embeddings is None else embeddings[positions],
            costs=expected_boxes(candidates["n_boxes"].to_numpy()[positions]) if cost_aware else None,
            seed=seed,
        )
        return [int(positions[i]) for i in order]

    everything = np.arange(len(candidates))
    picked = ranked(everything, k - calibrating)
    sample = calibration_sample(candidates, count=calibrating, taken=set(picked), seed=seed)
    # Too few images with boxes for the sample (an early model finds little): the strategy fills the batch.
    picked += ranked(np.setdiff1d(everything, np.array([*picked, *sample], dtype=np.intp)), calibrating - len(sample))
    measure = strategy if strategy in MEASURES else uncertainty_measure
    chosen = candidates.iloc[[*picked, *sample]].reset_index(drop=True)
    by_uncertainty = np.arange(len(chosen)) < len(picked) if strategy != "random" else np.zeros(len(chosen), bool)
    return chosen.assign(score=chosen[measure].astype("float64"), by_uncertainty=by_uncertainty)


def calibration_sample(candidates: pd.DataFrame, *, count: int, taken: set[int], seed: int) -> list[int]:
    """``count`` positions drawn uniformly at random among the candidates that have boxes and are
    not ``taken``.

    Uniform over the whole range of confidence, not only the confident end: the image gate is the
    least confidence above which judged images are right often enough, so it can only be placed as
    low as the evidence reaches, and the images just above it are the ones it decides about.
    """
    if count <= 0:
        return []
    free = np.flatnonzero((candidates["n_boxes"].to_numpy() > 0) & ~np.isin(np.arange(len(candidates)), list(taken)))
    drawn = np.random.default_rng(seed).choice(free, size=min(count, len(free)), replace=False)
    return sorted(int(i) for i in drawn)


# The model version a re-review task's boxes carry: they are the image's verified labels.
VERIFIED_LABELS_VERSION = "verified-labels"


def verified_as_pre_labels(labels: pd.DataFrame, image_ids: Sequence[str], class_names: Sequence[str]) -> pd.DataFrame:
    """The active verified boxes (``LABEL_COLUMNS`` rows) of ``image_ids`` as pre-label rows
    (``BOX_COLUMNS``): what a re-review task shows, so the reviewer checks the labels under
    suspicion rather than a model's new guess. Confidence 1, model version
    :data:`VERIFIED_LABELS_VERSION`, box ids the label ids."""
    rows = labels[labels["image_id"].isin(set(image_ids))]
    return _as_pre_labels(rows, rows["label_id"], 1.0, VERIFIED_LABELS_VERSION, class_names)


def disputes_as_pre_labels(
    disputes: pd.DataFrame, image_ids: Sequence[str], class_names: Sequence[str]
) -> pd.DataFrame:
    """The fused boxes of disputed images (``DISPUTE_COLUMNS`` rows) as pre-label rows: what an
    adjudication task shows, each box with the most voted class and, as its confidence, the
    share of the image's reviewers who drew it. Model version :data:`CONSENSUS_VERSION`."""
    rows = disputes[disputes["image_id"].isin(set(image_ids))]
    return _as_pre_labels(rows, rows["region_id"], rows["votes"] / rows["reviewers"], CONSENSUS_VERSION, class_names)


def _as_pre_labels(
    rows: pd.DataFrame, box_ids: pd.Series, confidence: object, model_version: str, class_names: Sequence[str]
) -> pd.DataFrame:
    """Boxes with ``class_name`` and x/y/w/h as pre-label rows (``BOX_COLUMNS``) of a given version."""
    one_hot = [tuple(float(name == c) for c in class_names) for name in rows["class_name"]]
    return pd.DataFrame(
        {
            "box_id": box_ids.to_numpy(),
            "image_id": rows["image_id"].to_numpy(),
            "class_id": [list(class_names).index(name) for name in rows["class_name"]],
            "class_name": rows["class_name"].to_numpy(),
            "x": rows["x"].to_numpy(),
            "y": rows["y"].to_numpy(),
            "w": rows["w"].to_numpy(),
            "h": rows["h"].to_numpy(),
            "confidence": confidence.to_numpy() if isinstance(confidence, pd.Series) else confidence,
            "class_probs": one_hot,
            "model_version": model_version,
            "run_id": "",
        }
    )


def open_disputes(disputes: pd.DataFrame, *, verified: set[str], sent: set[str]) -> list[str]:
    """Disputed images (:mod:`labeling_dag.consensus`) still to settle: not verified since and not
    already in a batch for adjudication, in the order they were disputed."""
    images = disputes.loc[~disputes["image_id"].isin(verified | sent), "image_id"]
    return list(dict.fromkeys(images))


def overlapped(images: Sequence[str], *, rate: float, batch_id: str) -> list[str]:
    """The share ``rate`` of ``images`` (rounded) that several annotators label independently,
    drawn at random, seeded by the batch id."""
    return extra_items(list(images), count=round(rate * len(images)), batch_id=f"overlap:{batch_id}")


def review_images(
    chosen: pd.DataFrame,
    cleaned: pd.DataFrame,
    boxes: pd.DataFrame,
    *,
    image_url_prefix: str,
) -> list[ReviewImage]:
    """Review records (image reference, size, pre-labels) for the chosen images, in order."""
    meta = cleaned.set_index("image_id")
    by_image = {image_id: group for image_id, group in boxes.groupby("image_id")}
    empty = boxes.iloc[0:0]
    records = []
    for row in chosen.itertuples(index=False):
        image = meta.loc[row.image_id]
        labels = tuple(
            PreLabel(
                box_id=box.box_id,
                image_id=box.image_id,
                class_name=box.class_name,
                box=NormBox(box.x, box.y, box.w, box.h),
                confidence=float(box.confidence),
                class_probs=tuple(box.class_probs),
                model_version=box.model_version,
            )
            for box in by_image.get(row.image_id, empty).itertuples(index=False)
        )
        records.append(
            ReviewImage(
                image_id=row.image_id,
                image_ref=f"{image_url_prefix}{image['path']}",
                width=int(image["width"]),
                height=int(image["height"]),
                score=float(row.score),
                pre_labels=labels,
            )
        )
    return records
