"""Tests for the Label Studio task / export formats."""

from __future__ import annotations

import copy
import json
import math
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labeling_dag.formats.label_studio import FROM_NAME, TO_NAME, labeling_config, review_batch_document, review_task
from labeling_dag.formats.label_studio_boxes import ls_percent_to_norm, norm_to_ls_percent
from labeling_dag.formats.label_studio_export import (
    ReviewExportError,
    TaskAnnotation,
    is_complete,
    parse_all_annotations,
    parse_export,
)
from labeling_dag.merge import edit_rows
from labeling_dag.records import NormBox, PreLabel, ReviewImage
from labeling_dag.review_intake import judge_review_file
from tests.faults.review_files import json_paths

CLASSES = ("car", "person", "bicycle")
MODEL = "yolo-v3"
BATCH = "batch-007"
RUN = "run-42"


def _pre_label(box_id: str, image_id: str, class_name: str, box: NormBox, conf: float) -> PreLabel:
    return PreLabel(
        box_id=box_id,
        image_id=image_id,
        class_name=class_name,
        box=box,
        confidence=conf,
        class_probs=(conf, 1 - conf, 0.0),
        model_version=MODEL,
    )


IMG1 = ReviewImage(
    image_id="img-1",
    image_ref="s3://bucket/img-1.jpg",
    width=640,
    height=480,
    score=0.73,
    pre_labels=(
        _pre_label("p1", "img-1", "car", NormBox(0.5, 0.5, 0.2, 0.4), 0.91),
        _pre_label("p2", "img-1", "person", NormBox(0.25, 0.25, 0.1, 0.3), 0.55),
        _pre_label("p3", "img-1", "car", NormBox(0.8, 0.7, 0.2, 0.2), 0.42),
        _pre_label("p4", "img-1", "bicycle", NormBox(0.1, 0.9, 0.1, 0.1), 0.31),
    ),
)
IMG2 = ReviewImage(image_id="img-2", image_ref="s3://bucket/img-2.jpg", width=800, height=600, score=0.2)


# --- labelling config -------------------------------------------------------------------


def test_labeling_config_structure_and_escaping() -> None:
    names = ["car", 'a<b & "c"']
    root = ET.fromstring(labeling_config(names))
    assert root.tag == "View"
    image, rect = list(root)
    assert image.tag == "Image" and image.attrib == {"name": TO_NAME, "value": "$image"}
    assert rect.tag == "RectangleLabels"
    assert rect.attrib["name"] == FROM_NAME and rect.attrib["toName"] == TO_NAME
    assert [label.attrib["value"] for label in rect] == names
    assert all(label.tag == "Label" for label in rect)


@pytest.mark.parametrize("names", [[], ["car", "car"], ["car", ""]])
def test_labeling_config_rejects_bad_class_lists(names: list[str]) -> None:
    with pytest.raises(ValueError):
        labeling_config(names)


# --- coordinate conversion --------------------------------------------------------------


def test_norm_to_ls_percent_hand_computed() -> None:
    value = norm_to_ls_percent(NormBox(0.5, 0.5, 0.2, 0.4))
    assert value == pytest.approx({"x": 40.0, "y": 30.0, "width": 20.0, "height": 40.0})


def test_ls_percent_to_norm_hand_computed() -> None:
    box = ls_percent_to_norm({"x": 40.0, "y": 30.0, "width": 20.0, "height": 40.0, "rotation": 0})
    assert (box.x, box.y, box.w, box.h) == pytest.approx((0.5, 0.5, 0.2, 0.4))


def test_ls_percent_to_norm_clips_small_overshoot() -> None:
    box = ls_percent_to_norm({"x": -0.3, "y": 90.0, "width": 10.3, "height": 10.4})
    assert (box.x, box.y, box.w, box.h) == pytest.approx((0.05, 0.95, 0.1, 0.1))


