"""Ingestion-batch keys and the staleness rule of the pre-label partitions (pure functions)."""

from __future__ import annotations

import pytest

from labeling_dag.ingest_batches import ROOT_BATCH, ScoredBatch, batch_key_problem, stale_batches


@pytest.mark.parametrize("key", ["2026-11-25", "batch_001", "cam.7", "A", ROOT_BATCH, "x" * 128])
def test_plain_names_are_batch_keys(key: str) -> None:
    assert batch_key_problem(key) is None


@pytest.mark.parametrize("key", ["", "../etc", "a/b", "a..b", ".hidden", "_other", "with space", "x" * 129, "é"])
def test_names_that_could_escape_or_confuse_are_refused(key: str) -> None:
    assert batch_key_problem(key)


def test_stale_batches_follow_the_model_and_skip_settled_ones() -> None:
    scored = {
        "fresh": ScoredBatch(model_version="v2", unsettled=4),
        "old": ScoredBatch(model_version="v1", unsettled=4),
        "settled": ScoredBatch(model_version="v1", unsettled=0),
        "cold": ScoredBatch(model_version="", unsettled=9),
    }
    assert stale_batches(["fresh", "old", "settled", "cold", "new"], scored, model_version="v2") == [
        "old",
        "cold",
        "new",
    ]
    assert stale_batches(["fresh", "old"], scored, model_version="v1") == ["fresh"]
    assert stale_batches([], scored, model_version="v2") == []
