"""Bad input: every kind is refused with an error naming the file and the problem and nothing
stored changes, or it is accepted and normalised, whichever is right for that kind.

Images go through the pure cleaning and ingestion functions (one small ``dg.materialize`` of
``raw_images`` + ``cleaned_images`` checks the asset wiring end to end); review exports go
through the real ``review_complete_sensor`` over a workdir that already holds a merged batch
(one real merge run) and an open one; configuration through the resources, the pure
functions that take the thresholds, and the CLI. No model is trained: a cold start needs none.
"""

from __future__ import annotations

import copy
import json
import math
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from conftest import make_resources
from labeling_dag.assets.annotations import review_annotations
from labeling_dag.assets.cleaning import cleaned_images
from labeling_dag.assets.ingestion import raw_images
from labeling_dag.assets.verification import verified_labels
from labeling_dag.resources.detector import Detector
from labeling_dag.resources.loop_policy import LoopPolicy
from labeling_dag.resources.snapshots import SnapshotStore
from labeling_dag.resources.storage import ClassListChanged, ImageSource, LabelStore
from PIL import Image
from pydantic import ValidationError

from labeling_dag import cli
from labeling_dag.calibration.class_thresholds import calibrate
from labeling_dag.cleaning import clean_image, reject_row
from labeling_dag.cold_start import NoModelError, current_or_seed_model
from labeling_dag.contracts import CLEANED, LABELS, QUALITY, RAW_COLUMNS, RAW_INDEX, REJECTS
from labeling_dag.formats.yolo import load_data_yaml
from labeling_dag.image_decoding import load_image
from labeling_dag.ingest import ingest
from labeling_dag.merge import active
from labeling_dag.modalities.detection import DETECTION
from labeling_dag.model_registry import ModelRegistry
from labeling_dag.rejects import ImageRejected
from labeling_dag.sampling import select_for_review
from labeling_dag.sensors import merge_run_config
from tests.bad_images import write_bad_images, write_exif_orientations, write_good_images, write_special_images
from tests.faults.review_files import (
    CLASSES,
    EXCHANGE,
    answer,
    drop,
    export_batch,
    listing,
    quarantined,
    stored_state,
    tick,
)

# --- images ---------------------------------------------------------------------------------

# Every file write_bad_images writes, with the reason it must be rejected for.
IMAGE_REJECTS = {
    "zero_byte.jpg": "zero_byte",
    "truncated.jpg": "truncated",
    "truncated.png": "truncated",
    "truncated.webp": "truncated",
    "truncated.tif": "truncated",
    "html_page.jpg": "not_an_image",
    "random_bytes.png": "not_an_image",
    "png_signature_only.png": "not_an_image",
    "document.jpg": "not_an_image",
    "drawing.png": "not_an_image",
    "bomb.png": "decompression_bomb",  # a 20000 x 20000 PNG header over almost no data
    "bomb_header.jpg": "decompression_bomb",  # a JPEG frame header claiming 20000 x 20000
    "zlib_bomb.png": "decompression_bomb",  # a complete 8000 x 8000 PNG: 8 kB inflating to 8 MB
    "one_pixel.png": "too_small",
    "thin_strip.png": "too_small",
    "animation.jpg": "unsupported_format",  # a GIF saved as .jpg
    "icon.png": "unsupported_format",  # an ICO saved as .png
}
# Awkward but valid images and the mode they were decoded from (None: stored as they came).
IMAGE_NORMALISED = {
    "png_named_jpg.jpg": None,  # a PNG behind a .jpg name: the content decides
    "cmyk.jpg": "CMYK",
    "grey16.png": "I;16",
    "palette_transparent.png": "P",
}


