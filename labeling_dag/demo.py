"""``make demo``: the lifecycle on generated data, recorded in the local Dagster instance."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd


def run_demo(root: Path, *, images: int, seed_images: int, batch_size: int) -> int:
    """Generate a pool and seed labels under ``root``, run ``prelabel_and_select``, print the results.

    Uses the instance in ``$DAGSTER_HOME`` so that ``make ui`` shows the runs, checks and metadata.
    """
    import dagster as dg

    from labeling_dag.definitions import defs
    from labeling_dag.sample_data import generate_dataset

    pool_yaml = generate_dataset(root / "pool", images=images, seed=1)
    seed_yaml = generate_dataset(root / "seed", images=seed_images, seed=2)
    os.environ["LABELING_DAG_WORKDIR"] = str(root / "work")
    os.environ["LABELING_DAG_SOURCE"] = str(root / "pool" / "images" / "train")
    print(f"pool: {pool_yaml}\nseed labels: {seed_yaml}\nworkdir: {root / 'work'}")

    result = defs.resolve_job_def("prelabel_and_select").execute_in_process(
        run_config={
            "loggers": {"console": {"config": {"log_level": "WARNING"}}},
            "ops": {
                "pre_labels": {"config": {"seed_dataset": str(seed_yaml)}},
                "review_batch": {"config": {"size": batch_size}},
            },
        },
        instance=dg.DagsterInstance.get(),
    )
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        shown = {k: v.value for k, v in materialization.metadata.items() if isinstance(v.value, (int, float, str)) and len(str(v.value)) < 80}
        print(f"\n{materialization.asset_key.to_user_string()}: {json.dumps(shown, default=str)}")
    for evaluation in result.get_asset_check_evaluations():
        print(f"check {evaluation.check_name}: {'passed' if evaluation.passed else 'FAILED'}")
    work = root / "work"
    batches = pd.read_parquet(work / "review_batch" / "batches.parquet")
    latest = batches["batch_id"].iloc[-1]
    print(f"\nreview batch {latest}: {(batches['batch_id'] == latest).sum()} images -> {work / 'exchange' / 'outbox' / (latest + '.json')}")
    print("Run `make ui` and open http://127.0.0.1:3000 to see these runs, checks and metadata.")
    return 0 if result.success else 1
