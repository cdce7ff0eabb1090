"""Scale-out: partitions of the pre-label path run on two real Celery workers over Redis.

The Dagster instance is a fresh PostgreSQL database (deploy/dagster.yaml); two
``dagster-celery worker start`` processes share it and the workdir with the runs. Runs are
launched the way an operator backfills by hand: one ``dagster job execute`` per partition,
all at once, with ``LABELING_DAG_EXECUTOR=celery``. (A backfill through the daemon launches
the same runs with the same executor; the CLI keeps the test free of a daemon's timing.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import yaml
from conftest import TEST_IMGSZ
from services import Postgres, postgres, postgres_home, redis_url  # noqa: F401  (fixtures)

from bench.processes import stop_process_group
from tests.bad_images import write_good_images

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
BATCHES = ("b1", "b2", "b3")
IMAGES_PER_BATCH = 10
STAGES = ("raw_images", "cleaned_images", "pre_labels", "uncertainty_scores")
TABLES = {
    "raw_images": "index",
    "cleaned_images": "images",
    "pre_labels": "images",
    "uncertainty_scores": "scores",
}
WORKERS = ("w1", "w2")
RUN_TIMEOUT_S = 240


def _start_worker(name: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    """One Celery worker (one step at a time) in a process group of its own, to stop it whole."""
    command = [
        BIN / "dagster-celery", "worker", "start", "-A", "dagster_celery.app", "-y", REPO / "deploy" / "celery.yaml",
        "-n", name, "--", "--concurrency=1",
    ]  # fmt: skip
    with log.open("w") as out:
        return subprocess.Popen(
            [str(part) for part in command],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@pytest.mark.slow
def test_backfill_runs_every_step_on_two_celery_workers(
    tmp_path: Path,
    tiny_model: Path,
    postgres: Postgres,  # noqa: F811
    redis_url: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Three batches of ten images, three runs at once, two workers: every partition of the four
    stages materialised in PostgreSQL, every per-batch table written with every image, and every
    step executed by a worker process (both workers took some), none by the launching process."""
    source, workdir = tmp_path / "source", tmp_path / "work"
    for number, batch in enumerate(BATCHES):
        write_good_images(source / batch, IMAGES_PER_BATCH, seed=100 + number, size=TEST_IMGSZ)
    home = postgres_home(tmp_path)
    env = dict(os.environ) | postgres.env()
    env.update(
        DAGSTER_HOME=str(home),
        PATH=f"{BIN}{os.pathsep}{env['PATH']}",  # dagster-celery starts `celery` from PATH
        LABELING_DAG_EXECUTOR="celery",
        LABELING_DAG_WORKDIR=str(workdir),
        LABELING_DAG_SOURCE=str(source),
        CELERY_BROKER_URL=redis_url,
        CELERY_RESULT_BACKEND=redis_url,
        OMP_NUM_THREADS="1",
    )
    for name, value in postgres.env().items():
        monkeypatch.setenv(name, value)  # this process reads the same instance
    config = tmp_path / "run_config.yaml"
    config.write_text(yaml.safe_dump({"ops": {"pre_labels": {"config": {"seed_model": str(tiny_model)}}}}))

    with dg.DagsterInstance.from_config(str(home)) as instance:
        # What ingest_batch_sensor requests for each new sub-folder of the source.
        instance.add_dynamic_partitions("ingest_batches", list(BATCHES))

    workers = [_start_worker(name, env, tmp_path / f"{name}.log") for name in WORKERS]
    try:
        runs = {
            batch: subprocess.Popen(
                [
                    str(BIN / "dagster"),
                    "job",
                    "execute",
                    "-m",
                    "labeling_dag.definitions",
                    "-j",
                    "prelabel_batch",
                    "--tags",
                    json.dumps({"dagster/partition": batch}),
                    "-c",
                    str(config),
                ],  # fmt: skip
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for batch in BATCHES
        }
        outputs = {batch: run.communicate(timeout=RUN_TIMEOUT_S)[0] for batch, run in runs.items()}
    finally:
        for worker in workers:
            stop_process_group(worker)
    for batch, run in runs.items():
        assert run.returncode == 0, f"run of {batch} failed:\n{outputs[batch][-6000:]}"

    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        for stage in STAGES:
            assert instance.get_materialized_partitions(dg.AssetKey(stage)) == set(BATCHES), stage
        launcher_pids = {run.pid for run in runs.values()}
        dagster_runs = instance.get_runs()
        assert sorted(run.tags["dagster/partition"] for run in dagster_runs) == list(BATCHES)
        assert all(run.status == dg.DagsterRunStatus.SUCCESS for run in dagster_runs)
        hostnames, step_starts = set(), []
        for run in dagster_runs:
            for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
                metadata = entry.dagster_event.event_specific_data.metadata
                if "Celery worker" in metadata:
                    hostnames.add(metadata["Celery worker"].value)
            step_starts += [
                entry.dagster_event for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_START)
            ]
        step_pids = {event.pid for event in step_starts}
        started = {event.step_key for event in step_starts}

    # Every asset step and every check step of every run started in a worker process.
    assert started >= set(STAGES), started
    assert len(step_starts) >= len(BATCHES) * len(STAGES)
    assert {name.split("@")[0] for name in hostnames} == set(WORKERS), hostnames
    assert step_pids and not step_pids & launcher_pids, (step_pids, launcher_pids)

    for batch in BATCHES:
        for stage, table in TABLES.items():
            path = workdir / stage / batch / f"{table}.parquet"
            assert path.is_file(), path
            assert len(pd.read_parquet(path)) == IMAGES_PER_BATCH, path
