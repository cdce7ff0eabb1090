"""How many of a reviewer's mistakes the ``label_issues`` asset finds among its top suspects.

Per seed: a generated pool (``sample-data``, source domain), labelled by the loop
(``run_loop``) from a warm start (a detector trained once on other generated images of the same
classes), nothing auto-accepted so every label is a human's, with the simulated reviewer at a
``--error-rate`` of 10 % per box (a missed object, a wrong class or a sloppy box). Gold items are
off: at 10 % per box the gold gate quarantines most batches, and this measures what the merge let
through. Then the real ``label_issues`` asset runs on the workdir (``dagster.materialize``).

An image is truly erroneous when its verified boxes do not match the generator's truth one to one,
same class, IoU >= 0.5. Over the human images the asset scored, precision and recall of detection
for the top-k of its ranking: k = the suspects it flagged, and k = the truly erroneous images.
In the same run: a random ranking (mean of 1000 shuffles: precision = the error prevalence), and
the asset's scoring fed the in-sample predictions of the last model trained on those labels
instead of the out-of-sample pre-labels. The last line is the headline: recall and precision at
the suspects flagged, mean of the seeds.

    .venv/bin/python bench/label_issues.py [--quick]
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

REPO = Path(__file__).resolve().parent.parent
RANDOM_DRAWS = 1000


def train_base_model(out: Path, *, images: int, imgsz: int, epochs: int) -> Path:
    """A detector of the pool's classes trained on other generated images: the warm start's weights."""
    from labeling_dag.resources.detector import Detector

    from labeling_dag.simulation.sample_data import generate_dataset

    data = generate_dataset(out / "base-data", images=images, seed=7, imgsz=imgsz)
    return Detector(imgsz=imgsz, epochs=epochs, seed=0).train(data, out / "base-model")


def at_k(wrong: list[bool], k: int) -> dict[str, float | int | None]:
    """Precision and recall of the first ``k`` images of a ranking (``wrong``: truly erroneous, in rank order)."""
    errors, found = sum(wrong), sum(wrong[:k])
    return {
        "k": k,
        "found": found,
        "precision": found / k if k else None,
        "recall": found / errors if errors else None,
    }


def random_ranking(wrong: list[bool], k: int, seed: int) -> dict[str, float | None]:
    """:func:`at_k` of a random ranking, mean of ``RANDOM_DRAWS`` shuffles."""
    rng = np.random.default_rng(seed)
    draws = [at_k([wrong[i] for i in rng.permutation(len(wrong))], k) for _ in range(RANDOM_DRAWS)]
    return {
        key: (float(np.mean([d[key] for d in draws])) if draws and draws[0][key] is not None else None)
        for key in ("precision", "recall")
    }


def mistake_kinds(verified: list, truth: list) -> list[str]:
    """What the reviewer got wrong on one image, named like the asset's issue kinds: a true box
    with no verified box of IoU >= 0.5 is ``overlooked`` (``badly_located`` when a verified box of
    its class overlaps it), a match of another class is ``swapped``."""
    from labeling_dag.agreement import iou_matrix, match_boxes

    boxes, true_boxes = [box for _, box in verified], [box for _, box in truth]
    matched = match_boxes(boxes, true_boxes, min_iou=0.5)
    kinds = ["swapped" for i, j, _ in matched if verified[i][0] != truth[j][0]]
    iou = iou_matrix(boxes, true_boxes)
    used = {i for i, _, _ in matched}
    for j in sorted(set(range(len(truth))) - {j for _, j, _ in matched}):
        near = [i for i in range(len(verified)) if i not in used and verified[i][0] == truth[j][0] and iou[i, j] > 0]
        kinds.append("badly_located" if near else "overlooked")
    return kinds


def run_seed(settings) -> dict:
    """The loop, the asset and the figures of one seed (in a worker process)."""
    import dagster as dg
    from labeling_dag.assets.label_issues import label_issues
    from labeling_dag.resources.review_exchange import FileReviewExchange
    from labeling_dag.resources.storage import LabelStore

    from labeling_dag.agreement import score_against_gold
    from labeling_dag.contracts import ISSUE_SCORES, LABELS, VERIFIED_IMAGES
    from labeling_dag.label_issues import ISSUE_KINDS
    from labeling_dag.merge import active
    from labeling_dag.simulation.run_loop import run_loop
    from labeling_dag.simulation.simulated_reviewer import load_truth

    started = time.perf_counter()
    rounds = [asdict(record) for record in run_loop(settings)]
    loop_seconds = time.perf_counter() - started
    store, exchange = LabelStore(workdir=str(settings.workdir.resolve())), FileReviewExchange()
    started = time.perf_counter()
    result = dg.materialize([label_issues], resources={"store": store, "exchange": exchange})
    asset_seconds = time.perf_counter() - started
    assert result.success
    scores = store.read(ISSUE_SCORES)

    truth = load_truth(settings.dataset, "train")
    labels = active(store.read(LABELS))
    images = active(store.read(VERIFIED_IMAGES))
    human = sorted(images.loc[images["source"] == "human", "image_id"])
    verified = {image_id: [] for image_id in human}
    for row in labels[labels["image_id"].isin(set(human))].itertuples():
        verified[row.image_id].append((row.class_name, _box(row)))
    true_pairs = {image_id: [(box.class_name, box.box) for box in truth[image_id]] for image_id in human}
    mistakes = {
        image_id: mistake_kinds(verified[image_id], true_pairs[image_id])
        for image_id in human
        if score_against_gold("", image_id, verified[image_id], true_pairs[image_id]).accuracy < 1.0
    }
    wrong = [image_id in mistakes for image_id in scores["image_id"]]
    suspects = int(scores["suspect"].sum())
    errors = sum(wrong)
    flagged = scores[scores["suspect"]].set_index("image_id")["issue"]
    per_kind = {}
    for kind in ISSUE_KINDS:
        having = [image_id for image_id in scores["image_id"] if kind in mistakes.get(image_id, [])]
        per_kind[kind] = {
            "images": len(having),
            "flagged": sum(image_id in flagged.index for image_id in having),
            "named_so": sum(flagged.get(image_id) == kind for image_id in having),
        }
    return {
        "seed": settings.seed,
        "rounds": rounds,
        "loop_seconds": round(loop_seconds, 1),
        "asset_seconds": round(asset_seconds, 2),
        "human_images": len(human),
        "errors_among_human": len(mistakes),
        "scored": len(scores),
        "errors": errors,
        "prevalence": errors / len(scores) if len(scores) else None,
        "suspects": suspects,
        "at_suspects": at_k(wrong, suspects),
        "at_errors": at_k(wrong, errors),
        "random_at_suspects": random_ranking(wrong, suspects, settings.seed),
        "random_at_errors": random_ranking(wrong, errors, settings.seed),
        "per_kind": per_kind,
        "in_sample": in_sample(store, scores, mistakes, settings),
    }


def in_sample(store, scores, mistakes: dict, settings) -> dict:
    """The asset's scoring of the same images with the predictions of the last model trained on
    their labels (in-sample), at the same k's."""
    from labeling_dag.resources.detector import Detector

    from labeling_dag.agreement import PredictedBox
    from labeling_dag.contracts import CLEANED, LABELS
    from labeling_dag.label_issues import VerifiedImage, score_label_issues
    from labeling_dag.merge import active
    from labeling_dag.model_registry import ModelRegistry
    from labeling_dag.records import NormBox

    registry = ModelRegistry(store.root)
    trained = [entry for entry in registry.entries() if entry.source != "seed_model"]
    if not trained or not len(scores):
        return {"model": None}
    model = trained[-1]
    cleaned = store.read(CLEANED).drop_duplicates("image_id")
    cleaned = cleaned.set_index("image_id").loc[list(scores["image_id"])]
    labels = active(store.read(LABELS))
    names = store.class_names()
    records = []
    detector = Detector(imgsz=settings.imgsz)
    paths = [store.root / path for path in cleaned["path"]]
    for image_id, prediction in zip(cleaned.index, detector.predict(registry.verified_path(model), paths)):
        mine = labels[labels["image_id"] == image_id]
        records.append(
            VerifiedImage(
                image_id=image_id,
                width=prediction.width,
                height=prediction.height,
                labels=tuple((row.class_name, _box(row)) for row in mine.itertuples()),
                predictions=tuple(
                    PredictedBox(f"{image_id}-{i}", names[int(c)], NormBox(*map(float, xywh)), float(conf))
                    for i, (xywh, c, conf) in enumerate(
                        zip(prediction.boxes_xywhn, prediction.class_ids, prediction.confidences)
                    )
                ),
                model_version=model.model_version,
                review_batch_id="",
            )
        )
    table = score_label_issues(records, class_names=names)
    wrong = [image_id in mistakes for image_id in table["image_id"]]
    return {
        "model": model.model_version,
        "model_map50": model.metrics.get("map50"),
        "training_images": model.metrics.get("training_images"),
        "suspects": int(table["suspect"].sum()),
        "at_suspects": at_k(wrong, int(table["suspect"].sum())),
        "at_errors": at_k(wrong, sum(wrong)),
    }