@pytest.mark.parametrize(
    "value",
    [
        {"x": 10, "y": 10, "width": 0, "height": 5},
        {"x": 10, "y": 10, "width": -3, "height": 5},
        {"x": 10, "y": 10, "width": 5, "height": math.nan},
        {"x": math.inf, "y": 10, "width": 5, "height": 5},
        {"x": -1.0, "y": 10, "width": 5, "height": 5},
        {"x": 96.0, "y": 10, "width": 5, "height": 5},
        {"x": 100.2, "y": 10, "width": 0.2, "height": 5},  # only the tolerance band, no area
        {"x": "10", "y": 10, "width": 5, "height": 5},
        {"x": True, "y": 10, "width": 5, "height": 5},
        {"x": 10, "y": 10, "width": 5},
        {"x": 10, "y": 10, "width": 5, "height": 5, "rotation": 30},
    ],
)
def test_ls_percent_to_norm_rejects(value: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ls_percent_to_norm(value)


@st.composite
def _valid_boxes(draw: st.DrawFn) -> NormBox:
    edge = st.floats(0.0, 1.0, allow_nan=False)
    left, right = sorted((draw(edge), draw(edge)))
    top, bottom = sorted((draw(edge), draw(edge)))
    # Sizes below ~1e-6 of the image are not boxes anyone draws; they only probe float limits.
    if right - left < 1e-6 or bottom - top < 1e-6:
        left, right, top, bottom = 0.25, 0.75, 0.25, 0.75
    return NormBox((left + right) / 2, (top + bottom) / 2, right - left, bottom - top)


@given(_valid_boxes())
def test_percent_roundtrip(box: NormBox) -> None:
    back = ls_percent_to_norm(norm_to_ls_percent(box))
    for got, want in zip((back.x, back.y, back.w, back.h), (box.x, box.y, box.w, box.h)):
        assert abs(got - want) <= 1e-9


# --- task document ----------------------------------------------------------------------


def test_review_task_matches_label_studio_import_format() -> None:
    image = ReviewImage(
        image_id="img-9",
        image_ref="https://example.com/img-9.jpg",
        width=1000,
        height=500,
        score=0.66,
        pre_labels=(_pre_label("b-1", "img-9", "person", NormBox(0.5, 0.5, 0.2, 0.4), 0.87),),
    )
    task = review_task(image, batch_id=BATCH, model_version=MODEL, pre_label_run_id=RUN)
    expected_value = {"x": 40.0, "y": 30.0, "width": 20.0, "height": 40.0}
    region = task["predictions"][0]["result"][0]
    assert region["value"].pop("x") == pytest.approx(expected_value.pop("x"))
    assert region["value"].pop("y") == pytest.approx(expected_value.pop("y"))
    assert region["value"].pop("width") == pytest.approx(expected_value.pop("width"))
    assert region["value"].pop("height") == pytest.approx(expected_value.pop("height"))
    assert task == {
        "data": {
            "image": "https://example.com/img-9.jpg",
            "image_id": "img-9",
            "width": 1000,
            "height": 500,
            "batch_id": BATCH,
            "pre_label_run_id": RUN,
        },
        "predictions": [
            {
                "model_version": MODEL,
                "score": 0.66,
                "result": [
                    {
                        "id": "b-1",
                        "from_name": "label",
                        "to_name": "image",
                        "type": "rectanglelabels",
                        "original_width": 1000,
                        "original_height": 500,
                        "image_rotation": 0,
                        "value": {"rotation": 0, "rectanglelabels": ["person"]},
                        "score": 0.87,
                    }
                ],
            }
        ],
    }


def test_gold_flag_is_not_part_of_the_task() -> None:
    task = review_task(IMG1, batch_id=BATCH, model_version=MODEL, pre_label_run_id=RUN)
    assert "is_gold" not in json.dumps(task)
    with pytest.raises(TypeError):
        review_task(IMG1, batch_id=BATCH, model_version=MODEL, pre_label_run_id=RUN, is_gold=True)  # type: ignore[call-arg]


def test_review_batch_document_is_a_json_list_of_tasks() -> None:
    document = review_batch_document([IMG1, IMG2], batch_id=BATCH, model_version=MODEL, pre_label_run_id=RUN)
    assert isinstance(document, list) and len(document) == 2
    assert json.loads(json.dumps(document, allow_nan=False)) == document
    assert [t["data"]["image_id"] for t in document] == ["img-1", "img-2"]
    assert [r["id"] for r in document[0]["predictions"][0]["result"]] == ["p1", "p2", "p3", "p4"]
    assert document[1]["predictions"] == [{"model_version": MODEL, "score": 0.2, "result": []}]


def test_review_batch_document_rejects_duplicate_images() -> None:
    with pytest.raises(ValueError, match="img-2"):
        review_batch_document([IMG2, IMG2], batch_id=BATCH, model_version=MODEL, pre_label_run_id=RUN)


@pytest.mark.parametrize(
    "pre_label",
    [
        _pre_label("x", "img-other", "car", NormBox(0.5, 0.5, 0.1, 0.1), 0.5),
        PreLabel("x", "img-2", "car", NormBox(0.5, 0.5, 0.1, 0.1), 0.5, (0.5,), "other-model"),
        _pre_label("x", "img-2", "car", NormBox(0.5, 0.5, 0.0, 0.1), 0.5),
        _pre_label("x", "img-2", "car", NormBox(1.2, 0.5, 0.1, 0.1), 0.5),
    ],
)
def test_review_task_rejects_inconsistent_pre_labels(pre_label: PreLabel) -> None:
    image = ReviewImage("img-2", "s3://bucket/img-2.jpg", 800, 600, 0.2, (pre_label,))
    with pytest.raises(ValueError, match="img-2"):
        review_task(image, batch_id=BATCH, model_version=MODEL, pre_label_run_id=RUN)


def test_review_task_rejects_duplicate_box_ids() -> None:
    label = _pre_label("dup", "img-2", "car", NormBox(0.5, 0.5, 0.1, 0.1), 0.5)
    image = ReviewImage("img-2", "s3://bucket/img-2.jpg", 800, 600, 0.2, (label, label))
    with pytest.raises(ValueError, match="dup"):
        review_task(image, batch_id=BATCH, model_version=MODEL, pre_label_run_id=RUN)


# --- export parsing ---------------------------------------------------------------------


def _region(region_id: str, label: str, value: dict[str, float], width: int = 640, height: int = 480) -> dict[str, Any]:
    return {
        "id": region_id,
        "from_name": FROM_NAME,
        "to_name": TO_NAME,
        "type": "rectanglelabels",
        "origin": "manual",
        "original_width": width,
        "original_height": height,
        "image_rotation": 0,
        "value": {**value, "rotation": 0, "rectanglelabels": [label]},
    }


def _export() -> list[dict[str, Any]]:
    """A hand-written export shaped like Label Studio's JSON export of the two-image batch."""
    imported = review_batch_document([IMG1, IMG2], batch_id=BATCH, model_version=MODEL, pre_label_run_id=RUN)
    predictions_1 = imported[0]["predictions"][0]
    accepted = copy.deepcopy(predictions_1["result"][0])  # p1 exactly as predicted
    accepted.pop("score")
    accepted["origin"] = "prediction"
    return [
        {
            "id": 101,
            "data": imported[0]["data"],
            "annotations": [
                {  # first pass, superseded by the later annotation
                    "id": 9001,
                    "completed_by": {"id": 3, "email": "ann@example.com", "first_name": "", "last_name": ""},
                    "result": [_region("p1", "car", {"x": 0.0, "y": 0.0, "width": 5.0, "height": 5.0})],
                    "was_cancelled": False,
                    "ground_truth": False,
                    "created_at": "2026-05-01T10:00:00.000000Z",
                    "updated_at": "2026-05-01T10:05:00.000000Z",
                    "lead_time": 12.5,
                    "task": 101,
                },
                {
                    "id": 9002,
                    "completed_by": {"id": 4, "email": "bob@example.com", "first_name": "", "last_name": ""},
                    "result": [
                        accepted,
                        # p2 moved
                        _region("p2", "person", {"x": 22.0, "y": 12.0, "width": 10.0, "height": 30.0}),
                        # p3 relabelled, box untouched
                        _region("p3", "person", {"x": 70.0, "y": 60.0, "width": 20.0, "height": 20.0}),
                        # a box the model missed; p4 was deleted
                        _region("Xq3n9Lm2Tz", "bicycle", {"x": 50.0, "y": 80.0, "width": 10.0, "height": 10.0}),
                        {
                            "id": "c1",
                            "from_name": "quality",
                            "to_name": TO_NAME,
                            "type": "choices",
                            "value": {"choices": ["blurry"]},
                        },
                    ],
                    "was_cancelled": False,
                    "ground_truth": False,
                    "created_at": "2026-05-01T10:30:00.000000Z",
                    "updated_at": "2026-05-01T11:00:00.000000Z",
                    "lead_time": 40.1,
                    "task": 101,
                },
                {  # skipped later: must not win although it is the newest
                    "id": 9003,
                    "completed_by": 5,
                    "result": [],
                    "was_cancelled": True,
                    "created_at": "2026-05-01T12:00:00Z",
                    "updated_at": "2026-05-01T12:00:00Z",
                    "task": 101,
                },
            ],
            "predictions": [{**predictions_1, "id": 55, "created_ago": "3 hours", "task": 101}],
            "created_at": "2026-05-01T09:00:00.000000Z",
            "updated_at": "2026-05-01T11:00:00.000000Z",
            "project": 12,
        },
        {
            "id": 102,
            "data": imported[1]["data"],
            "annotations": [
                {  # nothing in the image: a valid, empty annotation
                    "id": "9004",
                    "completed_by": 7,
                    "result": [],
                    "was_cancelled": False,
                    "created_at": "2026-05-01T10:10:00+02:00",
                    "task": 102,
                }
            ],
            "predictions": imported[1]["predictions"],
            "project": 12,
        },
    ]


def test_parse_export_realistic() -> None:
    first, second = parse_export(_export(), class_names=CLASSES, expected_batch_id=BATCH)

    assert first.task_id == 101 and first.image_id == "img-1" and first.batch_id == BATCH
    assert first.reviewer == "bob@example.com"
    assert first.annotated_at == "2026-05-01T11:00:00+00:00"
    assert first.prediction_region_ids == ("p1", "p2", "p3", "p4")
    by_id = {b.region_id: b for b in first.boxes}
    assert list(by_id) == ["p1", "p2", "p3", "Xq3n9Lm2Tz"]
    accepted = by_id["p1"]
    original = IMG1.pre_labels[0]
    assert accepted.class_name == original.class_name
    assert (accepted.box.x, accepted.box.y, accepted.box.w, accepted.box.h) == pytest.approx(
        (original.box.x, original.box.y, original.box.w, original.box.h), abs=1e-9
    )
    assert by_id["p2"].class_name == "person"
    assert (by_id["p2"].box.x, by_id["p2"].box.y) == pytest.approx((0.27, 0.27))
    assert by_id["p3"].class_name == "person"
    assert (by_id["p3"].box.x, by_id["p3"].box.y, by_id["p3"].box.w) == pytest.approx((0.8, 0.7, 0.2))
    added = by_id["Xq3n9Lm2Tz"]
    assert added.class_name == "bicycle"
    assert (added.box.x, added.box.y, added.box.w, added.box.h) == pytest.approx((0.55, 0.85, 0.1, 0.1))
    assert "p4" not in by_id

    assert second == TaskAnnotation(
        task_id=102,
        image_id="img-2",
        batch_id=BATCH,
        reviewer="7",
        annotated_at="2026-05-01T08:10:00+00:00",
        boxes=(),
        prediction_region_ids=(),
    )


def test_parse_export_breaks_timestamp_ties_by_annotation_id() -> None:
    export = _export()
    older, newer = export[0]["annotations"][0], export[0]["annotations"][1]
    older["updated_at"] = newer["updated_at"]
    older["id"] = 9999
    (first, _) = parse_export(export, class_names=CLASSES)
    assert first.reviewer == "ann@example.com"


def test_parse_export_without_expected_batch() -> None:
    assert len(parse_export(_export(), class_names=CLASSES)) == 2


def test_parse_all_annotations_keeps_every_live_annotation() -> None:
    annotations = parse_all_annotations(_export(), class_names=CLASSES, expected_batch_id=BATCH)
    # Task 101 has two live annotations (oldest first) and one cancelled; task 102 has one.
    assert [(a.task_id, a.reviewer, a.annotated_at) for a in annotations] == [
        (101, "ann@example.com", "2026-05-01T10:05:00+00:00"),
        (101, "bob@example.com", "2026-05-01T11:00:00+00:00"),
        (102, "7", "2026-05-01T08:10:00+00:00"),
    ]
    first_pass = annotations[0]
    assert [(b.region_id, b.class_name) for b in first_pass.boxes] == [("p1", "car")]
    assert (first_pass.boxes[0].box.x, first_pass.boxes[0].box.w) == pytest.approx((0.025, 0.05))
    assert all(a.prediction_region_ids == ("p1", "p2", "p3", "p4") for a in annotations[:2])
    # The latest of each task is exactly what parse_export picks.
    assert [annotations[1], annotations[2]] == parse_export(_export(), class_names=CLASSES)


def test_parse_all_annotations_orders_ties_by_annotation_id() -> None:
    export = _export()
    older, newer = export[0]["annotations"][0], export[0]["annotations"][1]
    older["updated_at"] = newer["updated_at"]
    older["id"] = 9999
    reviewers = [a.reviewer for a in parse_all_annotations(export, class_names=CLASSES)]
    assert reviewers == ["bob@example.com", "ann@example.com", "7"]


def test_parse_all_annotations_validates_superseded_annotations() -> None:
    # parse_export never looks at an annotation it does not return; this parser returns
    # the older one too, so an unknown label there rejects the whole export.
    export = _export()
    export[0]["annotations"][0]["result"][0]["value"]["rectanglelabels"] = ["truck"]
    assert len(parse_export(export, class_names=CLASSES)) == 2
    with pytest.raises(ReviewExportError, match=r"task #0 .*'img-1'.*truck"):
        parse_all_annotations(export, class_names=CLASSES)


def _set(path: tuple[Any, ...], value: Any) -> Any:
    def mutate(export: list[dict[str, Any]]) -> list[dict[str, Any]]:
        target: Any = export
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        return export

    return mutate


def _delete(path: tuple[Any, ...]) -> Any:
    def mutate(export: list[dict[str, Any]]) -> list[dict[str, Any]]:
        target: Any = export
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
        return export

    return mutate


_NEWEST_VALUE = (0, "annotations", 1, "result", 1, "value")


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (_delete((1, "data", "image_id")), r"task #1 \(id=102\).*image_id"),
        (_delete((0, "data", "batch_id")), r"task #0 \(id=101, image_id='img-1'\).*batch_id"),
        (_set((1, "data", "batch_id"), "batch-999"), r"task #1 .*'img-2'.*batch-999"),
        (_set((0, "annotations", 1, "result", 2, "value", "rectanglelabels"), ["truck"]), r"task #0 .*'img-1'.*truck"),
        (_set((0, "annotations", 1, "result", 2, "value", "rectanglelabels"), []), r"task #0 .*'img-1'.*label"),
        (_set(_NEWEST_VALUE + ("width",), -4.0), r"task #0 .*'img-1'.*p2"),
        (_set(_NEWEST_VALUE + ("x",), 95.0), r"task #0 .*'img-1'.*outside"),
        (_set(_NEWEST_VALUE + ("height",), "30"), r"task #0 .*'img-1'.*number"),
        (_set(_NEWEST_VALUE + ("rotation",), 15), r"task #0 .*'img-1'.*rotat"),
        (_set((1, "annotations", 0, "was_cancelled"), True), r"task #1 \(id=102, image_id='img-2'\).*incomplete"),
        (_set((1, "annotations"), []), r"task #1 .*'img-2'.*incomplete"),
        (_delete((1, "annotations")), r"task #1 .*'img-2'.*incomplete"),
        (_set((1, "data", "image_id"), "img-1"), r"task #1 .*'img-1'.*already appeared in task #0"),
        (_delete((1, "annotations", 0, "completed_by")), r"task #1 .*completed_by"),
        (_set((1, "annotations", 0, "created_at"), "yesterday"), r"task #1 .*ISO 8601"),
        (_set((0, "annotations", 1, "result", 1, "from_name"), "other"), r"task #0 .*'other'"),
        (_set((1,), "not a task"), r"task #1: task must be an object"),
    ],
)
@pytest.mark.parametrize("parse", [parse_export, parse_all_annotations])
def test_parse_export_rejects_whole_export(mutate: Any, expected: str, parse: Any) -> None:
    with pytest.raises(ReviewExportError, match=expected):
        parse(mutate(_export()), class_names=CLASSES, expected_batch_id=BATCH)


