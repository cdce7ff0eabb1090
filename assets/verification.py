"""Stages 6–7: a returned review batch is checked, then merged into the verified labels.

A revision of a merged batch (``<batch_id>.r<n>``: tasks edited in the labelling tool after the
merge) goes the same way; it covers only the images it holds, and takes their gold and
spot-check flags from its batch.
"""

import json
from collections import Counter
from dataclasses import asdict
from datetime import UTC, datetime
from functools import partial

import dagster as dg
import pandas as pd
from labeling_dag.resources.review_exchange import FileReviewExchange
from labeling_dag.resources.snapshots import SnapshotStore
from labeling_dag.resources.storage import LabelStore
from pydantic import Field

from labeling_dag import atomic
from labeling_dag.calibration import sample_spot_checks
from labeling_dag.cleaning import pool_images
from labeling_dag.consensus import agreement, dispute_rows, latest_per_reviewer, merge_annotations, pairwise_kappa
from labeling_dag.contracts import (
    CLEANED,
    DISPUTES,
    EDITS,
    EFFORT,
    GOLD_LABELS,
    LABELS,
    MERGE_COLUMNS,
    MERGES,
    PRE_LABEL_BOXES,
    PRE_LABELS,
    QUALITY,
    RETURNED,
    REVIEW_ANNOTATIONS,
    REVIEW_BATCH,
    REVIEW_BATCHES,
    SPOT_CHECK_COLUMNS,
    SPOT_CHECKS,
    VERIFIED_IMAGES,
    VERIFIED_LABELS,
)
from labeling_dag.formats.label_studio import parse_all_annotations, parse_export, required_annotations
from labeling_dag.human_time import ReviewCosts, edit_mix, effort_rows
from labeling_dag.merge import (
    active,
    auto_accepted_rows,
    calibration_from_edits,
    edit_rows,
    gold_rows,
    human_rows,
    image_gate_from_edits,
    merge_verified,
    quality_rows,
    returned_rows,
    verified_image_rows,
    with_agreement,
)
from labeling_dag.model_registry import ModelRegistry
from labeling_dag.review_selection import (
    calibration_evidence,
    pending_batches,
    quarantined_batches,
    quarantined_reviewers,
)
from labeling_dag.revisions import split_revision

_COSTS = ReviewCosts()


class ReviewCostConfig(dg.Config):
    """Seconds per review action (:class:`labeling_dag.human_time.ReviewCosts`, defaults cited there)."""

    verify_box: float = Field(default=_COSTS.verify_box, ge=0.0, allow_inf_nan=False)
    adjust_box: float = Field(default=_COSTS.adjust_box, ge=0.0, allow_inf_nan=False)
    relabel_box: float = Field(default=_COSTS.relabel_box, ge=0.0, allow_inf_nan=False)
    delete_box: float = Field(default=_COSTS.delete_box, ge=0.0, allow_inf_nan=False)
    draw_box: float = Field(default=_COSTS.draw_box, ge=0.0, allow_inf_nan=False)
    per_image: float = Field(default=_COSTS.per_image, ge=0.0, allow_inf_nan=False)


class ReviewIntakeConfig(dg.Config):
    """Which returned batch to take in, the gold accuracy and the agreement a batch must reach to
    be merged, and the prices of review actions that its human time is counted in.

    Gold accuracy is tp / (tp + fp + fn) over the gold boxes, so one box drawn with the wrong
    class counts twice; with the usual handful of gold items per batch, 0.7 lets a careful
    reviewer's single slip through and stops a careless one. Where several annotators labelled
    the same images, their Cohen's kappa on matched boxes must reach ``min_kappa`` (0.6: the
    lower bound of "substantial" agreement, Landis & Koch 1977) and the share of boxes both drew
    ``min_box_agreement``; careful annotators (2 % of boxes wrong) score about 0.98 on both.
    """

    batch_id: str
    min_gold_accuracy: float = Field(default=0.7, ge=0.0, le=1.0)
    min_kappa: float = Field(default=0.6, ge=-1.0, le=1.0)
    min_box_agreement: float = Field(default=0.8, ge=0.0, le=1.0)
    review_costs: ReviewCostConfig = ReviewCostConfig()


