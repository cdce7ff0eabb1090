"""Tests for the simulated reviewer that answers review tasks from the true labels."""

from __future__ import annotations

import copy
import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labeling_dag.formats.label_studio import review_task
from labeling_dag.formats.label_studio_export import AnnotatedBox, TaskAnnotation, parse_export
from labeling_dag.formats.yolo import read_yolo_labels
from labeling_dag.records import NormBox, PreLabel, ReviewImage
from labeling_dag.simulation.sample_data import generate_dataset
from labeling_dag.simulation.simulated_reviewer import TrueBox, load_truth, simulate_review

CLASSES = ("circle", "square", "triangle")
MODEL = "model-a"
BATCH = "batch-1"
START = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _iou(a: NormBox, b: NormBox) -> float:
    width = min(a.x + a.w / 2, b.x + b.w / 2) - max(a.x - a.w / 2, b.x - b.w / 2)
    height = min(a.y + a.h / 2, b.y + b.h / 2) - max(a.y - a.h / 2, b.y - b.h / 2)
    inter = max(width, 0.0) * max(height, 0.0)
    return inter / (a.w * a.h + b.w * b.h - inter)


def _task(image_id: str, predictions: list[tuple[str, str, NormBox]], *, size: int = 640) -> dict[str, Any]:
    """An exported review task whose prediction holds ``(box_id, class, box)`` regions."""
    image = ReviewImage(
        image_id=image_id,
        image_ref=f"/data/{image_id}.jpg",
        width=size,
        height=size,
        score=0.5,
        pre_labels=tuple(
            PreLabel(
                box_id=box_id,
                image_id=image_id,
                class_name=class_name,
                box=box,
                confidence=0.7,
                class_probs=(0.7, 0.2, 0.1),
                model_version=MODEL,
            )
            for box_id, class_name, box in predictions
        ),
    )
    return review_task(image, batch_id=BATCH, model_version=MODEL, pre_label_run_id="run-1")


def _review(tasks: list[dict[str, Any]], truth: dict[str, tuple[TrueBox, ...]], **kwargs: Any):
    kwargs.setdefault("annotated_at", START)
    return simulate_review(tasks, truth, class_names=CLASSES, **kwargs)


def _correctly_answered(true: TrueBox, boxes: tuple[AnnotatedBox, ...]) -> bool:
    return any(b.class_name == true.class_name and _iou(b.box, true.box) >= 0.5 for b in boxes)


def _by_image(parsed: list[TaskAnnotation]) -> dict[str, TaskAnnotation]:
    return {annotation.image_id: annotation for annotation in parsed}


A = NormBox(0.25, 0.25, 0.2, 0.2)
B = NormBox(0.7, 0.3, 0.3, 0.2)
C = NormBox(0.5, 0.75, 0.16, 0.24)
TRUTH = {
    "perfect": (TrueBox("circle", A), TrueBox("square", B)),
    "shifted": (TrueBox("circle", A),),
    "relabel": (TrueBox("triangle", C),),
    "spurious": (TrueBox("square", B),),
    "missing": (TrueBox("circle", A), TrueBox("triangle", C)),
    "empty": (),
}


def _scenario_tasks() -> list[dict[str, Any]]:
    return [
        _task("perfect", [("p1", "circle", A), ("p2", "square", B)]),
        # IoU with A about 0.6: matched, but too far off to accept.
        _task("shifted", [("s1", "circle", NormBox(0.28, 0.28, 0.2, 0.2))]),
        _task("relabel", [("r1", "circle", C)]),
        _task("spurious", [("x1", "square", B), ("x2", "circle", NormBox(0.2, 0.8, 0.1, 0.1))]),
        _task("missing", [("m1", "circle", A)]),
        _task("empty", [("e1", "circle", A)]),
    ]


