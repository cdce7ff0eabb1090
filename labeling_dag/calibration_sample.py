"""The random sample auto-accept is fitted on: drawn into each review batch beside the strategy's
picks, and picked back out of the edits when thresholds and the image gate are fitted.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from labeling_dag.revisions import split_revision


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
