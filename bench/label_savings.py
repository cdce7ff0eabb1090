"""How many human-verified boxes each selection strategy needs, against a random arm in the same run.

For every strategy (random first) and every seed, `run-loop` runs on the same pool with the same
rounds; a model trained on ALL the pool's labels is trained in the same run as the ceiling. Each
learning curve (validation mAP50 against human-verified boxes) is interpolated linearly; the
budget a strategy needs is where its seed-averaged curve first reaches 95 % of the ceiling's
mAP50. Budgets are counted in boxes, not images, because boxes are what annotators draw.

    .venv/bin/python bench/label_savings.py [--dataset PATH/data.yaml] [--quick]

The loops run side by side (``--jobs`` processes, one core each: on a 2-core machine
ultralytics trains with one torch thread, so one loop at a time leaves a core idle).
Training is deterministic, so every arm of one seed trains the same seed-round model; a
shared training cache (:mod:`labeling_dag.training_cache`) trains it once per seed.

The last line is the best ratio to random (lower is better; 0.5 = half the boxes).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from pathlib import Path

import numpy as np
from loops import one_thread_per_process

STRATEGIES = {  # name: (strategy, diversity)
    "random": ("random", False),
    "entropy": ("entropy", False),
    "least_confidence": ("least_confidence", False),
    "hybrid": ("hybrid", False),
    "hybrid+diversity": ("hybrid", True),
}


def budget_to_reach(boxes: np.ndarray, map50: np.ndarray, target: float) -> float | None:
    """Boxes at which the piecewise-linear curve first reaches ``target``; None if it never does."""
    for i in range(len(boxes)):
        if map50[i] >= target:
            if i == 0:
                return float(boxes[0])
            fraction = (target - map50[i - 1]) / (map50[i] - map50[i - 1])
            return float(boxes[i - 1] + fraction * (boxes[i] - boxes[i - 1]))
    return None


def mean_curve(runs: list[list[dict]], grid: np.ndarray) -> np.ndarray:
    """The seed-averaged mAP50 on a common grid of box budgets (each run interpolated linearly)."""
    curves = [np.interp(grid, [r["human_boxes_total"] for r in run], [r["map50"] for r in run]) for run in runs]
    return np.mean(curves, axis=0)


def full_label_ceiling(dataset: Path, workdir: Path, *, imgsz: int, epochs: int) -> float:
    """mAP50 of a model trained from scratch on every label of the pool, same recipe."""
    from labeling_dag.resources.detector import Detector

    detector = Detector(imgsz=imgsz, epochs=epochs)
    weights = detector.train(dataset, workdir / "full-labels")
    return detector.evaluate(weights, dataset, workdir / "full-labels-eval").map50


def _run_arm(settings) -> list[dict]:
    from labeling_dag.simulation.run_loop import run_loop

    return [asdict(r) for r in run_loop(settings)]


def main(argv: list[str] | None = None) -> int:
    """Run every strategy and seed, print the table, write JSON and PNG, end with the best ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, help="YOLO data.yaml (default: generated shapes)")
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=30)
    parser.add_argument("--seed-labels", type=int, default=60)
    parser.add_argument("--imgsz", type=int, default=128)
    parser.add_argument("--cold-start-epochs", type=int, default=40)
    parser.add_argument("--fine-tune-epochs", type=int, default=10)
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument(
        "--cost-aware",
        action="store_true",
        help="the uncertainty arms rank by uncertainty per expected box (random is unchanged)",
    )
    parser.add_argument(
        "--jobs", type=int, default=min(4, os.cpu_count() or 1), help="loops run side by side, in this many processes"
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("label_savings.json"))
    parser.add_argument("--quick", action="store_true", help="tiny sizes, two strategies, one seed (CI)")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.seeds, args.rounds, args.batch_size, args.seed_labels = 48, 1, 1, 8, 12
        args.imgsz, args.cold_start_epochs, args.fine_tune_epochs, args.strategies = 64, 2, 1, "random,hybrid"
        if args.out == parser.get_default("out"):
            args.out = args.out.with_name("label_savings.quick.json")

    os.environ.pop("DAGSTER_HOME", None)  # every run gets its own ephemeral instance
    from labeling_dag.formats.yolo import label_path_for, load_data_yaml, read_yolo_labels
    from labeling_dag.simulation.loop_settings import LoopSettings
    from labeling_dag.simulation.sample_data import generate_dataset

    scratch = Path(tempfile.mkdtemp(prefix="label-savings-"))
    dataset = args.dataset or generate_dataset(scratch / "data", images=args.images, seed=123, imgsz=args.imgsz)
    spec = load_data_yaml(dataset)
    pool_boxes = sum(len(read_yolo_labels(label_path_for(p))) for p in sorted(spec.train_images.glob("*.jpg")))

    started = time.perf_counter()
    arms = [(name, seed) for name in args.strategies.split(",") for seed in range(args.seeds)]
    runs: dict[str, list[list[dict]]] = {name: [[] for _ in range(args.seeds)] for name in args.strategies.split(",")}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=context, initializer=one_thread_per_process) as pool:
        # The ceiling is the longest single training: started first, it overlaps the loops.
        ceiling_future = pool.submit(
            full_label_ceiling, dataset, scratch, imgsz=args.imgsz, epochs=args.cold_start_epochs
        )
        futures = {}
        for name, seed in arms:
            strategy, diversity = STRATEGIES[name]
            settings = LoopSettings(
                dataset=dataset,
                workdir=scratch / f"{name}-{seed}",
                rounds=args.rounds,
                batch_size=args.batch_size,
                strategy=strategy,
                diversity=diversity,
                cost_aware=args.cost_aware and strategy != "random",
                seed_labels=args.seed_labels,
                seed=seed,
                imgsz=args.imgsz,
                cold_start_epochs=args.cold_start_epochs,
                fine_tune_epochs=args.fine_tune_epochs,
                # Every arm of one seed trains the same seed-round model: done once, then reused.
                training_cache=scratch / "training-cache",
            )
            futures[pool.submit(_run_arm, settings)] = (name, seed)
        for future in as_completed(futures):
            name, seed = futures[future]
            records = runs[name][seed] = future.result()
            print(
                f"{name} seed {seed}: "
                + ", ".join(f"{r['human_boxes_total']} boxes → mAP50 {r['map50']:.3f}" for r in records),
                flush=True,
            )
        ceiling = ceiling_future.result()
    # A ceiling of 0 (nothing learnt, as at --quick sizes) gives no target: every budget is NaN.
    target = 0.95 * ceiling if ceiling > 0 else float("nan")

    # Curves are compared only where every run has data: from the largest seed-round budget
    # to the smallest final budget (np.interp would extend each curve flat beyond its ends).
    start = max(run[0]["human_boxes_total"] for arm in runs.values() for run in arm)
    stop = min(run[-1]["human_boxes_total"] for arm in runs.values() for run in arm)
    grid = np.linspace(start, max(start, stop), 200)
    summary = {}
    for name, arm in runs.items():
        curve = mean_curve(arm, grid)
        precisions = [r["auto_accept_precision"] for run in arm for r in run if r["auto_accept_precision"] is not None]
        summary[name] = {
            "boxes_to_target": budget_to_reach(grid, curve, target),
            "final_map50": float(curve[-1]),
            "mean_auto_accept_precision": float(np.mean(precisions)) if precisions else None,
            "curve": {"boxes": grid.tolist(), "map50": curve.tolist()},
        }
    random_budget = summary["random"]["boxes_to_target"] if "random" in summary else None
    for row in summary.values():
        budget = row["boxes_to_target"]
        row["ratio_to_random"] = budget / random_budget if budget is not None and random_budget else None
        row["share_of_all_boxes"] = budget / pool_boxes if budget is not None else None

    print(f"\nfull-label ceiling mAP50 {ceiling:.3f}; target (95 %) {target:.3f}; pool holds {pool_boxes} boxes")
    print(
        f"{'strategy':<18} {'boxes to target':>15} {'vs random':>10} {'of all boxes':>13} {'auto-accept precision':>22}"
    )
    for name, row in summary.items():
        budget = "not reached" if row["boxes_to_target"] is None else f"{row['boxes_to_target']:.0f}"
        ratio = "-" if row["ratio_to_random"] is None else f"{row['ratio_to_random']:.2f}"
        share = "-" if row["share_of_all_boxes"] is None else f"{row['share_of_all_boxes']:.0%}"
        precision = "-" if row["mean_auto_accept_precision"] is None else f"{row['mean_auto_accept_precision']:.3f}"
        print(f"{name:<18} {budget:>15} {ratio:>10} {share:>13} {precision:>22}")

    result = {
        "settings": {k: str(v) for k, v in vars(args).items()},
        "ceiling_map50": ceiling,
        "target_map50": target,
        "pool_boxes": pool_boxes,
        "strategies": summary,
        "runs": runs,
        # Fewer than the loops' trainings: each seed's seed round was trained once for all arms.
        "distinct_trainings": len(list((scratch / "training-cache").glob("*.pt"))),
        "seconds": time.perf_counter() - started,
    }
    args.out.write_text(json.dumps(result, indent=2))
    _plot(runs, summary, target, args.out.with_suffix(".png"))
    print(f"results: {args.out} and {args.out.with_suffix('.png')}")
    ratios = [
        row["ratio_to_random"]
        for name, row in summary.items()
        if name != "random" and row["ratio_to_random"] is not None
    ]
    # NaN when random (or every strategy) never reached the target within the budget.
    print(f"best ratio to random {min(ratios) if ratios else float('nan'):.2f}")
    return 0


def _plot(runs: dict, summary: dict, target: float, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for name, row in summary.items():
        (line,) = axis.plot(row["curve"]["boxes"], row["curve"]["map50"], label=name)
        for run in runs[name]:
            axis.plot(
                [r["human_boxes_total"] for r in run], [r["map50"] for r in run], ".", color=line.get_color(), alpha=0.4
            )
    axis.axhline(target, color="grey", linestyle="--", label="95 % of full-label mAP50")
    axis.set_xlabel("human-verified boxes")
    axis.set_ylabel("validation mAP50")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(png, dpi=100)
    plt.close(figure)


if __name__ == "__main__":
    sys.exit(main())