@pytest.mark.parametrize("parse", [parse_export, parse_all_annotations])
@pytest.mark.parametrize("not_a_list", [{"tasks": []}, "[]", None, 3])
def test_parse_export_rejects_non_list(not_a_list: Any, parse: Any) -> None:
    with pytest.raises(ReviewExportError, match="list"):
        parse(not_a_list, class_names=CLASSES)


def test_parse_export_accepts_predictions_given_by_id() -> None:
    # Label Studio's own JSON export lists each prediction by its id, without the result.
    export = _export()
    export[0]["predictions"] = [55]
    export[1]["predictions"] = [56, 57]
    first, second = parse_export(export, class_names=CLASSES, expected_batch_id=BATCH)
    assert first.prediction_region_ids == () and second.prediction_region_ids == ()
    assert first.boxes == parse_export(_export(), class_names=CLASSES)[0].boxes


def test_parse_export_reads_region_ids_of_prediction_objects_among_ids() -> None:
    export = _export()
    export[0]["predictions"] = [54, *export[0]["predictions"], 56]
    annotations = parse_all_annotations(export, class_names=CLASSES, expected_batch_id=BATCH)
    assert [a.prediction_region_ids for a in annotations] == [("p1", "p2", "p3", "p4")] * 2 + [()]


@pytest.mark.parametrize(
    "prediction",
    ["55", True, False, 0, -3, 1.5, None, [55], {"id": 55}, {"id": 55, "result": "none"}],
)
@pytest.mark.parametrize("parse", [parse_export, parse_all_annotations])
def test_parse_export_refuses_malformed_predictions(prediction: Any, parse: Any) -> None:
    export = _export()
    export[0]["predictions"] = [55, prediction]
    with pytest.raises(ReviewExportError, match=r"task #0 \(id=101, image_id='img-1'\): each prediction must be"):
        parse(export, class_names=CLASSES, expected_batch_id=BATCH)


