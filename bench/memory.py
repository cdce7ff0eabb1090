"""Peak memory of one full round at N and 10·N pool images: does it stay flat as the pool grows?

A round is what the production jobs do between two human reviews: ``prelabel_and_select``
(ingest, clean, pre-label with a seed model, score, export a batch of 10), the batch
answered by the simulated reviewer and dropped into the inbox, ``review_complete_sensor``
evaluated once, and the ``merge_review`` run it requests (review annotations, then
verified labels with auto-accept over the whole pool).

Each size runs in a fresh interpreter (``memory.py --child``) so that neither inherits the
other's heap, and reports its own ``ru_maxrss`` (the peak resident set of that process:
DVC and git subprocesses are not counted, they hold no pool data). One tiny model, trained
once by the parent, serves both sizes. The headline is peak(10·N) / peak(N).

    .venv/bin/python bench/memory.py            # 100 and 1000 images at 96 px
    .venv/bin/python bench/memory.py --quick    # 20 and 200 images
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from offline import stay_offline
from results import write_result

from labeling_dag.ingest_batches import ROOT_BATCH

FACTOR = 10
BATCH_SIZE = 10
MIB = 1024 * 1024


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100, help=f"N: the small pool; the large one holds {FACTOR}·N")
    parser.add_argument("--imgsz", type=int, default=96, help="image and inference size in pixels")
    parser.add_argument("--epochs", type=int, default=20, help="epochs of the tiny model's training")
    parser.add_argument("--quick", action="store_true", help="N=20, 3 epochs (CI)")
    parser.add_argument("--out", type=Path, help="JSON result (default: bench/memory[.quick].json)")
    child = parser.add_argument_group("child mode (one round in this process; used by the parent)")
    child.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    child.add_argument("--pool", type=Path, help=argparse.SUPPRESS)
    child.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    child.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.epochs = 20, 3
    args.out = args.out or Path(__file__).with_name("memory.quick.json" if args.quick else "memory.json")
    return args


def main(argv: list[str] | None = None) -> float | None:
    args = parse_args(argv)
    stay_offline()
    if args.child:
        print(json.dumps(child_round(args.pool, args.model, args.workdir, imgsz=args.imgsz)))
        return None

    from labeling_dag.resources.detector import Detector

    from labeling_dag.simulation.sample_data import generate_dataset

    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        tmp_path = Path(tmp)
        started = time.perf_counter()
        # The model learns on its own images; the pools are drawn with another seed.
        seed_yaml = generate_dataset(tmp_path / "seed", images=max(2 * args.images, 40), seed=11, imgsz=args.imgsz)
        weights = Detector(imgsz=args.imgsz, epochs=args.epochs).train(seed_yaml, tmp_path / "train" / "tiny")
        print(f"model ready in {time.perf_counter() - started:.0f} s", flush=True)

        rounds = []
        for size in (args.images, FACTOR * args.images):
            # The generator keeps one image for val whatever the fraction: the pool holds size - 1.
            pool = generate_dataset(tmp_path / f"pool-{size}", images=size, seed=5, imgsz=args.imgsz, val_fraction=0.0)
            rounds.append(_run_child(pool, weights, tmp_path / f"work-{size}", imgsz=args.imgsz))
            print(
                f"{size} images: peak RSS {rounds[-1]['peak_rss_mib']:.0f} MiB, round {rounds[-1]['seconds']:.0f} s, "
                f"{rounds[-1]['auto_accepted_images']} images auto-accepted",
                flush=True,
            )

    small, large = (r["peak_rss_mib"] for r in rounds)
    ratio = large / small
    figures = {"imgsz": args.imgsz, "epochs": args.epochs, "rounds": rounds, "memory_ratio": ratio}
    write_result(args.out, "memory", figures)
    print(f"peak MiB at {rounds[0]['images']} images {small:.0f}")
    print(f"peak MiB at {rounds[1]['images']} images {large:.0f}")
    print(f"memory ratio {ratio:.2f}")
    return ratio


def _run_child(pool: Path, weights: Path, workdir: Path, *, imgsz: int) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", "--imgsz", str(imgsz)]
    command += ["--pool", str(pool), "--model", str(weights), "--workdir", str(workdir)]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"child round failed (exit {completed.returncode}):\n{completed.stderr[-4000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def child_round(data_yaml: Path, weights: Path, workdir: Path, *, imgsz: int) -> dict:
    """Run one round through the production jobs and sensor; return its peak RSS and counts."""
    import dagster as dg
    from labeling_dag.resources.detector import Detector
    from labeling_dag.resources.loop_policy import LoopPolicy
    from labeling_dag.resources.review_exchange import FileReviewExchange, FolderReview
    from labeling_dag.resources.snapshots import SnapshotStore
    from labeling_dag.resources.storage import ImageSource, LabelStore

    from labeling_dag import atomic
    from labeling_dag.definitions import build_definitions
    from labeling_dag.formats.yolo import load_data_yaml
    from labeling_dag.partitions import ingest_batches
    from labeling_dag.simulation.sample_data import CLASS_NAMES
    from labeling_dag.simulation.simulated_reviewer import load_truth, simulate_review

    started = time.perf_counter()
    # The resources of tests/conftest.py's make_resources, plus the policy the retrain job needs.
    resources = {
        "store": LabelStore(workdir=str(workdir)),
        "source": ImageSource(folder=str(load_data_yaml(data_yaml).train_images)),
        "detector": Detector(imgsz=imgsz, conf=0.05),
        "snapshots": SnapshotStore(),
        "exchange": FileReviewExchange(),
        "review": FolderReview(),
        "policy": LoopPolicy(validation_dataset=str(data_yaml)),
    }
    store, exchange = resources["store"], resources["exchange"]
    store.set_class_names(CLASS_NAMES)
    defs = build_definitions(resources)
    instance = dg.DagsterInstance.ephemeral()
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}

    instance.add_dynamic_partitions(ingest_batches.name, [ROOT_BATCH])
    defs.resolve_job_def("prelabel_batch").execute_in_process(
        run_config=quiet | {"ops": {"pre_labels": {"config": {"seed_model": str(weights)}}}},
        instance=instance,
        partition_key=ROOT_BATCH,
    )
    selected = defs.resolve_job_def("select_review_batch").execute_in_process(
        run_config=quiet | {"ops": {"review_batch": {"config": {"size": BATCH_SIZE}}}}, instance=instance
    )
    (batch_id,) = [
        e.step_materialization_data.materialization.metadata["batch_id"].value
        for e in selected.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey("review_batch")
    ]

    truth = load_truth(data_yaml, "train")
    answered = simulate_review(exchange.exported_tasks(store.root, batch_id), truth, class_names=CLASS_NAMES, seed=0)
    atomic.write_json(exchange.root(store.root) / "inbox" / f"{batch_id}.json", answered)
    sensor = defs.resolve_sensor_def("review_complete_sensor")
    tick = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, resources=resources))
    (request,) = tick.run_requests
    merged = defs.resolve_job_def("merge_review").execute_in_process(
        run_config=quiet | request.run_config, instance=instance, tags=request.tags
    )
    (verified,) = [
        e.step_materialization_data.materialization.metadata
        for e in merged.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey("verified_labels")
    ]
    # Linux reports ru_maxrss in KiB.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "images": len(truth),
        "batch_id": batch_id,
        "verified_images": verified["verified_images"].value,
        "auto_accepted_images": verified["new_auto_accepted_images"].value,
        "seconds": round(time.perf_counter() - started, 1),
        "peak_rss_mib": peak / MIB,
    }


if __name__ == "__main__":
    main()
