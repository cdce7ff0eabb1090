"""The workdir store: claims of pictures that arrive in more than one ingestion batch."""

import pytest
from labeling_dag.resources.storage import LabelStore

from labeling_dag.contracts import REVIEW_BATCHES, Table


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


def test_a_table_written_before_a_column_existed_reads_with_the_column_empty(tmp_path):
    """A workdir from an earlier version: its batch table lacks a column added to the schema since;
    it reads with that column at its dtype's empty value and keeps every stored column."""
    import pandas as pd

    store = LabelStore(workdir=str(tmp_path))
    store.write(REVIEW_BATCHES, pd.DataFrame({"batch_id": ["b1"], "image_id": ["a"], "extra": [1]}))
    schema = {"batch_id": "str", "image_id": "str", "by_uncertainty": "bool", "score": "float64", "note": "str"}
    grown = Table(REVIEW_BATCHES.folder, REVIEW_BATCHES.name, schema)

    table = store.read(grown)
    assert table.drop(columns="score").to_dict("records") == [
        {"batch_id": "b1", "image_id": "a", "extra": 1, "by_uncertainty": False, "note": ""}
    ]
    assert pd.isna(table["score"][0]) and table["by_uncertainty"].dtype == bool
    assert store.read(grown, only=["by_uncertainty"]).columns.tolist() == ["by_uncertainty"]
