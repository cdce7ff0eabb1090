"""Label-issue suspects go back to a reviewer: a re-review task shows the verified labels, the answer
replaces them through the usual merge, and no suspect is sent twice."""

from __future__ import annotations

import json

import dagster as dg
import pandas as pd
import pytest
from conftest import make_resources
from labeling_dag.resources.loop_policy import LoopPolicy
from verified_workdir import build_verified_workdir

from labeling_dag import atomic
from labeling_dag.contracts import ISSUE_COLUMNS, LABEL_COLUMNS
from labeling_dag.definitions import build_definitions
from labeling_dag.review_items import VERIFIED_LABELS_VERSION
from labeling_dag.sensors import merge_run_config
from labeling_dag.simulation.sample_data import CLASS_NAMES
from labeling_dag.simulation.simulated_reviewer import load_truth, simulate_review

pytestmark = pytest.mark.slow


def test_a_suspect_goes_back_once_with_its_verified_labels_and_its_answer_replaces_them(tmp_path):
    verified = build_verified_workdir(tmp_path)
    work = verified.work
    labels = pd.read_parquet(work / "verified_labels" / "labels.parquet")
    human = labels[(labels["source"] == "human") & (labels["retired_by"] == "")]
    suspect = sorted(set(human["image_id"]))[0]
    suspects = pd.DataFrame([{name: "" for name in ISSUE_COLUMNS}]).assign(
        image_id=suspect, rank=1, label_quality=0.1, overlooked=0.1, swapped=1.0, badly_located=1.0, suspect=True
    )
    suspects = suspects.assign(boxes=1, predicted_boxes=1, issue="overlooked").astype(ISSUE_COLUMNS)
    (work / "label_issues").mkdir(exist_ok=True)
    suspects.to_parquet(work / "label_issues" / "suspects.parquet")

    resources = make_resources(work, verified.source) | {
        "policy": LoopPolicy(validation_dataset=str(verified.pool_yaml))
    }
    defs = build_definitions(resources)
    instance = dg.DagsterInstance.ephemeral()
    select = defs.resolve_job_def("select_review_batch")
    review = {"ops": {"review_batch": {"config": {"size": 6, "gold_rate": 0.0}}}}
    assert select.execute_in_process(run_config=review, instance=instance).success

    # The pool is done, so the batch is the suspect alone, showing its verified boxes.
    batches = pd.read_parquet(work / "review_batch" / "batches.parquet")
    batch_id = batches["batch_id"].iloc[-1]
    batch = batches[batches["batch_id"] == batch_id]
    assert batch["image_id"].tolist() == [suspect] and batch["is_re_review"].all()
    (task,) = json.loads((work / "exchange" / "outbox" / f"{batch_id}.json").read_text())
    (prediction,) = task["predictions"]
    assert prediction["model_version"] == VERIFIED_LABELS_VERSION
    shown = sorted(region["id"] for region in prediction["result"])
    assert shown == sorted(human.loc[human["image_id"] == suspect, "label_id"])

    truth = load_truth(verified.pool_yaml, "train")
    answered = simulate_review([task], truth, class_names=CLASS_NAMES, seed=5)
    atomic.write_json(work / "exchange" / "received" / f"{batch_id}.json", answered)
    merge = defs.resolve_job_def("merge_review").execute_in_process(
        run_config=merge_run_config(batch_id), instance=instance
    )
    assert merge.success
    after = pd.read_parquet(work / "verified_labels" / "labels.parquet").astype(LABEL_COLUMNS)
    active = after[(after["image_id"] == suspect) & (after["retired_by"] == "")]
    assert (active["review_batch_id"] == batch_id).all() and len(active) == len(truth[suspect])
    retired = after[(after["image_id"] == suspect) & (after["retired_by"] == batch_id)]
    assert set(retired["label_id"]) == set(shown)  # the old generation is kept for the audit trail

    # Sent once: the next selection finds nothing to do.
    assert select.execute_in_process(run_config=review, instance=instance).success
    assert pd.read_parquet(work / "review_batch" / "batches.parquet")["batch_id"].iloc[-1] == batch_id
