"""The ``labeling-dag`` command line: sample data, snapshot restore, the demo."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

SNAPSHOTTED_ASSETS = ("cleaned_images", "pre_labels")


def _workdir(value: str | None) -> Path:
    workdir = value or os.environ.get("LABELING_DAG_WORKDIR")
    if not workdir:
        raise SystemExit("error: no workdir: pass --workdir or set LABELING_DAG_WORKDIR")
    return Path(workdir).expanduser().resolve()


def _sample_data(args: argparse.Namespace) -> int:
    from labeling_dag.sample_data import generate_dataset

    try:
        data_yaml = generate_dataset(
            args.out_dir, images=args.images, seed=args.seed, imgsz=args.imgsz, domain=args.domain
        )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(data_yaml)
    return 0


def _restore(args: argparse.Namespace) -> int:
    from labeling_dag.resources.snapshots import SnapshotError, SnapshotStore

    try:
        folder = SnapshotStore().restore(_workdir(args.workdir), f"{args.asset}/{args.batch}", args.snapshot_id)
    except (SnapshotError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"restored {args.asset} (ingestion batch {args.batch}) snapshot {args.snapshot_id} into {folder}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from labeling_dag.demo import run_demo

    return run_demo(
        Path(args.root).resolve(), images=args.images, rounds=args.rounds, batch_size=args.batch_size, seed_labels=args.seed_labels
    )


def _run_loop(args: argparse.Namespace) -> int:
    from labeling_dag.run_loop import LoopSettings, run_and_report

    if args.rounds is None and not args.until_labelled:
        args.rounds = 3
    settings = LoopSettings(
        dataset=args.dataset.resolve(),
        workdir=args.workdir.resolve(),
        rounds=args.rounds,
        batch_size=args.batch_size,
        strategy=args.strategy,
        diversity=args.diversity,
        seed_labels=args.seed_labels,
        target_precision=args.target_precision,
        target_image_accuracy=args.target_image_accuracy,
        reviewer_error_rate=args.reviewer_error_rate,
        seed=args.seed,
        gold_images=args.gold_images,
        imgsz=args.imgsz,
        cold_start_epochs=args.cold_start_epochs,
        fine_tune_epochs=args.fine_tune_epochs,
        max_human_seconds=args.max_human_seconds,
        seed_model=args.seed_model.resolve() if args.seed_model else None,
    )
    run_and_report(settings, args.report)
    return 0


def _trace(args: argparse.Namespace) -> int:
    from labeling_dag.lineage import Workdir, sample_label_ids, trace_image, trace_label

    workdir = Workdir(_workdir(args.workdir))
    if args.sample:
        chains = [trace_label(workdir, label_id) for label_id in sample_label_ids(workdir, args.sample, seed=args.seed)]
    elif args.id:
        try:
            chains = [trace_label(workdir, args.id) if args.id.startswith("vl-") else trace_image(workdir, args.id)]
        except KeyError as error:
            print(f"error: {error.args[0]}", file=sys.stderr)
            return 1
    else:
        print("error: give an image id or label id, or --sample N", file=sys.stderr)
        return 2
    print("\n\n".join("\n".join(chain) for chain in chains))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every ``labeling-dag`` subcommand."""
    parser = argparse.ArgumentParser(prog="labeling-dag", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    sample = commands.add_parser("sample-data", help="generate a deterministic YOLO dataset of shapes")
    sample.add_argument("out_dir", type=Path)
    sample.add_argument("--images", type=int, default=300)
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--imgsz", type=int, default=160)
    from labeling_dag.sample_data import DOMAINS

    sample.add_argument(
        "--domain",
        choices=list(DOMAINS),
        default="source",
        help="target: shifted background, sizes, palette and class mix plus unlabelled clutter (warm-start benchmarks)",
    )
    sample.set_defaults(run=_sample_data)

    restore = commands.add_parser("restore", help="bring back an asset's DVC snapshot, bit-exact")
    restore.add_argument("asset", choices=SNAPSHOTTED_ASSETS)
    restore.add_argument("snapshot_id")
    restore.add_argument("--batch", default="_root", help="ingestion batch (partition) of the snapshot (default: _root)")
    restore.add_argument("--workdir", help="pipeline workdir (default: $LABELING_DAG_WORKDIR)")
    restore.set_defaults(run=_restore)

    trace = commands.add_parser("trace", help="print the lineage of an image or a verified label")
    trace.add_argument("id", nargs="?", help="an image id (sha256) or a label id (vl-...)")
    trace.add_argument("--workdir", help="pipeline workdir (default: $LABELING_DAG_WORKDIR)")
    trace.add_argument("--sample", type=int, default=0, help="trace N random verified labels (a spot audit)")
    trace.add_argument("--seed", type=int, default=0)
    trace.set_defaults(run=_trace)

    loop = commands.add_parser("run-loop", help="simulate the active-learning loop on a YOLO dataset")
    loop.add_argument("--dataset", type=Path, required=True, help="YOLO data.yaml: train = pool, val = held out")
    loop.add_argument("--workdir", type=Path, required=True)
    loop.add_argument("--rounds", type=int, help="rounds after the seed round, at most (default 3; no cap with --until-labelled)")
    loop.add_argument("--until-labelled", action="store_true", help="go on until every pool image has verified labels")
    loop.add_argument("--max-human-seconds", type=float, help="stop once the modelled human seconds reach this")
    loop.add_argument("--seed-model", type=Path, help="start from this ultralytics .pt of the pool's classes (warm start)")
    loop.add_argument("--batch-size", type=int, default=20)
    loop.add_argument("--strategy", default="hybrid", choices=("least_confidence", "margin", "entropy", "random", "hybrid"))
    loop.add_argument("--diversity", action="store_true", help="diversity-aware selection (k-means over embeddings)")
    loop.add_argument("--seed-labels", type=int, default=40, help="images in the random seed batch (round 0)")
    loop.add_argument("--target-precision", type=float, default=0.95, help="auto-accepted boxes that must be right")
    loop.add_argument("--target-image-accuracy", type=float, default=0.9, help="auto-accepted images that must be fully right")
    loop.add_argument("--reviewer-error-rate", type=float, default=0.0)
    loop.add_argument("--seed", type=int, default=0)
    loop.add_argument("--gold-images", type=int, default=4)
    loop.add_argument("--imgsz", type=int, default=128)
    loop.add_argument("--cold-start-epochs", type=int, default=30)
    loop.add_argument("--fine-tune-epochs", type=int, default=10)
    loop.add_argument("--report", type=Path, required=True, help="JSON report; the learning-curve PNG is written beside it")
    loop.set_defaults(run=_run_loop)

    demo = commands.add_parser("demo", help="run the active-learning loop on generated data in ROOT")
    demo.add_argument("--root", default="demo")
    demo.add_argument("--images", type=int, default=300)
    demo.add_argument("--rounds", type=int, help="rounds after the seed round, at most (default: until the pool is labelled)")
    demo.add_argument("--batch-size", type=int, default=30)
    demo.add_argument("--seed-labels", type=int, default=60)
    demo.set_defaults(run=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``labeling-dag`` command."""
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    raise SystemExit(main())