@pytest.fixture(scope="module")
def image_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder holding every bad, awkward, EXIF-oriented and good test image."""
    folder = tmp_path_factory.mktemp("images")
    assert write_bad_images(folder) == IMAGE_REJECTS
    write_special_images(folder)
    write_exif_orientations(folder)
    write_good_images(folder, 2)
    return folder


@pytest.fixture
def cleaned_work(tmp_path: Path, image_files: Path) -> Path:
    """A workdir that already holds one cleaned image, so there is stored state to disturb."""
    work = tmp_path / "work"
    clean_image(image_files / "good_0_0000.png", image_id="good", workdir=work, out_folder="cleaned_images")
    return work


@pytest.mark.parametrize(("name", "reason"), IMAGE_REJECTS.items(), ids=list(IMAGE_REJECTS))
def test_bad_image_is_rejected_naming_the_file_and_stores_nothing(
    image_files: Path, cleaned_work: Path, name: str, reason: str
) -> None:
    raw = image_files / name
    before = stored_state(cleaned_work, ignore=())
    started = time.perf_counter()
    with pytest.raises(ImageRejected) as caught:
        clean_image(raw, image_id="bad", workdir=cleaned_work, out_folder="cleaned_images")
    assert caught.value.reason == reason
    if reason == "decompression_bomb":  # refused from the header: nothing near 64 MP is decoded
        assert time.perf_counter() - started < 1.0
    assert str(caught.value).startswith(f"{raw}: ") and caught.value.problem
    row = reject_row("bad", f"source/{name}", caught.value, "run-1")
    assert row["message"] == f"source/{name}: {caught.value.problem}"
    assert row["reason"] == reason
    assert stored_state(cleaned_work, ignore=()) == before  # not even a temporary file is left


@pytest.mark.parametrize(("name", "mode"), IMAGE_NORMALISED.items(), ids=list(IMAGE_NORMALISED))
def test_awkward_image_is_accepted_and_stored_as_upright_rgb(
    image_files: Path, cleaned_work: Path, name: str, mode: str | None
) -> None:
    before = stored_state(cleaned_work, ignore=())
    row = clean_image(image_files / name, image_id="awkward", workdir=cleaned_work, out_folder="cleaned_images")
    added = set(stored_state(cleaned_work, ignore=())) - set(before)
    assert added == {row["path"]}
    assert row["converted_mode"] == (mode or "")
    stored = cleaned_work / row["path"]
    if mode is None:  # nothing to convert: the original bytes are kept
        assert stored.read_bytes() == (image_files / name).read_bytes()
    else:  # converted once, stored losslessly: exactly the pixels decoding gives
        assert stored.suffix == ".png"
        with Image.open(stored) as image:
            assert image.mode == "RGB"
            assert np.array_equal(np.asarray(image), np.asarray(load_image(image_files / name)))


@pytest.mark.parametrize("orientation", range(1, 10), ids=lambda o: f"exif_orientation_{o}")
def test_every_exif_orientation_is_stored_upright(tmp_path: Path, orientation: int) -> None:
    upright, written = write_exif_orientations(tmp_path / "raw")
    name = "orientation_invalid.png" if orientation == 9 else f"orientation_{orientation}.png"
    assert written[name] == orientation
    row = clean_image(tmp_path / "raw" / name, image_id="o", workdir=tmp_path / "work", out_folder="cleaned_images")
    with Image.open(tmp_path / "work" / row["path"]) as stored:
        pixels = np.asarray(stored.convert("RGB"))
    if orientation == 9:  # out of range: ignored, the image is kept as stored
        assert not row["exif_transposed"]
        with Image.open(tmp_path / "raw" / name) as raw:
            assert np.array_equal(pixels, np.asarray(raw.convert("RGB")))
    else:
        assert row["exif_transposed"] == (orientation != 1)
        assert (row["width"], row["height"]) == upright.size
        assert np.array_equal(pixels, np.asarray(upright))


def test_wrong_extensions_are_listed_not_ingested(tmp_path: Path, image_files: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    good = image_files / "good_0_0000.png"
    for name in ("notes.txt", "picture.gif", "no_extension", "UPPER.JPG", "lower.jpeg"):
        shutil.copyfile(good if name != "notes.txt" else image_files / "html_page.jpg", source / name)
    work = tmp_path / "work"
    index = pd.DataFrame({c: pd.Series(dtype=t) for c, t in RAW_COLUMNS.items()})

    rows, skipped = ingest(sorted(source.iterdir()), index, workdir=work, store_folder="raw_images", run_id="run-1")

    assert sorted(p.name for p in skipped) == ["no_extension", "notes.txt", "picture.gif"]
    assert sorted(Path(p).name for p in rows["source_path"]) == ["UPPER.JPG", "lower.jpeg"]
    # Same bytes under two names: one stored copy, two rows naming their sources.
    assert rows["image_id"].nunique() == 1
    assert [p.name for p in (work / "raw_images").rglob("*") if p.is_file()] == [f"{rows['image_id'][0]}.jpg"]


def test_cleaning_a_batch_of_bad_and_awkward_images_end_to_end(tmp_path: Path, image_files: Path) -> None:
    """The real raw_images + cleaned_images assets on one ingestion batch holding every kind:
    each bad file is a rejects row whose message names its source file, each valid one a
    cleaned row; only valid images are stored; a re-run changes nothing stored."""
    batch = "mixed"
    source = tmp_path / "source"
    shutil.copytree(image_files, source / batch)
    (source / batch / "notes.txt").write_text("not an image")
    work = tmp_path / "work"
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("ingest_batches", [batch])

    def run() -> dg.ExecuteInJobResult:
        return dg.materialize(
            [raw_images, cleaned_images], partition_key=batch, instance=instance, resources=make_resources(work, source)
        )

    first = run()
    assert first.success
    store = LabelStore(workdir=str(work))
    rejects = store.read(REJECTS)
    by_file = {Path(p).name: row for p, row in zip(rejects["source_path"], rejects.itertuples())}
    assert {name: row.reason for name, row in by_file.items()} == IMAGE_REJECTS
    for name, row in by_file.items():
        assert row.message.startswith(f"{source / batch / name}: ")
    images = store.read(CLEANED)
    # Every ingested file is accounted for, either cleaned or rejected (never both, never neither).
    raw = store.read(RAW_INDEX)
    accepted = {
        Path(p).name for p, image_id in zip(raw["source_path"], raw["image_id"]) if image_id in set(images["image_id"])
    }
    assert accepted == {p.name for p in source.joinpath(batch).iterdir()} - set(IMAGE_REJECTS) - {"notes.txt"}
    assert not set(images["image_id"]) & set(rejects["image_id"])
    stored = {p.stem for p in (work / "cleaned_images").rglob("files/*") if p.is_file()}
    assert stored == set(images["image_id"])
    # The eight orientations are one picture: one original, seven exact duplicates of it.
    orientations = images[images["source_path"].str.contains(r"orientation_\d")]
    assert orientations["is_exact_duplicate"].sum() == 7
    metadata = first.asset_materializations_for_node("raw_images")[0].metadata
    assert [Path(p).name for p in metadata["skipped_files"].value] == ["notes.txt"]

    before = stored_state(work, ignore=(".git", ".dvc", "snapshots", "metrics"))
    assert run().success
    assert stored_state(work, ignore=(".git", ".dvc", "snapshots", "metrics")) == before


# --- review exports -------------------------------------------------------------------------

MERGED, OPEN = "batch-merged", "batch-open"
INSTANCE = dg.DagsterInstance.ephemeral()
_DELETE = object()


def _edit(*path: Any, value: Any = _DELETE) -> Callable[[list[dict[str, Any]]], Any]:
    """Set (or delete) one field of the answer, at ``path``."""

    def mutate(export: list[dict[str, Any]]) -> Any:
        target: Any = export
        for key in path[:-1]:
            target = target[key]
        if value is _DELETE:
            del target[path[-1]]
        else:
            target[path[-1]] = value
        return export

    return mutate


def _each_task(**data: Any) -> Callable[[list[dict[str, Any]]], Any]:
    """Set ``data`` fields of every task of the answer."""

    def mutate(export: list[dict[str, Any]]) -> Any:
        for task in export:
            task["data"].update(data)
        return export

    return mutate


def _text(build: Callable[[list[dict[str, Any]]], str]) -> Callable[[list[dict[str, Any]]], bytes]:
    """Drop the answer as the raw text ``build`` makes of it."""
    return lambda export: build(export).encode()


_VALUE = (0, "annotations", 0, "result", 0, "value")
_REGION = (0, "annotations", 0, "result")

# (kind, how to spoil a correct answer of the open batch, what the problem must say)
REVIEW_REJECTS: list[tuple[str, Callable[[list[dict[str, Any]]], Any], str]] = [
    ("truncated_json", lambda export: json.dumps(export).encode()[:200], r"not a readable JSON file"),
    ("zero_byte", lambda export: b"", r"not a readable JSON file"),
    ("not_utf8", lambda export: b"\xff\xfe[\x00]\x00", r"not a readable JSON file"),
    ("deeply_nested", lambda export: b"[" * 100_000 + b"]" * 100_000, r"not a readable JSON file .*recursion"),
    (
        "oversized_integer",
        _text(lambda export: json.dumps(export).replace('"id": 1,', '"id": ' + "9" * 5000 + ",", 1)),
        r"not a readable JSON file .*digits",
    ),
    ("object_not_list", lambda export: {"tasks": export}, r"no data\.batch_id"),
    ("empty_list", lambda export: [], r"no data\.batch_id"),
    ("missing_batch_id", _edit(1, "data", "batch_id"), r"task #1 .*data\.batch_id"),
    ("missing_image_id", _edit(1, "data", "image_id"), r"task #1 .*data\.image_id"),
    (
        "task_id_not_an_integer",
        _edit(1, "id", value="task-two"),
        r"task #1 .*task id must be an integer, got 'task-two'",
    ),
    (
        "image_id_not_a_string",
        _edit(1, "data", "image_id", value=42),
        r"task #1 .*data\.image_id must be a non-empty string",
    ),
    ("missing_annotations", _edit(2, "annotations"), r"incomplete: 2 of 3 tasks annotated"),
    ("cancelled_annotation", _edit(2, "annotations", 0, "was_cancelled", value=True), r"incomplete: 2 of 3"),
    ("missing_reviewer", _edit(0, "annotations", 0, "completed_by"), r"task #0 .*completed_by"),
    ("bad_timestamp", _edit(0, "annotations", 0, "updated_at", value="yesterday"), r"task #0 .*not ISO 8601"),
    ("missing_coordinate", _edit(*_VALUE, "x"), r"task #0 .*lacks x"),
    ("box_outside_image", _edit(*_VALUE, "x", value=95.0), r"task #0 .*outside the image"),
    ("negative_size", _edit(*_VALUE, "width", value=-5.0), r"task #0 .*size must be positive"),
    ("zero_size", _edit(*_VALUE, "height", value=0), r"task #0 .*size must be positive"),
    ("nan_coordinate", _edit(*_VALUE, "y", value=math.nan), r"task #0 .*must be finite"),
    ("string_coordinate", _edit(*_VALUE, "width", value="20"), r"task #0 .*must be a number"),
    ("rotated_box", _edit(*_VALUE, "rotation", value=15), r"task #0 .*rotated"),
    ("two_labels_on_a_box", _edit(*_VALUE, "rectanglelabels", value=["square", "circle"]), r"exactly one label"),
    ("unknown_class", _edit(*_VALUE, "rectanglelabels", value=["hexagon"]), r"unknown class label 'hexagon'"),
    (
        "duplicate_region_id",
        lambda export: _edit(*_REGION, value=export[0]["annotations"][0]["result"] * 2)(export),
        r"appears twice",
    ),
    (
        "unknown_image_id",
        _edit(2, "data", "image_id", value="nobody-knows-me"),
        r"unknown images \['nobody-knows-me'\]",
    ),
    ("missing_image", lambda export: export[:2], r"missing images \['batch-open-img2'\]"),
    ("repeated_image", lambda export: [*export[:2], copy.deepcopy(export[0])], r"already appeared in task #0"),
    ("unknown_batch", _each_task(batch_id="batch-nobody-sent"), r"unknown batch 'batch-nobody-sent'"),
    ("batch_id_path_traversal", _each_task(batch_id="../../outbox/batch-open"), r"is not a plain name"),
    ("mixed_batches", _edit(1, "data", "batch_id", value=MERGED), r"task #1 .*belongs to batch 'batch-merged'"),
]


def _merge(store: LabelStore, batch_id: str) -> dg.ExecuteInJobResult:
    """The real merge job's assets for one received batch (cold start: no model, no training)."""
    result = dg.materialize(
        [review_annotations, verified_labels],
        run_config=merge_run_config(batch_id),
        resources={"store": store, "exchange": EXCHANGE, "snapshots": SnapshotStore()},
        instance=INSTANCE,
    )
    assert result.success
    return result


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A workdir after one real round: batch-merged received and merged, batch-open sent out.
    Returns it with the review sensor's cursor."""
    store = LabelStore(workdir=str(tmp_path_factory.mktemp("template") / "work"))
    store.set_class_names(CLASSES)
    drop(store, "merged.json", answer(export_batch(store, MERGED)))
    received = tick(store, INSTANCE)
    assert [r.run_key for r in received.run_requests] == [MERGED]
    _merge(store, MERGED)
    export_batch(store, OPEN)
    return store.root, received.cursor


