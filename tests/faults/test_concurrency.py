"""Concurrency: two sensor ticks over the same inbox produce one merge per batch, and a review
file still being written is never taken half-written.

The rule for the inbox: a writer should write under a hidden or ``.tmp`` / ``.part`` name and
rename, and such names are never read. A file copied straight in is judged, but while it is
not yet a whole JSON document and changed less than ``review_intake.SETTLE_SECONDS`` (10 s)
ago, or changed while it was read, or vanished (another tick took it), its verdict is
*pending*: it stays in the inbox for a later tick instead of being quarantined mid-copy. A
complete, valid document is taken at once, however fresh; broken JSON that stopped changing
is quarantined.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from pathlib import Path

import dagster as dg
import pytest
from labeling_dag.resources.storage import LabelStore

from labeling_dag.contracts import EDITS, LABELS, MERGES
from labeling_dag.review_intake import SETTLE_SECONDS, judge_review_file
from tests.faults.review_files import (
    CLASSES,
    EXCHANGE,
    answer,
    drop,
    export_batch,
    inbox,
    listing,
    quarantined,
    stored_state,
    tick,
)

BATCH = "batch-c"


@pytest.fixture
def store(tmp_path: Path) -> LabelStore:
    """A workdir with the class list fixed."""
    label_store = LabelStore(workdir=str(tmp_path / "work"))
    label_store.set_class_names(CLASSES)
    return label_store


def test_ticks_replayed_or_repeated_ask_for_one_merge_per_batch(store: LabelStore) -> None:
    """However often the tick over one inbox file is evaluated (replayed from the old cursor after a
    crash, or run again with the new one), every request for the batch carries the batch id as its
    run key, so Dagster launches one merge; the file is received once."""
    instance = dg.DagsterInstance.ephemeral()
    drop(store, "answer.json", answer(export_batch(store, BATCH)))
    cursors, keys = [None], []
    for replay in (False, True, False, True):
        result = tick(store, instance, cursors[0] if replay else cursors[-1])
        keys += [request.run_key for request in result.run_requests]
        cursors.append(result.cursor)
    assert set(keys) == {BATCH}
    assert listing(store, "received") == [f"{BATCH}.json"]
    assert quarantined(store) == []


def _tick_in_process(workdir: str, start: multiprocessing.synchronize.Barrier, results: multiprocessing.Queue) -> None:
    """One sensor tick, started together with the other process's."""
    try:
        start.wait(timeout=60)
        result = tick(LabelStore(workdir=workdir), dg.DagsterInstance.ephemeral())
        results.put(("ok", [request.run_key for request in result.run_requests]))
    except BaseException as error:  # reported to the parent, which fails the test with it
        results.put(("error", f"{type(error).__name__}: {error}"))


def test_two_ticks_at_once_take_each_file_once_and_fail_neither(store: LabelStore) -> None:
    """Two evaluations of the review sensor racing over one inbox (a daemon and a run-loop on one
    workdir): neither fails, each batch is received once under its own run key, and the one bad
    file is quarantined once. The bad file is the oldest and takes both ticks a few hundred
    milliseconds to read, so both have listed the inbox before either moves anything."""
    bulky = json.dumps([{"data": {"note": "no batch id here", "n": n}} for n in range(250_000)]).encode()
    drop(store, "bulky.json", bulky)
    batches = [f"batch-{n:02d}" for n in range(12)]
    for batch_id in batches:
        drop(store, f"{batch_id}.json", answer(export_batch(store, batch_id, images=2)))
    os.utime(inbox(store) / "bulky.json", (time.time() - 120, time.time() - 120))
    context = multiprocessing.get_context("fork")
    start, results = context.Barrier(2), context.Queue()
    workers = [context.Process(target=_tick_in_process, args=(str(store.root), start, results)) for _ in range(2)]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)

    assert [status for status, _ in outcomes] == ["ok", "ok"], outcomes
    assert sorted({key for _, keys in outcomes for key in keys}) == batches
    assert listing(store, "received") == [f"{batch_id}.json" for batch_id in batches]
    assert listing(store, "inbox") == []
    [(moved, report)] = quarantined(store)
    assert moved.read_bytes() == bulky and "no data.batch_id" in report["problem"]


