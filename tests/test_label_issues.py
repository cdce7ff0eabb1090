"""Label-error detection on verified labels: cleanlab's scores on hand-made predictions, the choice
of out-of-sample predictions, the re-review queue, and the ``label_issues`` asset over a real merge."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from labeling_dag.assets.annotations import review_annotations
from labeling_dag.assets.label_issues import label_issues
from labeling_dag.assets.verification import verified_labels
from labeling_dag.resources.snapshots import SnapshotStore
from labeling_dag.resources.storage import LabelStore

from labeling_dag import atomic
from labeling_dag.agreement import PredictedBox
from labeling_dag.cleanlab_scores import auxiliary_inputs, cleanlab_inputs, kind_scores, label_quality
from labeling_dag.contracts import (
    BATCH_COLUMNS,
    ISSUE_COLUMNS,
    LABEL_COLUMNS,
    MERGE_COLUMNS,
    REVIEW_BATCHES,
    VERIFIED_IMAGE_COLUMNS,
)
from labeling_dag.formats.label_studio import review_task
from labeling_dag.issue_evidence import prediction_batches, verified_images
from labeling_dag.label_issues import ISSUE_KINDS, VerifiedImage, open_suspects, score_label_issues
from labeling_dag.records import NormBox, PreLabel, ReviewImage
from labeling_dag.sensors import merge_run_config
from tests.faults.review_files import ANSWERED_AT, CLASSES, EXCHANGE

SIZE = 128
LEFT, RIGHT = NormBox(0.25, 0.25, 0.2, 0.2), NormBox(0.7, 0.7, 0.2, 0.2)


def _nudged(box: NormBox) -> NormBox:
    """A prediction a good model makes of ``box``: a pixel off."""
    return NormBox(box.x + 1 / SIZE, box.y, box.w, box.h)


def _image(image_id: str, labels: list[tuple[str, NormBox]], predictions: list[tuple[str, NormBox, float]]):
    return VerifiedImage(
        image_id=image_id,
        width=SIZE,
        height=SIZE,
        labels=tuple(labels),
        predictions=tuple(
            PredictedBox(f"{image_id}-{i}", name, box, confidence)
            for i, (name, box, confidence) in enumerate(predictions)
        ),
        model_version="model-v1",
        review_batch_id="batch-1",
    )


def _clean(image_id: str, confidence: float = 0.9) -> VerifiedImage:
    """A circle and a square, labelled right and predicted confidently."""
    return _image(
        image_id,
        [("circle", LEFT), ("square", RIGHT)],
        [("circle", _nudged(LEFT), confidence), ("square", _nudged(RIGHT), confidence)],
    )


# One reviewer mistake each, against the same confident predictions as the clean images.
MISTAKES = {
    # The square left out: a confident prediction that overlaps no verified box.
    "overlooked": ([("circle", LEFT)], None),
    # The circle labelled a square, where the model sees a circle.
    "swapped": ([("square", LEFT), ("square", RIGHT)], None),
    # The circle's box shifted by 30 % of its size on both axes (IoU 0.32 with the object).
    "badly_located": ([("circle", NormBox(0.31, 0.31, 0.2, 0.2)), ("square", RIGHT)], None),
}


def _dataset(mistake: str) -> list[VerifiedImage]:
    labels, _ = MISTAKES[mistake]
    wrong = _image("wrong", labels, [("circle", _nudged(LEFT), 0.9), ("square", _nudged(RIGHT), 0.9)])
    return [_clean(f"clean-{i}") for i in range(6)] + [wrong]


@pytest.mark.parametrize("mistake", ISSUE_KINDS)
def test_a_wrong_label_ranks_first_named_by_its_kind(mistake: str) -> None:
    table = score_label_issues(_dataset(mistake), class_names=CLASSES)

    assert list(table.columns) == list(ISSUE_COLUMNS) and table.dtypes.astype(str).to_dict() == ISSUE_COLUMNS
    first = table.iloc[0]
    assert (first["image_id"], first["rank"], first["issue"]) == ("wrong", 1, mistake)
    assert bool(first["suspect"]) and first["issue_kinds"].split(",")[0] == mistake
    assert first[mistake] < 0.5 and first["label_quality"] < 0.8
    clean = table[table["image_id"] != "wrong"]
    assert not clean["suspect"].any() and (clean["issue"] == "").all()
    assert (clean["label_quality"] > 0.9).all()
    assert list(table["rank"]) == list(range(1, len(table) + 1))
    assert table["label_quality"].is_monotonic_increasing


def test_the_same_images_give_the_same_table_in_any_order() -> None:
    images = _dataset("swapped") + _dataset("overlooked")[:-1]
    images = list({image.image_id: image for image in images}.values())
    first = score_label_issues(images, class_names=CLASSES)
    again = score_label_issues(list(reversed(images)), class_names=CLASSES)
    pd.testing.assert_frame_equal(first, again)


def test_predictions_below_the_confidence_thresholds_are_no_evidence() -> None:
    """cleanlab's default (0.95) sees neither a missed object nor a wrong class among predictions
    at 0.9; the project's default (0.7) sees both."""
    images = _dataset("overlooked")[:-1] + [
        _image("missed", [("circle", LEFT)], [("circle", _nudged(LEFT), 0.9), ("square", _nudged(RIGHT), 0.9)]),
        _image("swapped", [("square", LEFT)], [("circle", _nudged(LEFT), 0.9)]),
    ]
    strict = score_label_issues(images, class_names=CLASSES, high_probability_threshold=0.95)
    assert not strict["suspect"].any()
    found = score_label_issues(images, class_names=CLASSES).set_index("image_id")
    assert found.loc["missed", "issue"] == "overlooked" and found.loc["swapped", "issue"] == "swapped"


