"""The loop's gates and versioned outputs, through the production jobs: quarantine, promotion, DVC."""

from __future__ import annotations

import subprocess
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from conftest import TEST_IMGSZ, make_resources
from labeling_dag.resources.loop_policy import LoopPolicy
from labeling_dag.resources.storage import LabelStore

from labeling_dag import atomic
from labeling_dag.contracts import GOLD_LABELS
from labeling_dag.definitions import build_definitions
from labeling_dag.ingest_batches import ROOT_BATCH
from labeling_dag.model_registry import ModelRegistry
from labeling_dag.partitions import ingest_batches
from labeling_dag.sensors import merge_run_config
from labeling_dag.simulation.sample_data import CLASS_NAMES, generate_dataset
from labeling_dag.simulation.simulated_reviewer import load_truth, simulate_review


def _loop(tmp_path: Path, tiny_model: Path, **policy: object):
    """A workdir with a seed model, gold items and one exported batch; the production definitions over it."""
    data_yaml = generate_dataset(tmp_path / "data", images=40, seed=13, imgsz=TEST_IMGSZ)
    work = tmp_path / "work"
    resources = make_resources(work, tmp_path / "data" / "images" / "train") | {
        "policy": LoopPolicy(validation_dataset=str(data_yaml), fine_tune_epochs=1, **policy)
    }
    LabelStore(workdir=str(work)).set_class_names(CLASS_NAMES)
    truth = load_truth(data_yaml, "train")
    gold_ids = sorted(truth)[:4]
    gold = pd.DataFrame(
        [
            {"image_id": i, "class_name": b.class_name, "x": b.box.x, "y": b.box.y, "w": b.box.w, "h": b.box.h}
            for i in gold_ids
            for b in truth[i]
        ]
    )
    LabelStore(workdir=str(work)).write(GOLD_LABELS, gold)
    defs = build_definitions(resources)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(ingest_batches.name, [ROOT_BATCH])
    prelabelled = defs.resolve_job_def("prelabel_batch").execute_in_process(
        run_config={"ops": {"pre_labels": {"config": {"seed_model": str(tiny_model)}}}},
        instance=instance,
        partition_key=ROOT_BATCH,
    )
    assert prelabelled.success
    first = defs.resolve_job_def("select_review_batch").execute_in_process(
        run_config={"ops": {"review_batch": {"config": {"size": 10, "gold_rate": 0.4}}}}, instance=instance
    )
    assert first.success
    batches = pd.read_parquet(work / "review_batch" / "batches.parquet")
    return defs, instance, work, truth, batches, data_yaml


def _answer(work: Path, batch_id: str, truth, *, error_rate: float) -> None:
    tasks = __import__("json").loads((work / "exchange" / "outbox" / f"{batch_id}.json").read_text())
    answered = simulate_review(tasks, truth, class_names=CLASS_NAMES, error_rate=error_rate, seed=5)
    atomic.write_json(work / "exchange" / "received" / f"{batch_id}.json", answered)


@pytest.mark.slow
def test_a_batch_failing_its_gold_items_is_quarantined_and_not_merged(tmp_path, tiny_model):
    """Every gold answer wrong → the review-quality gate fails, verified_labels does not run, the
    images return to the pool."""
    defs, instance, work, truth, batches, _ = _loop(tmp_path, tiny_model)
    batch_id = batches["batch_id"].iloc[0]
    assert batches["is_gold"].sum() == 4
    _answer(work, batch_id, truth, error_rate=1.0)

    merge = defs.resolve_job_def("merge_review").execute_in_process(
        run_config=merge_run_config(batch_id), instance=instance, raise_on_error=False
    )
    assert not merge.success
    (evaluation,) = [e for e in merge.get_asset_check_evaluations() if e.check_name == "review_quality_gate"]
    assert not evaluation.passed
    assert not any(e.asset_key == dg.AssetKey("verified_labels") for e in merge.get_asset_materialization_events())
    assert not (work / "verified_labels" / "labels.parquet").exists()

    again = defs.resolve_job_def("select_review_batch").execute_in_process(
        run_config={"ops": {"review_batch": {"config": {"size": 10}}}}, instance=instance
    )
    assert again.success
    batches = pd.read_parquet(work / "review_batch" / "batches.parquet")
    first, second = (set(group["image_id"]) for _, group in batches.groupby("batch_id", sort=False))
    assert first - set(batches.loc[batches["is_gold"], "image_id"]) & second, "quarantined images may be selected again"


