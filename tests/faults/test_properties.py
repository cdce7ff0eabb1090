"""Property-based tests of the Label Studio converters and the review importer: whatever the
input, it either imports exactly (what comes back out is what went in) or is rejected whole.

``tests/test_label_studio_format.py`` already fuzzes ``parse_export`` on mutated exports; the
properties here are the round trips through the converters and the importer as the sensor
runs it (a real file in a real inbox, judged, then received or quarantined).
"""

from __future__ import annotations

import copy
import json
import math
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import dagster as dg
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from labeling_dag.resources.storage import LabelStore

from labeling_dag.formats.label_studio import labeling_config, review_batch_document, review_task
from labeling_dag.formats.label_studio_boxes import ls_percent_to_norm, norm_to_ls_percent
from labeling_dag.formats.label_studio_export import TaskAnnotation, parse_export
from labeling_dag.records import NormBox, PreLabel, ReviewImage
from labeling_dag.review_intake import judge_review_file
from tests.faults.review_files import (
    CLASSES,
    EXCHANGE,
    answer,
    drop,
    export_batch,
    json_paths,
    listing,
    quarantined,
    stored_state,
    tick,
)

BATCH = "batch-p"
INSTANCE = dg.DagsterInstance.ephemeral()

_json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(
        [*CLASSES, "rectanglelabels", "label", "image", BATCH, "2024-05-01T12:00:00Z", "../../etc/passwd"]
    )
)
_json = st.recursive(
    _json_leaf,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=10,
)


# --- converters -----------------------------------------------------------------------------


def _xml_char(character: str) -> bool:
    code = ord(character)
    return code in (0x9, 0xA, 0xD) or 0x20 <= code <= 0xD7FF or 0xE000 <= code <= 0xFFFD or code >= 0x10000


@given(st.lists(st.text(max_size=12), max_size=6))
def test_labeling_config_carries_every_class_name_exactly_or_refuses(names: list[str]) -> None:
    usable = (
        bool(names) and all(names) and len(set(names)) == len(names) and all(_xml_char(c) for n in names for c in n)
    )
    try:
        config = labeling_config(names)
    except ValueError:
        assert not usable
        return
    assert usable
    labels = ET.fromstring(config).find("RectangleLabels")
    assert labels is not None
    assert [label.get("value") for label in labels.findall("Label")] == names


@given(st.dictionaries(st.sampled_from(["x", "y", "width", "height", "rotation"]), _json_leaf, max_size=5) | _json)
def test_a_rectangle_either_converts_and_round_trips_or_is_refused(value: Any) -> None:
    try:
        box = ls_percent_to_norm(value)
    except ValueError:
        return
    assert 0.0 <= box.x - box.w / 2 and box.x + box.w / 2 <= 1.0 + 1e-12
    assert 0.0 <= box.y - box.h / 2 and box.y + box.h / 2 <= 1.0 + 1e-12
    assert box.w > 0 and box.h > 0


@st.composite
def _percent_rectangles(draw: st.DrawFn) -> dict[str, float]:
    """Rectangles as an annotator draws them: anywhere, any size, up to the 0.5 % overshoot."""
    coordinate = st.floats(-0.5, 100.5, allow_nan=False)
    left, right = sorted((draw(coordinate), draw(coordinate)))
    top, bottom = sorted((draw(coordinate), draw(coordinate)))
    assume(right - left > 1e-3 and bottom - top > 1e-3)
    assume(min(right, 100.0) - max(left, 0.0) > 1e-3 and min(bottom, 100.0) - max(top, 0.0) > 1e-3)
    return {"x": left, "y": top, "width": right - left, "height": bottom - top, "rotation": 0}


@given(_percent_rectangles())
def test_a_drawn_rectangle_imports_as_the_same_rectangle_clipped_to_the_image(value: dict[str, float]) -> None:
    back = norm_to_ls_percent(ls_percent_to_norm(value))
    left, top = max(value["x"], 0.0), max(value["y"], 0.0)
    right, bottom = min(value["x"] + value["width"], 100.0), min(value["y"] + value["height"], 100.0)
    assert math.isclose(back["x"], left, abs_tol=1e-9)
    assert math.isclose(back["y"], top, abs_tol=1e-9)
    assert math.isclose(back["x"] + back["width"], right, abs_tol=1e-9)
    assert math.isclose(back["y"] + back["height"], bottom, abs_tol=1e-9)


_numbers = st.floats(allow_nan=True, allow_infinity=True) | st.integers(-5, 5)


@st.composite
def _review_images(draw: st.DrawFn, *, valid: bool) -> ReviewImage:
    """A review image with up to three pre-labels; ``valid`` keeps every value in range."""
    image_id = draw(st.text(min_size=1, max_size=8))
    boxes = []
    for index in range(draw(st.integers(0, 3))):
        if valid:
            w, h = draw(st.floats(0.01, 1.0)), draw(st.floats(0.01, 1.0))
            box = NormBox(draw(st.floats(w / 2, 1 - w / 2)), draw(st.floats(h / 2, 1 - h / 2)), w, h)
            confidence = draw(st.floats(0.0, 1.0))
        else:
            box = NormBox(draw(_numbers), draw(_numbers), draw(_numbers), draw(_numbers))
            confidence = draw(_numbers)
        boxes.append(
            PreLabel(
                box_id=f"{image_id}-{index}",
                image_id=image_id,
                class_name=draw(st.sampled_from(CLASSES)),
                box=box,
                confidence=confidence,
                class_probs=(1.0, 0.0, 0.0),
                model_version="m",
            )
        )
    score = draw(st.floats(0.0, 1.0)) if valid else draw(_numbers)
    size = st.integers(1, 4096) if valid else st.integers(-2, 4096)
    return ReviewImage(
        image_id, f"/data/local-files/?d=cleaned_images/{image_id}.png", draw(size), draw(size), score, tuple(boxes)
    )