@dg.asset(group_name="labeling", deps=[REVIEW_BATCH.key], kinds={"labelstudio"})
def review_annotations(
    context: dg.AssetExecutionContext, config: ReviewIntakeConfig, store: LabelStore, exchange: FileReviewExchange
) -> dg.MaterializeResult:
    """What reviewers did to each box of a returned batch, and how they scored on gold items."""
    batch_id = config.batch_id
    tasks = json.loads(exchange.received_file(store.root, batch_id).read_text())
    class_names = store.class_names()
    latest = parse_export(tasks, class_names=class_names, expected_batch_id=batch_id)
    everyone = parse_all_annotations(tasks, class_names=class_names, expected_batch_id=batch_id)
    batch = store.read(REVIEW_BATCHES)
    batch = batch[batch["batch_id"] == split_revision(batch_id)[0]]

    gold_ids = set(batch.loc[batch["is_gold"], "image_id"])
    exported = exchange.exported_tasks(store.root, batch_id)
    edits_of = partial(
        edit_rows,
        exported=exported,
        batch_id=batch_id,
        gold_ids=gold_ids,
        spot_check_ids=set(batch.loc[batch["is_spot_check"], "image_id"]),
    )
    gold = store.read(GOLD_LABELS)
    quality = quality_rows(
        everyone, gold, batch_id=batch_id, min_gold_accuracy=config.min_gold_accuracy, run_id=context.run_id
    )
    # The gold gate decides per reviewer: each task keeps the annotations of reviewers who passed,
    # merged by consensus where several did; only those become the batch's edits (the merge's
    # labels, calibration evidence) and its returned images. A task that only quarantined
    # reviewers answered goes back to the pool, one its reviewers disagreed on to adjudication.
    failed_reviewers = sorted(reviewer for _, reviewer in quarantined_reviewers(quality))
    trusted = [annotation for annotation in everyone if annotation.reviewer not in failed_reviewers]
    # Consensus and agreement are for the tasks that asked for several annotators; on any other
    # task (and in a revision) a later annotation is a correction, and the latest wins.
    asked = {task["data"]["image_id"] for task in exported if required_annotations(task) > 1}
    shared = asked if split_revision(batch_id)[0] == batch_id else set()
    quality = with_agreement(
        quality,
        [s for s in agreement([a for a in everyone if a.image_id in shared]) if s.reviewer != "*"]
        + [s for s in agreement([a for a in trusted if a.image_id in shared]) if s.reviewer == "*"],
        min_kappa=config.min_kappa,
        min_box_agreement=config.min_box_agreement,
    )
    merged, settled = (
        merge_annotations(trusted, shared=shared) if batch_id not in quarantined_batches(quality) else ([], [])
    )
    disputed = [outcome for outcome in settled if outcome.disputed and outcome.image_id not in gold_ids]
    edits = edits_of(merged)
    returned = returned_rows(merged, batch_id=batch_id)
    # Human time is what every reviewer spent, quarantined or not: every one's look and edits.
    looked = [annotation for by in latest_per_reviewer(everyone).values() for annotation in by.values()]
    done = edits_of(looked)
    effort = effort_rows(
        batch_id,
        [annotation.image_id for annotation in latest],
        done,
        _measured_seconds(everyone),
        gold_ids=gold_ids,
        costs=ReviewCosts(**config.review_costs.model_dump()),
        looks=Counter(annotation.image_id for annotation in looked),
    )
    tables = (
        (EDITS, edits),
        (QUALITY, quality),
        (RETURNED, returned),
        (EFFORT, effort),
        (DISPUTES, dispute_rows(disputed, batch_id=batch_id)),
    )
    # Read-modify-write of tables shared by every batch: two intakes at once would keep only one's rows.
    with store.locked(REVIEW_ANNOTATIONS.folder):
        for table, rows in tables:
            kept = store.read(table)
            store.write(table, pd.concat([kept[kept["batch_id"] != batch_id], rows], ignore_index=True))

    kappas = {f"{a} vs {b}": round(k, 4) for (a, b), k in pairwise_kappa(everyone).items()}
    by_reviewer = quality.set_index("reviewer")["gold_accuracy"].round(4).to_dict()
    batch_row = quality[quality["reviewer"] == "*"].iloc[0]
    return dg.MaterializeResult(
        metadata={
            "batch_id": batch_id,
            "tasks": len(latest),
            "reviewers": dg.MetadataValue.json(sorted({a.reviewer for a in everyone})),
            "boxes_reviewed": int((done["edit_kind"] != "added").sum()),
            "boxes_edited": int((~done["edit_kind"].isin(["accepted"])).sum()),
            **{f"edits_{kind}": int(count) for kind, count in done["edit_kind"].value_counts().items()},
            "gold_tasks": int(quality.loc[quality["reviewer"] == "*", "gold_tasks"].iloc[0]),
            "gold_accuracy": dg.MetadataValue.json({k: (None if pd.isna(v) else v) for k, v in by_reviewer.items()}),
            "cohen_kappa": dg.MetadataValue.json(kappas),
            "quarantined": batch_id in quarantined_batches(quality),
            "quarantined_reviewers": dg.MetadataValue.json(failed_reviewers),
            "tasks_merged": len(merged),
            "images_with_consensus": len(settled),
            "images_disputed": len(disputed),
            **{name: _figure(batch_row[name]) for name in ("kappa", "mean_iou", "box_agreement")},
            "agreement_by_reviewer": dg.MetadataValue.json(_agreement_by_reviewer(quality)),
            **_effort_metadata(effort, done),
        }
    )


