"""What a reviewer must fix in a first fine-tuned model's pre-labels, per NMS IoU of pre-labelling.

The model is the one the loop's auto-accept gate first decides with on a warm start: the label
economics benchmark's source-domain base model (600 generated source-domain images, 40 epochs)
fine-tuned as the loop fine-tunes (``fine_tune_epochs``, no mosaic, no warm-up) on 100 random
images of its target-domain pool (1 250 images, 1 000 in the pool), labelled with the truth. It
pre-labels the pool (but those 100) once per NMS IoU (``Detector.iou``), and each image's boxes
are compared with the truth as the loop's simulated reviewer would edit them
(:func:`labeling_dag.agreement.classify_edits`; a box within the reviewer's IoU 0.85 of the truth
is kept as it is): boxes deleted (a duplicate, clutter or a box far off), relabelled, moved, kept,
objects added.

Per setting: the boxes of each kind, the share of images *fully right* (nothing deleted,
relabelled or added), the most images an image gate ranking by least box confidence could accept
at 90 % fully right (the best case of the loop's gate), and the human seconds of reviewing every
image (:mod:`labeling_dag.human_time`). The last line: the images fully right at the default NMS
IoU (``Detector.iou``) over those at ultralytics' 0.7.

    .venv/bin/python bench/prelabel_errors.py [--quick]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from results import write_result

TARGET_SHARE = 0.9  # of fully right images among those a gate accepts (the loop's image target)


def largest_accepted(least_confidences: np.ndarray, fully_right: np.ndarray, target: float) -> int:
    """The most images a gate on least box confidence accepts with ``target`` of them fully right."""
    order = np.argsort(-least_confidences, kind="stable")
    share = np.cumsum(fully_right[order]) / np.arange(1, len(order) + 1)
    passing = np.flatnonzero(share >= target)
    return int(passing[-1] + 1) if passing.size else 0


def score_predictions(predictions: dict, truth: dict) -> dict[str, object]:
    """Edit kinds, images fully right, the gate's best case and review seconds of one setting."""
    from labeling_dag.agreement import classify_edits
    from labeling_dag.formats.label_studio_export import AnnotatedBox
    from labeling_dag.human_time import ReviewCosts, review_seconds
    from labeling_dag.simulation.simulated_reviewer import ACCEPT_IOU

    edits, least, right = [], [], []
    for image_id, boxes in predictions.items():
        true = [AnnotatedBox(f"t{i}", t.class_name, t.box) for i, t in enumerate(truth[image_id])]
        # A box the simulated reviewer would leave alone is kept, as in the loop's pricing.
        kinds = [edit.edit_kind for edit in classify_edits(boxes, true, same_box_iou=ACCEPT_IOU)]
        edits += [(image_id, kind) for kind in kinds]
        least.append(min((b.confidence for b in boxes), default=0.0))
        right.append(bool(boxes) and not {"deleted", "relabelled", "added"} & set(kinds))
    frame = pd.DataFrame(edits, columns=["image_id", "edit_kind"])
    seconds = review_seconds(list(predictions), frame["image_id"], frame["edit_kind"], ReviewCosts())
    right_array = np.array(right)
    return {
        "edits": {kind: int(n) for kind, n in frame["edit_kind"].value_counts().sort_index().items()},
        "fully_right": float(right_array.mean()),
        "largest_accepted": largest_accepted(np.array(least), right_array, TARGET_SHARE),
        "review_seconds_per_image": float(seconds.mean()),
    }


def predict_pool(weights: Path, images: dict[str, Path], *, imgsz: int, iou: float, class_names) -> dict:
    """Every pool image's pre-label boxes at NMS IoU ``iou``, as :class:`PredictedBox` records."""
    from labeling_dag.resources.detector import Detector

    from labeling_dag.agreement import PredictedBox
    from labeling_dag.records import NormBox

    ids = list(images)
    found = {}
    for image_id, p in zip(ids, Detector(imgsz=imgsz, iou=iou).predict(weights, [images[i] for i in ids])):
        found[image_id] = [
            PredictedBox(f"p{k}", class_names[int(c)], NormBox(*map(float, xywh)), float(conf))
            for k, (xywh, c, conf) in enumerate(zip(p.boxes_xywhn, p.class_ids, p.confidences))
        ]
    return found


