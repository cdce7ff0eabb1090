"""Which images go to human review next, and the batch records that remember it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

import numpy as np
import pandas as pd

from labeling_dag.records import NormBox, PreLabel, ReviewImage
from labeling_dag.sampling import select_for_review

BATCH_COLUMNS: dict[str, str] = {
    "batch_id": "str",
    "image_id": "str",
    "position": "int64",
    "score": "float64",
    "strategy": "str",
    "model_version": "str",
    "created_at": "str",
    "run_id": "str",
}


def batch_id_for(scores: pd.DataFrame, settings: Mapping[str, object]) -> str:
    """A batch id determined by the scores and the selection settings.

    Re-running the selection on unchanged inputs yields the same id, which is how the
    review batch stays idempotent: the existing batch is re-exported, not a second one made.
    """
    digest = hashlib.sha256()
    digest.update(json.dumps(dict(settings), sort_keys=True).encode())
    columns = [c for c in scores.columns if c != "embedding"]
    digest.update(pd.util.hash_pandas_object(scores[columns], index=False).to_numpy().tobytes())
    return f"batch-{digest.hexdigest()[:12]}"


def eligible_images(
    scores: pd.DataFrame,
    cleaned: pd.DataFrame,
    batches: pd.DataFrame,
    *,
    batch_id: str,
    skip_near_duplicates: bool,
) -> pd.DataFrame:
    """Scored images that no other batch holds and that are not duplicates."""
    taken = batches.loc[batches["batch_id"] != batch_id, "image_id"]
    duplicates = cleaned["is_exact_duplicate"]
    if skip_near_duplicates:
        duplicates = duplicates | cleaned["is_near_duplicate"]
    excluded = set(taken) | set(cleaned.loc[duplicates, "image_id"])
    return scores[~scores["image_id"].isin(excluded)].reset_index(drop=True)


def choose(
    candidates: pd.DataFrame,
    *,
    k: int,
    strategy: str,
    uncertainty_measure: str,
    random_fraction: float,
    diversity: bool,
    seed: int,
) -> pd.DataFrame:
    """The selected rows of ``candidates`` in priority order, with their selection ``score``."""
    if candidates.empty:
        return candidates.assign(score=pd.Series(dtype="float64"))
    embeddings = np.array(candidates["embedding"].tolist(), dtype=np.float64) if diversity else None
    picked = select_for_review(
        candidates,
        k=k,
        strategy=strategy,
        uncertainty_measure=uncertainty_measure,
        random_fraction=random_fraction,
        diversity=diversity,
        embeddings=embeddings,
        seed=seed,
    )
    measure = strategy if strategy in ("least_confidence", "margin", "entropy") else uncertainty_measure
    chosen = candidates.iloc[picked].reset_index(drop=True)
    return chosen.assign(score=chosen[measure].astype("float64"))


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