@pytest.fixture
def work(template: tuple[Path, str], tmp_path: Path) -> tuple[LabelStore, str]:
    """A private copy of the template workdir, and the cursor to tick it with."""
    root, cursor = template
    shutil.copytree(root, tmp_path / "work", symlinks=True)
    return LabelStore(workdir=str(tmp_path / "work")), cursor


def _open_tasks(store: LabelStore) -> list[dict[str, Any]]:
    return EXCHANGE.exported_tasks(store.root, OPEN)


def _assert_quarantined(
    store: LabelStore, result: dg.SensorExecutionData, file: Path, data: bytes, problem: str
) -> str:
    """The file left the inbox for quarantine unchanged, with a report naming it and the problem."""
    [(moved, report)] = quarantined(store)
    assert moved.read_bytes() == data
    assert report["file"] == str(file)
    assert re.search(problem, report["problem"]), report["problem"]
    assert f"{file}: {report['problem']}" in result.skip_message
    assert listing(store, "inbox") == []
    return report["problem"]


@pytest.mark.parametrize(("kind", "spoil", "problem"), REVIEW_REJECTS, ids=[case[0] for case in REVIEW_REJECTS])
def test_bad_review_export_is_quarantined_and_nothing_stored_changes(
    work: tuple[LabelStore, str], kind: str, spoil: Callable[[list[dict[str, Any]]], Any], problem: str
) -> None:
    store, cursor = work
    before = stored_state(store.root)
    file = drop(store, f"{kind}.json", spoil(answer(_open_tasks(store))))
    data = file.read_bytes()

    result = tick(store, INSTANCE, cursor)

    assert result.run_requests == []
    assert result.cursor == cursor
    _assert_quarantined(store, result, file, data, problem)
    assert stored_state(store.root) == before