def _figure(value: float) -> float | None:
    return None if pd.isna(value) else round(float(value), 4)


def _agreement_by_reviewer(quality: pd.DataFrame) -> dict[str, dict[str, float | None]]:
    """Each reviewer's agreement with the others, for the UI."""
    reviewers = quality[(quality["reviewer"] != "*") & (quality["matched_boxes"] > 0)]
    return {
        row.reviewer: {
            "matched_boxes": int(row.matched_boxes),
            "kappa": _figure(row.kappa),
            "mean_iou": _figure(row.mean_iou),
        }
        for row in reviewers.itertuples()
    }


def _measured_seconds(annotations) -> dict[str, float]:
    """Seconds the labelling tool measured per image (every annotator's ``lead_time``), where it did."""
    measured: dict[str, float] = {}
    for annotation in annotations:
        if annotation.lead_time is not None:
            measured[annotation.image_id] = measured.get(annotation.image_id, 0.0) + annotation.lead_time
    return measured


def _effort_metadata(effort: pd.DataFrame, edits: pd.DataFrame) -> dict[str, object]:
    """Human time of one batch, for the UI's plots batch after batch."""
    measured = effort["measured_seconds"].dropna()
    verified_boxes = int((edits["edit_kind"] != "deleted").sum())
    modelled = float(effort["modelled_seconds"].sum())
    return {
        "human_seconds": round(modelled, 1),
        "human_seconds_measured": round(float(measured.sum()), 1) if len(measured) else None,
        "images_with_measured_time": len(measured),
        "seconds_per_verified_box": round(modelled / verified_boxes, 2) if verified_boxes else None,
        "edit_mix": dg.MetadataValue.json(edit_mix(edits["edit_kind"])),
    }


