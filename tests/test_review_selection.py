"""Selection of a review batch: the strategy's picks plus the calibration sample (labeling_dag.review_selection)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from labeling_dag.calibration_sample import calibration_evidence, calibration_sample
from labeling_dag.review_selection import choose, eligible_images


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


def test_the_calibration_sample_is_drawn_from_every_image_with_boxes() -> None:
    candidates = _candidates()
    with_boxes = {i for i in range(40) if i % 5}
    drawn = calibration_sample(candidates, count=20, taken={1, 2}, seed=0)
    assert len(drawn) == 20 and set(drawn) <= with_boxes - {1, 2}
    assert max(drawn) >= 20 and min(drawn) < 20  # both ends of the confidence range
    assert drawn == calibration_sample(candidates, count=20, taken={1, 2}, seed=0)  # seeded
    assert calibration_sample(candidates, count=0, taken=set(), seed=0) == []


def test_a_batch_mixes_the_most_uncertain_images_with_a_calibration_sample() -> None:
    """k=20 with a quarter calibrating: 15 least-confident picks (the top of the ranking) and 5
    random images with boxes; the random strategy draws no separate sample."""
    candidates = _candidates()
    settings = dict(
        k=20, uncertainty_measure="least_confidence", random_fraction=0.0, diversity=False, seed=0, cost_aware=False
    )
    chosen = choose(candidates, strategy="least_confidence", calibration_fraction=0.25, **settings)
    ranks = [int(i[4:]) for i in chosen["image_id"]]
    assert ranks[:15] == list(range(39, 24, -1))
    assert len(ranks) == 20 and all(r < 25 and r % 5 for r in ranks[15:])
    plain = choose(candidates, strategy="least_confidence", calibration_fraction=0.0, **settings)
    assert [int(i[4:]) for i in plain["image_id"]] == list(range(39, 19, -1))
    drawn = choose(candidates, strategy="random", calibration_fraction=0.25, **settings)
    assert len(drawn) == 20


def test_a_near_duplicate_waits_for_its_original_to_be_verified_then_is_eligible() -> None:
    """The near-duplicate is left out while the picture it resembles is unlabelled, and comes back
    once that one is verified; an exact copy never does (it shares its original's labels)."""
    cleaned = pd.DataFrame(
        {
            "image_id": ["orig", "near", "copy", "other"],
            "is_exact_duplicate": [False, False, True, False],
            "is_near_duplicate": [False, True, False, False],
            "near_duplicate_of": ["", "orig", "", ""],
        }
    )
    scores = pd.DataFrame({"image_id": cleaned["image_id"]})
    batches = pd.DataFrame({"batch_id": pd.Series(dtype=str), "image_id": pd.Series(dtype=str)})

    def eligible(verified: set[str], skip: bool = True) -> list[str]:
        return eligible_images(
            scores,
            cleaned,
            batches,
            batch_id="b1",
            released_batches=set(),
            verified=verified,
            excluded=set(),
            skip_near_duplicates=skip,
        )["image_id"].tolist()

    assert eligible(set()) == ["orig", "other"]
    assert eligible({"orig"}) == ["near", "other"]
    assert eligible(set(), skip=False) == ["orig", "near", "other"]


def test_only_the_strategy_ranked_picks_are_marked_as_chosen_for_uncertainty() -> None:
    candidates = _candidates()
    settings = dict(
        k=20, uncertainty_measure="least_confidence", random_fraction=0.0, diversity=False, seed=0, cost_aware=False
    )
    chosen = choose(candidates, strategy="least_confidence", calibration_fraction=0.25, **settings)
    assert chosen["by_uncertainty"].tolist() == [True] * 15 + [False] * 5
    assert not choose(candidates, strategy="random", calibration_fraction=0.25, **settings)["by_uncertainty"].any()
    assert choose(candidates.iloc[0:0], strategy="hybrid", calibration_fraction=0.25, **settings).empty


def test_auto_accept_is_fitted_on_random_draws_only() -> None:
    """Images picked for their uncertainty are a biased sample of what auto-accept is applied to,
    and a re-review shows verified labels, not a model's boxes: their edits (and those of their
    revisions) are left out, every other image's are kept."""
    batches = pd.DataFrame(
        {
            "batch_id": ["b1", "b1", "b1", "b2"],
            "image_id": ["hard", "drawn", "gold", "hard"],
            "by_uncertainty": [True, False, False, False],
            "is_re_review": [False, False, False, True],
        }
    )
    edits = pd.DataFrame(
        {
            "batch_id": ["b1", "b1", "b1.r2", "b1.r2", "b1", "b2"],
            "image_id": ["hard", "drawn", "hard", "drawn", "gold", "hard"],
            "edit_kind": "accepted",
        }
    )
    kept = calibration_evidence(edits, batches)
    assert list(zip(kept["batch_id"], kept["image_id"])) == [("b1", "drawn"), ("b1.r2", "drawn"), ("b1", "gold")]
    assert calibration_evidence(edits.iloc[0:0], batches).empty


def test_the_strategy_fills_the_batch_when_too_few_images_have_boxes_for_the_sample() -> None:
    """Only 2 images have boxes: the half-batch sample gets both, and the strategy's next picks
    make up the rest, so the batch keeps its size."""
    candidates = _candidates(20).assign(n_boxes=[2 if i in (3, 7) else 0 for i in range(20)])
    settings = dict(
        k=10, uncertainty_measure="least_confidence", random_fraction=0.0, diversity=False, seed=0, cost_aware=False
    )
    chosen = choose(candidates, strategy="least_confidence", calibration_fraction=0.5, **settings)
    ranks = [int(i[4:]) for i in chosen["image_id"]]
    assert len(ranks) == 10 and len(set(ranks)) == 10
    assert ranks[:8] == list(range(19, 11, -1)) and sorted(ranks[8:]) == [3, 7]
    assert chosen["by_uncertainty"].tolist() == [True] * 8 + [False] * 2