def test_answers_for_a_superseded_batch_are_refused_and_the_merged_ones_kept(work: tuple[LabelStore, str]) -> None:
    """A second, different answer to a batch that was already received and merged."""
    store, cursor = work
    before = stored_state(store.root)
    late = answer(EXCHANGE.exported_tasks(store.root, MERGED), reviewer="late-reviewer", label="triangle")
    file = drop(store, "late.json", late)
    data = file.read_bytes()

    result = tick(store, INSTANCE, cursor)

    assert result.run_requests == []
    _assert_quarantined(store, result, file, data, r"batch 'batch-merged' was already received")
    assert stored_state(store.root) == before  # received/batch-merged.json and the merged labels included


def test_the_same_batch_twice_in_one_tick_is_taken_once(work: tuple[LabelStore, str]) -> None:
    store, cursor = work
    before = stored_state(store.root)
    first = drop(store, "first.json", answer(_open_tasks(store)))
    second = drop(store, "second.json", answer(_open_tasks(store), reviewer="someone-else"))
    first_data, second_data = first.read_bytes(), second.read_bytes()

    result = tick(store, INSTANCE, cursor)

    assert [r.run_key for r in result.run_requests] == [OPEN]
    assert json.loads(result.cursor) == sorted([MERGED, OPEN])
    # The inbox is read oldest first, name breaking the tie: first.json is the one taken.
    assert EXCHANGE.received_file(store.root, OPEN).read_bytes() == first_data
    [(moved, report)] = quarantined(store)
    assert moved.read_bytes() == second_data
    assert report["file"] == str(second)
    assert "already received" in report["problem"]
    after = stored_state(store.root)
    assert set(after) - set(before) == {f"exchange/received/{OPEN}.json"}
    assert {k: v for k, v in after.items() if k in before} == before