@given(_review_images(valid=False))
def test_a_review_task_is_strict_json_or_refused(image: ReviewImage) -> None:
    """A task Label Studio cannot read back (NaN, infinity) is never produced."""
    try:
        task = review_task(image, batch_id=BATCH, model_version="m", pre_label_run_id="r")
    except ValueError:
        return
    assert json.loads(json.dumps(task, allow_nan=False)) == task


@given(st.lists(_review_images(valid=True), min_size=1, max_size=4, unique_by=lambda image: image.image_id))
def test_accepting_every_prediction_imports_exactly_the_predicted_boxes(images: list[ReviewImage]) -> None:
    """Out as tasks, back as an export in which the reviewer changed nothing: the same boxes,
    classes and region ids come back, to 1e-9 of the image."""
    tasks = review_batch_document(images, batch_id=BATCH, model_version="m", pre_label_run_id="r")
    accepted = [
        {
            **task,
            "id": index + 1,
            "annotations": [
                {
                    "id": index + 1,
                    "completed_by": 1,
                    "created_at": "2024-05-01T12:00:00Z",
                    "result": [
                        {k: v for k, v in region.items() if k != "score"} for region in task["predictions"][0]["result"]
                    ],
                }
            ],
        }
        for index, task in enumerate(tasks)
    ]
    exported = json.loads(json.dumps(accepted, allow_nan=False))  # through a file, as Label Studio returns it

    parsed = parse_export(exported, class_names=CLASSES, expected_batch_id=BATCH)

    assert [a.image_id for a in parsed] == [image.image_id for image in images]
    for annotation, image in zip(parsed, images):
        assert [b.region_id for b in annotation.boxes] == [p.box_id for p in image.pre_labels]
        assert annotation.prediction_region_ids == tuple(p.box_id for p in image.pre_labels)
        for got, want in zip(annotation.boxes, image.pre_labels):
            assert got.class_name == want.class_name
            for a, b in zip(
                (got.box.x, got.box.y, got.box.w, got.box.h), (want.box.x, want.box.y, want.box.w, want.box.h)
            ):
                assert abs(a - b) <= 1e-9


# --- the importer as the sensor runs it --------------------------------------------------------


@st.composite
def _answers(draw: st.DrawFn, tasks: list[dict[str, Any]]) -> Any:
    """A correct answer to ``tasks`` with up to three fields replaced by arbitrary JSON or deleted."""
    export = answer(tasks)
    paths = json_paths(export)
    for _ in range(draw(st.integers(0, 3))):
        path = draw(st.sampled_from(paths))
        target: Any = export
        try:
            for key in path[:-1]:
                target = target[key]
            if isinstance(target, dict) != isinstance(path[-1], str):
                continue  # an earlier change put an object where a list was (or the reverse)
            if draw(st.booleans()):
                target[path[-1]] = draw(_json)
            else:
                del target[path[-1]]
        except (KeyError, IndexError, TypeError):
            pass  # an earlier change removed or replaced this path
    return export


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_an_inbox_file_is_received_byte_for_byte_or_quarantined_whole(data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as folder:
        store = LabelStore(workdir=str(Path(folder) / "work"))
        store.set_class_names(CLASSES)
        tasks = export_batch(store, BATCH, images=2)
        export = data.draw(_answers(tasks))
        before = stored_state(store.root)
        file = drop(store, "answer.json", export)
        sent = file.read_bytes()

        result = tick(store, INSTANCE)

        assert listing(store, "inbox") == []
        received = EXCHANGE.received_file(store.root, BATCH)
        event("received" if result.run_requests else "quarantined")
        if result.run_requests:  # taken: exactly the bytes dropped, every task importable
            assert [r.run_key for r in result.run_requests] == [BATCH]
            assert received.read_bytes() == sent
            assert quarantined(store) == []
            parsed = parse_export(json.loads(sent), class_names=CLASSES, expected_batch_id=BATCH)
            assert sorted(a.image_id for a in parsed) == sorted(t["data"]["image_id"] for t in tasks)
            assert set(stored_state(store.root)) - set(before) == {f"exchange/received/{BATCH}.json"}
        else:  # refused: the whole file, untouched, beside a report; nothing stored changed
            [(moved, report)] = quarantined(store)
            assert moved.read_bytes() == sent
            assert report["file"] == str(file) and report["problem"]
            assert not received.exists()
            assert stored_state(store.root) == before


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=512) | _json.map(lambda value: json.dumps(value).encode()))
def test_judging_any_file_gives_a_verdict_and_never_raises(content: bytes) -> None:
    tasks = [
        review_task(
            ReviewImage("img-0", "/data/local-files/?d=a.png", 8, 8, 0.5),
            batch_id=BATCH,
            model_version="m",
            pre_label_run_id="r",
        )
    ]
    with tempfile.TemporaryDirectory() as folder:
        file = Path(folder) / "answer.json"
        file.write_bytes(content)
        verdict = judge_review_file(
            file,
            exported_tasks=lambda batch: copy.deepcopy(tasks) if batch == BATCH else None,
            already_received=lambda batch: False,
            class_names=CLASSES,
            data_root=Path(folder),
        )
    assert verdict.file == file
    assert verdict.accepted == (verdict.problem is None)
    assert not (verdict.pending and verdict.accepted)
    if verdict.accepted:
        [annotation] = parse_export(json.loads(content), class_names=CLASSES, expected_batch_id=BATCH)
        assert isinstance(annotation, TaskAnnotation) and annotation.image_id == "img-0"