def _judge(store: LabelStore, file: Path) -> object:
    return judge_review_file(
        file,
        exported_tasks=lambda batch: EXCHANGE.exported_tasks(store.root, batch),
        already_received=lambda batch: EXCHANGE.received_file(store.root, batch).exists(),
        class_names=CLASSES,
    )


def test_the_judge_tells_a_file_in_the_making_from_a_broken_one(store: LabelStore) -> None:
    """Half a JSON document changed just now is pending (look again next tick); the same bytes
    untouched for longer than the settle time are refused; a file gone is pending; a whole,
    valid document is accepted at once, however fresh."""
    text = json.dumps(answer(export_batch(store, BATCH))).encode()
    file = inbox(store) / "answer.json"
    file.parent.mkdir(parents=True)
    file.write_bytes(text[: len(text) // 2])

    fresh = _judge(store, file)
    assert fresh.pending and not fresh.accepted
    assert fresh.problem.startswith("not a readable JSON file (") and "may still be being written" in fresh.problem

    stale = time.time() - SETTLE_SECONDS - 1
    os.utime(file, (stale, stale))
    broken = _judge(store, file)
    assert not broken.pending and broken.problem.startswith("not a readable JSON file (")
    assert "being written" not in broken.problem

    gone = _judge(store, inbox(store) / "taken-by-another-tick.json")
    assert gone.pending and not gone.accepted

    file.write_bytes(text)
    assert _judge(store, file).accepted


def test_a_file_still_being_copied_into_the_inbox_waits_for_the_next_tick(store: LabelStore) -> None:
    """A writer copying straight into the inbox (no temporary name) is half-way through when a
    tick runs: the file is left where it is, not quarantined; once it has stopped changing the
    next tick takes it whole."""
    instance = dg.DagsterInstance.ephemeral()
    text = json.dumps(answer(export_batch(store, BATCH))).encode()
    target = inbox(store) / "copying.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    before = stored_state(store.root)
    with open(target, "wb") as writer:
        writer.write(text[: len(text) // 2])
        writer.flush()

        midway = tick(store, instance)

        assert midway.run_requests == []
        assert listing(store, "inbox") == ["copying.json"]
        assert quarantined(store) == []
        assert stored_state(store.root) == before
        writer.write(text[len(text) // 2 :])
    settled = time.time() - 60
    os.utime(target, (settled, settled))

    done = tick(store, instance, midway.cursor)

    assert [request.run_key for request in done.run_requests] == [BATCH]
    assert EXCHANGE.received_file(store.root, BATCH).read_bytes() == text
    assert quarantined(store) == []


def test_a_half_written_file_that_stopped_changing_is_quarantined(store: LabelStore) -> None:
    """The other side of the rule: a file cut short and no longer changing (its writer died) is
    judged, refused as unreadable JSON, and kept in quarantine byte for byte."""
    text = json.dumps(answer(export_batch(store, BATCH))).encode()
    file = drop(store, "cut.json", text[: len(text) // 2])
    before = stored_state(store.root)

    result = tick(store, dg.DagsterInstance.ephemeral())

    assert result.run_requests == []
    [(moved, report)] = quarantined(store)
    assert moved.read_bytes() == text[: len(text) // 2]
    assert report["file"] == str(file) and report["problem"].startswith("not a readable JSON file")
    assert stored_state(store.root) == before


# --- two merge runs at once ---------------------------------------------------------------------


def _merge_in_process(
    workdir: str, source: str, batch_id: str, start: multiprocessing.synchronize.Barrier, results: multiprocessing.Queue
) -> None:
    """One ``merge_review`` run of the production definitions, started together with the other process's."""
    try:
        from conftest import make_resources
        from labeling_dag.resources.loop_policy import LoopPolicy

        from labeling_dag.definitions import build_definitions

        resources = make_resources(Path(workdir), Path(source)) | {
            "policy": LoopPolicy(validation_dataset="unused.yaml")
        }
        job = build_definitions(resources).resolve_job_def("merge_review")
        config = {
            "ops": {
                "review_annotations": {"config": {"batch_id": batch_id}},
                "verified_labels": {"config": {"batch_id": batch_id}},
            }
        }
        start.wait(timeout=120)
        result = job.execute_in_process(
            run_config=config, instance=dg.DagsterInstance.ephemeral(), raise_on_error=False
        )
        errors = [
            e.event_specific_data.error.to_string() for e in result.all_events if e.event_type_value == "STEP_FAILURE"
        ]
        results.put(("ok" if result.success else "failed", errors))
    except BaseException as error:  # reported to the parent, which fails the test with it
        results.put(("error", f"{type(error).__name__}: {error}"))


def _merge_at_once(store: LabelStore, tmp_path: Path, batch_ids: list[str]) -> list[tuple[str, object]]:
    context = multiprocessing.get_context("fork")
    start, results = context.Barrier(len(batch_ids)), context.Queue()
    source = tmp_path / "source"
    source.mkdir(exist_ok=True)
    workers = [
        context.Process(target=_merge_in_process, args=(str(store.root), str(source), b, start, results))
        for b in batch_ids
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=300) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    return outcomes


def _returned(store: LabelStore, batch_ids: list[str]) -> None:
    """Batches exported, answered (every box relabelled ``square``) and received by the real sensor."""
    for batch_id in batch_ids:
        drop(store, f"{batch_id}.json", answer(export_batch(store, batch_id)))
    result = tick(store, dg.DagsterInstance.ephemeral())
    assert sorted(request.run_key for request in result.run_requests) == sorted(batch_ids)


def _verified(store: LabelStore) -> tuple[object, object, object]:

    return (
        store.read(LABELS),
        store.read(MERGES),
        store.read(EDITS),
    )


@pytest.mark.slow
def test_two_merges_of_different_batches_at_once_keep_both(store: LabelStore, tmp_path: Path) -> None:
    """Two ``merge_review`` runs for two batches, started at the same moment in two processes: both
    succeed, and each batch's three reviewed boxes are in the edits and the verified labels once."""
    _returned(store, ["batch-m1", "batch-m2"])

    outcomes = _merge_at_once(store, tmp_path, ["batch-m1", "batch-m2"])

    assert outcomes == [("ok", []), ("ok", [])], outcomes
    labels, merges, edits = _verified(store)
    assert sorted(merges["merge_id"]) == ["batch-m1", "batch-m2"]
    assert not labels["label_id"].duplicated().any()
    for batch_id in ("batch-m1", "batch-m2"):
        mine = labels[labels["merge_id"] == batch_id]
        assert len(mine) == 3 and set(mine["class_name"]) == {"square"} and set(mine["retired_by"]) == {""}
        assert len(edits[edits["batch_id"] == batch_id]) == 3


@pytest.mark.slow
def test_two_merges_of_the_same_batch_at_once_make_one_merge(store: LabelStore, tmp_path: Path) -> None:
    """The same batch merged by two runs at once (a replayed request, a manual re-run): one merge
    row, the batch's boxes once each, nothing retired, neither run fails."""
    _returned(store, ["batch-m1"])

    outcomes = _merge_at_once(store, tmp_path, ["batch-m1", "batch-m1"])

    assert outcomes == [("ok", []), ("ok", [])], outcomes
    labels, merges, edits = _verified(store)
    assert list(merges["merge_id"]) == ["batch-m1"]
    assert len(labels) == 3 and not labels["label_id"].duplicated().any() and set(labels["retired_by"]) == {""}
    assert len(edits) == 3