def test_scores_are_cleanlabs_at_its_own_thresholds() -> None:
    """At cleanlab's thresholds (0.95 and 0.5), the per-kind scores aggregated here give exactly
    ``rank.get_label_quality_scores``; and the shared inputs computed here are cleanlab's own."""
    from cleanlab.internal.constants import ALPHA
    from cleanlab.object_detection import rank

    images = [
        _clean("clean-0", 0.97),
        _clean("clean-1", 0.6),
        _image("missed", [("circle", LEFT)], [("circle", _nudged(LEFT), 0.97), ("square", RIGHT, 0.99)]),
        _image("swapped", [("square", LEFT)], [("circle", LEFT, 0.98), ("triangle", RIGHT, 0.3)]),
        _image("shifted", [("circle", NormBox(0.31, 0.31, 0.2, 0.2))], [("circle", LEFT, 0.8)]),
        _image("nothing predicted", [("circle", LEFT), ("square", RIGHT)], []),
        _image("nothing labelled", [], [("circle", LEFT, 0.99)]),
        _image("empty", [], []),
    ]
    labels, predictions = cleanlab_inputs(images, CLASSES)

    expected = rank.get_label_quality_scores(labels, predictions, verbose=False)
    ours = label_quality(
        kind_scores(labels, predictions, high_probability_threshold=0.95, low_probability_threshold=0.5)
    )
    np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-300)
    assert expected[2] < 0.01 and expected[3] < 0.5 and expected[4] < 0.8  # the three mistakes were seen

    theirs = rank._get_valid_inputs_for_compute_scores(ALPHA, labels, predictions)
    for mine, cleanlab in zip(auxiliary_inputs(labels, predictions), theirs, strict=True):
        for key, value in cleanlab.items():
            np.testing.assert_allclose(np.ravel(mine[key]), np.ravel(value), rtol=1e-12, err_msg=key)


