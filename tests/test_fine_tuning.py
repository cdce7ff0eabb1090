"""A fine-tune takes at least its epochs, and more where few images give too few optimizer steps."""

from __future__ import annotations

import pytest

from labeling_dag.fine_tuning import fine_tune_epochs


@pytest.mark.parametrize(
    ("images", "expected"),
    [
        pytest.param(104, 15, id="a-first-batch: 7 steps an epoch, 15 epochs for 100 steps"),
        pytest.param(200, 8, id="two-batches: 13 steps an epoch"),
        pytest.param(320, 5, id="twenty-steps-an-epoch: the epochs suffice"),
        pytest.param(5000, 5, id="a-large-pool"),
        pytest.param(1, 15, id="one-image: at most three times the epochs"),
    ],
)
def test_epochs_reach_the_minimum_number_of_steps(images: int, expected: int) -> None:
    assert fine_tune_epochs(images, batch=16, epochs=5, min_steps=100) == expected


def test_no_minimum_keeps_the_epochs() -> None:
    assert fine_tune_epochs(104, batch=16, epochs=5, min_steps=0) == 5


@pytest.mark.parametrize(
    ("images", "batch", "epochs", "min_steps"), [(0, 16, 5, 100), (10, 0, 5, 100), (10, 16, 0, 1), (10, 16, 5, -1)]
)
def test_bad_settings_are_refused(images: int, batch: int, epochs: int, min_steps: int) -> None:
    with pytest.raises(ValueError, match="fine_tune_epochs"):
        fine_tune_epochs(images, batch=batch, epochs=epochs, min_steps=min_steps)
