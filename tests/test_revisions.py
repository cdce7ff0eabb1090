"""Unit tests for labeling_dag.revisions: revision ids, which batches may be revised, what changed."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labeling_dag.formats.label_studio import review_task
from labeling_dag.records import NormBox, PreLabel, ReviewImage
from labeling_dag.revisions import (
    as_revision,
    changed_tasks,
    checked_until,
    merged_labels,
    revision_id,
    revision_watch,
    split_revision,
)

CLASSES = ("cat", "dog")


def _task(image_id: str, batch_id: str = "batch-1", *, task_id: int = 1) -> dict[str, Any]:
    """A task of ``image_id`` with one predicted cat, annotated by accepting it."""
    image = ReviewImage(
        image_id=image_id,
        image_ref=f"/data/{image_id}.png",
        width=100,
        height=100,
        score=0.5,
        pre_labels=(PreLabel(f"{image_id}-b0", image_id, "cat", NormBox(0.3, 0.3, 0.2, 0.2), 0.8, (0.8, 0.2), "mv-1"),),
    )
    task = review_task(image, batch_id=batch_id, model_version="mv-1", pre_label_run_id="run-1")
    result = copy.deepcopy(task["predictions"][0]["result"])
    stamp = "2026-01-02T03:04:05.000001Z"
    annotation = {
        "id": task_id,
        "completed_by": 7,
        "result": result,
        "was_cancelled": False,
        "created_at": stamp,
        "updated_at": stamp,
    }
    return {**task, "id": task_id, "annotations": [annotation]}


def _edited(
    task: dict[str, Any], *, label: str | None = None, dx: float = 0.0, at: str = "2026-01-03T00:00:00.5Z"
) -> dict[str, Any]:
    """``task`` with its annotation saved again at ``at``, its box relabelled and/or moved."""
    task = copy.deepcopy(task)
    annotation = task["annotations"][0]
    region = annotation["result"][0]["value"]
    region["x"] += dx
    if label is not None:
        region["rectanglelabels"] = [label]
    annotation["updated_at"] = at
    return task


# --- ids ------------------------------------------------------------------------------------


def test_revision_ids_round_trip_and_a_batch_is_revision_one() -> None:
    assert revision_id("batch-0123abcd", 2) == "batch-0123abcd.r2"
    assert split_revision("batch-0123abcd.r2") == ("batch-0123abcd", 2)
    assert split_revision("batch-0123abcd.r10") == ("batch-0123abcd", 10)
    assert split_revision("batch-0123abcd") == ("batch-0123abcd", 1)
    # Not revision suffixes: r1 is the batch itself, and no leading zeros.
    assert split_revision("b.r1") == ("b.r1", 1)
    assert split_revision("b.r02") == ("b.r02", 1)


@pytest.mark.parametrize(
    ("batch_id", "number", "problem"),
    [("b", 1, "start at 2"), ("b.r2", 3, "already a revision"), ("b" * 126, 2, "not a plain name")],
)
def test_revision_id_refuses_what_cannot_be_a_revision(batch_id: str, number: int, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        revision_id(batch_id, number)


# --- revision_watch ---------------------------------------------------------------------------


def test_revision_watch_settles_merged_batches_and_holds_those_awaiting_a_merge() -> None:
    """a: merged, nothing pending -> settled. b: merged, b.r2 quarantined, b.r3 merged -> settled.
    c: merged, c.r2 received but not merged -> unsettled. d: received, not merged yet ->
    unsettled. e: quarantined at its first merge -> neither."""
    handed_over = ["a", "b", "b.r2", "b.r3", "c", "c.r2", "d", "e"]

    settled, unsettled = revision_watch(handed_over, merged={"a", "b", "b.r3", "c"}, quarantined={"b.r2", "e"})

    assert settled == {"a", "b"}
    assert unsettled == {"c", "d"}


# --- merged_labels / changed_tasks ------------------------------------------------------------


def test_merged_labels_take_each_images_latest_merged_revision() -> None:
    first = [_task("img-a"), _task("img-b", task_id=2)]
    second = as_revision([_edited(first[0], label="dog")], "batch-1.r2")

    labels = merged_labels({"batch-1.r2": second, "batch-1": first}, class_names=CLASSES)

    assert labels["img-a"][0][0] == "dog"
    assert labels["img-b"][0][0] == "cat"


def test_changed_tasks_tell_an_edit_from_a_resave_and_report_what_cannot_be_merged() -> None:
    """Of five updated tasks only the relabelled and the moved one changed: a re-save, an
    annotation deleted (task waiting for a new one) and an image the batch never merged are
    no change; a task relabelled to an unknown class is named in the problems, not returned."""
    merged = [_task(f"img-{name}", task_id=n) for n, name in enumerate("abcdef", start=1)]
    labels = merged_labels({"batch-1": merged}, class_names=CLASSES)
    unannotated = copy.deepcopy(merged[3])
    unannotated["annotations"] = []
    updated = [
        _edited(merged[0], label="dog"),
        _edited(merged[1], dx=4.0),
        _edited(merged[2]),
        unannotated,
        _task("img-new", task_id=9),
        _edited(merged[5], label="truck"),
    ]

    changed, problems = changed_tasks(updated, labels, batch_id="batch-1", class_names=CLASSES)

    assert [task["data"]["image_id"] for task in changed] == ["img-a", "img-b"]
    (problem,) = problems
    assert "task 6 (image 'img-f') of merged batch 'batch-1'" in problem
    assert "unknown class label 'truck'" in problem and "task #0" not in problem


def test_as_revision_moves_copies_to_the_revision_and_leaves_the_tasks_alone() -> None:
    task = _task("img-a")

    (copied,) = as_revision([task], "batch-1.r2")

    assert copied["data"]["batch_id"] == "batch-1.r2"
    assert task["data"]["batch_id"] == "batch-1"
    assert {k: v for k, v in copied["data"].items() if k != "batch_id"} == {
        k: v for k, v in task["data"].items() if k != "batch_id"
    }


# --- checked_until ----------------------------------------------------------------------------

T0 = datetime(2026, 1, 1, tzinfo=UTC)
stamps = st.lists(
    st.integers(min_value=1, max_value=10_000).map(lambda us: T0 + timedelta(microseconds=us)), max_size=20
)


@given(
    seen=stamps,
    held=stamps,
    previous=st.none() | st.integers(0, 10_000).map(lambda us: T0 + timedelta(microseconds=us)),
)
def test_checked_until_never_passes_a_held_task_nor_goes_back(
    seen: list[datetime], held: list[datetime], previous: datetime | None
) -> None:
    """Whatever a check saw: a check for tasks updated after the result (all tasks when it is
    None) sees every held task again; the result never moves back from ``previous``; without
    held tasks it covers all that was seen."""
    # A check only sees tasks updated after its previous stamp.
    seen = [stamp for stamp in seen if previous is None or stamp > previous]
    held = [stamp for stamp in held if previous is None or stamp > previous]

    until = checked_until(seen + held, held=held, previous=previous)

    if previous is not None:
        assert until is not None and until >= previous
    assert until is None or all(stamp > until for stamp in held)
    if not held and seen:
        assert until == max(seen)
    if not seen and not held:
        assert until == previous
