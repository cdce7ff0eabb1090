"""``make demo``: the active-learning loop on generated data, recorded in the local Dagster instance."""

from __future__ import annotations

from pathlib import Path


def run_demo(root: Path, *, images: int, rounds: int, batch_size: int, seed_labels: int) -> int:
    """Generate a dataset under ``root``, run the loop with a simulated reviewer, print each round.

    Runs go to the instance in ``$DAGSTER_HOME`` so that ``make ui`` shows the runs, checks,
    metadata and lineage. Re-running starts the loop afresh in a new workdir.
    """
    import shutil

    from tqdm import tqdm

    from labeling_dag.run_loop import LoopSettings, format_table, run_loop, write_report
    from labeling_dag.sample_data import generate_dataset

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
    with tqdm(total=rounds + 1, desc="active-learning rounds", unit="round") as progress:
        records = run_loop(settings, on_round=lambda record: progress.update())
    report = root / "report.json"
    png = write_report(records, report, settings)
    print(format_table(records))
    print(f"\nreport: {report}\nlearning curve: {png}")
    print(f"trace a label:  .venv/bin/labeling-dag trace --workdir {workdir} --sample 1")
    print("Run `make ui` and open http://127.0.0.1:3000 to see these runs, checks, metadata and lineage.")
    return 0
