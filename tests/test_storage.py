"""The workdir store: claims of pictures that arrive in more than one ingestion batch."""

import pytest
from labeling_dag.resources.storage import LabelStore


def test_the_first_batch_to_claim_a_picture_owns_it(tmp_path):
    store = LabelStore(workdir=str(tmp_path))

    assert store.claim_images(["a", "b"], "batch-1") == {"a": "batch-1", "b": "batch-1"}
    assert store.claim_images(["b", "c"], "batch-2") == {"b": "batch-1", "c": "batch-2"}
    # A re-run of a batch asks again and gets the same answer.
    assert store.claim_images(["a", "b", "c"], "batch-2") == {"a": "batch-1", "b": "batch-1", "c": "batch-2"}
    assert store.claim_images([], "batch-3") == {}


def test_a_claim_names_a_safe_batch(tmp_path):
    with pytest.raises(ValueError, match="ingestion batch"):
        LabelStore(workdir=str(tmp_path)).claim_images(["a"], "../escape")
