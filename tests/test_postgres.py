"""The production instance: the loop on PostgreSQL storage, across a server restart."""

from __future__ import annotations

import os
import shlex
import subprocess
from contextlib import closing
from pathlib import Path

import dagster as dg
import pytest
from conftest import TEST_IMGSZ
from labeling_dag.resources.storage import LabelStore
from services import Postgres, postgres, postgres_home  # noqa: F401  (postgres is a fixture)

from labeling_dag.contracts import MERGES
from labeling_dag.ingest_batches import ROOT_BATCH
from labeling_dag.simulation.loop_measures import RoundRecord
from labeling_dag.simulation.loop_settings import LoopSettings
from labeling_dag.simulation.run_loop import run_loop
from labeling_dag.simulation.sample_data import generate_dataset

RESTART = os.environ.get(
    "LABELING_DAG_TEST_PG_RESTART", "pg_ctlcluster --skip-systemctl-redirect {version} main restart"
)


def _restart_postgres() -> None:
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else [""]
    command = shlex.split(RESTART.format(version=versions[-1]))
    subprocess.run(command, check=True, capture_output=True, timeout=120)


@pytest.mark.slow
def test_loop_on_postgres_carries_on_across_a_server_restart(tmp_path: Path, postgres: Postgres, monkeypatch) -> None:  # noqa: F811
    """Seed round, PostgreSQL restarted, one more round: every run, event, check and partition is
    in PostgreSQL, both merges landed, and no verified label was lost."""
    data_yaml = generate_dataset(tmp_path / "data", images=60, seed=21, imgsz=TEST_IMGSZ)
    monkeypatch.setenv("DAGSTER_HOME", str(postgres_home(tmp_path)))
    for name, value in postgres.env().items():
        monkeypatch.setenv(name, value)
    rounds: list[RoundRecord] = []

    def after_round(record: RoundRecord) -> None:
        rounds.append(record)
        if record.round == 0:
            _restart_postgres()

    settings = LoopSettings(
        dataset=data_yaml,
        workdir=tmp_path / "work",
        rounds=1,
        batch_size=10,
        seed_labels=20,
        gold_images=2,
        imgsz=TEST_IMGSZ,
        cold_start_epochs=5,
        fine_tune_epochs=2,
        target_precision=0.6,
        seed=3,
    )
    records = run_loop(settings, on_round=after_round)
    assert [r.round for r in records] == [0, 1]

    instance = dg.DagsterInstance.get()
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    runs = instance.get_runs()
    assert {run.job_name for run in runs} >= {"prelabel_batch", "select_review_batch", "merge_review", "retrain"}
    assert all(run.status == dg.DagsterRunStatus.SUCCESS for run in runs), [(r.job_name, r.status) for r in runs]
    assert instance.get_dynamic_partitions("ingest_batches") == [ROOT_BATCH]

    with closing(postgres.connect()) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM runs")
        assert cursor.fetchone()[0] == len(runs)
        cursor.execute("SELECT count(DISTINCT run_id) FROM event_logs")
        assert cursor.fetchone()[0] == len(runs)
        cursor.execute("SELECT check_name, count(*) FROM asset_check_executions GROUP BY check_name")
        checks = dict(cursor.fetchall())
        cursor.execute("SELECT partition FROM dynamic_partitions WHERE partitions_def_name = 'ingest_batches'")
        partitions = [row[0] for row in cursor.fetchall()]
    assert {"cleaned_images_gate", "review_quality_gate", "verified_labels_gate", "promotion_gate"} <= set(checks)
    assert partitions == [ROOT_BATCH]

    # Both rounds merged after the restart as before it, and every human box is in force.
    merges = LabelStore(workdir=str(settings.workdir)).read(MERGES)
    assert list(merges["merge_id"]) == [r.batch_id for r in records]
    merge_runs = [run for run in runs if run.job_name == "merge_review"]
    assert sorted(run.tags["labeling/batch_id"] for run in merge_runs) == sorted(r.batch_id for r in records)
    assert records[-1].human_boxes_total >= records[0].human_boxes_total > 0