def main(argv: list[str] | None = None) -> int:
    """Train the base model, fine-tune it, pre-label the pool per NMS IoU; print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1250, help="generated target-domain images (80 %% the pool)")
    parser.add_argument("--fine-tune-images", type=int, default=100)
    parser.add_argument("--ious", default="0.7,0.6,0.5,0.45")
    parser.add_argument("--imgsz", type=int, default=128)
    parser.add_argument("--base-images", type=int, default=600)
    parser.add_argument("--base-epochs", type=int, default=40)
    parser.add_argument("--fine-tune-epochs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("prelabel_errors.json"))
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks it runs (CI)")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.fine_tune_images, args.base_images, args.base_epochs = 40, 8, 24, 2
        args.imgsz, args.fine_tune_epochs = 64, 1
        if args.out == parser.get_default("out"):
            args.out = args.out.with_name("prelabel_errors.quick.json")

    from label_economics import train_base_model
    from labeling_dag.resources.detector import Detector

    from labeling_dag.fine_tuning import fine_tune_epochs
    from labeling_dag.formats.yolo import load_data_yaml
    from labeling_dag.model_registry import file_sha256
    from labeling_dag.simulation.sample_data import generate_dataset
    from labeling_dag.simulation.simulated_reviewer import load_truth
    from labeling_dag.training_data import write_yolo_dataset

    scratch = Path(tempfile.mkdtemp(prefix="prelabel-errors-"))
    base = train_base_model(scratch, images=args.base_images, imgsz=args.imgsz, epochs=args.base_epochs, seed=7)
    pool = generate_dataset(scratch / "pool", images=args.images, seed=123, imgsz=args.imgsz, domain="target")
    spec = load_data_yaml(pool)
    truth = load_truth(pool, "train")
    images = {file_sha256(path): path for path in spec.train_images.rglob("*.jpg")}
    chosen = sorted(np.random.default_rng(0).choice(sorted(images), size=args.fine_tune_images, replace=False))
    labels = pd.DataFrame(
        [
            {"image_id": i, "class_name": t.class_name, "x": t.box.x, "y": t.box.y, "w": t.box.w, "h": t.box.h}
            for i in chosen
            for t in truth[i]
        ],
        columns=["image_id", "class_name", "x", "y", "w", "h"],
    )
    data = write_yolo_dataset(
        scratch / "fine-tune-data",
        images=pd.DataFrame({"image_id": chosen, "path": [str(images[i]) for i in chosen]}),
        labels=labels,
        class_names=spec.names,
        val_images=spec.val_images,
    )
    detector = Detector(imgsz=args.imgsz, seed=0)
    epochs = fine_tune_epochs(len(chosen), batch=detector.batch, epochs=args.fine_tune_epochs, min_steps=100)
    weights = detector.train(data, scratch / "fine-tune", base_weights=base, epochs=epochs, mosaic=0.0, warmup_epochs=0)

    pool_images = {i: images[i] for i in sorted(images) if i not in set(chosen)}
    settings = {}
    print(
        f"{'NMS IoU':>7} {'deleted':>8} {'relabelled':>10} {'added':>6} {'moved':>6} {'fully right':>11} "
        f"{'gate best':>9} {'review s/img':>12}"
    )
    for iou in (float(x) for x in args.ious.split(",")):
        found = predict_pool(weights, pool_images, imgsz=args.imgsz, iou=iou, class_names=spec.names)
        row = settings[str(iou)] = score_predictions(found, truth)
        e = row["edits"]
        print(
            f"{iou:>7} {e.get('deleted', 0):>8} {e.get('relabelled', 0):>10} {e.get('added', 0):>6} "
            f"{e.get('moved', 0):>6} {row['fully_right']:>11.3f} {row['largest_accepted']:>9} "
            f"{row['review_seconds_per_image']:>12.2f}",
            flush=True,
        )
    default = str(float(Detector().iou))
    ratio = (
        settings[default]["fully_right"] / settings["0.7"]["fully_right"]
        if settings["0.7"]["fully_right"]
        else math.nan
    )
    write_result(
        args.out,
        "prelabel_errors",
        {
            "pool_images": len(pool_images),
            "true_boxes": sum(len(truth[i]) for i in pool_images),
            "fine_tune_images": len(chosen),
            "fine_tune_epochs": epochs,
            "settings": settings,
            "default_iou": float(default),
        },
    )
    print(f"images fully right at the default nms iou over ultralytics default {ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
