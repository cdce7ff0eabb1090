"""Simulated loops run side by side in worker processes, for the benchmarks that compare arms."""

from __future__ import annotations

import os
from dataclasses import asdict


def one_thread_per_process() -> None:
    """A worker's initializer, before torch is imported: N processes share N cores, one torch
    thread each for inference, instead of every process spawning a thread per core. (Ultralytics
    trains with its own count, ``os.cpu_count() - 1`` at most 8.)"""
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


def run_arm(settings) -> dict:
    """One simulated loop: its round records and the finished dataset against the truth."""
    from labeling_dag.simulation.loop_measures import dataset_summary
    from labeling_dag.simulation.run_loop import run_loop

    records = [asdict(r) for r in run_loop(settings)]
    return {"rounds": records, "dataset": dataset_summary(settings)}