def _box(row):
    from labeling_dag.records import NormBox

    return NormBox(row.x, row.y, row.w, row.h)


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present and len(present) == len(values) else None


def _fmt(value: float | None) -> str:
    return "nan" if value is None else f"{value:.2f}"


def main(argv: list[str] | None = None) -> int:
    """Run every seed; print per-seed figures, the random baseline and the in-sample arm; write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200, help="generated images per seed (80 %% are the pool)")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds run: first-seed .. first-seed + seeds - 1")
    parser.add_argument("--rounds", type=int, default=3, help="review rounds after the first batch")
    parser.add_argument("--batch-size", type=int, default=30)
    parser.add_argument("--imgsz", type=int, default=128)
    parser.add_argument("--base-images", type=int, default=200, help="images the warm start's detector learnt")
    parser.add_argument("--base-epochs", type=int, default=40)
    parser.add_argument("--fine-tune-epochs", type=int, default=5)
    parser.add_argument("--error-rate", type=float, default=0.10, help="the simulated reviewer's mistakes per box")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("label_issues.json"))
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one seed, one round: checks it runs (CI)")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.seeds, args.rounds, args.batch_size = 40, 1, 1, 8
        args.imgsz, args.base_images, args.base_epochs, args.fine_tune_epochs = 64, 24, 2, 1
        if args.out == parser.get_default("out"):
            args.out = args.out.with_name("label_issues.quick.json")

    os.environ.pop("DAGSTER_HOME", None)  # every loop gets its own ephemeral instance
    os.environ.setdefault("LABELING_DAG_CONFIG_DIR", str(REPO / ".labeling-dag"))
    os.environ.setdefault("YOLO_CONFIG_DIR", os.environ["LABELING_DAG_CONFIG_DIR"])
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["PATH"] = f"{REPO / '.tools' / 'bin'}{os.pathsep}{os.environ['PATH']}"
    from labeling_dag.simulation.loop_settings import LoopSettings
    from labeling_dag.simulation.sample_data import generate_dataset

    scratch = Path(tempfile.mkdtemp(prefix="label-issues-"))
    started = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    results: list[dict] = []
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=context, initializer=one_thread_per_process) as workers:
        base = workers.submit(
            train_base_model, scratch, images=args.base_images, imgsz=args.imgsz, epochs=args.base_epochs
        ).result()
        print(
            f"warm start: a detector trained on {args.base_images} other images, {args.base_epochs} epochs", flush=True
        )
        futures = []
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            pool = generate_dataset(scratch / f"pool-{seed}", images=args.images, seed=100 + seed, imgsz=args.imgsz)
            settings = LoopSettings(
                dataset=pool,
                workdir=scratch / f"work-{seed}",
                rounds=args.rounds,
                batch_size=args.batch_size,
                seed_labels=args.batch_size,  # a warm start's first batch is a review batch like the others
                seed_model=base,
                gold_images=0,
                reviewer_error_rate=args.error_rate,
                auto_accept=False,
                seed=seed,
                imgsz=args.imgsz,
                fine_tune_epochs=args.fine_tune_epochs,
            )
            futures.append(workers.submit(run_seed, settings))
        for future in as_completed(futures):
            result = future.result()
            results.append(result)
            s, e = result["at_suspects"], result["at_errors"]
            print(
                f"seed {result['seed']}: {result['scored']} of {result['human_images']} human images scored, "
                f"{result['errors']} erroneous; {result['suspects']} suspects: precision {_fmt(s['precision'])} "
                f"recall {_fmt(s['recall'])}; top {e['k']}: precision = recall {_fmt(e['precision'])} "
                f"(loop {result['loop_seconds']:.0f} s, asset {result['asset_seconds']:.1f} s)",
                flush=True,
            )
    results.sort(key=lambda r: r["seed"])

    print(f"\n{'seed':>4} {'arm':<22} {'k':>4} {'found':>5} {'precision':>9} {'recall':>6}")
    for r in results:
        rows = [
            ("suspects flagged", r["at_suspects"]),
            ("top k = errors", r["at_errors"]),
            ("random, k = suspects", {**r["random_at_suspects"], "k": r["suspects"], "found": None}),
            ("random, k = errors", {**r["random_at_errors"], "k": r["errors"], "found": None}),
        ]
        if r["in_sample"].get("model"):
            rows += [
                ("in-sample, suspects", r["in_sample"]["at_suspects"]),
                ("in-sample, k = errors", r["in_sample"]["at_errors"]),
            ]
        for name, row in rows:
            found = "" if row.get("found") is None else row["found"]
            print(
                f"{r['seed']:>4} {name:<22} {row['k']:>4} {found:>5} "
                f"{_fmt(row['precision']):>9} {_fmt(row['recall']):>6}"
            )
        kinds = ", ".join(
            f"{k} {v['flagged']}/{v['images']} (named so {v['named_so']})" for k, v in r["per_kind"].items()
        )
        print(f"{'':>4} images with each mistake, flagged/all: {kinds}")

    headline = {
        "precision": _mean([r["at_suspects"]["precision"] for r in results]),
        "recall": _mean([r["at_suspects"]["recall"] for r in results]),
        "random_precision": _mean([r["random_at_suspects"]["precision"] for r in results]),
    }
    payload = {
        "benchmark": "label_issues",
        "settings": {k: str(v) for k, v in vars(args).items()},
        "headline": headline,
        "results": results,
        "seconds": round(time.perf_counter() - started, 1),
    }
    args.out.write_text(json.dumps(payload, indent=2))
    print(f"results: {args.out} ({payload['seconds']:.0f} s)")
    seeds = ", ".join(str(r["seed"]) for r in results)
    print(
        f"label issues: recall {_fmt(headline['recall'])} at precision {_fmt(headline['precision'])} "
        f"(random ranking precision {_fmt(headline['random_precision'])}; seeds {seeds})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
