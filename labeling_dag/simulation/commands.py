"""The command-line side of the simulation: ``labeling-dag run-loop`` and ``labeling-dag demo``.

Apart from :mod:`labeling_dag.cli` so that the simulation's commands live with the simulation;
everything heavy is imported inside them, as the CLI loads for every command.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def demo_command(args: argparse.Namespace) -> int:
    """``labeling-dag demo``: the loop on generated shapes, or with ``--modality text`` on BBC News."""
    from labeling_dag.simulation.demo import run_demo, run_text_demo

    root = Path(args.root).resolve()
    if args.modality == "text":
        return run_text_demo(
            root / "text",
            per_class=args.per_class,
            rounds=args.rounds,
            batch_size=args.batch_size,
            seed_labels=args.seed_labels,
        )
    return run_demo(
        root,
        images=args.images,
        rounds=args.rounds,
        batch_size=args.batch_size,
        seed_labels=args.seed_labels,
    )


def run_loop_command(args: argparse.Namespace) -> int:
    """``labeling-dag run-loop``: the loop on a labelled dataset, its report and closing lines."""
    from labeling_dag.class_map import ClassMapError, parse_class_map
    from labeling_dag.simulation.loop_settings import LoopSettings
    from labeling_dag.simulation.loop_start import SeedModelError
    from labeling_dag.simulation.run_loop import run_and_report
    from labeling_dag.workdir_init import class_descriptions_from_json

    try:
        class_map = parse_class_map(args.class_map)
    except ClassMapError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.rounds is None and not args.until_labelled:
        args.rounds = 3
    try:
        dataset = _loop_dataset(args)
        descriptions = class_descriptions_from_json(args.class_descriptions)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    settings = LoopSettings(
        dataset=dataset,
        workdir=args.workdir.resolve(),
        modality=args.modality,
        labeling_functions=args.labeling_functions.resolve() if args.labeling_functions else None,
        class_descriptions=descriptions,
        rounds=args.rounds,
        batch_size=args.batch_size,
        strategy=args.strategy,
        diversity=args.diversity,
        seed_labels=args.seed_labels,
        target_precision=args.target_precision,
        target_image_accuracy=args.target_image_accuracy,
        reviewer_error_rate=args.reviewer_error_rate,
        overlap_rate=args.overlap_rate,
        annotators_per_item=args.annotators_per_item,
        seed=args.seed,
        gold_images=args.gold_images,
        imgsz=args.imgsz,
        cold_start_epochs=args.cold_start_epochs,
        fine_tune_epochs=args.fine_tune_epochs,
        max_human_seconds=args.max_human_seconds,
        seed_model=args.seed_model.resolve() if args.seed_model else None,
        class_map=class_map,
    )
    try:
        run_and_report(settings, args.report)
    except SeedModelError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def _loop_dataset(args: argparse.Namespace) -> Path:
    """The loop's data.yaml: ``--dataset`` itself, or for texts the dataset written from its CSV
    beside the workdir (``<workdir>-dataset/``)."""
    if args.modality != "text":
        return args.dataset.resolve()
    from labeling_dag.simulation.text_dataset import text_dataset_from_csv

    workdir = args.workdir.resolve()
    return text_dataset_from_csv(args.dataset.resolve(), workdir.with_name(f"{workdir.name}-dataset"), seed=args.seed)
