"""A workdir with verified labels made the operator's way: `labeling-dag init` with gold items,
ingestion, then two review batches answered and merged through the production jobs."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pandas as pd
from conftest import TEST_IMGSZ, make_resources
from labeling_dag.resources.loop_policy import LoopPolicy

from labeling_dag import atomic
from labeling_dag.cli import main as cli
from labeling_dag.definitions import build_definitions
from labeling_dag.ingest_batches import ROOT_BATCH
from labeling_dag.partitions import ingest_batches
from labeling_dag.sensors import merge_run_config
from labeling_dag.simulation.sample_data import CLASS_NAMES, generate_dataset
from labeling_dag.simulation.simulated_reviewer import load_truth, simulate_review


@dataclass(frozen=True)
class VerifiedWorkdir:
    """The workdir, its image source, and what each merge left behind."""

    work: Path
    source: Path
    pool_yaml: Path
    gold_yaml: Path
    snapshots: tuple[str, ...]  # verified_labels snapshot ids, one per merge
    first_tree: dict[str, str]  # sha256 of every verified_labels file after the first merge


def tree_digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder``, by relative path."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def build_verified_workdir(root: Path) -> VerifiedWorkdir:
    """12 pool images and 3 gold images (file names clashing with the pool's), all verified in two merges."""
    pool_yaml = generate_dataset(root / "pool", images=15, seed=21, imgsz=TEST_IMGSZ)
    gold_yaml = generate_dataset(root / "gold", images=3, seed=22, imgsz=TEST_IMGSZ, val_fraction=0.0)
    source, work = root / "source", root / "work"
    source.mkdir()
    for image in sorted((root / "pool" / "images" / "train").glob("*.jpg")):
        shutil.copyfile(image, source / image.name)
    init = ["init", "--workdir", str(work), "--classes-from", str(pool_yaml), "--gold", str(gold_yaml)]
    assert cli([*init, "--source", str(source)]) == 0

    resources = make_resources(work, source) | {"policy": LoopPolicy(validation_dataset=str(pool_yaml))}
    defs = build_definitions(resources)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(ingest_batches.name, [ROOT_BATCH, "gold"])
    for batch in (ROOT_BATCH, "gold"):
        assert defs.resolve_job_def("prelabel_batch").execute_in_process(instance=instance, partition_key=batch).success
    truth = load_truth(pool_yaml, "train") | load_truth(gold_yaml, "train") | load_truth(gold_yaml, "val")
    snapshots, first_tree = [], {}
    for _ in range(2):
        review = {"ops": {"review_batch": {"config": {"size": 6, "gold_rate": 0.5}}}}
        assert (
            defs.resolve_job_def("select_review_batch").execute_in_process(run_config=review, instance=instance).success
        )
        batches = pd.read_parquet(work / "review_batch" / "batches.parquet")
        batch_id = list(dict.fromkeys(batches["batch_id"]))[-1]
        tasks = json.loads((work / "exchange" / "outbox" / f"{batch_id}.json").read_text())
        answered = simulate_review(tasks, truth, class_names=CLASS_NAMES, seed=5)
        atomic.write_json(work / "exchange" / "received" / f"{batch_id}.json", answered)
        merge = defs.resolve_job_def("merge_review").execute_in_process(
            run_config=merge_run_config(batch_id), instance=instance
        )
        assert merge.success
        history = json.loads((work / "snapshots" / "verified_labels" / "history.json").read_text())
        snapshots.append(history[-1]["snapshot_id"])
        first_tree = first_tree or tree_digest(work / "verified_labels")
    return VerifiedWorkdir(work, source, pool_yaml, gold_yaml, tuple(snapshots), first_tree)
