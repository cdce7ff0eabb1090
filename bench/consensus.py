"""What consensus buys: final label quality and human seconds with several annotators per image.

Arms, each on the same generated pool with careless simulated annotators (``--reviewer-error-rate``,
10 % of boxes by default: a wrong class, a missed box or a sloppy one), differ only in
``overlap_rate``: the share of each batch's chosen images (and its gold items) that
``--annotators`` annotators label independently, merged by consensus, disputes adjudicated by one
more look (:mod:`labeling_dag.consensus`). Every arm runs the pipeline's loop until the pool is
labelled (cold start, calibrated auto-accept, the default strategy), over several seeds.

Per arm: box precision and recall of the final dataset against the truth (IoU 0.5), the share of
images fully right, human seconds and their ratio to hand labelling. Headline figures, averaged
over seeds: label errors ((1 - precision) + (1 - recall)) and human seconds of each overlap over
those of no overlap, in the same run; the last line printed is the errors ratio of the largest
overlap.

    .venv/bin/python bench/consensus.py [--quick]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
from loops import one_thread_per_process, run_arm
from results import write_result


def errors(dataset: dict) -> float:
    """Wrong and missing boxes of a final dataset, as (1 - precision) + (1 - recall)."""
    return (1.0 - (dataset["precision"] or 0.0)) + (1.0 - (dataset["recall"] or 0.0))


def main(argv: list[str] | None = None) -> int:
    """Run every overlap and seed; print the table and the headline ratios; write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300, help="generated images (80 %% are the pool)")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--overlaps", default="0,0.25,1", help="overlap rates, comma-separated; 0 is the baseline")
    parser.add_argument("--annotators", type=int, default=2, help="annotators of an overlapped image")
    parser.add_argument("--reviewer-error-rate", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=30)
    parser.add_argument("--seed-labels", type=int, default=60)
    parser.add_argument("--rounds", type=int, help="a cap on rounds after the seed round (default: until labelled)")
    parser.add_argument("--imgsz", type=int, default=128)
    parser.add_argument("--cold-start-epochs", type=int, default=40)
    parser.add_argument("--fine-tune-epochs", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("consensus.json"))
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one seed, two rounds: checks it runs (CI)")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.seeds, args.overlaps, args.batch_size, args.seed_labels, args.rounds = 40, 1, "0,1", 8, 12, 1
        args.imgsz, args.cold_start_epochs, args.fine_tune_epochs = 64, 2, 1
        if args.out == parser.get_default("out"):
            args.out = args.out.with_name("consensus.quick.json")
    overlaps = [float(rate) for rate in args.overlaps.split(",")]
    if overlaps[0] != 0.0:
        parser.error("--overlaps must start with 0, the baseline")

    os.environ.pop("DAGSTER_HOME", None)  # every loop gets its own ephemeral instance
    from labeling_dag.human_time import ReviewCosts, hand_label_seconds
    from labeling_dag.simulation.loop_settings import LoopSettings
    from labeling_dag.simulation.sample_data import generate_dataset
    from labeling_dag.simulation.simulated_reviewer import load_truth

    scratch = Path(tempfile.mkdtemp(prefix="consensus-"))
    pool = generate_dataset(scratch / "pool", images=args.images, seed=1, imgsz=args.imgsz)
    truth = load_truth(pool, "train")
    hand = hand_label_seconds(len(truth), sum(map(len, truth.values())), ReviewCosts())

    started = time.perf_counter()
    results: dict[float, list[dict]] = {rate: [{} for _ in range(args.seeds)] for rate in overlaps}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=context, initializer=one_thread_per_process) as workers:
        futures = {}
        for rate in overlaps:
            for seed in range(args.seeds):
                settings = LoopSettings(
                    dataset=pool,
                    workdir=scratch / f"overlap-{rate}-{seed}",
                    rounds=args.rounds,
                    batch_size=args.batch_size,
                    seed_labels=args.seed_labels,
                    reviewer_error_rate=args.reviewer_error_rate,
                    overlap_rate=rate,
                    annotators_per_item=args.annotators,
                    seed=seed,
                    imgsz=args.imgsz,
                    cold_start_epochs=args.cold_start_epochs,
                    fine_tune_epochs=args.fine_tune_epochs,
                )
                futures[workers.submit(run_arm, settings)] = (rate, seed)
        for future in as_completed(futures):
            rate, seed = futures[future]
            results[rate][seed] = future.result()
            d = results[rate][seed]["dataset"]
            print(
                f"overlap {rate} seed {seed}: {d['images_labelled']}/{d['pool_images']} labelled, "
                f"P {d['precision']}, R {d['recall']}, {d['human_seconds']:.0f} human s",
                flush=True,
            )

    def mean_ratio(figure, rate: float) -> float:
        pairs = zip(results[rate], results[0.0])
        return float(np.mean([figure(run["dataset"]) / figure(base["dataset"]) for run, base in pairs]))

    headline = {}
    for rate in overlaps[1:]:
        headline[f"errors overlap {rate} over none"] = mean_ratio(errors, rate)
        headline[f"human seconds overlap {rate} over none"] = mean_ratio(lambda d: d["human_seconds"], rate)

    print(f"\npool: {len(truth)} images; hand labelling {hand:.0f} s; reviewer error rate {args.reviewer_error_rate}")
    print(f"{'overlap':>7} {'seed':>4} {'labelled':>9} {'precision':>9} {'recall':>7} {'images ok':>9} {'human s':>8}")
    for rate in overlaps:
        for seed, result in enumerate(results[rate]):
            d = result["dataset"]
            print(
                f"{rate:>7} {seed:>4} {d['images_labelled']:>9} {d['precision']:>9.3f} {d['recall']:>7.3f} "
                f"{d['image_accuracy']:>9.3f} {d['human_seconds']:>8.0f}"
            )
    figures = {
        "settings": {k: str(v) for k, v in vars(args).items()},
        "pool_images": len(truth),
        "hand_label_seconds": hand,
        "headline": headline,
        "results": {str(rate): runs for rate, runs in results.items()},
        "seconds": time.perf_counter() - started,
    }
    write_result(args.out, "consensus", figures)
    print(f"results: {args.out}")
    for name, value in headline.items():
        print(f"{name} {value:.3f}")
    print(f"label errors with overlap over none {headline[f'errors overlap {overlaps[-1]} over none']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