def test_error_free_review_recovers_the_truth_through_parse_export() -> None:
    tasks = _scenario_tasks()
    out = _review(tasks, TRUTH)
    parsed = _by_image(parse_export(out, class_names=CLASSES, expected_batch_id=BATCH))

    assert set(parsed) == set(TRUTH)
    for image_id, true_boxes in TRUTH.items():
        boxes = parsed[image_id].boxes
        assert len(boxes) == len(true_boxes)
        for true in true_boxes:
            best = max(boxes, key=lambda b: _iou(b.box, true.box))
            assert _iou(best.box, true.box) > 0.99
            assert best.class_name == true.class_name

    def ids(image_id: str) -> list[str]:
        return [b.region_id for b in parsed[image_id].boxes]

    assert ids("perfect") == ["p1", "p2"]  # accepted
    assert ids("shifted") == ["s1"]  # moved
    assert ids("relabel") == ["r1"]  # relabelled
    assert ids("spurious") == ["x1"]  # x2 deleted
    assert ids("missing") == ["m1", "sim-missing-1"]  # one added
    assert ids("empty") == []
    assert parsed["spurious"].prediction_region_ids == ("x1", "x2")


def test_a_close_prediction_is_kept_exactly_as_predicted() -> None:
    close = NormBox(0.26, 0.25, 0.2, 0.2)  # IoU with A about 0.9
    task = _task("close", [("c1", "circle", close)])
    [out] = _review([task], {"close": (TrueBox("circle", A),)})

    [region] = out["annotations"][0]["result"]
    predicted = task["predictions"][0]["result"][0]
    assert region == {key: value for key, value in predicted.items() if key != "score"}


def test_regions_follow_the_export_format_and_the_input_is_untouched() -> None:
    tasks = _scenario_tasks()
    before = copy.deepcopy(tasks)
    out = _review(tasks, TRUTH)

    assert tasks == before
    for index, (task, answered) in enumerate(zip(tasks, out, strict=True)):
        assert answered["predictions"] == task["predictions"]
        assert answered["data"] == task["data"]
        assert answered["id"] == index + 1
        [annotation] = answered["annotations"]
        assert annotation["completed_by"] == {"id": 1, "email": "reviewer-1"}
        assert annotation["was_cancelled"] is False
        for region in annotation["result"]:
            assert set(region) == {
                "id",
                "from_name",
                "to_name",
                "type",
                "original_width",
                "original_height",
                "image_rotation",
                "value",
            }
            assert (region["from_name"], region["to_name"], region["type"]) == (
                "label",
                "image",
                "rectanglelabels",
            )
            assert (region["original_width"], region["original_height"]) == (640, 640)
            assert region["image_rotation"] == 0
            assert set(region["value"]) == {
                "x",
                "y",
                "width",
                "height",
                "rotation",
                "rectanglelabels",
            }


def test_existing_task_ids_are_kept() -> None:
    task = {**_task("perfect", [("p1", "circle", A)]), "id": 77}
    [out] = _review([task], TRUTH)
    assert out["id"] == 77


def test_timestamps_are_utc_and_increase_by_seconds_per_task() -> None:
    out = _review(_scenario_tasks(), TRUTH, seconds_per_task=12.5)
    stamps = [datetime.fromisoformat(t["annotations"][0]["created_at"]) for t in out]

    assert stamps[0] == START
    assert all(s.utcoffset() == timedelta(0) for s in stamps)
    steps = [later - earlier for earlier, later in zip(stamps, stamps[1:])]
    assert steps == [timedelta(seconds=12.5)] * (len(stamps) - 1)
    assert all(t["annotations"][0]["updated_at"] == t["annotations"][0]["created_at"] for t in out)
    assert all(t["annotations"][0]["lead_time"] == 12.5 for t in out)
    parsed = parse_export(out, class_names=CLASSES)
    assert [datetime.fromisoformat(p.annotated_at) for p in parsed] == stamps


