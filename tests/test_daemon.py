"""The real daemon: `dagster dev` ingests a new batch folder, exports a review batch, and
launches the merge when the review file comes back."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
from labeling_dag.resources.storage import LabelStore

from bench.processes import stop_process_group
from labeling_dag import atomic
from labeling_dag.simulation.sample_data import CLASS_NAMES, generate_dataset
from labeling_dag.simulation.simulated_reviewer import load_truth, simulate_review

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_daemon_runs_the_loop_from_a_new_batch_folder_to_the_merge(tmp_path, monkeypatch):
    """With only `dagster dev` running: a batch folder appears in the source → the ingestion sensor
    adds its partition and pre-labels it → the first (cold-start) review batch is exported → a
    completed export dropped in the inbox → the review sensor launches merge_review."""
    data_yaml = generate_dataset(tmp_path / "data", images=20, seed=8, imgsz=96)
    source = tmp_path / "source"
    shutil.copytree(tmp_path / "data" / "images" / "train", source / "2026-11-25")
    work = tmp_path / "work"
    LabelStore(workdir=str(work)).set_class_names(CLASS_NAMES)

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
        monkeypatch.setenv("DAGSTER_HOME", str(home))
        instance = dg.DagsterInstance.get()
        [selection] = _wait_for_runs(instance, "select_review_batch", timeout=300)
        assert instance.get_dynamic_partitions("ingest_batches") == ["2026-11-25"]
        [ingest] = instance.get_runs(filters=dg.RunsFilter(job_name="prelabel_batch"))
        assert ingest.status == dg.DagsterRunStatus.SUCCESS and ingest.tags["dagster/partition"] == "2026-11-25"
        assert _wait_until(lambda: instance.get_run_by_id(selection.run_id).is_finished, timeout=120)
        [batch_id] = [p.stem for p in (work / "exchange" / "outbox").glob("*.json")]

        tasks = json.loads((work / "exchange" / "outbox" / f"{batch_id}.json").read_text())
        answered = simulate_review(tasks, load_truth(data_yaml, "train"), class_names=CLASS_NAMES, seed=1)
        atomic.write_json(work / "exchange" / "inbox" / f"{batch_id}.json", answered)

        [merge] = _wait_for_runs(instance, "merge_review", timeout=120)
        assert merge.tags["dagster/run_key"] == batch_id
        assert merge.tags["labeling/batch_id"] == batch_id
        assert (work / "exchange" / "received" / f"{batch_id}.json").exists()
    finally:
        stop_process_group(server, first=signal.SIGINT)


def _wait_until(condition, *, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(2)
    return False


def _wait_for_runs(instance: dg.DagsterInstance, job_name: str, *, timeout: float) -> list[dg.DagsterRun]:
    runs: list[dg.DagsterRun] = []
    assert _wait_until(
        lambda: runs.extend(instance.get_runs(filters=dg.RunsFilter(job_name=job_name))) or runs, timeout=timeout
    ), f"the daemon did not launch {job_name} within {timeout} s"
    return runs
