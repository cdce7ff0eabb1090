"""Real rounds of the active-learning loop through the production definitions."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from labeling_dag.agreement import score_against_gold
from labeling_dag.contracts import LABEL_COLUMNS
from labeling_dag.formats.yolo import load_data_yaml
from labeling_dag.records import NormBox
from labeling_dag.simulation.sample_data import generate_dataset
from labeling_dag.simulation.simulated_reviewer import load_truth

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def loop_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    """`labeling-dag run-loop`: a seed round and four more on the demo-sized generated dataset.

    The first model needs about this much data and training before it proposes boxes at the
    0.25 confidence floor often enough for calibration to auto-accept any (~2 min on 2 cores).
    """
    root = tmp_path_factory.mktemp("loop")
    data_yaml = generate_dataset(root / "data", images=300, seed=1, imgsz=128)
    report = root / "report.json"
    command = [
        BIN / "labeling-dag", "run-loop", "--dataset", data_yaml, "--workdir", root / "work", "--rounds", "4",
        "--batch-size", "30", "--strategy", "hybrid", "--seed-labels", "60", "--target-precision", "0.6",
        "--target-image-accuracy", "0.6",
        "--reviewer-error-rate", "0.0", "--seed", "0", "--imgsz", "128", "--cold-start-epochs", "40",
        "--fine-tune-epochs", "10", "--report", report,
    ]  # fmt: skip
    completed = subprocess.run(
        [str(part) for part in command], capture_output=True, text=True, timeout=900, check=False
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return root, data_yaml, json.loads(report.read_text())


@pytest.mark.slow
def test_report_has_one_record_per_round_and_a_learning_curve(loop_run):
    """The report lists every round with the fields the issue names, and a PNG sits beside it: the
    seed round and up to the four more asked for, fewer only where the pool was labelled first."""
    root, _, report = loop_run
    rounds = report["rounds"]
    assert [r["round"] for r in rounds] == list(range(len(rounds))) and 3 <= len(rounds) <= 5
    if len(rounds) < 5:
        assert rounds[-1]["images_labelled"] == report["dataset"]["pool_images"]
    for record in rounds:
        assert set(record) >= {
            "round", "images_reviewed", "boxes_reviewed", "boxes_edited", "auto_accepted",
            "auto_accept_precision", "human_seconds", "images_labelled", "map50", "map50_95", "model_version",
            "seconds",
        }  # fmt: skip
        assert 0 <= record["map50"] <= 1 and 0 <= record["map50_95"] <= record["map50"] + 1e-9
    assert rounds[0]["images_reviewed"] == 60
    assert rounds[1]["images_reviewed"] == 30
    assert (root / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_report_prices_every_round_and_the_dataset_in_human_seconds(loop_run):
    """Each round carries the cumulative human seconds; the dataset object sets them against
    hand labelling the pool, counted independently here from the truth with the default prices."""
    root, data_yaml, report = loop_run
    rounds, dataset = report["rounds"], report["dataset"]
    seconds = [r["human_seconds"] for r in rounds]
    assert seconds[0] > 0 and seconds == sorted(seconds)
    truth = load_truth(data_yaml, "train")
    assert dataset["pool_images"] == len(truth)
    assert dataset["hand_label_seconds"] == pytest.approx(len(truth) * 1.0 + sum(map(len, truth.values())) * 7.0)
    assert dataset["human_seconds"] == pytest.approx(seconds[-1])
    assert dataset["human_time_ratio"] == pytest.approx(
        dataset["human_seconds"] / dataset["hand_label_seconds"], abs=1e-4
    )
    assert dataset["images_labelled"] == rounds[-1]["images_labelled"] <= len(truth)
    assert 0.9 <= dataset["precision"] <= 1 and 0.9 <= dataset["recall"] <= 1  # an error-free reviewer, a strict gate
    assert set(dataset["per_source"]) >= {"human", "gold"}
    assert set(dataset["per_class"]) == set(load_data_yaml(data_yaml).names)


@pytest.mark.slow
def test_until_labelled_stops_once_every_pool_image_has_labels(tmp_path):
    """A 32-image pool: the loop goes on round after round until selection finds nothing left,
    then stops by itself with every pool image labelled; a budget stops it after the first round."""
    data_yaml = generate_dataset(tmp_path / "data", images=40, seed=5, imgsz=64)
    common = [
        "--dataset", data_yaml, "--batch-size", "8", "--seed-labels", "12", "--gold-images", "2", "--imgsz", "64",
        "--cold-start-epochs", "2", "--fine-tune-epochs", "1", "--seed", "1",
    ]  # fmt: skip

    def run(name: str, *extra: object) -> dict:
        report = tmp_path / f"{name}.json"
        command = [BIN / "labeling-dag", "run-loop", *common, "--workdir", tmp_path / name, "--report", report, *extra]
        completed = subprocess.run([str(p) for p in command], capture_output=True, text=True, timeout=900, check=False)
        assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
        assert "round 0:" in completed.stdout and "human time:" in completed.stdout
        return json.loads(report.read_text())

    done = run("until", "--until-labelled")
    pool = len(load_truth(data_yaml, "train"))
    assert done["dataset"]["images_labelled"] == done["dataset"]["pool_images"] == pool
    assert done["rounds"][-1]["images_labelled"] == pool
    # Reviewed batches never repeat an image, so the pool bounds the rounds: 12 + 2 gold, then 8 a round.
    assert 2 <= len(done["rounds"]) <= 1 + -(-(pool - 14) // 8)

    budget = run("budget", "--until-labelled", "--max-human-seconds", "1")
    assert len(budget["rounds"]) == 1 and budget["dataset"]["images_labelled"] < pool


@pytest.mark.slow
def test_the_loop_retrains_and_promotes_new_models(loop_run):
    """Merges trigger retraining; promoted models replace the current one and descend from it."""
    root, _, report = loop_run
    versions = [r["model_version"] for r in report["rounds"]]
    assert all(len(v) == 64 for v in versions)
    assert versions[-1] != versions[0]
    registry = json.loads((root / "work" / "models" / "registry.json").read_text())
    promoted = registry["promoted"]
    assert promoted[0] == versions[0] and promoted[-1] == versions[-1]
    for parent, child in zip(promoted, promoted[1:]):
        assert registry["models"][child]["parent"] == parent


@pytest.mark.slow
def test_auto_accept_precision_is_measured_against_the_true_labels(loop_run):
    """The reported precision equals an independent count of auto-accepted boxes matching the truth."""
    root, data_yaml, report = loop_run
    truth = load_truth(data_yaml, "train")
    labels = pd.read_parquet(root / "work" / "verified_labels" / "labels.parquet")
    for record in report["rounds"]:
        auto = labels[(labels["merge_id"] == record["batch_id"]) & (labels["source"] == "auto_accepted")]
        assert record["auto_accepted"] == len(auto)
        if auto.empty:
            assert record["auto_accept_precision"] is None
            continue
        tp = fp = 0
        for image_id, group in auto.groupby("image_id"):
            score = score_against_gold(
                "check",
                image_id,
                [(r.class_name, NormBox(r.x, r.y, r.w, r.h)) for r in group.itertuples()],
                [(t.class_name, t.box) for t in truth[image_id]],
            )
            tp, fp = tp + score.true_positives, fp + score.false_positives
        assert record["auto_accept_precision"] == pytest.approx(tp / (tp + fp))
    assert sum(r["auto_accepted"] for r in report["rounds"]) > 0, (
        "by round 4 the image gate has seen enough judged images"
    )


@pytest.mark.slow
def test_verified_labels_are_traceable(loop_run):
    """`labeling-dag trace` follows a label back to its raw file, pre-label and review, and forward to models."""
    root, _, report = loop_run
    work = root / "work"
    labels = pd.read_parquet(work / "verified_labels" / "labels.parquet").astype(LABEL_COLUMNS)
    human = labels[(labels["source"] == "human") & (labels["pre_label_id"] != "")].iloc[0]
    out = subprocess.run(
        [str(BIN / "labeling-dag"), "trace", human["label_id"], "--workdir", str(work)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "raw file: " in text and human["image_id"] in text
    assert f"pre-label {human['pre_label_id']}: model {human['model_version']}" in text
    assert f"review: batch {human['review_batch_id']} by {human['reviewer']}" in text
    assert "verified_labels snapshots: " in text and " trained on snapshot " in text

    sample = subprocess.run(
        [str(BIN / "labeling-dag"), "trace", "--workdir", str(work), "--sample", "3"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert sample.returncode == 0, sample.stderr
    assert sample.stdout.count("\nraw file: ") >= 3


@pytest.mark.slow
def test_trace_finds_the_snapshot_when_the_writing_run_took_none(loop_run, tmp_path: Path):
    """A run killed after writing its rows, before its snapshot, leaves rows naming a run with no
    snapshot (the re-run snapshots them under its own id): trace still names the snapshot that
    holds them, the same one as before."""
    root, _, _ = loop_run
    work = tmp_path / "work"
    shutil.copytree(root / "work", work, symlinks=True)
    labels = pd.read_parquet(work / "verified_labels" / "labels.parquet").astype(LABEL_COLUMNS)
    label = labels[(labels["source"] == "human") & (labels["pre_label_id"] != "")].iloc[0]

    def trace() -> str:
        out = subprocess.run(
            [str(BIN / "labeling-dag"), "trace", label["label_id"], "--workdir", str(work)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        return out.stdout

    before = trace()
    for table in [*work.glob("cleaned_images/*/images.parquet"), *work.glob("pre_labels/*/boxes.parquet")]:
        frame = pd.read_parquet(table)
        frame.assign(run_id="killed-run").to_parquet(table)
    labels.assign(pre_label_run_id="killed-run").to_parquet(work / "verified_labels" / "labels.parquet")
    after = trace()
    assert "snapshot ?" not in after
    snapshot_lines = [
        line.split(" snapshot ")[-1] for line in before.splitlines() if line.startswith(("cleaned:", "pre-label "))
    ]
    assert len(snapshot_lines) == 2 and all(snapshot in after for snapshot in snapshot_lines)


@pytest.mark.slow
def test_run_loop_with_overlap_merges_by_consensus_and_adjudicates_disputes(tmp_path):
    """`--overlap-rate 1`: every chosen image goes to two simulated reviewers who err on 5 % of
    boxes. Their agreement is measured, agreed images are merged naming both, each look is paid,
    and the images they disagreed on come back in the next round as adjudication tasks."""
    data_yaml = generate_dataset(tmp_path / "data", images=40, seed=5, imgsz=64)
    report, work = tmp_path / "report.json", tmp_path / "work"
    command = [
        BIN / "labeling-dag", "run-loop", "--dataset", data_yaml, "--workdir", work, "--report", report,
        "--batch-size", "8", "--seed-labels", "12", "--gold-images", "2", "--imgsz", "64", "--cold-start-epochs", "2",
        "--fine-tune-epochs", "1", "--seed", "1", "--rounds", "1", "--overlap-rate", "1",
        "--reviewer-error-rate", "0.05",
    ]  # fmt: skip
    completed = subprocess.run([str(p) for p in command], capture_output=True, text=True, timeout=900, check=False)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]

    batches = pd.read_parquet(work / "review_batch" / "batches.parquet")
    first, second = list(dict.fromkeys(batches["batch_id"]))[:2]
    assert (batches.loc[batches["batch_id"] == first, "annotators"] == 2).all()  # gold items too
    quality = pd.read_parquet(work / "review_annotations" / "quality.parquet").set_index(["batch_id", "reviewer"])
    assert quality.loc[(first, "*"), "kappa"] >= quality.loc[(first, "*"), "min_kappa"]
    assert quality.loc[(first, "reviewer-2"), "matched_boxes"] > 0
    labels = pd.read_parquet(work / "verified_labels" / "labels.parquet")
    assert "reviewer-1+reviewer-2" in set(labels["reviewer"])
    disputed = set(pd.read_parquet(work / "review_annotations" / "disputes.parquet")["image_id"])
    assert disputed and disputed <= set(batches.loc[batches["batch_id"] == second, "image_id"])
    effort = pd.read_parquet(work / "review_annotations" / "effort.parquet")
    assert (effort.loc[effort["batch_id"] == first, "modelled_seconds"] >= 2.0).all()  # two looks at 1 s