def test_two_reviewers_disagreeing_is_merged_latest_wins_and_kappa_recorded(work: tuple[LabelStore, str]) -> None:
    """Both annotated every task, one said square, the later one triangle: the export is valid,
    the later annotation is what gets verified, and their disagreement is measured."""
    store, cursor = work
    tasks = _open_tasks(store)
    squares = answer(tasks, reviewer="reviewer-1", label="square")
    triangles = answer(tasks, reviewer="reviewer-2", label="triangle", first_id=100, delay=600)
    both = [
        {**task, "annotations": task["annotations"] + other["annotations"]} for task, other in zip(squares, triangles)
    ]
    drop(store, "both.json", both)

    result = tick(store, INSTANCE, cursor)
    assert [r.run_key for r in result.run_requests] == [OPEN]
    merged = _merge(store, OPEN)

    labels = active(store.read(LABELS))
    from_open = labels[labels["review_batch_id"] == OPEN]
    assert sorted(from_open["image_id"]) == [f"{OPEN}-img{i}" for i in range(3)]
    assert set(from_open["class_name"]) == {"triangle"}
    assert set(from_open["reviewer"]) == {"reviewer-2"}
    metadata = merged.asset_materializations_for_node("review_annotations")[0].metadata
    assert metadata["reviewers"].value == ["reviewer-1", "reviewer-2"]
    kappa = metadata["cohen_kappa"].value
    assert set(kappa) == {"reviewer-1 vs reviewer-2"} and kappa["reviewer-1 vs reviewer-2"] <= 0.0
    quality = store.read(QUALITY)
    assert set(quality.loc[quality["batch_id"] == OPEN, "reviewer"]) == {"reviewer-1", "reviewer-2", "*"}