def test_parse_export_reads_lead_time() -> None:
    export = _export()
    first, second = parse_export(export, class_names=CLASSES, expected_batch_id=BATCH)
    assert first.lead_time == 40.1 and second.lead_time is None  # absent
    export[0]["annotations"][1]["lead_time"] = None
    export[1]["annotations"][0]["lead_time"] = 7
    first, second = parse_export(export, class_names=CLASSES, expected_batch_id=BATCH)
    assert first.lead_time is None
    assert second.lead_time == 7.0 and isinstance(second.lead_time, float)
    export[1]["annotations"][0]["lead_time"] = 0
    assert parse_export(export, class_names=CLASSES)[1].lead_time == 0.0
    everyone = parse_all_annotations(_export(), class_names=CLASSES, expected_batch_id=BATCH)
    assert [a.lead_time for a in everyone] == [12.5, 40.1, None]


@pytest.mark.parametrize("lead_time", [-0.5, math.nan, math.inf, -math.inf, "12.5", True, 10**400, [1.0], {}])
@pytest.mark.parametrize("parse", [parse_export, parse_all_annotations])
def test_parse_export_refuses_invalid_lead_time(lead_time: Any, parse: Any) -> None:
    export = _export()
    export[0]["annotations"][1]["lead_time"] = lead_time
    with pytest.raises(ReviewExportError, match=r"task #0 \(id=101, image_id='img-1'\): lead_time"):
        parse(export, class_names=CLASSES, expected_batch_id=BATCH)


