"""Selection of a review batch: the strategy's picks plus the calibration sample (labeling_dag.review_selection)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from labeling_dag.review_selection import choose, confident_sample


def _candidates(n: int = 40) -> pd.DataFrame:
    """n scored images: image i has least confidence i / n (image 0 the most confident); every 5th has no box."""
    return pd.DataFrame(
        {
            "image_id": [f"img-{i:02d}" for i in range(n)],
            "model_version": "mv-1",
            "least_confidence": np.arange(n) / n,
            "margin": np.arange(n) / n,
            "entropy": np.arange(n) / n,
            "n_boxes": [0 if i % 5 == 0 else 2 for i in range(n)],
            "embedding": [[float(i)] for i in range(n)],
        }
    )


def test_the_calibration_sample_comes_from_the_confident_half_of_images_with_boxes() -> None:
    candidates = _candidates()
    with_boxes = [i for i in range(40) if i % 5]
    confident_half = set(with_boxes[: len(with_boxes) // 2])
    drawn = confident_sample(candidates, count=6, taken={1, 2}, seed=0)
    assert len(drawn) == 6 and set(drawn) <= confident_half - {1, 2}
    assert drawn == confident_sample(candidates, count=6, taken={1, 2}, seed=0)  # seeded
    assert confident_sample(candidates, count=0, taken=set(), seed=0) == []


def test_a_batch_mixes_the_most_uncertain_images_with_a_confident_sample() -> None:
    """k=20 with a quarter calibrating: 15 least-confident picks (the top of the ranking) and 5
    confident ones; the random strategy draws no separate sample."""
    candidates = _candidates()
    settings = dict(
        k=20, uncertainty_measure="least_confidence", random_fraction=0.0, diversity=False, seed=0, cost_aware=False
    )
    chosen = choose(candidates, strategy="least_confidence", calibration_fraction=0.25, **settings)
    ranks = [int(i[4:]) for i in chosen["image_id"]]
    assert ranks[:15] == list(range(39, 24, -1))
    assert len(ranks) == 20 and all(r < 20 and r % 5 for r in ranks[15:])
    plain = choose(candidates, strategy="least_confidence", calibration_fraction=0.0, **settings)
    assert [int(i[4:]) for i in plain["image_id"]] == list(range(39, 19, -1))
    drawn = choose(candidates, strategy="random", calibration_fraction=0.25, **settings)
    assert len(drawn) == 20
