"""Stage 6: a returned review batch is checked: what reviewers did to each box, their gold scores,
their agreement and consensus, and the human time it took.

A revision of a merged batch (``<batch_id>.r<n>``: tasks edited in the labelling tool after the
merge) goes the same way; it covers only the images it holds, and takes their gold and
spot-check flags from its batch.
"""

import json
from collections import Counter
from dataclasses import replace
from functools import partial

import dagster as dg
import pandas as pd
from labeling_dag.resources.review_exchange import FileReviewExchange
from labeling_dag.resources.storage import LabelStore
from pydantic import Field

from labeling_dag.batch_states import quarantined_batches, quarantined_reviewers
from labeling_dag.consensus.agreement import agreement, pairwise_kappa
from labeling_dag.consensus.disputes import dispute_rows
from labeling_dag.consensus.latest import latest_per_reviewer
from labeling_dag.consensus.merging import merge_annotations
from labeling_dag.contracts import (
    DISPUTES,
    EDITS,
    EFFORT,
    GOLD_LABELS,
    QUALITY,
    RETURNED,
    REVIEW_ANNOTATIONS,
    REVIEW_BATCH,
    REVIEW_BATCHES,
)
from labeling_dag.formats.label_studio_export import parse_all_annotations, parse_export, required_annotations
from labeling_dag.human_time import ReviewCosts, edit_mix, effort_rows
from labeling_dag.merge import edit_rows, returned_rows
from labeling_dag.review_quality import quality_rows, with_agreement
from labeling_dag.revisions import split_revision


class ReviewCostConfig(dg.Config):
    """Seconds per review action; unset ones take the workdir modality's prices
    (:class:`labeling_dag.human_time.ReviewCosts` for boxes, ``TEXT_REVIEW_COSTS`` for texts,
    sources cited there)."""

    verify_box: float | None = Field(default=None, ge=0.0, allow_inf_nan=False)
    adjust_box: float | None = Field(default=None, ge=0.0, allow_inf_nan=False)
    relabel_box: float | None = Field(default=None, ge=0.0, allow_inf_nan=False)
    delete_box: float | None = Field(default=None, ge=0.0, allow_inf_nan=False)
    draw_box: float | None = Field(default=None, ge=0.0, allow_inf_nan=False)
    per_image: float | None = Field(default=None, ge=0.0, allow_inf_nan=False)

    def costs(self, defaults: ReviewCosts) -> ReviewCosts:
        """The prices: the ones set here, ``defaults`` for the rest."""
        return replace(defaults, **{name: value for name, value in self.model_dump().items() if value is not None})


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
    read = {"class_names": store.class_names(), "expected_batch_id": batch_id, "interface": store.modality().review}
    latest = parse_export(tasks, **read)
    everyone = parse_all_annotations(tasks, **read)
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
        interface=read["interface"],
    )
    gold = store.read(GOLD_LABELS)
    quality = quality_rows(
        everyone,
        gold,
        batch_id=batch_id,
        min_gold_accuracy=config.min_gold_accuracy,
        run_id=context.run_id,
        whole_item=read["interface"].whole_item,
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
        costs=config.review_costs.costs(store.modality().review_costs),
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