# Captured from a real Label Studio 1.23.2 by running, alone on a fresh server,
#   LABELING_DAG_CAPTURE_LABEL_STUDIO_EXPORT=tests/data pytest tests/test_label_studio.py \
#       -k test_label_studios_own_json_export_is_accepted_by_the_inbox
# which saves the export it downloads with GET /api/projects/<id>/export?exportType=JSON
# (as downloaded) and the outbox file of the batch that export answers.
LABEL_STUDIO_EXPORT = Path(__file__).parent / "data" / "label_studio_1.23.2_export.json"
LABEL_STUDIO_OUTBOX = Path(__file__).parent / "data" / "label_studio_1.23.2_outbox.json"


def test_label_studios_own_export_passes_the_inbox(tmp_path: Path) -> None:
    outbox = json.loads(LABEL_STUDIO_OUTBOX.read_text())
    export = json.loads(LABEL_STUDIO_EXPORT.read_text())
    batch = outbox[0]["data"]["batch_id"]
    assert all(isinstance(prediction, int) for task in export for prediction in task["predictions"])
    inbox_file = tmp_path / "exchange" / "inbox" / f"{batch}.json"
    inbox_file.parent.mkdir(parents=True)
    inbox_file.write_bytes(LABEL_STUDIO_EXPORT.read_bytes())

    verdict = judge_review_file(
        inbox_file,
        exported_tasks=lambda batch_id: copy.deepcopy(outbox) if batch_id == batch else None,
        already_received=lambda batch_id: False,
        class_names=CLASSES,
        data_root=tmp_path,
        settle_seconds=0,
    )

    assert verdict.accepted, verdict.problem
    assert verdict.batch_id == batch
    annotations = parse_export(export, class_names=CLASSES, expected_batch_id=batch)
    assert [a.image_id for a in annotations] == [task["data"]["image_id"] for task in outbox]
    assert [a.task_id for a in annotations] == [1, 2, 3]
    assert [a.lead_time for a in annotations] == [12.5] * 3
    assert [a.prediction_region_ids for a in annotations] == [()] * 3
    # Predictions come from the outbox: two tasks accepted as predicted, one with a box moved.
    edits = edit_rows(annotations, outbox, batch_id=batch, gold_ids=set(), spot_check_ids=set())
    kinds = {image_id: Counter(group) for image_id, group in edits.groupby("image_id")["edit_kind"]}
    assert [kinds[task["data"]["image_id"]] for task in outbox] == [
        Counter(accepted=2),
        Counter(accepted=2, moved=1),
        Counter(accepted=2),
    ]


