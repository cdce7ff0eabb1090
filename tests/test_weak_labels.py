"""Labeling functions voting beside the text model: the pure combination, and pre_labels through Dagster."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from labeling_dag.contracts import LF_VOTES, PRE_LABEL_BOXES
from labeling_dag.ingest_batches import ROOT_BATCH
from labeling_dag.partitions import ingest_batches
from labeling_dag.records import ImagePrediction
from labeling_dag.weak_labels import combined_predictions, function_report, vote_matrix, vote_rows

CLASSES = ("business", "sport", "technology")


def _prediction(probs: list[float]) -> ImagePrediction:
    return ImagePrediction(
        path="t.txt",
        width=10,
        height=1,
        boxes_xywhn=np.array([[0.5, 0.5, 1.0, 1.0]]),
        class_ids=np.array([int(np.argmax(probs))]),
        confidences=np.array([max(probs)]),
        class_probs=np.array([probs], dtype=np.float32),
        embedding=np.zeros(4, dtype=np.float32),
    )


def test_votes_round_trip_through_their_table_without_abstentions() -> None:
    votes = np.array([[0, -1], [-1, -1], [2, 1]])
    rows = vote_rows(["a", "b", "c"], votes, function_names=["f", "g"], class_names=CLASSES, run_id="r")
    assert list(rows["function"]) == ["f", "f", "g"]
    assert list(rows["class_name"]) == ["business", "technology", "sport"]
    assert (vote_matrix(rows, ["a", "b", "c"], ["f", "g"], CLASSES) == votes).all()


def test_two_agreeing_functions_outvote_an_unsure_model_and_abstentions_keep_its_answer() -> None:
    predictions = [_prediction([0.5, 0.3, 0.2]), _prediction([0.2, 0.7, 0.1])]
    votes = np.array([[2, 2], [-1, -1]])
    first, second = combined_predictions(predictions, votes)
    assert int(first.class_ids[0]) == 2 and first.class_probs.shape == (1, 3)
    assert first.confidences[0] == pytest.approx(first.class_probs[0].max())
    assert np.allclose(second.class_probs, predictions[1].class_probs)


def test_functions_label_whole_texts_not_boxes() -> None:
    boxes = _prediction([0.5, 0.3, 0.2])
    two = ImagePrediction(**{**boxes.__dict__, "class_probs": np.ones((2, 3)) / 3})
    with pytest.raises(ValueError, match="whole texts"):
        combined_predictions([two], np.array([[0]]))


def test_the_report_judges_each_function_on_verified_texts_only() -> None:
    rows = pd.DataFrame(
        {"image_id": ["a", "b", "a"], "function": ["f", "f", "g"], "class_name": ["sport", "sport", "business"]}
    ).assign(run_id="r")
    report = function_report(rows, ["f", "g"], CLASSES, {"a": "sport"})
    assert report.loc["f", "coverage"] == pytest.approx(1.0)
    assert report.loc["f", "empirical_accuracy"] == pytest.approx(1.0)
    assert report.loc["g", "empirical_accuracy"] == pytest.approx(0.0)
    assert report.loc["f", "conflicts"] == pytest.approx(0.5)


@pytest.mark.slow
def test_pre_labels_of_a_text_workdir_carry_the_label_models_combination(tmp_path: Path) -> None:
    from labeling_dag.assets.cleaning import cleaned_images
    from labeling_dag.assets.ingestion import raw_images
    from labeling_dag.assets.prelabels import pre_labels
    from labeling_dag.resources.review_exchange import FileReviewExchange, FolderReview
    from labeling_dag.resources.snapshots import SnapshotStore
    from labeling_dag.resources.storage import ImageSource, LabelStore
    from labeling_dag.resources.text_classifier import TextClassifier

    from labeling_dag.text_model import zero_shot_weights
    from labeling_dag.workdir_init import InitRequest, init_workdir

    source, workdir = tmp_path / "source", tmp_path / "work"
    source.mkdir()
    texts = {
        "a.txt": "The striker scored twice as the football club won the cup final.",
        "b.txt": "Shares in the bank rose after profits beat forecasts.",
        "c.txt": "The new phone runs faster software and a better camera chip.",
    }
    for name, text in texts.items():
        (source / name).write_text(text, encoding="utf-8")
    functions = tmp_path / "functions.py"
    functions.write_text(
        "from labeling_dag.labeling_functions import keyword_lf\n"
        'sport = keyword_lf("sport", ["football", "cup"], "sport")\n'
        'money = keyword_lf("money", ["shares", "profits"], "business")\n'
        'chips = keyword_lf("chips", ["software", "chip"], "technology")\n'
    )
    init_workdir(InitRequest(workdir=workdir, classes=CLASSES, modality="text"))
    seed = zero_shot_weights(CLASSES, tmp_path / "zero-shot.json")
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(ingest_batches.name, [ROOT_BATCH])
    result = dg.materialize(
        [raw_images, cleaned_images, pre_labels],
        resources={
            "store": LabelStore(workdir=str(workdir)),
            "source": ImageSource(folder=str(source)),
            "detector": TextClassifier(labeling_functions=str(functions)),
            "snapshots": SnapshotStore(),
            "exchange": FileReviewExchange(),
            "review": FolderReview(),
        },
        run_config={"ops": {"pre_labels": {"config": {"seed_model": str(seed)}}}},
        instance=instance,
        partition_key=ROOT_BATCH,
    )
    assert result.success
    store = LabelStore(workdir=str(workdir))
    votes = store.read(LF_VOTES, batch=ROOT_BATCH)
    assert sorted(votes["function"]) == ["chips", "money", "sport"]
    boxes = store.read(PRE_LABEL_BOXES, batch=ROOT_BATCH)
    assert sorted(boxes["class_name"]) == ["business", "sport", "technology"]
    meta = result.asset_materializations_for_node("pre_labels")[0].metadata
    assert "coverage" in meta["labeling_functions"].value
