"""Stage 7c: verified labels that look wrong, ranked for a second look.

Every human-verified image is judged against the predictions a model that never trained on it
made before its review (the review batch's exported tasks): see :mod:`labeling_dag.label_issues`.
Refreshed after each merge by Dagster's declarative automation (``AutomationCondition.eager``,
evaluated by ``label_issues_sensor``); the ``find_label_issues`` job runs it by hand.
"""

import dagster as dg
import pandas as pd
from labeling_dag.resources.review_exchange import FileReviewExchange
from labeling_dag.resources.storage import LabelStore
from pydantic import Field

from labeling_dag.cleanlab_scores import HIGH_PROBABILITY_THRESHOLD, LOW_PROBABILITY_THRESHOLD
from labeling_dag.contracts import (
    ISSUE_SCORES,
    LABEL_ISSUES,
    LABELS,
    MERGES,
    REVIEW_BATCHES,
    SUSPECTS,
    VERIFIED_IMAGES,
    VERIFIED_LABELS,
)
from labeling_dag.issue_evidence import prediction_batches, verified_images
from labeling_dag.label_issues import ISSUE_KINDS, ISSUE_THRESHOLD, score_label_issues, suspects
from labeling_dag.merge import active

TOP_SHOWN = 10


class LabelIssuesConfig(dg.Config):
    """cleanlab's thresholds (:mod:`labeling_dag.label_issues`, defaults measured in bench/label_issues.py)."""

    high_probability_threshold: float = Field(default=HIGH_PROBABILITY_THRESHOLD, ge=0.0, le=1.0)
    low_probability_threshold: float = Field(default=LOW_PROBABILITY_THRESHOLD, ge=0.0, le=1.0)
    issue_threshold: float = Field(default=ISSUE_THRESHOLD, ge=0.0, le=1.0)


@dg.asset(
    group_name="labeling",
    deps=[VERIFIED_LABELS.key],
    kinds={"pandas"},
    automation_condition=dg.AutomationCondition.eager(),
)
def label_issues(
    context: dg.AssetExecutionContext, config: LabelIssuesConfig, store: LabelStore, exchange: FileReviewExchange
) -> dg.MaterializeResult:
    """Human-verified images ranked by cleanlab's label quality, worst first; suspects named by issue kind."""
    # The merge's lock: a merge running meanwhile rewrites these tables one after the other.
    with store.locked(VERIFIED_LABELS.folder):
        images = store.read(VERIFIED_IMAGES)
        labels = store.read(LABELS)
        merges = store.read(MERGES)
    batch_of = prediction_batches(images, merges, store.read(REVIEW_BATCHES))
    exported = {batch_id: exchange.exported_tasks(store.root, batch_id) for batch_id in sorted(set(batch_of.values()))}
    records = verified_images(images, labels, batch_of, exported, store.modality().review)
    scores = score_label_issues(records, class_names=store.class_names(), **config.model_dump())
    found = suspects(scores)
    store.write(ISSUE_SCORES, scores)
    store.write(SUSPECTS, found)

    human = int((active(images)["source"] == "human").sum())
    context.log.info(f"label_issues: {len(found)} suspects among {len(scores)} scored images of {human} human ones")
    return dg.MaterializeResult(
        metadata={
            "human_images": human,
            "images_scored": len(scores),
            # Sent out before any model existed (a cold start's seed round), or verified before any batch sent them out.
            "images_unscored": human - len(scores),
            "suspects": len(found),
            **{f"suspects_{kind}": int((found["issue"] == kind).sum()) for kind in ISSUE_KINDS},
            "models_used": dg.MetadataValue.json(scores["model_version"].str[:12].value_counts().to_dict()),
            "top_suspects": dg.MetadataValue.md(_top_table(found.head(TOP_SHOWN))),
            "path": dg.MetadataValue.path(str(store.root / LABEL_ISSUES.folder / f"{SUSPECTS.name}.parquet")),
        }
    )


def _top_table(top: pd.DataFrame) -> str:
    """The worst suspects as a markdown table for the UI."""
    if top.empty:
        return "No suspects."
    lines = [
        "| rank | image | label quality | issue | kinds | boxes | predicted | review batch |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {row.rank} | `{row.image_id[:12]}` | {row.label_quality:.3f} | {row.issue} | {row.issue_kinds} "
        f"| {row.boxes} | {row.predicted_boxes} | {row.review_batch_id} |"
        for row in top.itertuples()
    ]
    return "\n".join(lines)
