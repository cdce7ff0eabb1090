"""``make demo``: the active-learning loop on generated data, recorded in the local Dagster instance."""

from __future__ import annotations

from pathlib import Path


def run_demo(root: Path, *, images: int, rounds: int | None, batch_size: int, seed_labels: int) -> int:
    """Generate a dataset under ``root``, run the loop with a simulated reviewer until the pool is
    labelled (or ``rounds`` after the seed round), print each round and the dataset's figures.

    Runs go to the instance in ``$DAGSTER_HOME`` so that ``make ui`` shows the runs, checks,
    metadata and lineage. Re-running starts the loop afresh in a new workdir.
    """
    import shutil

    from labeling_dag.simulation.loop_settings import LoopSettings
    from labeling_dag.simulation.run_loop import run_and_report
    from labeling_dag.simulation.sample_data import generate_dataset

    data_yaml = generate_dataset(root / "pool", images=images, seed=1, imgsz=128)
    workdir = root / "work"
    if workdir.exists():
        shutil.rmtree(workdir)
    settings = LoopSettings(
        dataset=data_yaml,
        workdir=workdir,
        rounds=rounds,
        batch_size=batch_size,
        seed_labels=seed_labels,
        reviewer_error_rate=0.02,
        imgsz=128,
        cold_start_epochs=40,
        fine_tune_epochs=10,
    )
    print(f"dataset: {data_yaml} (train split = unlabelled pool, val split = held out)\nworkdir: {workdir}")
    run_and_report(settings, root / "report.json")
    print(f"trace a label:  .venv/bin/labeling-dag trace --workdir {workdir} --sample 1")
    print("Run `make ui` and open http://127.0.0.1:3000 to see these runs, checks, metadata and lineage.")
    return 0
