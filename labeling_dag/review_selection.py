"""Which images go to human review next: the eligible ones, the strategy's choice among them, the
extra items a batch carries (gold items, spot checks, overlap, disputes) and the batch's id."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from labeling_dag.annotation_cost import expected_boxes
from labeling_dag.calibration_sample import calibration_sample
from labeling_dag.sampling import select_for_review
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
    (:func:`~labeling_dag.annotation_cost.expected_boxes` of the ``n_boxes`` column).

    ``calibration_fraction`` of ``k`` (not for the ``random`` strategy, whose batches are a sample
    of everything already) is drawn at random from the images with boxes, after the strategy's
    picks (:func:`~labeling_dag.calibration_sample.calibration_sample`); where too few images have
    boxes, the strategy fills the batch. Auto-accept is fitted on those draws only
    (:func:`~labeling_dag.calibration_sample.calibration_evidence`): the strategy's picks were
    chosen for looking wrong, so they
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


def open_disputes(disputes: pd.DataFrame, *, verified: set[str], sent: set[str]) -> list[str]:
    """Disputed images (:mod:`labeling_dag.consensus`) still to settle: not verified since and not
    already in a batch for adjudication, in the order they were disputed."""
    images = disputes.loc[~disputes["image_id"].isin(verified | sent), "image_id"]
    return list(dict.fromkeys(images))


def overlapped(images: Sequence[str], *, rate: float, batch_id: str) -> list[str]:
    """The share ``rate`` of ``images`` (rounded) that several annotators label independently,
    drawn at random, seeded by the batch id."""
    return extra_items(list(images), count=round(rate * len(images)), batch_id=f"overlap:{batch_id}")