# --- configuration --------------------------------------------------------------------------


def test_missing_source_folder_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder"
    with pytest.raises(FileNotFoundError, match=re.escape(f"{missing}: image source folder does not exist")):
        ImageSource(folder=str(missing)).batches()
    assert not missing.exists()


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, r"No such file or directory: '.*data\.yaml'"),
        ("- just\n- a list\n", r"data\.yaml: expected a YAML mapping, got list"),
        ("train: images/train\nnames: [a, b]\n", r"data\.yaml: 'val:' must be a non-empty string path"),
        ("train: t\nval: v\nnames: []\n", r"data\.yaml: 'names:' is empty"),
        ("train: [unclosed\nval: v\n", r"data\.yaml: not valid YAML"),
    ],
    ids=["missing", "not_a_mapping", "no_val_split", "no_classes", "not_yaml"],
)
def test_bad_dataset_yaml_is_refused_naming_the_file(tmp_path: Path, content: str | None, problem: str) -> None:
    path = tmp_path / "data.yaml"
    if content is not None:
        path.write_text(content)
    with pytest.raises((OSError, ValueError), match=problem):
        load_data_yaml(path)


def test_missing_seed_model_is_named_and_registers_nothing(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "work")
    missing = tmp_path / "seed.pt"
    with pytest.raises(NoModelError, match=re.escape(f"{missing}: seed_model does not exist")):
        current_or_seed_model(registry, Detector(), DETECTION, seed_model=str(missing))
    assert not (tmp_path / "work").exists()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("retrain_min_new_boxes", 0),
        ("retrain_min_new_boxes", -50),
        ("promotion_tolerance", -1.5),
        ("promotion_tolerance", 1.5),
        ("promotion_tolerance", math.nan),
        ("cold_start_epochs", 0),
        ("fine_tune_epochs", -1),
    ],
)
def test_bad_loop_policy_thresholds_are_refused_naming_the_field(field: str, value: float) -> None:
    with pytest.raises(ValidationError, match=field):
        LoopPolicy(validation_dataset="data.yaml", **{field: value})


