"""The real daemon: `dagster dev` notices a returned review file and launches the merge."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
from conftest import make_resources

from labeling_dag import atomic
from labeling_dag.assets.cleaning import cleaned_images
from labeling_dag.assets.ingestion import raw_images
from labeling_dag.assets.prelabels import pre_labels
from labeling_dag.assets.review import review_batch
from labeling_dag.assets.scoring import uncertainty_scores
from labeling_dag.resources.storage import LabelStore
from labeling_dag.sample_data import CLASS_NAMES, generate_dataset
from labeling_dag.simulated_reviewer import load_truth, simulate_review

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_daemon_launches_the_merge_when_a_review_file_lands(tmp_path, tiny_model, monkeypatch):
    """Drop a completed Label Studio export in the inbox; the running daemon's sensor starts merge_review."""
    data_yaml = generate_dataset(tmp_path / "data", images=20, seed=8, imgsz=96)
    source = tmp_path / "data" / "images" / "train"
    work = tmp_path / "work"
    LabelStore(workdir=str(work)).set_class_names(CLASS_NAMES)
    exported = dg.materialize(
        [raw_images, cleaned_images, pre_labels, uncertainty_scores, review_batch],
        resources=make_resources(work, source),
        run_config={"ops": {"pre_labels": {"config": {"seed_model": str(tiny_model)}}, "review_batch": {"config": {"size": 5}}}},
    )
    batch_id = next(
        e.step_materialization_data.materialization.metadata["batch_id"].value
        for e in exported.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey("review_batch")
    )

    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = os.environ | {
        "DAGSTER_HOME": str(home),
        "LABELING_DAG_WORKDIR": str(work),
        "LABELING_DAG_SOURCE": str(source),
        "LABELING_DAG_VALIDATION": str(data_yaml),
    }
    server = subprocess.Popen(
        [str(BIN / "dagster"), "dev", "-w", str(REPO / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(_free_port())],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the daemon, webserver and code server stop together
    )
    try:
        tasks = json.loads((work / "exchange" / "outbox" / f"{batch_id}.json").read_text())
        answered = simulate_review(tasks, load_truth(data_yaml, "train"), class_names=CLASS_NAMES, seed=1)
        atomic.write_json(work / "exchange" / "inbox" / f"{batch_id}.json", answered)

        monkeypatch.setenv("DAGSTER_HOME", str(home))
        instance = dg.DagsterInstance.get()
        deadline = time.monotonic() + 240
        runs = []
        while time.monotonic() < deadline and not runs:
            time.sleep(2)
            runs = instance.get_runs(filters=dg.RunsFilter(job_name="merge_review"))
        assert runs, "the daemon did not launch merge_review within 240 s"
        assert runs[0].tags["dagster/run_key"] == batch_id
        assert runs[0].tags["labeling/batch_id"] == batch_id
        assert (work / "exchange" / "received" / f"{batch_id}.json").exists()
    finally:
        os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