def test_a_task_without_predictions_needs_its_size_in_data() -> None:
    """Exported tasks carry the image size in data; a task stripped of it cannot be answered."""
    exported = _task("perfect", [])
    assert (exported["data"]["width"], exported["data"]["height"]) == (640, 640)
    bare = {**exported, "data": {k: v for k, v in exported["data"].items() if k not in ("width", "height")}}
    with pytest.raises(ValueError, match="image size"):
        _review([bare], TRUTH)

    sized = {**bare, "data": {**bare["data"], "width": 320, "height": 240}}
    [out] = _review([sized], TRUTH)
    regions = out["annotations"][0]["result"]
    assert [(r["original_width"], r["original_height"]) for r in regions] == [(320, 240)] * 2
    # Nothing to draw means no size is needed.
    assert _review([_task("empty", [])], TRUTH)[0]["annotations"][0]["result"] == []


def test_an_image_missing_from_the_truth_is_named() -> None:
    with pytest.raises(KeyError, match="unknown-image"):
        _review([_task("unknown-image", [])], TRUTH)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"error_rate": -0.1},
        {"error_rate": 1.5},
        {"error_rate": float("nan")},
        {"seed": -1},
        {"seconds_per_task": 0.0},
        {"annotated_at": datetime(2025, 1, 1)},
        {"reviewer": ""},
    ],
)
def test_bad_settings_are_rejected(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        _review(_scenario_tasks(), TRUTH, **kwargs)


def test_true_classes_must_be_in_class_names() -> None:
    with pytest.raises(ValueError, match="not in class_names"):
        simulate_review(_scenario_tasks(), TRUTH, class_names=("circle", "square"), annotated_at=START)


def test_a_second_reviewer_adds_an_annotation_after_the_first() -> None:
    tasks, truth = _grid_dataset(10)
    first = _review(tasks, truth, error_rate=0.5, seed=1)
    both = _review(
        first,
        truth,
        error_rate=0.5,
        seed=2,
        reviewer="reviewer-2",
        reviewer_id=2,
        annotated_at=START + timedelta(hours=1),
    )

    assert [t["annotations"][0] for t in both] == [t["annotations"][0] for t in first]
    ids = [a["id"] for t in both for a in t["annotations"]]
    assert len(set(ids)) == len(ids) == 20
    assert [a.reviewer for a in parse_export(both, class_names=CLASSES)] == ["reviewer-2"] * 10
    second_results = _results_by_image([{**t, "annotations": t["annotations"][1:]} for t in both])
    assert second_results != _results_by_image(first)


def _grid_dataset(images: int) -> tuple[list[dict[str, Any]], dict[str, tuple[TrueBox, ...]]]:
    """Images with 4 well-separated boxes each; every other image has perfect predictions."""
    tasks, truth = [], {}
    for i in range(images):
        image_id = hashlib.sha256(str(i).encode()).hexdigest()
        boxes = tuple(
            TrueBox(
                CLASSES[(i + k) % 3],
                NormBox(0.25 + 0.5 * (k % 2), 0.25 + 0.5 * (k // 2), 0.2, 0.16),
            )
            for k in range(4)
        )
        truth[image_id] = boxes
        regions = [(f"{image_id[:6]}-{k}", t.class_name, t.box) for k, t in enumerate(boxes)]
        tasks.append(_task(image_id, regions if i % 2 == 0 else [], size=100))
        if i % 2:
            tasks[-1]["data"].update(width=100, height=100)
    return tasks, truth


def test_with_error_rate_one_every_true_box_is_affected() -> None:
    tasks, truth = _grid_dataset(60)
    out = _review(tasks, truth, error_rate=1.0)
    parsed = parse_export(out, class_names=CLASSES)

    results = {t["data"]["image_id"]: t["annotations"][0]["result"] for t in out}
    kinds = {"missed": 0, "wrong_class": 0, "sloppy": 0}
    for annotation in parsed:
        for true in truth[annotation.image_id]:
            assert not _correctly_answered(true, annotation.boxes)
            near = [b for b in annotation.boxes if _iou(b.box, true.box) > 0.1]
            if not near:
                kinds["missed"] += 1
            elif near[0].class_name != true.class_name:
                assert _iou(near[0].box, true.box) > 0.99
                kinds["wrong_class"] += 1
            else:
                assert _iou(near[0].box, true.box) < 0.5
                kinds["sloppy"] += 1
        assert len(results[annotation.image_id]) == len(annotation.boxes)
    assert all(count > 40 for count in kinds.values()), kinds


def test_about_error_rate_of_the_boxes_are_affected() -> None:
    tasks, truth = _grid_dataset(300)  # 1200 boxes
    parsed = parse_export(_review(tasks, truth, error_rate=0.2, seed=3), class_names=CLASSES)
    affected = sum(
        not _correctly_answered(true, annotation.boxes) for annotation in parsed for true in truth[annotation.image_id]
    )
    # 0.2 +- 4 standard deviations of a binomial over 1200 boxes (sd ~ 0.0115).
    assert abs(affected / 1200 - 0.2) < 0.046


def test_raising_the_error_rate_only_adds_mistakes() -> None:
    tasks, truth = _grid_dataset(40)

    def wrong(rate: float) -> set[tuple[str, int]]:
        parsed = parse_export(_review(tasks, truth, error_rate=rate), class_names=CLASSES)
        return {
            (a.image_id, k)
            for a in parsed
            for k, true in enumerate(truth[a.image_id])
            if not _correctly_answered(true, a.boxes)
        }

    low, high = wrong(0.1), wrong(0.4)
    assert low and low < high


def _results_by_image(out: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    return {t["data"]["image_id"]: t["annotations"][0]["result"] for t in out}


def test_the_answer_depends_on_seed_and_image_not_on_task_order() -> None:
    tasks, truth = _grid_dataset(30)
    first = _review(tasks, truth, error_rate=0.5, seed=7)

    assert _review(tasks, truth, error_rate=0.5, seed=7) == first
    reordered = _review(list(reversed(tasks)), truth, error_rate=0.5, seed=7)
    assert _results_by_image(reordered) == _results_by_image(first)
    alone = _review(tasks[5:6], truth, error_rate=0.5, seed=7)
    fifth = tasks[5]["data"]["image_id"]
    assert _results_by_image(alone) == {fifth: _results_by_image(first)[fifth]}
    other_seed = _review(tasks, truth, error_rate=0.5, seed=8)
    assert _results_by_image(other_seed) != _results_by_image(first)


def test_a_single_class_reviewer_still_errs_on_every_box() -> None:
    truth = {"one": (TrueBox("circle", A), TrueBox("circle", C))}
    tasks = [_task("one", [("o1", "circle", A)])]
    for seed in range(10):
        out = simulate_review(tasks, truth, class_names=("circle",), error_rate=1.0, seed=seed, annotated_at=START)
        [annotation] = parse_export(out, class_names=("circle",))
        assert not any(_correctly_answered(true, annotation.boxes) for true in truth["one"])


def test_a_sloppy_box_at_the_image_corner_stays_inside_and_wrong() -> None:
    corner = NormBox(0.05, 0.05, 0.1, 0.1)
    truth = {"corner": (TrueBox("circle", corner),)}
    task = _task("corner", [])
    task["data"].update(width=50, height=50)
    sloppy = 0
    for seed in range(40):
        out = _review([task], truth, error_rate=1.0, seed=seed)
        [annotation] = parse_export(out, class_names=CLASSES)
        for found in annotation.boxes:
            if found.class_name == "circle":
                sloppy += 1
                assert _iou(found.box, corner) < 0.5
                assert found.box.x - found.box.w / 2 >= -1e-9
                assert found.box.y - found.box.h / 2 >= -1e-9
    assert sloppy > 0


_coordinate = st.floats(0.1, 0.9)
_size = st.floats(0.05, 0.3)
_boxes = st.lists(st.tuples(st.sampled_from(CLASSES), _coordinate, _coordinate, _size, _size), max_size=5)


@settings(max_examples=60, deadline=None)
@given(true_rows=_boxes, predicted_rows=_boxes)
def test_error_free_answers_hold_every_true_box_once(true_rows, predicted_rows) -> None:
    def box(x: float, y: float, w: float, h: float) -> NormBox:
        # Keep boxes inside the image, as the pipeline's boxes are.
        w, h = min(w, 2 * x, 2 * (1 - x)), min(h, 2 * y, 2 * (1 - y))
        return NormBox(x, y, w, h)

    true = tuple(TrueBox(c, box(*xywh)) for c, *xywh in true_rows)
    predictions = [(f"p{i}", c, box(*xywh)) for i, (c, *xywh) in enumerate(predicted_rows)]
    task = _task("img", predictions)
    task["data"].update(width=640, height=640)
    [annotation] = parse_export(_review([task], {"img": true}), class_names=CLASSES)

    assert len(annotation.boxes) == len(true)
    # Each true box gets its own region: the true box itself or an accepted prediction.
    unused = list(annotation.boxes)
    for t in true:
        candidates = [b for b in unused if b.class_name == t.class_name and _iou(b.box, t.box) >= 0.85 - 1e-9]
        assert candidates
        unused.remove(max(candidates, key=lambda b: _iou(b.box, t.box)))
    predicted_ids = {box_id for box_id, _, _ in predictions}
    assert all(b.region_id in predicted_ids or b.region_id.startswith("sim-img-") for b in annotation.boxes)


def test_load_truth_keys_by_image_bytes_and_reads_every_box(tmp_path: Path) -> None:
    data_yaml = generate_dataset(tmp_path / "ds", images=6, imgsz=64)
    for split in ("train", "val"):
        truth = load_truth(data_yaml, split)
        images = sorted((tmp_path / "ds" / "images" / split).glob("*.jpg"))
        expected = {}
        for image in images:
            rows = read_yolo_labels(tmp_path / "ds" / "labels" / split / f"{image.stem}.txt")
            expected[hashlib.sha256(image.read_bytes()).hexdigest()] = tuple(
                TrueBox(CLASSES[c], NormBox(x, y, w, h)) for c, x, y, w, h in rows
            )
        assert truth == expected
        assert len(truth) == len(images) and all(truth.values())


def test_load_truth_answers_an_exported_batch(tmp_path: Path) -> None:
    data_yaml = generate_dataset(tmp_path / "ds", images=6, imgsz=64)
    truth = load_truth(data_yaml)
    tasks = [
        _task(image_id, [(f"{image_id[:6]}-{k}", t.class_name, t.box) for k, t in enumerate(boxes)])
        for image_id, boxes in truth.items()
    ]
    for annotation in parse_export(_review(tasks, truth), class_names=CLASSES):
        true_boxes = truth[annotation.image_id]
        assert [b.class_name for b in annotation.boxes] == [t.class_name for t in true_boxes]
        for found, true in zip(annotation.boxes, true_boxes, strict=True):
            assert _iou(found.box, true.box) > 0.99


def test_load_truth_rejects_bad_splits_and_class_ids(tmp_path: Path) -> None:
    data_yaml = generate_dataset(tmp_path / "ds", images=3, imgsz=64)
    with pytest.raises(ValueError, match="split"):
        load_truth(data_yaml, "test")
    label = next((tmp_path / "ds" / "labels" / "train").glob("*.txt"))
    label.write_text("7 0.5 0.5 0.2 0.2\n")
    with pytest.raises(ValueError, match="class id 7"):
        load_truth(data_yaml)
    label.unlink()  # an image without a label file has no objects
    assert () in load_truth(data_yaml).values()