def test_bad_input_is_refused_and_nothing_to_score_is_an_empty_table() -> None:
    empty = score_label_issues([], class_names=CLASSES)
    assert empty.empty and empty.dtypes.astype(str).to_dict() == ISSUE_COLUMNS
    with pytest.raises(ValueError, match="'hexagon' is not in the class list"):
        score_label_issues([_image("a", [("hexagon", LEFT)], [])], class_names=CLASSES)
    with pytest.raises(ValueError, match="appears twice"):
        score_label_issues([_clean("a"), _clean("a")], class_names=CLASSES)
    with pytest.raises(ValueError, match="issue_threshold"):
        score_label_issues([_clean("a")], class_names=CLASSES, issue_threshold=1.5)


def test_open_suspects_are_the_worst_not_sent_yet() -> None:
    table = score_label_issues(
        [*_dataset("overlooked")[:-1], *(_image(f"wrong-{kind}", *_wrong(kind)) for kind in ISSUE_KINDS)],
        class_names=CLASSES,
    )
    worst = list(table.loc[table["suspect"], "image_id"])
    assert len(worst) == 3
    assert open_suspects(table, set(), 2) == worst[:2]
    assert open_suspects(table, {worst[0]}, 5) == worst[1:]  # non-suspects never come back
    assert open_suspects(table, set(worst), 5) == [] and open_suspects(table, set(), 0) == []
    with pytest.raises(ValueError, match="k must be >= 0"):
        open_suspects(table, set(), -1)


def _wrong(kind: str) -> tuple[list, list]:
    return MISTAKES[kind][0], [("circle", _nudged(LEFT), 0.9), ("square", _nudged(RIGHT), 0.9)]


# --- which predictions judge an image -------------------------------------------------------

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _at(hours: int) -> str:
    return (T0 + timedelta(hours=hours)).isoformat()


def _frame(rows: list[dict], columns: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(columns)).astype(columns)


def _sent(batch_id: str, image_id: str, hours: int, *, gold: bool = False, spot_check: bool = False) -> dict:
    return {
        "batch_id": batch_id,
        "image_id": image_id,
        "position": 0,
        "score": 0.5,
        "strategy": "random",
        "model_version": "m",
        "is_gold": gold,
        "is_spot_check": spot_check,
        "by_uncertainty": False,
        "is_re_review": False,
        "annotators": 1,
        "created_at": _at(hours),
        "run_id": "r",
    }


def test_each_image_is_judged_by_the_last_batch_that_sent_it_out_before_it_was_verified() -> None:
    """``first``: sent once. ``requeued``: sent in a quarantined batch, then again. ``spot``:
    auto-accepted, then spot-checked (every model after its acceptance may have trained on it).
    ``rereviewed``: verified, then sent for re-review and merged again: judged by its first
    review's predictions. ``known``: a gold image."""
    batches = _frame(
        [
            _sent("b0", "requeued", 0),
            _sent("b1", "first", 1),
            _sent("b1", "requeued", 1),
            _sent("b1", "rereviewed", 1),
            _sent("b1", "known", 1, gold=True),
            _sent("b2", "spot", 3, spot_check=True),
            _sent("b3", "rereviewed", 5),
        ],
        BATCH_COLUMNS,
    )
    merges = _frame(
        [
            {"merge_id": "b1", "run_id": "r", "merged_at": _at(2)},
            {"merge_id": "b2", "run_id": "r", "merged_at": _at(4)},
            {"merge_id": "b3", "run_id": "r", "merged_at": _at(6)},
        ],
        MERGE_COLUMNS,
    )
    images = _frame(
        [
            {"image_id": "first", "source": "human", "merge_id": "b1", "retired_by": ""},
            {"image_id": "requeued", "source": "human", "merge_id": "b1", "retired_by": ""},
            {"image_id": "rereviewed", "source": "human", "merge_id": "b1", "retired_by": "b3"},
            {"image_id": "known", "source": "gold", "merge_id": "b1", "retired_by": ""},
            {"image_id": "spot", "source": "auto_accepted", "merge_id": "b1", "retired_by": "b2"},
            {"image_id": "spot", "source": "human", "merge_id": "b2", "retired_by": ""},
            {"image_id": "rereviewed", "source": "human", "merge_id": "b3", "retired_by": ""},
        ],
        VERIFIED_IMAGE_COLUMNS,
    )
    assert prediction_batches(images, merges, batches) == {"first": "b1", "requeued": "b1", "rereviewed": "b1"}


