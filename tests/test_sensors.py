"""The loop's sensors, each evaluated for one tick through ``evaluate_tick`` over a temp workdir.

Every test asserts both halves of a tick: what it asks to run (``run_requests``, or the skip
message) and the cursor it leaves behind, since the cursor is all a sensor remembers.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from labeling_dag.resources.loop_policy import LoopPolicy
from labeling_dag.resources.review_exchange import FileReviewExchange
from labeling_dag.resources.storage import ImageSource, LabelStore

from labeling_dag import atomic
from labeling_dag.definitions import defs
from labeling_dag.formats.label_studio import review_task
from labeling_dag.model_registry import ModelRegistry
from labeling_dag.partitions import ingest_batches
from labeling_dag.records import NormBox, PreLabel, ReviewImage
from labeling_dag.sensors import (
    PRELABEL_STEPS,
    ingest_batch_sensor,
    merge_run_config,
    model_promoted_sensor,
    retraining_sensor,
)
from tests.faults.review_files import drop, inbox, listing, quarantined, tick

CLASSES = ("circle", "square", "triangle")
MODEL = "model-v1"
BATCH = "batch-x"
ANSWERED_AT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
EXCHANGE = FileReviewExchange()
# Partitioned run requests are resolved against the code location's jobs.
DEFINITIONS = defs


# --- building blocks -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def instance() -> dg.DagsterInstance:
    """One ephemeral instance for the review sensor, which never reads it."""
    return dg.DagsterInstance.ephemeral()


@pytest.fixture
def store(tmp_path: Path) -> LabelStore:
    """A fresh workdir with the project's class list fixed."""
    label_store = LabelStore(workdir=str(tmp_path / "work"))
    label_store.set_class_names(CLASSES)
    return label_store


def _image(batch_id: str, index: int) -> ReviewImage:
    image_id = f"{batch_id}-img{index}"
    pre_label = PreLabel(
        box_id=f"{image_id}-b0",
        image_id=image_id,
        class_name="circle",
        box=NormBox(0.5, 0.5, 0.2, 0.2),
        confidence=0.6,
        class_probs=(0.6, 0.3, 0.1),
        model_version=MODEL,
    )
    return ReviewImage(
        image_id=image_id, image_ref=f"/data/{image_id}.png", width=64, height=64, score=0.5, pre_labels=(pre_label,)
    )


def _tasks(batch_id: str, images: int = 3) -> list[dict[str, Any]]:
    return [
        review_task(_image(batch_id, i), batch_id=batch_id, model_version=MODEL, pre_label_run_id="run-1")
        for i in range(images)
    ]


def _export(store: LabelStore, batch_id: str = BATCH, images: int = 3) -> list[dict[str, Any]]:
    """Export a batch to the outbox the way review_batch does; returns its tasks."""
    tasks = _tasks(batch_id, images)
    EXCHANGE.export(store.root, batch_id, tasks)
    return tasks


