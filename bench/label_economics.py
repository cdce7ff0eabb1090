"""Human seconds to a fully labelled pool of known quality, per way of labelling it, in one run.

Arms, each on the same generated pool, with the same simulated reviewer (2 % error rate) and
the same cost model (:mod:`labeling_dag.human_time`), for every start and seed:

* ``hand``: every image looked at and every true box drawn (priced from the truth);
* ``assisted``: the model pre-labels every image and a human reviews every image, in random
  order, the model retrained after each batch, nothing auto-accepted (a labelling tool's ML
  backend);
* ``loop-random``: this pipeline with calibrated auto-accept, review batches drawn at random;
* ``loop``: this pipeline with its default selection strategy and calibrated auto-accept.

Starts: ``warm`` begins from a detector trained on another domain of the same classes
(``sample-data --domain source``; the pool is ``--domain target``), the way users bring last
project's weights; ``cold`` begins with a random seed round of ``--seed-labels`` images.

Every loop runs ``--until-labelled``. An arm reaches the goal when its final dataset has every
pool image labelled with box precision and recall >= 0.95 at IoU 0.5 against the truth; its
figure is then its human seconds. Headline ratios, each averaged over seeds with the spread
between seeds: loop / hand (warm), loop / hand (cold), loop / assisted, loop / loop-random. The
last line printed is loop / hand on a warm start.

    .venv/bin/python bench/label_economics.py [--quick]
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
from pathlib import Path

import numpy as np
from loops import one_thread_per_process, run_arm

ARMS: dict[str, dict[str, object]] = {  # name: LoopSettings fields that make the arm
    "assisted": {"strategy": "random", "auto_accept": False},
    "loop-random": {"strategy": "random"},
    "loop": {"strategy": "hybrid"},
}
QUALITY_GOAL = 0.95


def train_base_model(out: Path, *, images: int, imgsz: int, epochs: int, seed: int) -> Path:
    """A detector of the pool's classes trained on the source domain: the warm start's weights."""
    from labeling_dag.resources.detector import Detector

    from labeling_dag.simulation.sample_data import generate_dataset

    data = generate_dataset(out / "source", images=images, seed=seed, imgsz=imgsz, domain="source")
    return Detector(imgsz=imgsz, epochs=epochs, seed=seed).train(data, out / "base-model")


def reached(dataset: dict) -> bool:
    """Every pool image labelled, and box precision and recall at the goal."""
    return (
        dataset["images_labelled"] == dataset["pool_images"]
        and (dataset["precision"] or 0.0) >= QUALITY_GOAL
        and (dataset["recall"] or 0.0) >= QUALITY_GOAL
    )


def ratio(numerators: list[float | None], denominators: list[float | None]) -> dict[str, float | None]:
    """Per-seed ratios, their mean and spread (None where a seed's arm missed the goal)."""
    per_seed = [n / d if n is not None and d else None for n, d in zip(numerators, denominators)]
    valid = [r for r in per_seed if r is not None]
    return {
        "mean": float(np.mean(valid)) if len(valid) == len(per_seed) else None,
        "min": min(valid) if valid else None,
        "max": max(valid) if valid else None,
        "per_seed": per_seed,
    }


def main(argv: list[str] | None = None) -> int:
    """Run every arm, start and seed; print the table and the headline ratios; write JSON and PNG."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2500, help="generated target-domain images (80 %% are the pool)")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--starts", default="warm,cold")
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument(
        "--batch-size", type=int, default=200, help="images per review batch, every arm (10 %% of the default pool)"
    )
    parser.add_argument("--seed-labels", type=int, default=60, help="images of a cold start's random seed round")
    parser.add_argument("--rounds", type=int, help="a cap on rounds after the seed round (default: until labelled)")
    parser.add_argument("--imgsz", type=int, default=128)
    parser.add_argument(
        "--base-images", type=int, default=600, help="source-domain images the warm start's model learnt"
    )
    parser.add_argument("--base-epochs", type=int, default=40)
    parser.add_argument("--cold-start-epochs", type=int, default=40)
    parser.add_argument("--fine-tune-epochs", type=int, default=5)
    parser.add_argument("--reviewer-error-rate", type=float, default=0.02)
    parser.add_argument("--jobs", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("label_economics.json"))
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one seed, two rounds: checks it runs (CI)")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.seeds, args.batch_size, args.seed_labels, args.rounds = 40, 1, 8, 8, 2
        args.imgsz, args.base_images, args.base_epochs, args.cold_start_epochs, args.fine_tune_epochs = 64, 24, 2, 2, 1
        if args.out == parser.get_default("out"):
            args.out = args.out.with_name("label_economics.quick.json")

    os.environ.pop("DAGSTER_HOME", None)  # every loop gets its own ephemeral instance
    from labeling_dag.human_time import ReviewCosts, hand_label_seconds
    from labeling_dag.simulation.loop_settings import LoopSettings
    from labeling_dag.simulation.sample_data import generate_dataset
    from labeling_dag.simulation.simulated_reviewer import load_truth

    scratch = Path(tempfile.mkdtemp(prefix="label-economics-"))
    pool = generate_dataset(scratch / "pool", images=args.images, seed=123, imgsz=args.imgsz, domain="target")
    truth = load_truth(pool, "train")
    hand = hand_label_seconds(len(truth), sum(map(len, truth.values())), ReviewCosts())
    starts, arms = args.starts.split(","), args.arms.split(",")

    started = time.perf_counter()
    results: dict[str, dict[str, list[dict]]] = {s: {a: [{} for _ in range(args.seeds)] for a in arms} for s in starts}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=context, initializer=one_thread_per_process) as workers:
        base = None
        if "warm" in starts:
            base = workers.submit(
                train_base_model, scratch, images=args.base_images, imgsz=args.imgsz, epochs=args.base_epochs, seed=7
            ).result()
            print(f"warm start: base model trained on {args.base_images} source-domain images: {base}", flush=True)
        futures = {}
        for start in starts:
            for arm in arms:
                for seed in range(args.seeds):
                    warm = start == "warm"
                    settings = LoopSettings(
                        dataset=pool,
                        workdir=scratch / f"{start}-{arm}-{seed}",
                        rounds=args.rounds,
                        batch_size=args.batch_size,
                        # A warm start's first batch is a review batch like the others.
                        seed_labels=args.batch_size if warm else args.seed_labels,
                        seed_model=base if warm else None,
                        reviewer_error_rate=args.reviewer_error_rate,
                        seed=seed,
                        imgsz=args.imgsz,
                        cold_start_epochs=args.cold_start_epochs,
                        fine_tune_epochs=args.fine_tune_epochs,
                        training_cache=scratch / "training-cache",
                        **ARMS[arm],
                    )
                    futures[workers.submit(run_arm, settings)] = (start, arm, seed)
        for future in as_completed(futures):
            start, arm, seed = futures[future]
            result = results[start][arm][seed] = future.result()
            d = result["dataset"]
            print(
                f"{start} {arm} seed {seed}: {len(result['rounds'])} rounds, {d['images_labelled']}/{d['pool_images']} "
                f"labelled, P {d['precision']}, R {d['recall']}, {d['human_seconds']:.0f} human s "
                f"({d['human_seconds'] / hand:.3f} x hand)",
                flush=True,
            )

    def seconds(start: str, arm: str) -> list[float | None]:
        return [r["dataset"]["human_seconds"] if reached(r["dataset"]) else None for r in results[start][arm]]

    headline = {}
    for start in starts:
        if "loop" not in arms:
            continue
        headline[f"loop / hand ({start})"] = ratio(seconds(start, "loop"), [hand] * args.seeds)
        for other in ("assisted", "loop-random"):
            if other in arms:
                headline[f"loop / {other} ({start})"] = ratio(seconds(start, "loop"), seconds(start, other))

    print(f"\npool: {len(truth)} images, {sum(map(len, truth.values()))} boxes; hand labelling {hand:.0f} s")
    print(
        f"{'start':<6} {'arm':<12} {'seed':>4} {'labelled':>9} {'precision':>9} {'recall':>7} "
        f"{'human s':>9} {'x hand':>7}"
    )
    for start in starts:
        for arm in arms:
            for seed, result in enumerate(results[start][arm]):
                d = result["dataset"]
                print(
                    f"{start:<6} {arm:<12} {seed:>4} {d['images_labelled']:>9} {_fmt(d['precision']):>9} "
                    f"{_fmt(d['recall']):>7} {d['human_seconds']:>9.0f} {d['human_seconds'] / hand:>7.3f}"
                )
    payload = {
        "settings": {k: str(v) for k, v in vars(args).items()},
        "pool_images": len(truth),
        "hand_label_seconds": hand,
        "headline": headline,
        "results": results,
        "seconds": time.perf_counter() - started,
    }
    args.out.write_text(json.dumps(payload, indent=2))
    _plot(results, hand, args.out.with_suffix(".png"))
    print(f"results: {args.out} and {args.out.with_suffix('.png')}")
    for name, figure in reversed(list(headline.items())):
        print(f"{name}: {_fmt(figure['mean'])} (seeds {', '.join(_fmt(r) for r in figure['per_seed'])})")
    return 0


def _fmt(value: float | None) -> str:
    return "not reached" if value is None else f"{value:.3f}"


def _plot(results: dict, hand: float, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (labelled, quality) = plt.subplots(1, 2, figsize=(11, 4.5))
    colours = iter(plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4)
    for start, arms in results.items():
        for arm, runs in arms.items():
            colour, style = next(colours), "-" if start == "warm" else "--"
            for seed, run in enumerate(runs):
                seconds = [r["human_seconds"] for r in run["rounds"]]
                label = f"{arm} ({start})" if seed == 0 else None
                labelled.plot(seconds, [r["images_labelled"] for r in run["rounds"]], style, color=colour, label=label)
                quality.plot(seconds, [r["map50"] for r in run["rounds"]], style, color=colour, label=label)
    labelled.axvline(hand, color="red", linestyle=":", label="hand labelling, whole pool")
    labelled.set_ylabel("images labelled")
    quality.set_ylabel("validation mAP50")
    for axis in (labelled, quality):
        axis.set_xlabel("human seconds")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(png, dpi=100)
    plt.close(figure)


if __name__ == "__main__":
    sys.exit(main())