class VerifyConfig(dg.Config):
    """How far to trust the model: auto-accept targets and spot-check share.

    ``target_precision`` is the share of auto-accepted boxes that must be right;
    ``target_image_accuracy`` the share of auto-accepted images that must be fully right (no
    wrong box and no missing one), judged on at least ``min_image_support`` images humans saw.
    The second guards recall: box precision never sees the objects the model missed. Its default
    is 0.9, not 0.95: reviewers err too (2 % of boxes put about 5 % of perfect images down as
    needing a change), so 0.95 of images sits at the reviewers' own noise floor, while 0.9 of
    images fully right, at two or three boxes an image, keeps box precision and recall near 0.96.
    ``auto_accept`` False sends every image to humans (model-assisted labelling only).
    """

    batch_id: str
    target_precision: float = 0.95
    target_image_accuracy: float = Field(default=0.9, gt=0.0, le=1.0)
    min_support: int = 20
    min_image_support: int = Field(default=10, ge=1)
    auto_accept: bool = True
    spot_check_rate: float = 0.05
    seed: int = 0


@dg.asset(group_name="labeling", deps=[REVIEW_ANNOTATIONS.key, PRE_LABELS.key], kinds={"pandas"})
def verified_labels(
    context: dg.AssetExecutionContext, config: VerifyConfig, store: LabelStore, snapshots: SnapshotStore
) -> dg.MaterializeResult:
    """Human-verified, gold and auto-accepted labels, each with its full provenance."""
    # One merge at a time per workdir: merges of different batches read and rewrite the same
    # tables, so two at once (parallel runs, Celery workers) would drop one's labels.
    with store.locked(VERIFIED_LABELS.folder):
        merge_id = config.batch_id
        base_batch = split_revision(merge_id)[0]
        edits = store.read(EDITS)
        reviewed = edits[(edits["batch_id"] == merge_id) & ~edits["is_gold"]]
        batches = store.read(REVIEW_BATCHES)
        returned = store.read(RETURNED)
        # Every task returned was annotated; an image left without boxes is a verified negative,
        # so the returned images (not the edit rows) say which images were reviewed: all of a
        # batch's, only the edited ones for a revision.
        reviewed_images = batches.loc[
            (batches["batch_id"] == base_batch)
            & ~batches["is_gold"]
            & batches["image_id"].isin(returned.loc[returned["batch_id"] == merge_id, "image_id"]),
            "image_id",
        ]
        labels = store.read(LABELS)
        images = store.read(VERIFIED_IMAGES)
        merges = store.read(MERGES)
        _refuse_out_of_order(merges, merge_id)
        if base_batch != merge_id and base_batch not in set(merges["merge_id"]):
            raise dg.Failure(
                f"verified_labels: {merge_id} revises batch {base_batch}, which was never merged (quarantined?); "
                "its edits cannot replace labels it never brought in"
            )
        before = active(images[images["merge_id"] != merge_id])

        gold = store.read(GOLD_LABELS)
        new_gold = gold[~gold["image_id"].isin(before["image_id"])]
        sources = {image_id: "gold" for image_id in new_gold["image_id"]} | {
            image_id: "human" for image_id in reviewed_images
        }

        model = ModelRegistry(store.root).current()
        auto = store.read(LABELS).iloc[0:0]
        calibration = gate = None
        if model is not None and config.auto_accept:
            evidence = calibration_evidence(edits, batches)
            calibration = calibration_from_edits(
                evidence,
                model_version=model.model_version,
                class_names=model.class_names,
                target_precision=config.target_precision,
                min_support=config.min_support,
            )
            gate = image_gate_from_edits(
                evidence,
                calibration,
                model_version=model.model_version,
                target_accuracy=config.target_image_accuracy,
                min_support=config.min_image_support,
            )
            in_review = set(
                batches.loc[
                    batches["batch_id"].isin(pending_batches(batches, merged=set(merges["merge_id"]) | {merge_id})),
                    "image_id",
                ]
            )
            boxes = store.read(PRE_LABEL_BOXES)
            boxes = boxes[boxes["model_version"] == model.model_version]
            # An image its annotators disagreed on waits for a human to settle it.
            disputed = set(store.read(DISPUTES)["image_id"])
            candidates = (
                set(boxes["image_id"])
                - set(before["image_id"])
                - set(sources)
                - set(gold["image_id"])
                - in_review
                - disputed
            )
            auto = auto_accepted_rows(boxes, candidates, calibration, gate, merge_id=merge_id)
            sources |= {image_id: "auto_accepted" for image_id in auto["image_id"]}

        additions = pd.concat(
            [human_rows(reviewed, merge_id=merge_id), gold_rows(new_gold, merge_id=merge_id), auto], ignore_index=True
        )
        labels, images = merge_verified(
            labels, images, additions, verified_image_rows(sources, merge_id=merge_id), merge_id=merge_id
        )
        spot_checks = store.read(SPOT_CHECKS)
        drawn = sample_spot_checks(sorted(set(auto["image_id"])), rate=config.spot_check_rate, seed=config.seed)
        spot_checks = pd.concat(
            [spot_checks[spot_checks["merge_id"] != merge_id], pd.DataFrame({"image_id": drawn, "merge_id": merge_id})],
            ignore_index=True,
        ).astype(SPOT_CHECK_COLUMNS)
        # A re-merge (only ever of the latest merge) takes the row over: lineage finds a merge's
        # snapshots by this run id, and a run killed before its snapshot left none behind.
        merges = pd.concat(
            [
                merges[merges["merge_id"] != merge_id],
                pd.DataFrame(
                    [{"merge_id": merge_id, "run_id": context.run_id, "merged_at": datetime.now(UTC).isoformat()}]
                ),
            ],
            ignore_index=True,
        ).astype(MERGE_COLUMNS)

        store.write(LABELS, labels)
        store.write(SPOT_CHECKS, spot_checks)
        store.write(MERGES, merges)
        store.write(VERIFIED_IMAGES, images)  # written last: it decides what the merge covered
        current = active(labels)
        pool = pool_images(store.read(CLEANED))
        effort = store.read(EFFORT)
        summary = {
            "verified_images": int(len(active(images))),
            "verified_boxes": int(len(current)),
            **{
                f"boxes_{source}": int((current["source"] == source).sum())
                for source in ("human", "auto_accepted", "gold")
            },
            "pool_images": len(pool),
            "pool_labelled_share": round(len(set(active(images)["image_id"]) & pool) / len(pool), 4) if pool else 0.0,
            "human_seconds_total": round(float(effort["modelled_seconds"].sum()), 1),
        }
        atomic.write_json(store.root / "metrics" / f"{VERIFIED_LABELS.folder}.json", summary)
        snapshot_id = snapshots.snapshot(store.root, VERIFIED_LABELS.folder, run_id=context.run_id)
        thresholds = {} if calibration is None else {k: v for k, v in calibration.thresholds.items()}
        return dg.MaterializeResult(
            metadata={
                **summary,
                "merge_id": merge_id,
                "revision": split_revision(merge_id)[1],
                "new_human_boxes": int((additions["source"] == "human").sum()),
                "new_auto_accepted_images": int(auto["image_id"].nunique()),
                "new_auto_accepted_boxes": len(auto),
                "spot_checks_drawn": len(drawn),
                "auto_accept_thresholds": dg.MetadataValue.json(thresholds),
                "image_gate": dg.MetadataValue.json(None if gate is None else asdict(gate)),
                "model_version": model.model_version if model else "",
                "dvc_snapshot": snapshot_id,
                "path": dg.MetadataValue.path(str(store.root / VERIFIED_LABELS.folder)),
            },
            data_version=dg.DataVersion(snapshot_id),
        )


def _refuse_out_of_order(merges: pd.DataFrame, merge_id: str) -> None:
    """Re-merging is only safe for the latest merge; an older one would rewrite history."""
    ids = list(merges["merge_id"])
    if merge_id in ids and ids[-1] != merge_id:
        raise dg.Failure(
            f"verified_labels: batch {merge_id} was merged before {ids[ids.index(merge_id) + 1 :]}; "
            "re-merging it now would reorder the label history"
        )