def _answer(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A complete Label Studio export of ``tasks``: one reviewer relabels each predicted circle a square.

    Written by hand in the export format (the simulated reviewer would pull in torchvision, seconds of import).
    """
    answered = []
    for index, task in enumerate(tasks):
        regions = copy.deepcopy(task["predictions"][0]["result"])
        for region in regions:
            region.pop("score", None)
            region["value"]["rectanglelabels"] = ["square"]
        stamp = (ANSWERED_AT + timedelta(seconds=30 * index)).isoformat().replace("+00:00", "Z")
        annotation = {
            "id": index + 1,
            "completed_by": {"id": 1, "email": "reviewer-1"},
            "result": regions,
            "was_cancelled": False,
            "created_at": stamp,
            "updated_at": stamp,
            "lead_time": 30.0,
        }
        answered.append({**copy.deepcopy(task), "id": index + 1, "annotations": [annotation]})
    return answered


def _skip_and_quarantine(store: LabelStore, instance: dg.DagsterInstance, name: str) -> tuple[str, dict[str, Any]]:
    """Run a tick expected to reject inbox file ``name``; return the skip message and its report."""
    result = tick(store, instance)
    assert result.run_requests == []
    assert result.cursor == "[]"
    assert listing(store, "inbox") == []
    assert listing(store, "received") == []
    [(file, report)] = quarantined(store)
    assert file.name.endswith(f"-{name}")
    assert report["file"] == str(inbox(store) / name)
    assert report["problem"] in result.skip_message
    assert name in result.skip_message
    return result.skip_message, report


# --- review_complete_sensor ------------------------------------------------------------------


def test_empty_inbox_skips_with_reason_and_sets_cursor(store: LabelStore, instance: dg.DagsterInstance) -> None:
    """No file in the inbox (or no inbox at all): no run, a skip message that says so, an empty cursor."""
    result = tick(store, instance)
    assert result.run_requests == []
    assert result.skip_message == "no completed review batch in the inbox"
    assert json.loads(result.cursor) == []

    inbox(store).mkdir(parents=True)
    again = tick(store, instance, cursor=result.cursor)
    assert again.run_requests == []
    assert again.skip_message == "no completed review batch in the inbox"
    assert again.cursor == result.cursor


def test_complete_batch_launches_one_merge_keyed_by_batch(store: LabelStore, instance: dg.DagsterInstance) -> None:
    """A complete export of an exported batch: one merge run keyed and tagged by the batch id,
    the file moved unchanged to received/<batch>.json, the batch remembered in the cursor."""
    answered = _answer(_export(store))
    dropped = drop(store, "export-from-label-studio.json", answered)
    original = dropped.read_bytes()

    result = tick(store, instance)

    [request] = result.run_requests
    assert request.run_key == BATCH
    assert request.run_config == merge_run_config(BATCH)
    assert request.tags["labeling/batch_id"] == BATCH
    assert result.skip_message is None
    assert json.loads(result.cursor) == [BATCH]
    assert listing(store, "inbox") == []
    assert listing(store, "received") == [f"{BATCH}.json"]
    assert EXCHANGE.received_file(store.root, BATCH).read_bytes() == original
    assert quarantined(store) == []


def test_merge_run_config_names_the_batch_for_both_merge_assets() -> None:
    """The merge job's config hands the batch id to review_annotations and verified_labels."""
    assert merge_run_config("b-7") == {
        "ops": {
            "review_annotations": {"config": {"batch_id": "b-7"}},
            "verified_labels": {"config": {"batch_id": "b-7"}},
        }
    }


def test_batch_dropped_again_is_quarantined_not_relaunched(store: LabelStore, instance: dg.DagsterInstance) -> None:
    """A second export of a batch already received: no new run, the copy quarantined with a report
    saying "already received", the first copy in received/ untouched and the cursor unchanged."""
    answered = _answer(_export(store))
    drop(store, "first.json", answered)
    first = tick(store, instance)
    assert [r.run_key for r in first.run_requests] == [BATCH]
    kept = EXCHANGE.received_file(store.root, BATCH).read_bytes()

    drop(store, "second.json", answered)
    second = tick(store, instance, cursor=first.cursor)

    assert second.run_requests == []
    assert second.cursor == first.cursor
    [(file, report)] = quarantined(store)
    assert file.name.endswith("-second.json")
    assert "already received" in report["problem"]
    assert "already received" in second.skip_message
    assert listing(store, "received") == [f"{BATCH}.json"]
    assert EXCHANGE.received_file(store.root, BATCH).read_bytes() == kept


def test_malformed_json_is_quarantined_byte_for_byte(store: LabelStore, instance: dg.DagsterInstance) -> None:
    """A file that is not JSON: skip message naming the file and the problem; the file moved to
    quarantine/ unchanged beside an ``.error.json`` report; nothing deleted anywhere."""
    _export(store)
    broken = b'[{"data": {"batch_id": "batch-x", "image_id": '
    drop(store, "broken.json", broken)

    message, report = _skip_and_quarantine(store, instance, "broken.json")

    assert "not a readable JSON file" in message
    [(file, _)] = quarantined(store)
    assert file.read_bytes() == broken
    assert report["quarantined_as"] == str(file)
    assert len(listing(store, "quarantine")) == 2  # the file and its report
    assert listing(store, "outbox") == [f"{BATCH}.json"]


def test_json_that_is_not_an_export_is_quarantined(store: LabelStore, instance: dg.DagsterInstance) -> None:
    """Valid JSON without a batch id in its first task is not a review export: quarantined."""
    drop(store, "notes.json", {"hello": "world"})
    message, _ = _skip_and_quarantine(store, instance, "notes.json")
    assert "no data.batch_id" in message


def test_partial_batch_is_quarantined_as_incomplete(store: LabelStore, instance: dg.DagsterInstance) -> None:
    """An export in which one task has no annotation is not merged: skip + quarantine, "incomplete"."""
    answered = _answer(_export(store))
    answered[1]["annotations"] = []
    drop(store, "partial.json", answered)

    message, report = _skip_and_quarantine(store, instance, "partial.json")

    assert "incomplete" in message
    assert "2 of 3" in report["problem"]


def test_cancelled_annotation_does_not_complete_a_task(store: LabelStore, instance: dg.DagsterInstance) -> None:
    """A task whose only annotation was cancelled counts as unanswered: the batch is incomplete."""
    answered = _answer(_export(store))
    answered[0]["annotations"][0]["was_cancelled"] = True
    drop(store, "cancelled.json", answered)
    message, _ = _skip_and_quarantine(store, instance, "cancelled.json")
    assert "incomplete" in message


def test_unknown_batch_is_quarantined(store: LabelStore, instance: dg.DagsterInstance) -> None:
    """A complete export of a batch that was never exported: skip + quarantine, "unknown batch"."""
    _export(store)
    drop(store, "stranger.json", _answer(_tasks("batch-never-sent")))

    message, report = _skip_and_quarantine(store, instance, "stranger.json")

    assert "unknown batch" in message
    assert "batch-never-sent" in report["problem"]


def test_export_with_an_extra_image_is_quarantined(store: LabelStore, instance: dg.DagsterInstance) -> None:
    """An export holding an image that was not in the exported batch is rejected, naming the image."""
    _export(store, images=3)
    drop(store, "extra.json", _answer(_tasks(BATCH, images=4)))

    message, report = _skip_and_quarantine(store, instance, "extra.json")

    assert "do not match" in message
    assert f"{BATCH}-img3" in report["problem"]


def test_export_missing_an_image_is_quarantined(store: LabelStore, instance: dg.DagsterInstance) -> None:
    """An export that lost one of the batch's images (complete as far as it goes) is rejected."""
    _export(store, images=3)
    drop(store, "short.json", _answer(_tasks(BATCH, images=2)))

    message, report = _skip_and_quarantine(store, instance, "short.json")

    assert "missing images" in message
    assert f"{BATCH}-img2" in report["problem"]


def test_export_with_an_unknown_label_is_quarantined(store: LabelStore, instance: dg.DagsterInstance) -> None:
    """A box labelled with a class outside the project's class list makes the whole export invalid."""
    answered = _answer(_export(store))
    answered[0]["annotations"][0]["result"][0]["value"]["rectanglelabels"] = ["hexagon"]
    drop(store, "hexagon.json", answered)
    message, _ = _skip_and_quarantine(store, instance, "hexagon.json")
    assert "hexagon" in message


@pytest.mark.parametrize("name", [".batch.json.tmp", "x.json.part", ".batch-x.json"])
def test_file_still_being_written_is_left_alone(store: LabelStore, instance: dg.DagsterInstance, name: str) -> None:
    """Hidden or temporary names (a writer not yet done) are neither taken nor quarantined."""
    answered = _answer(_export(store))
    inbox(store).mkdir(parents=True)
    (inbox(store) / name).write_text(json.dumps(answered))

    result = tick(store, instance)

    assert result.run_requests == []
    assert result.skip_message == "no completed review batch in the inbox"
    assert result.cursor == "[]"
    assert listing(store, "inbox") == [name]
    assert listing(store, "received") == []
    assert listing(store, "quarantine") == []


def test_received_batch_missing_from_cursor_is_requested(store: LabelStore, instance: dg.DagsterInstance) -> None:
    """Crash safety: a batch already moved to received/ whose tick died before its cursor was
    saved is requested on the next tick (same run key, so Dagster still launches it once)."""
    _export(store)
    received = EXCHANGE.received_file(store.root, BATCH)
    atomic.write_json(received, _answer(_tasks(BATCH)))

    result = tick(store, instance, cursor=json.dumps(["older-batch"]))

    [request] = result.run_requests
    assert request.run_key == BATCH
    assert request.run_config == merge_run_config(BATCH)
    assert json.loads(result.cursor) == sorted(["older-batch", BATCH])
    assert received.exists()


def test_tick_replayed_with_its_old_cursor_requests_the_same_run_key(
    store: LabelStore, instance: dg.DagsterInstance
) -> None:
    """A tick that moved a file but whose cursor was never committed, replayed with the previous
    cursor, asks again for the same run key (deduplicated by Dagster); with the new cursor it does not."""
    drop(store, "answer.json", _answer(_export(store)))
    first = tick(store, instance, cursor=None)
    replay = tick(store, instance, cursor=None)
    settled = tick(store, instance, cursor=first.cursor)

    assert [r.run_key for r in first.run_requests] == [BATCH]
    assert [r.run_key for r in replay.run_requests] == [BATCH]
    assert replay.cursor == first.cursor
    assert settled.run_requests == []
    assert settled.cursor == first.cursor
    assert settled.skip_message == "no completed review batch in the inbox"


def test_accepted_and_rejected_files_in_one_tick(store: LabelStore, instance: dg.DagsterInstance) -> None:
    """One bad file does not hold up a good one: the good batch is requested, the bad file quarantined."""
    drop(store, "good.json", _answer(_export(store)))
    drop(store, "bad.json", b"not json")

    result = tick(store, instance)

    assert [r.run_key for r in result.run_requests] == [BATCH]
    assert json.loads(result.cursor) == [BATCH]
    [(file, _)] = quarantined(store)
    assert file.name.endswith("-bad.json")
    assert listing(store, "inbox") == []


def test_one_tick_handles_twenty_returned_batches(store: LabelStore, instance: dg.DagsterInstance) -> None:
    """Twenty complete exports waiting at once are all taken in a single tick: twenty runs, one per
    batch key, every file in received/, all twenty batches in the cursor."""
    batches = [f"batch-{n:02d}" for n in range(20)]
    for batch_id in batches:
        drop(store, f"{batch_id}-export.json", _answer(_export(store, batch_id, images=2)))

    result = tick(store, instance)

    assert sorted(r.run_key for r in result.run_requests) == batches
    assert all(r.run_config == merge_run_config(r.run_key) for r in result.run_requests)
    assert json.loads(result.cursor) == batches
    assert listing(store, "inbox") == []
    assert listing(store, "received") == [f"{b}.json" for b in batches]
    assert quarantined(store) == []


# --- retraining_sensor -----------------------------------------------------------------------


@pytest.fixture
def fresh_instance(tmp_path: Path) -> dg.DagsterInstance:
    """An instance of its own (the event-driven sensors read its asset events). On disk, as the
    daemon's is: partitioned run requests are resolved through the instance's ref."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    return dg.DagsterInstance.local_temp(str(home))


def _verified(instance: dg.DagsterInstance, snapshot: str, boxes: int) -> None:
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key="verified_labels", metadata={"dvc_snapshot": snapshot, "verified_boxes": boxes}
        )
    )


def _retrain_tick(
    store: LabelStore, instance: dg.DagsterInstance, cursor: str | None = None, min_new: int = 50
) -> dg.SensorExecutionData:
    policy = LoopPolicy(validation_dataset="unused", retrain_min_new_boxes=min_new)
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"store": store, "policy": policy})
    return retraining_sensor.evaluate_tick(context)


def _register_model(store: LabelStore, training_boxes: int) -> None:
    weights = store.root / "weights.pt"
    weights.write_bytes(b"not really weights")
    ModelRegistry(store.root).register(
        weights, task="detect", class_names=CLASSES, source="seed_model", metrics={"training_boxes": training_boxes}
    )


def test_retraining_skips_before_any_verified_labels(store: LabelStore, fresh_instance: dg.DagsterInstance) -> None:
    """No verified_labels materialization yet: nothing to do, cursor left as it was."""
    result = _retrain_tick(store, fresh_instance)
    assert result.run_requests == []
    assert result.skip_message == "no verified labels yet"
    assert result.cursor is None


def test_first_verified_labels_without_model_trigger_retrain(
    store: LabelStore, fresh_instance: dg.DagsterInstance
) -> None:
    """Verified labels and no model: one retrain run keyed by the snapshot; the cursor is the snapshot."""
    _verified(fresh_instance, "s1", 120)

    result = _retrain_tick(store, fresh_instance)

    [request] = result.run_requests
    assert request.job_name == "retrain"
    assert request.run_key == "retrain-s1"
    assert request.tags["labeling/training_snapshot"] == "s1"
    assert result.cursor == "s1"


def test_same_snapshot_is_not_considered_twice(store: LabelStore, fresh_instance: dg.DagsterInstance) -> None:
    """The latest verified labels already in the cursor: skip, cursor unchanged."""
    _verified(fresh_instance, "s1", 120)

    result = _retrain_tick(store, fresh_instance, cursor="s1")

    assert result.run_requests == []
    assert "s1" in result.skip_message and "already considered" in result.skip_message
    assert result.cursor == "s1"


def test_too_few_new_boxes_send_the_next_batch(store: LabelStore, fresh_instance: dg.DagsterInstance) -> None:
    """Model trained on 100 boxes, 120 verified, threshold 50: no retrain, the next review batch
    is selected with the same model (select_review_batch)."""
    _register_model(store, training_boxes=100)
    _verified(fresh_instance, "s2", 120)

    result = _retrain_tick(store, fresh_instance, cursor="s1", min_new=50)

    [request] = result.run_requests
    assert request.job_name == "select_review_batch"
    assert request.run_key == "next-batch-s2"
    assert result.cursor == "s2"


def test_exactly_the_threshold_of_new_boxes_retrains(store: LabelStore, fresh_instance: dg.DagsterInstance) -> None:
    """The threshold is inclusive: 100 boxes trained on + 50 new with retrain_min_new_boxes=50 retrains."""
    _register_model(store, training_boxes=100)
    _verified(fresh_instance, "s3", 150)

    result = _retrain_tick(store, fresh_instance, cursor="s2", min_new=50)

    assert [(r.job_name, r.run_key) for r in result.run_requests] == [("retrain", "retrain-s3")]
    assert result.cursor == "s3"


def test_only_the_latest_snapshot_counts(store: LabelStore, fresh_instance: dg.DagsterInstance) -> None:
    """Two merges between ticks: the sensor decides on the latest verified labels only."""
    _verified(fresh_instance, "s1", 60)
    _verified(fresh_instance, "s2", 130)

    result = _retrain_tick(store, fresh_instance, cursor=None, min_new=100)

    assert [r.run_key for r in result.run_requests] == ["retrain-s2"]
    assert result.cursor == "s2"


# --- model_promoted_sensor -------------------------------------------------------------------


def _current_model(store: LabelStore, tmp_path: Path, name: str) -> str:
    weights = tmp_path / f"{name}.pt"
    weights.write_bytes(f"weights of {name}, only hashed".encode())
    return (
        ModelRegistry(store.root)
        .register(weights, task="detect", class_names=CLASSES, source="retrained")
        .model_version
    )


def _scored(store: LabelStore, batch: str, version: str, unsettled: int) -> None:
    atomic.write_json(
        store.root / "uncertainty_scores" / batch / "state.json", {"model_version": version, "unsettled": unsettled}
    )


def _promoted_tick(
    store: LabelStore, instance: dg.DagsterInstance, cursor: str | None = None
) -> dg.SensorExecutionData:
    context = dg.build_sensor_context(
        instance=instance,
        instance_ref=instance.get_ref(),
        cursor=cursor,
        resources={"store": store},
        definitions=DEFINITIONS,
    )
    return model_promoted_sensor.evaluate_tick(context)


def test_no_ingestion_batch_skips(store: LabelStore, fresh_instance: dg.DagsterInstance) -> None:
    """Nothing ingested yet: skip, no cursor."""
    result = _promoted_tick(store, fresh_instance)
    assert result.run_requests == []
    assert result.skip_message == "no ingestion batch yet"
    assert result.cursor is None


def test_cold_start_waits_for_every_batch_then_selects_once(
    store: LabelStore, fresh_instance: dg.DagsterInstance
) -> None:
    """No model: the first (random) batch is selected once every batch is scored, and only once."""
    fresh_instance.add_dynamic_partitions(ingest_batches.name, ["a", "b"])
    _scored(store, "a", "", 10)

    waiting = _promoted_tick(store, fresh_instance)
    assert waiting.run_requests == [] and waiting.skip_message == "waiting for 1 batches to be scored"
    assert waiting.cursor is None

    _scored(store, "b", "", 7)
    ready = _promoted_tick(store, fresh_instance)
    [request] = ready.run_requests
    assert (request.job_name, request.run_key) == ("select_review_batch", "select-cold-start")
    assert ready.cursor == "selected:"
    again = _promoted_tick(store, fresh_instance, cursor=ready.cursor)
    assert again.run_requests == [] and "already selected" in again.skip_message


def test_promoted_model_prelabels_only_stale_batches_then_selects(
    store: LabelStore, fresh_instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    """A new model re-prelabels the batches scored by the old one that still hold unverified
    images (one run per batch, keyed by version and batch); settled batches and batches already
    scored with it are left alone; once all are current, the next batch is selected."""
    fresh_instance.add_dynamic_partitions(ingest_batches.name, ["a", "b", "c"])
    old = _current_model(store, tmp_path, "old")
    new = _current_model(store, tmp_path, "new")
    _scored(store, "a", old, 12)  # stale
    _scored(store, "b", old, 0)  # every image verified: nothing to predict
    _scored(store, "c", new, 5)  # ingested after the promotion

    result = _promoted_tick(store, fresh_instance, cursor=f"selected:{old}")
    [request] = result.run_requests
    assert request.job_name == "prelabel_batch" and request.partition_key == "a"
    assert request.run_key == f"prelabel-{new}-a"
    assert request.asset_selection == PRELABEL_STEPS
    assert set(PRELABEL_STEPS) == {dg.AssetKey("pre_labels"), dg.AssetKey("uncertainty_scores")}
    assert result.cursor == f"selected:{old}"

    _scored(store, "a", new, 12)
    done = _promoted_tick(store, fresh_instance, cursor=result.cursor)
    assert [(r.job_name, r.run_key) for r in done.run_requests] == [("select_review_batch", f"select-{new}")]
    assert done.cursor == f"selected:{new}"


# --- ingest_batch_sensor ---------------------------------------------------------------------


def _ingest_tick(source: Path, instance: dg.DagsterInstance, cursor: str | None = None) -> dg.SensorExecutionData:
    resources = {"source": ImageSource(folder=str(source))}
    context = dg.build_sensor_context(
        instance=instance, instance_ref=instance.get_ref(), cursor=cursor, resources=resources, definitions=DEFINITIONS
    )
    return ingest_batch_sensor.evaluate_tick(context)


def test_each_new_batch_folder_becomes_a_partition_and_a_run(
    tmp_path: Path, fresh_instance: dg.DagsterInstance
) -> None:
    """Sub-folders are batches, loose files the batch _root; each new one is added as a dynamic
    partition and pre-labelled by one run; a badly named folder is reported, not ingested."""
    source = tmp_path / "source"
    (source / "2026-11-01").mkdir(parents=True)
    (source / "2026-11-01" / "a.png").write_bytes(b"a")
    (source / "loose.png").write_bytes(b"b")
    (source / "bad name!").mkdir()
    (source / ".hidden").mkdir()

    first = _ingest_tick(source, fresh_instance)
    assert ingest_batch_sensor.job_name == "prelabel_batch"
    assert [r.partition_key for r in first.run_requests] == ["2026-11-01", "_root"]
    [added] = first.dynamic_partitions_requests
    assert added.partitions_def_name == ingest_batches.name and list(added.partition_keys) == ["2026-11-01", "_root"]
    for request in first.dynamic_partitions_requests:
        fresh_instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))

    same = _ingest_tick(source, fresh_instance, cursor=first.cursor)
    assert same.run_requests == [] and "bad name!" in same.skip_message

    (source / "2026-11-01" / "b.png").write_bytes(b"more")
    (source / "2026-11-02").mkdir()
    (source / "2026-11-02" / "c.png").write_bytes(b"c")
    later = _ingest_tick(source, fresh_instance, cursor=first.cursor)
    assert [r.partition_key for r in later.run_requests] == ["2026-11-01", "2026-11-02"]
    assert len({r.run_key for r in later.run_requests} | {r.run_key for r in first.run_requests}) == 4
    [added] = later.dynamic_partitions_requests
    assert list(added.partition_keys) == ["2026-11-02"]


def test_snapshot_the_current_model_was_trained_on_is_skipped(tmp_path: Path) -> None:
    """A daemon started after run-loop must not ask for another batch or retrain for labels the model already has."""
    store = LabelStore(workdir=str(tmp_path / "work"))
    weights = tmp_path / "weights.pt"
    weights.write_bytes(b"not really weights, only hashed")
    ModelRegistry(store.root).register(
        weights,
        task="detect",
        class_names=CLASSES,
        source="retrained",
        metrics={"training_boxes": 10},
        training_snapshot="s9",
    )
    instance = dg.DagsterInstance.ephemeral()
    instance.report_runless_asset_event(
        dg.AssetMaterialization(asset_key="verified_labels", metadata={"dvc_snapshot": "s9", "verified_boxes": 500})
    )
    context = dg.build_sensor_context(
        instance=instance,
        resources={"store": store, "policy": LoopPolicy(validation_dataset="unused", retrain_min_new_boxes=50)},
    )
    result = retraining_sensor.evaluate_tick(context)
    assert not result.run_requests
    assert "was trained on s9" in result.skip_message and result.cursor == "s9"
