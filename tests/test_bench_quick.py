"""The benchmarks' ``--quick`` modes: each one runs to the end and prints its headline figure last."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HEADLINE = re.compile(r"^[a-z ]+ [0-9.]+$")
# --quick is meant to finish in under 2 minutes; the margin is for a loaded CI machine.
TIMEOUT_S = 600


def _run_quick(name: str, out: Path) -> tuple[str, dict]:
    """Run ``bench/<name>.py --quick``; its last stdout line and its JSON result."""
    completed = subprocess.run(
        [sys.executable, str(REPO / "bench" / f"{name}.py"), "--quick", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return completed.stdout.strip().splitlines()[-1], json.loads(out.read_text())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["throughput", "memory", "sensor_latency", "consensus"])
def test_quick_benchmark_ends_with_its_headline(name: str, tmp_path: Path) -> None:
    last, result = _run_quick(name, tmp_path / f"{name}.json")
    assert HEADLINE.match(last), f"last stdout line {last!r} is not '<words> <number>'"
    assert result["benchmark"] == name


@pytest.mark.slow
def test_label_savings_quick_runs_every_arm_and_ends_with_the_best_ratio(tmp_path: Path) -> None:
    """The savings benchmark runs its arms through run-loop and prints the best ratio last.

    At --quick sizes no model learns anything, so the ratio is undefined and printed as nan;
    CI checks that the benchmark runs, not the figure. Both arms share seed 0's seed round:
    4 loop trainings, 3 distinct ones.
    """
    last, result = _run_quick("label_savings", tmp_path / "label_savings.json")
    assert re.fullmatch(r"best ratio to random ([0-9.]+|nan)", last), last
    assert set(result["strategies"]) == {"random", "hybrid"}
    assert all(len(run) == 2 for arm in result["runs"].values() for run in arm)  # seed round + 1
    seed_models = {arm[0][0]["model_version"] for arm in result["runs"].values()}
    assert len(seed_models) == 1 and result["distinct_trainings"] == 3


@pytest.mark.slow
def test_prelabel_errors_quick_prices_every_nms_setting_against_the_truth(tmp_path: Path) -> None:
    """Every NMS setting is scored, and every true object of the pool is accounted for once: kept,
    moved or relabelled from a pre-label, or added by the reviewer. At --quick sizes the model
    finds nothing, so the headline is nan."""
    last, result = _run_quick("prelabel_errors", tmp_path / "prelabel_errors.json")
    assert re.fullmatch(r"images fully right at the default nms iou over ultralytics default ([0-9.]+|nan)", last)
    assert set(result["settings"]) == {"0.7", "0.6", "0.5", "0.45"}
    for row in result["settings"].values():
        edits = row["edits"]
        found = sum(edits.get(kind, 0) for kind in ("accepted", "moved", "relabelled", "added"))
        assert found == result["true_boxes"] > 0
        assert 0.0 <= row["fully_right"] <= 1.0


@pytest.mark.slow
def test_label_economics_quick_runs_every_arm_and_start_and_ends_with_the_warm_ratio(tmp_path: Path) -> None:
    """Every arm runs from a warm and a cold start, each dataset is priced in human seconds against
    hand labelling, and the warm loop's ratio to hand labelling is the last line. At --quick sizes
    (two rounds) no arm labels its pool, so the figures read "not reached"; CI checks that it runs."""
    last, result = _run_quick("label_economics", tmp_path / "label_economics.json")
    assert re.fullmatch(r"loop / hand \(warm\): ([0-9.]+|not reached) \(seeds .+\)", last), last
    assert set(result["results"]) == {"warm", "cold"}
    for start in result["results"].values():
        assert set(start) == {"assisted", "loop-random", "loop"}
        for (run,) in start.values():
            assert 1 <= len(run["rounds"]) <= 3 and run["dataset"]["human_seconds"] > 0
            assert run["dataset"]["hand_label_seconds"] == pytest.approx(result["hand_label_seconds"], abs=0.1)
    for name, start in result["results"].items():
        assert {run["dataset"]["start"] for (run,) in start.values()} == {name}  # read back from the model registry


@pytest.mark.slow
def test_scale_quick_runs_both_worker_counts_and_ends_with_the_speed_up(tmp_path: Path) -> None:
    """The scale benchmark runs the partitioned path on 1 and then 2 Celery workers (PostgreSQL
    instance, Redis broker) and prints the speed-up last. At --quick sizes the runs' fixed costs
    dominate, so CI checks that every image was scored in both phases, not the figure."""
    last, result = _run_quick("scale", tmp_path / "scale.json")
    assert re.fullmatch(r"scale speed-up [0-9.]+", last), last
    assert result["benchmark"] == "scale"
    assert [(phase["workers"], phase["images"]) for phase in result["phases"]] == [(1, 240), (2, 240)]
    assert result["sensor_evaluation_peak_rss_mib"] > 0 and result["code_server_loaded_rss_mib"] > 0
    # One `dagster job execute` per batch loads Dagster and the location: seconds of CPU each.
    assert all(phase["run_processes_cpu_s"] > 0.5 * result["batches"] for phase in result["phases"])
    # Every step of prelabel_batch ran on a worker, with its start and end in the event log.
    for phase in result["phases"]:
        assert {"raw_images", "cleaned_images", "pre_labels", "uncertainty_scores"} <= set(phase["step_seconds"])
        assert 0 < phase["workers_in_steps_share"] <= 1


@pytest.mark.slow
def test_label_issues_quick_runs_the_loop_and_the_asset_and_ends_with_recall_at_precision(tmp_path: Path) -> None:
    """The label-issues benchmark labels a pool through the loop with a 10 % reviewer, runs the
    ``label_issues`` asset on it and scores its ranking against the truth, with the random and
    in-sample arms beside it. At --quick sizes (a 2-epoch detector, two batches) the figures mean
    nothing and may be nan; CI checks that it runs and scores every human image."""
    last, result = _run_quick("label_issues", tmp_path / "label_issues.json")
    assert re.fullmatch(
        r"label issues: recall ([0-9.]+|nan) at precision ([0-9.]+|nan) "
        r"\(random ranking precision ([0-9.]+|nan); seeds 0\)",
        last,
    ), last
    assert result["benchmark"] == "label_issues"
    (run,) = result["results"]
    assert len(run["rounds"]) == 2 and run["human_images"] > 0
    assert run["scored"] == run["human_images"]  # a warm start: every batch was pre-labelled by a model
    assert run["errors"] == run["errors_among_human"]
    assert set(run["per_kind"]) == {"overlooked", "swapped", "badly_located"}


@pytest.mark.slow
def test_text_economics_quick_labels_a_bbc_sample_in_every_arm_and_ends_with_the_ratio_to_hand(tmp_path: Path) -> None:
    """The text benchmark labels a sample of the BBC News corpus through run-loop (text modality)
    in its quick arms, each until the pool is labelled, and prices every run against hand
    labelling; the loop's ratio to hand labelling is the last line. The figures move with the
    pipeline, so CI checks that each arm labelled its pool well, not by how much it saved."""
    last, result = _run_quick("text_economics", tmp_path / "text_economics.json")
    assert re.fullmatch(r"loop / hand: ([0-9.]+|not reached) \(seeds .+\)", last), last
    assert result["benchmark"] == "text_economics"
    assert set(result["arms"]) == {"loop", "loop-random"}
    for (run,) in result["arms"].values():
        dataset = run["dataset"]
        assert dataset["items_labelled"] == dataset["pool_items"] == result["pool_items"] > 0
        assert dataset["accuracy"] >= 0.8
        assert 0 < dataset["human_time_ratio"] <= 1.5
        assert dataset["hand_label_seconds"] == pytest.approx(result["hand_label_seconds"])
        assert run["wall_seconds"] > 0 and len(run["rounds"]) >= 1
    # Every text was embedded once, ahead of the runs, and the runs found them in the shared cache
    # (beside a few class descriptions): a run that embedded the pool again would double it.
    assert result["embeddings_cached"] < result["articles"] + 50
