"""The cost model of human time (labeling_dag.human_time)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from labeling_dag.contracts import CLEANED
from labeling_dag.human_time import EDIT_KINDS, ReviewCosts, edit_mix, effort_rows, hand_label_seconds, review_seconds


def test_defaults_are_the_published_figures() -> None:
    costs = ReviewCosts()
    assert costs.per_edit == {"accepted": 1.6, "moved": 4.0, "relabelled": 3.0, "deleted": 2.0, "added": 7.0}
    assert costs.per_image == 1.0
    assert set(costs.per_edit) == set(EDIT_KINDS)


@pytest.mark.parametrize("value", [-1.0, math.nan, math.inf, "2", True])
def test_a_price_that_is_not_a_finite_non_negative_number_is_refused(value: object) -> None:
    with pytest.raises(ValueError, match="draw_box"):
        ReviewCosts(draw_box=value)  # type: ignore[arg-type]


def test_review_seconds_price_each_action_and_each_image_once() -> None:
    """img-a: accepted + moved + added = 1.6 + 4.0 + 7.0, plus 1 s to look; img-b: relabelled +
    deleted = 3.0 + 2.0 + 1; img-c was reviewed and had nothing in it: 1 s."""
    images = pd.Series(["img-a", "img-b", "img-a", "img-b", "img-a"])
    kinds = pd.Series(["accepted", "relabelled", "moved", "deleted", "added"])
    seconds = review_seconds(["img-a", "img-b", "img-c"], images, kinds, ReviewCosts())
    assert seconds.to_dict() == pytest.approx({"img-a": 13.6, "img-b": 6.0, "img-c": 1.0})
    assert list(seconds.index) == ["img-a", "img-b", "img-c"]


def test_review_seconds_follow_configured_prices() -> None:
    costs = ReviewCosts(verify_box=0.5, per_image=2.0)
    seconds = review_seconds(["x"], pd.Series(["x", "x"]), pd.Series(["accepted", "accepted"]), costs)
    assert seconds["x"] == pytest.approx(3.0)


def test_review_seconds_refuse_unknown_kinds_and_stray_images() -> None:
    with pytest.raises(ValueError, match="no price"):
        review_seconds(["x"], pd.Series(["x"]), pd.Series(["nudged"]), ReviewCosts())
    with pytest.raises(ValueError, match="not reviewed"):
        review_seconds(["x"], pd.Series(["y"]), pd.Series(["accepted"]), ReviewCosts())


def test_hand_labelling_looks_at_every_image_and_draws_every_box() -> None:
    assert hand_label_seconds(10, 25, ReviewCosts()) == pytest.approx(10 * 1.0 + 25 * 7.0)
    with pytest.raises(ValueError):
        hand_label_seconds(-1, 0, ReviewCosts())


def test_edit_mix_lists_every_kind() -> None:
    assert edit_mix(pd.Series(["accepted", "accepted", "added"])) == {
        "accepted": 2, "moved": 0, "relabelled": 0, "deleted": 0, "added": 1,
    }  # fmt: skip


def test_effort_rows_keep_measured_time_beside_the_modelled() -> None:
    edits = pd.DataFrame({"image_id": ["a", "b"], "edit_kind": ["accepted", "added"]})
    rows = effort_rows("batch-1", ["a", "b", "g"], edits, {"a": 4.5}, gold_ids={"g"}, costs=ReviewCosts())
    assert list(rows["image_id"]) == ["a", "b", "g"]
    assert list(rows["modelled_seconds"]) == pytest.approx([2.6, 8.0, 1.0])
    assert rows["measured_seconds"].iloc[0] == 4.5 and rows["measured_seconds"].iloc[1:].isna().all()
    assert list(rows["is_gold"]) == [False, False, True]
    assert set(rows["batch_id"]) == {"batch-1"}


def test_a_merge_reports_human_seconds_per_batch_and_the_running_total(tmp_path) -> None:
    """Through the real merge assets: three images whose one circle the reviewer relabelled as a
    square cost 3 x (1.0 s look + 3.0 s relabel) = 12 s modelled; Label Studio measured 30 s each.
    verified_labels carries the running total and the share of the pool labelled (3 of 4 images)."""
    import dagster as dg
    from labeling_dag.assets.annotations import review_annotations
    from labeling_dag.assets.verification import verified_labels
    from labeling_dag.resources.snapshots import SnapshotStore
    from labeling_dag.resources.storage import LabelStore

    from labeling_dag.contracts import CLEANED_COLUMNS
    from labeling_dag.sensors import merge_run_config
    from tests.faults.review_files import CLASSES, EXCHANGE, answer, drop, export_batch, tick

    store = LabelStore(workdir=str(tmp_path / "work"))
    store.set_class_names(CLASSES)
    tasks = export_batch(store, "b-cost", images=3)
    cleaned = pd.DataFrame({"image_id": [t["data"]["image_id"] for t in tasks] + ["never-reviewed"]})
    for column, dtype in CLEANED_COLUMNS.items():
        if column != "image_id":
            cleaned[column] = pd.Series([False if dtype == "bool" else 0] * 4).astype(dtype)
    store.write(CLEANED, cleaned.astype(CLEANED_COLUMNS), batch="_root")
    drop(store, "b-cost.json", answer(tasks))
    instance = dg.DagsterInstance.ephemeral()
    assert [r.run_key for r in tick(store, instance).run_requests] == ["b-cost"]

    result = dg.materialize(
        [review_annotations, verified_labels],
        run_config=merge_run_config("b-cost"),
        resources={"store": store, "exchange": EXCHANGE, "snapshots": SnapshotStore()},
        instance=instance,
    )

    assert result.success
    review = result.asset_materializations_for_node("review_annotations")[0].metadata
    assert review["human_seconds"].value == pytest.approx(12.0)
    assert review["human_seconds_measured"].value == pytest.approx(90.0)
    assert review["images_with_measured_time"].value == 3
    assert review["seconds_per_verified_box"].value == pytest.approx(4.0)
    assert review["edit_mix"].value == {"accepted": 0, "moved": 0, "relabelled": 3, "deleted": 0, "added": 0}
    verified = result.asset_materializations_for_node("verified_labels")[0].metadata
    assert verified["human_seconds_total"].value == pytest.approx(12.0)
    assert verified["pool_images"].value == 4
    assert verified["pool_labelled_share"].value == pytest.approx(0.75)