def _task(image_id: str, model_version: str, boxes: list[tuple[str, NormBox, float]]) -> dict:
    pre_labels = tuple(
        PreLabel(f"{image_id}-{i}", image_id, name, box, confidence, (confidence,), model_version)
        for i, (name, box, confidence) in enumerate(boxes)
    )
    image = ReviewImage(image_id, f"/data/local-files/?d={image_id}.png", SIZE, SIZE, 0.5, pre_labels)
    return review_task(image, batch_id="b1", model_version=model_version, pre_label_run_id="run-1")


def test_records_take_the_exported_predictions_and_skip_images_no_model_saw() -> None:
    images = _frame(
        [
            {"image_id": image_id, "source": "human", "merge_id": "b1", "retired_by": ""}
            for image_id in ("seen", "cold", "empty")
        ],
        VERIFIED_IMAGE_COLUMNS,
    )
    row = {column: "" for column, dtype in LABEL_COLUMNS.items() if dtype == "str"}
    labels = _frame(
        [
            {**row, "image_id": "seen", "class_name": "circle", **vars(LEFT), "source": "human", "confidence": 0.9},
            {**row, "image_id": "seen", "class_name": "square", **vars(RIGHT), "retired_by": "b0", "confidence": 0.9},
        ],
        LABEL_COLUMNS,
    )
    exported = {
        "b1": [
            _task("seen", "model-v1", [("circle", LEFT, 0.9), ("square", RIGHT, 0.4)]),
            _task("cold", "", []),  # a cold start's seed round: no model existed
            _task("empty", "model-v1", []),
        ]
    }
    records = verified_images(images, labels, {"seen": "b1", "cold": "b1", "empty": "b1"}, exported)

    assert [record.image_id for record in records] == ["empty", "seen"]
    empty, seen = records
    assert (seen.width, seen.height, seen.model_version, seen.review_batch_id, seen.merge_id) == (
        SIZE,
        SIZE,
        "model-v1",
        "b1",
        "b1",
    )
    assert [name for name, _ in seen.labels] == ["circle"]  # retired rows are not judged
    assert [(p.class_name, p.confidence) for p in seen.predictions] == [("circle", 0.9), ("square", 0.4)]
    assert vars(seen.predictions[0].box) == pytest.approx(vars(LEFT))
    assert empty.labels == () and empty.predictions == ()


# --- the asset, over a real merge ---------------------------------------------------------

BATCH = "batch-label-issues"


