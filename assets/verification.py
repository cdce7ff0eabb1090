"""Stage 7: a checked review batch is merged into the verified labels, with calibrated
auto-accepts of the images nobody needs to look at.

A revision of a merged batch (``<batch_id>.r<n>``) is merged like a batch of the images it holds.
"""

from dataclasses import asdict
from datetime import UTC, datetime

import dagster as dg
import pandas as pd
from labeling_dag.resources.snapshots import SnapshotStore
from labeling_dag.resources.storage import LabelStore
from pydantic import Field

from labeling_dag import atomic
from labeling_dag.auto_accept import auto_accepted_rows, calibration_from_edits, image_gate_from_edits
from labeling_dag.batch_states import pending_batches
from labeling_dag.calibration.spot_checks import sample_spot_checks
from labeling_dag.calibration_sample import calibration_evidence
from labeling_dag.cleaning import pool_images
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
    RETURNED,
    REVIEW_ANNOTATIONS,
    REVIEW_BATCHES,
    SPOT_CHECK_COLUMNS,
    SPOT_CHECKS,
    VERIFIED_IMAGES,
    VERIFIED_LABELS,
)
from labeling_dag.label_rows import gold_rows, human_rows, verified_image_rows
from labeling_dag.merge import active, merge_verified
from labeling_dag.model_registry import ModelRegistry
from labeling_dag.revisions import split_revision


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
    ``confidence_level`` (None: off) asks both targets of the one-sided Wilson lower bound of the
    judged share at that level, not of the share itself: a few lucky judgements cannot open the
    gate. Worth it where each model is judged on few items, as a text model retrained every round.
    """

    batch_id: str
    target_precision: float = 0.95
    target_image_accuracy: float = Field(default=0.9, gt=0.0, le=1.0)
    min_support: int = 20
    min_image_support: int = Field(default=10, ge=1)
    confidence_level: float | None = Field(default=None, gt=0.5, lt=1.0)
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
                confidence_level=config.confidence_level,
            )
            gate = image_gate_from_edits(
                evidence,
                calibration,
                model_version=model.model_version,
                target_accuracy=config.target_image_accuracy,
                min_support=config.min_image_support,
                confidence_level=config.confidence_level,
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
