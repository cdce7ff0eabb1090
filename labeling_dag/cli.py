"""The ``labeling-dag`` command line: workdir setup, dataset export, snapshot restore, lineage, the demo."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from labeling_dag.restore import SNAPSHOTTED_ASSETS
from labeling_dag.simulation.commands import demo_command, run_loop_command


def _workdir(value: str | None) -> Path:
    workdir = value or os.environ.get("LABELING_DAG_WORKDIR")
    if not workdir:
        raise SystemExit("error: no workdir: pass --workdir or set LABELING_DAG_WORKDIR")
    return Path(workdir).expanduser().resolve()


def _sample_data(args: argparse.Namespace) -> int:
    from labeling_dag.simulation.sample_data import generate_dataset

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
    from labeling_dag.resources.snapshots import SnapshotError
    from labeling_dag.restore import RestoreError, restore_asset

    try:
        restored = restore_asset(_workdir(args.workdir), args.asset, args.snapshot_id, batch=args.batch)
    except (SnapshotError, RestoreError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    batch = f" (ingestion batch {restored.batch})" if restored.batch else ""
    print(f"restored {args.asset}{batch} snapshot {args.snapshot_id} into {restored.folder}")
    if restored.model_version:
        print(f"model registry: current model is now {restored.model_version}")
    return 0


def _init(args: argparse.Namespace) -> int:
    from labeling_dag.class_map import ClassMapError, parse_class_map
    from labeling_dag.workdir_init import (
        InitError,
        InitRequest,
        class_descriptions_from_json,
        classes_from_data_yaml,
        classes_from_text,
        init_workdir,
    )

    try:
        classes = (
            classes_from_text(args.classes) if args.classes is not None else classes_from_data_yaml(args.classes_from)
        )
        report = init_workdir(
            InitRequest(
                workdir=_workdir(args.workdir),
                classes=classes,
                seed_model=args.seed_model,
                class_map=parse_class_map(args.class_map),
                gold=args.gold,
                gold_images=args.gold_images,
                source=args.source,
                modality=args.modality,
                class_descriptions=class_descriptions_from_json(args.class_descriptions),
            )
        )
    except (InitError, ClassMapError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"modality: {report.modality}" + ("" if report.modality_written else " (already set)"))
    print(f"classes: {', '.join(report.classes)}" + ("" if report.classes_written else " (already set)"))
    if report.model_version:
        remapped = f", classes remapped from model {report.model_remapped_from}" if report.model_remapped_from else ""
        state = "registered as current model" if report.model_registered else "already the current model"
        print(f"seed model {report.model_version}: {state}{remapped}")
    if args.gold:
        state = "written" if report.gold_written else "already in the gold table"
        print(f"gold: {report.gold_images} images, {report.gold_boxes} boxes ({state})")
        if report.gold_without_boxes:
            print(f"gold: {report.gold_without_boxes} images without boxes left out (the gold table holds boxes)")
        if args.source:
            print(f"gold: {report.copied_to_source} images copied into {args.source / 'gold'}")
        else:
            print("gold: the gold images must also be in the image source (pass --source to copy them there)")
    return 0


def _export(args: argparse.Namespace) -> int:
    from labeling_dag.dataset_export import ExportError, ExportRequest, export_dataset, parse_sources, parse_split

    try:
        request = ExportRequest(
            format=args.format,
            sources=parse_sources(args.sources),
            split=parse_split(args.split),
            seed=args.seed,
            snapshot=args.snapshot or "",
            image_url_prefix=args.image_url_prefix,
        )
        summary = export_dataset(_workdir(args.workdir), args.out, request)
    except ExportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    splits = ", ".join(f"{name} {count}" for name, count in summary.per_split.items())
    print(
        f"exported {summary.images} images ({splits}) and {summary.labels} labels as {summary.format} "
        f"from verified_labels snapshot {summary.snapshot or '(none yet)'} into {summary.out_dir}"
    )
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
    from labeling_dag.simulation.sample_data import DOMAINS

    sample.add_argument(
        "--domain",
        choices=list(DOMAINS),
        default="source",
        help="target: shifted background, sizes, palette and class mix plus unlabelled clutter (warm-start benchmarks)",
    )
    sample.set_defaults(run=_sample_data)

    init = commands.add_parser("init", help="set a workdir's class list, seed model and gold items")
    init.add_argument("--workdir", help="pipeline workdir (default: $LABELING_DAG_WORKDIR)")
    init.add_argument(
        "--modality", default="detection", help="what the workdir labels, fixed once set (default: detection)"
    )
    init.add_argument(
        "--class-descriptions",
        type=Path,
        help="texts: a JSON object class -> what it is about, for the zero-shot first model init registers",
    )
    classes = init.add_mutually_exclusive_group(required=True)
    classes.add_argument("--classes", help="class names in class-id order, comma-separated: cat,dog")
    classes.add_argument("--classes-from", type=Path, help="a YOLO data.yaml whose names are the class list")
    init.add_argument(
        "--seed-model",
        type=Path,
        help="the model to pre-label with, registered under its sha256: an ultralytics .pt, or for texts a text "
        "classifier's weights JSON (default for texts: zero-shot from --class-descriptions)",
    )
    init.add_argument("--class-map", default="", help="seed model / gold class -> project class: person=pedestrian,...")
    init.add_argument(
        "--gold",
        type=Path,
        help="known answers: a YOLO data.yaml (for texts: a text dataset, texts/ and labels/), a COCO JSON or a "
        "Label Studio JSON export",
    )
    init.add_argument(
        "--gold-images",
        type=Path,
        help="folder COCO file names / Label Studio images are under (default: the gold file's)",
    )
    init.add_argument(
        "--source", type=Path, help="the pipeline's image source: gold images are copied into SOURCE/gold/"
    )
    init.set_defaults(run=_init)

    from labeling_dag.dataset_export import FORMATS, SOURCES
    from labeling_dag.modalities import DEFAULT_MODALITY, MODALITIES
    from labeling_dag.sampling import strategy_names

    export = commands.add_parser("export", help="write the verified labels as a YOLO, COCO or Label Studio dataset")
    export.add_argument("--workdir", help="pipeline workdir (default: $LABELING_DAG_WORKDIR)")
    export.add_argument("--format", choices=FORMATS, default="yolo")
    export.add_argument(
        "--out", type=Path, required=True, help="export folder (replaced if it holds an earlier export)"
    )
    export.add_argument("--snapshot", help="a verified_labels DVC snapshot id (default: the active labels)")
    export.add_argument("--sources", default=",".join(SOURCES), help="label sources to include (default: all)")
    export.add_argument("--split", default="train=1", help="e.g. train=0.8,val=0.1,test=0.1 (default: all train)")
    export.add_argument("--seed", type=int, default=0, help="seed of the split's shuffle")
    export.add_argument("--image-url-prefix", default="/data/local-files/?d=", help="Label Studio image URL prefix")
    export.set_defaults(run=_export)

    restore = commands.add_parser("restore", help="bring back an asset's DVC snapshot, bit-exact")
    restore.add_argument("asset", choices=SNAPSHOTTED_ASSETS)
    restore.add_argument("snapshot_id")
    restore.add_argument("--batch", help="ingestion batch of a partitioned asset's snapshot (default: _root)")
    restore.add_argument("--workdir", help="pipeline workdir (default: $LABELING_DAG_WORKDIR)")
    restore.set_defaults(run=_restore)

    trace = commands.add_parser("trace", help="print the lineage of an image or a verified label")
    trace.add_argument("id", nargs="?", help="an image id (sha256) or a label id (vl-...)")
    trace.add_argument("--workdir", help="pipeline workdir (default: $LABELING_DAG_WORKDIR)")
    trace.add_argument("--sample", type=int, default=0, help="trace N random verified labels (a spot audit)")
    trace.add_argument("--seed", type=int, default=0)
    trace.set_defaults(run=_trace)

    loop = commands.add_parser("run-loop", help="simulate the active-learning loop on a labelled dataset")
    loop.add_argument(
        "--dataset",
        type=Path,
        required=True,
        help="detection: YOLO data.yaml (train = pool, val = held out); text: a CSV with text, label and "
        "optionally split (train = pool, val = held out; without it a seeded 20 %% is held out)",
    )
    loop.add_argument("--workdir", type=Path, required=True)
    loop.add_argument("--modality", default=DEFAULT_MODALITY, choices=sorted(MODALITIES), help="what the items are")
    loop.add_argument(
        "--class-descriptions", type=Path, help="text: a JSON object class -> what it is about (zero-shot round 0)"
    )
    loop.add_argument(
        "--labeling-functions",
        type=Path,
        help="text: a Python module of labeling functions whose votes join the model's",
    )
    loop.add_argument(
        "--rounds", type=int, help="rounds after the seed round, at most (default 3; no cap with --until-labelled)"
    )
    loop.add_argument("--until-labelled", action="store_true", help="go on until every pool image has verified labels")
    loop.add_argument("--max-human-seconds", type=float, help="stop once the modelled human seconds reach this")
    loop.add_argument(
        "--seed-model",
        type=Path,
        help="start from this ultralytics detector: of the pool's classes (or mapped by --class-map) it pre-labels "
        "round 0 (warm start); of other classes the first model trains from its weights (pretrained start)",
    )
    loop.add_argument(
        "--class-map", default="", help="seed model class -> pool class, for a warm start: person=pedestrian,..."
    )
    loop.add_argument("--batch-size", type=int, default=20)
    loop.add_argument("--strategy", default="hybrid", choices=strategy_names())
    loop.add_argument("--diversity", action="store_true", help="diversity-aware selection (k-means over embeddings)")
    loop.add_argument("--seed-labels", type=int, default=40, help="images in the random seed batch (round 0)")
    loop.add_argument("--target-precision", type=float, default=0.95, help="auto-accepted boxes that must be right")
    loop.add_argument(
        "--target-image-accuracy", type=float, default=0.9, help="auto-accepted images that must be fully right"
    )
    loop.add_argument("--reviewer-error-rate", type=float, default=0.0)
    loop.add_argument(
        "--overlap-rate", type=float, default=0.0, help="share of each batch labelled by several annotators (consensus)"
    )
    loop.add_argument("--annotators-per-item", type=int, default=2, help="annotators of an overlapped image")
    loop.add_argument("--seed", type=int, default=0)
    loop.add_argument("--gold-images", type=int, default=4)
    loop.add_argument("--imgsz", type=int, default=128)
    loop.add_argument("--cold-start-epochs", type=int, default=30)
    loop.add_argument("--fine-tune-epochs", type=int, default=10)
    loop.add_argument(
        "--report", type=Path, required=True, help="JSON report; the learning-curve PNG is written beside it"
    )
    loop.set_defaults(run=run_loop_command)

    demo = commands.add_parser(
        "demo", help="run the active-learning loop on generated shapes, or on BBC News articles, in ROOT"
    )
    demo.add_argument(
        "--modality",
        choices=("detection", "text"),
        default="detection",
        help="detection: generated shapes in ROOT; text: BBC News articles in ROOT/text (default: detection)",
    )
    demo.add_argument("--root", default="demo")
    demo.add_argument("--images", type=int, default=300, help="detection: images generated (pool and held out)")
    demo.add_argument(
        "--per-class", type=int, default=60, help="text: articles sampled per BBC News class (pool and held out)"
    )
    demo.add_argument(
        "--rounds", type=int, help="rounds after the seed round, at most (default: until the pool is labelled)"
    )
    demo.add_argument("--batch-size", type=int, default=30)
    demo.add_argument("--seed-labels", type=int, default=60)
    demo.set_defaults(run=demo_command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``labeling-dag`` command."""
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    raise SystemExit(main())