def _merged_workdir(root: Path) -> LabelStore:
    """A batch of 8 images sent out with two confident predictions each (a circle and a square),
    answered by a reviewer who accepts them, but for one image where the square is left out and
    one where the circle is called a square; then merged by the real merge assets."""
    store = LabelStore(workdir=str(root))
    store.set_class_names(CLASSES)
    ids = [f"img-{i}" for i in range(6)] + ["missed", "swapped"]
    tasks = [
        review_task(
            ReviewImage(
                image_id,
                f"/data/local-files/?d=cleaned_images/files/{image_id}.png",
                SIZE,
                SIZE,
                0.5,
                (
                    PreLabel(f"{image_id}-0", image_id, "circle", LEFT, 0.9, (0.9, 0.05, 0.05), "model-v1"),
                    PreLabel(f"{image_id}-1", image_id, "square", RIGHT, 0.85, (0.1, 0.85, 0.05), "model-v1"),
                ),
            ),
            batch_id=BATCH,
            model_version="model-v1",
            pre_label_run_id="run-1",
        )
        for image_id in ids
    ]
    EXCHANGE.export(store.root, BATCH, tasks)
    store.write(
        REVIEW_BATCHES,
        _frame(
            [{**_sent(BATCH, image_id, 0), "created_at": ANSWERED_AT.isoformat()} for image_id in ids], BATCH_COLUMNS
        ),
    )
    answered = []
    for index, task in enumerate(tasks):
        regions = copy.deepcopy(task["predictions"][0]["result"])
        for region in regions:
            region.pop("score")
        if task["data"]["image_id"] == "missed":
            regions = regions[:1]
        if task["data"]["image_id"] == "swapped":
            regions[0]["value"]["rectanglelabels"] = ["square"]
        stamp = (ANSWERED_AT + timedelta(seconds=30 * index)).isoformat().replace("+00:00", "Z")
        annotation = {
            "id": index + 1,
            "completed_by": {"id": 1, "email": "reviewer-1"},
            "result": regions,
            "was_cancelled": False,
            "created_at": stamp,
            "updated_at": stamp,
        }
        answered.append({**task, "id": index + 1, "annotations": [annotation]})
    atomic.write_json(EXCHANGE.received_file(store.root, BATCH), answered)
    merge = dg.materialize(
        [review_annotations, verified_labels],
        run_config=merge_run_config(BATCH),
        resources={"store": store, "exchange": EXCHANGE, "snapshots": SnapshotStore()},
    )
    assert merge.success
    return store


def test_the_asset_lists_the_reviewers_mistakes_and_is_idempotent(tmp_path: Path) -> None:
    store = _merged_workdir(tmp_path / "work")
    resources = {"store": store, "exchange": EXCHANGE}

    result = dg.materialize([label_issues], resources=resources)

    suspects = pd.read_parquet(store.root / "label_issues" / "suspects.parquet")
    assert list(suspects["image_id"]) == ["missed", "swapped"]
    assert list(suspects["issue"]) == ["overlooked", "swapped"]
    assert set(suspects["review_batch_id"]) == {BATCH} and set(suspects["model_version"]) == {"model-v1"}
    scores = pd.read_parquet(store.root / "label_issues" / "scores.parquet")
    assert len(scores) == 8 and list(scores["rank"]) == list(range(1, 9))
    metadata = result.asset_materializations_for_node("label_issues")[0].metadata
    assert (metadata["human_images"].value, metadata["images_scored"].value, metadata["suspects"].value) == (8, 8, 2)
    assert metadata["images_unscored"].value == 0
    assert (metadata["suspects_overlooked"].value, metadata["suspects_swapped"].value) == (1, 1)
    assert metadata["suspects_badly_located"].value == 0
    assert "| 1 | `missed` |" in metadata["top_suspects"].value

    before = {
        name: (store.root / "label_issues" / name).read_bytes() for name in ("scores.parquet", "suspects.parquet")
    }
    dg.materialize([label_issues], resources=resources)
    after = {name: (store.root / "label_issues" / name).read_bytes() for name in before}
    assert after == before


def test_the_asset_is_requested_after_each_merge() -> None:
    """``AutomationCondition.eager``, as ``label_issues_sensor`` evaluates it: nothing before the
    first verified labels, one request per new ``verified_labels`` materialisation, none while
    nothing changes."""
    from labeling_dag.definitions import defs

    instance = dg.DagsterInstance.ephemeral()
    key = dg.AssetKey("label_issues")
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    assert result.total_requested == 0
    for _ in range(2):
        instance.report_runless_asset_event(dg.AssetMaterialization("verified_labels"))
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
        assert result.total_requested == 1 and result.get_num_requested(key) == 1
        instance.report_runless_asset_event(dg.AssetMaterialization("label_issues"))
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
        assert result.total_requested == 0