def test_is_complete() -> None:
    export = _export()
    assert is_complete(export)
    export[1]["annotations"][0]["was_cancelled"] = True
    assert not is_complete(export)
    assert not is_complete([])
    assert not is_complete({"tasks": []})
    assert not is_complete([{"data": {}}])


# --- property: all-or-nothing, and only ReviewExportError ---------------------------------

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats()
    | st.text(max_size=8)
    | st.sampled_from(["car", "rectanglelabels", FROM_NAME, TO_NAME, BATCH, "2026-05-01T10:00:00Z"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


_ALL_PATHS = json_paths(_export())


@st.composite
def _exports(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 9)) == 0:
        return draw(_json)
    export = _export()
    for _ in range(draw(st.integers(0, 3))):
        path = draw(st.sampled_from(_ALL_PATHS))
        try:
            if draw(st.booleans()):
                _set(path, draw(_json))(export)
            else:
                _delete(path)(export)
        except (KeyError, IndexError, TypeError):
            pass  # an earlier mutation removed or replaced this path
    return export


@settings(max_examples=400, deadline=None)
@given(_exports())
def test_parse_export_is_all_or_nothing(export: Any) -> None:
    try:
        parsed = parse_export(export, class_names=CLASSES, expected_batch_id=BATCH)
    except ReviewExportError:
        return
    assert isinstance(export, list)
    assert len(parsed) == len(export)
    assert all(isinstance(item, TaskAnnotation) for item in parsed)
    assert is_complete(export) or not export


@settings(max_examples=200, deadline=None)
@given(_exports())
def test_parse_all_annotations_is_all_or_nothing(export: Any) -> None:
    try:
        parsed = parse_all_annotations(export, class_names=CLASSES, expected_batch_id=BATCH)
    except ReviewExportError:
        return
    assert isinstance(export, list)
    live = [
        annotation
        for task in export
        for annotation in task["annotations"]
        if not annotation.get("was_cancelled", False)
    ]
    assert len(parsed) == len(live)
    assert all(isinstance(item, TaskAnnotation) for item in parsed)
    # The latest annotation of each task is parse_export's answer.
    latest = {a.image_id: a for a in parsed}
    assert list(latest.values()) == parse_export(export, class_names=CLASSES, expected_batch_id=BATCH)