@pytest.mark.slow
def test_a_model_worse_than_the_current_one_is_refused(tmp_path, tiny_model):
    """With a promotion tolerance no model can meet, the gate refuses and the current model stays."""
    defs, instance, work, truth, batches, _ = _loop(tmp_path, tiny_model, promotion_tolerance=-1.0)
    batch_id = batches["batch_id"].iloc[0]
    _answer(work, batch_id, truth, error_rate=0.0)
    assert (
        defs.resolve_job_def("merge_review")
        .execute_in_process(run_config=merge_run_config(batch_id), instance=instance)
        .success
    )
    before = ModelRegistry(work).current().model_version

    retrain = defs.resolve_job_def("retrain").execute_in_process(instance=instance, raise_on_error=False)
    assert not retrain.success
    (evaluation,) = retrain.get_asset_check_evaluations()
    assert evaluation.check_name == "promotion_gate" and not evaluation.passed
    assert not any(e.asset_key == dg.AssetKey("current_model") for e in retrain.get_asset_materialization_events())
    assert ModelRegistry(work).current().model_version == before


@pytest.mark.slow
def test_a_promoted_model_is_a_dvc_artifact_with_metrics(tmp_path, tiny_model):
    """After merge and retrain, `dvc artifacts get` returns the promoted weights and `dvc metrics show` its mAP."""
    # A one-epoch fine-tune may lose mAP, overall and per class; this test is about publishing, so any model passes.
    defs, instance, work, truth, batches, _ = _loop(tmp_path, tiny_model, promotion_tolerance=1.0)
    batch_id = batches["batch_id"].iloc[0]
    _answer(work, batch_id, truth, error_rate=0.0)
    assert (
        defs.resolve_job_def("merge_review")
        .execute_in_process(run_config=merge_run_config(batch_id), instance=instance)
        .success
    )
    no_class_rule = {"ops": {"retrained_model": {"config": {"class_tolerance": None}}}}
    retrain = defs.resolve_job_def("retrain").execute_in_process(run_config=no_class_rule, instance=instance)
    assert retrain.success
    current = ModelRegistry(work).current()
    card = current.metrics
    assert current.parent is not None and {"map50", "map50_95", "training_boxes"} <= set(card)
    metadata = retrain.asset_materializations_for_node("retrained_model")[0].metadata
    per_class = metadata["per_class"].value
    assert per_class and {row["class_name"] for row in per_class} <= set(CLASS_NAMES)
    assert metadata["class_quality"].value.count("\n") == 1 + len(per_class)  # header, rule, a row per class
    assert metadata["confusion_matrix"].value.splitlines()[0].endswith("| background |")
    model_card = metadata["model_card"].value
    assert model_card["evaluation"]["per_class"] == per_class and model_card["class_tolerance"] is None
    assert model_card["parent_evaluation_same_validation"]["confusion"]["labels"][-1] == "background"

    got = tmp_path / "artifact.pt"
    fetched = subprocess.run(
        ["dvc", "artifacts", "get", ".", "detector", "-o", str(got)], cwd=work, capture_output=True, text=True
    )
    assert fetched.returncode == 0, fetched.stderr
    assert got.read_bytes() == (work / current.path).read_bytes()
    metrics = subprocess.run(["dvc", "metrics", "show", "--json"], cwd=work, capture_output=True, text=True)
    assert metrics.returncode == 0, metrics.stderr
    assert '"map50"' in metrics.stdout and "model_store/metrics.json" in metrics.stdout
    tags = subprocess.run(["git", "tag"], cwd=work, capture_output=True, text=True).stdout.split()
    assert tags == ["detector@v1.0.0"]