@pytest.mark.parametrize(
    ("call", "problem"),
    [
        (
            lambda: calibrate(["circle"], [0.9], [True], class_names=CLASSES, target_precision=1.5),
            r"target_precision must lie in \(0, 1\]",
        ),
        (
            lambda: calibrate(["circle"], [0.9], [True], class_names=CLASSES, target_precision=math.nan),
            r"target_precision",
        ),
        (lambda: calibrate(["circle"], [0.9], [True], class_names=CLASSES, min_support=0), r"min_support"),
        (
            lambda: select_for_review({"entropy": [0.1, 0.2]}, k=1, random_fraction=1.5),
            r"random_fraction must lie in \[0, 1\]",
        ),
        (lambda: select_for_review({"entropy": [0.1, 0.2]}, k=0), r"k must be a positive integer"),
        (lambda: select_for_review({"entropy": [0.1, 0.2]}, k=1, strategy="clairvoyant"), r"strategy must be one of"),
    ],
    ids=[
        "target_precision_above_1",
        "target_precision_nan",
        "min_support_0",
        "random_fraction_1.5",
        "batch_size_0",
        "unknown_strategy",
    ],
)
def test_bad_selection_and_calibration_settings_are_refused(call: Callable[[], object], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        call()


def test_a_gold_threshold_outside_0_1_is_refused_before_anything_is_written(work: tuple[LabelStore, str]) -> None:
    store, cursor = work
    drop(store, "answer.json", answer(_open_tasks(store)))
    assert [r.run_key for r in tick(store, INSTANCE, cursor).run_requests] == [OPEN]
    before = stored_state(store.root)
    config = merge_run_config(OPEN)
    config["ops"]["review_annotations"]["config"]["min_gold_accuracy"] = 1.5
    with pytest.raises(Exception, match="min_gold_accuracy"):
        dg.materialize(
            [review_annotations],
            run_config={"ops": {"review_annotations": config["ops"]["review_annotations"]}},
            resources={"store": store, "exchange": EXCHANGE},
            instance=INSTANCE,
        )
    assert stored_state(store.root) == before


def test_class_list_changed_between_rounds_is_refused_and_kept(work: tuple[LabelStore, str]) -> None:
    """A model or dataset with another class list, and a review answered with the old names."""
    store, cursor = work
    classes = store.root / "classes.json"
    before = classes.read_bytes()
    with pytest.raises(ClassListChanged, match=re.escape(f"{classes}: class list is {list(CLASSES)}")):
        store.set_class_names(("circle", "square", "triangle", "star"))
    with pytest.raises(ClassListChanged, match="start a new workdir"):
        store.set_class_names(("round", "square", "triangle"))
    assert classes.read_bytes() == before

    renamed = answer(_open_tasks(store), label="box")  # what an annotator using a renamed class sends
    file = drop(store, "renamed.json", renamed)
    data = file.read_bytes()
    result = tick(store, INSTANCE, cursor)
    assert result.run_requests == []
    _assert_quarantined(store, result, file, data, r"unknown class label 'box'")


def test_cli_names_the_missing_workdir_and_the_unknown_snapshot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LABELING_DAG_WORKDIR", raising=False)
    with pytest.raises(SystemExit, match="no workdir: pass --workdir or set LABELING_DAG_WORKDIR"):
        cli.main(["trace", "--sample", "1"])

    work = tmp_path / "work"
    assert cli.main(["restore", "cleaned_images", "0123abcd", "--workdir", str(work)]) == 1
    error = capsys.readouterr().err
    assert "0123abcd" in error and str(work / "snapshots" / "cleaned_images") in error
    assert not (work / "cleaned_images").exists()
