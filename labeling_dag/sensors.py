"""Sensors close the loop: new batch → pre-label; review comes back → merge; labels grew → retrain;
model promoted → re-prelabel the stale batches, then select the next review batch.

The asset graph stays a DAG (pre_labels reads the registry's current model instead of
depending on ``current_model``); these sensors are the explicit back edges of the cycle.
Each one polls cheaply, keeps its state in the cursor and keys its runs so that a tick
repeated or retried never launches the same work twice.
"""

import json

import dagster as dg

from labeling_dag.contracts import (
    LABEL_ISSUES,
    PRE_LABELS,
    REVIEW_ANNOTATIONS,
    SCORING_STATE_FILE,
    UNCERTAINTY_SCORES,
    VERIFIED_LABELS,
)
from labeling_dag.ingest_batches import ScoredBatch, stale_batches
from labeling_dag.jobs import merge_review, prelabel_batch, retrain, select_review_batch
from labeling_dag.model_registry import ModelRegistry
from labeling_dag.partitions import ingest_batches
from labeling_dag.resources.loop_policy import LoopPolicy
from labeling_dag.resources.review_exchange import FileReviewExchange, ReviewBackend, ReviewBackendError
from labeling_dag.resources.storage import ImageSource, LabelStore
from labeling_dag.review_intake import judge_review_file

PRELABEL_STEPS = [dg.AssetKey(PRE_LABELS.key), dg.AssetKey(UNCERTAINTY_SCORES.key)]


@dg.sensor(job=prelabel_batch, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def ingest_batch_sensor(context: dg.SensorEvaluationContext, source: ImageSource) -> dg.SensorResult:
    """Turn each new ingestion batch (a sub-folder of the source) into a partition and pre-label it.

    A batch whose files changed since (added, removed, touched) is ingested again: ingestion
    is content-addressed, so only what is new is stored and predicted.
    """
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    batches, problems = source.batches()
    for problem in problems:
        context.log.warning(problem)
    signatures = {batch: source.signature(batch) for batch in batches}
    changed = [batch for batch in batches if seen.get(batch) != signatures[batch]]
    known = set(context.instance.get_dynamic_partitions(ingest_batches.name))
    added = [batch for batch in changed if batch not in known]
    requests = [
        dg.RunRequest(
            run_key=f"ingest-{batch}-{signatures[batch]}", partition_key=batch, tags={"labeling/ingest_batch": batch}
        )
        for batch in changed
    ]
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[ingest_batches.build_add_request(added)] if added else [],
        cursor=json.dumps(seen | signatures, sort_keys=True),
        skip_reason=None if requests else dg.SkipReason("; ".join(problems) or "no new or changed ingestion batch"),
    )


@dg.sensor(job=merge_review, minimum_interval_seconds=10, default_status=dg.DefaultSensorStatus.RUNNING)
def review_complete_sensor(
    context: dg.SensorEvaluationContext, store: LabelStore, exchange: FileReviewExchange, review: ReviewBackend
) -> dg.SensorResult:
    """Launch the merge of every review batch that came back complete; quarantine bad files.

    Batches completed in the labelling tool are first delivered into the inbox, so they pass
    the same checks as a file dropped there by hand; so are the labels of merged batches
    edited there since, as the batch's next revision (``<batch_id>.r<n>``).
    """
    requested = set(json.loads(context.cursor)) if context.cursor else set()
    problems = []
    try:
        for problem in review.deliver_revisions(store, exchange):
            problems.append(f"review backend: {problem}")
            context.log.warning(problems[-1])
        for batch in review.collect(store.root, open_batches=exchange.open_batches(store.root)):
            exchange.deliver(store.root, batch)
    except ReviewBackendError as error:
        problems.append(f"review backend: {error}")
        context.log.warning(problems[-1])
    for file in exchange.inbox_files(store.root):
        verdict = judge_review_file(
            file,
            exported_tasks=lambda batch: (
                exchange.exported_tasks(store.root, batch) if exchange.outbox_file(store.root, batch).exists() else None
            ),
            already_received=lambda batch: exchange.received_file(store.root, batch).exists(),
            class_names=store.class_names(),
            data_root=store.root,
            interface=store.modality().review,
        )
        if verdict.pending:
            continue  # still being written, or taken by another tick: look again next tick
        try:
            if verdict.accepted:
                exchange.receive(store.root, file, verdict.batch_id)
                continue
            moved = exchange.quarantine(store.root, file, verdict.problem)
        except FileNotFoundError:
            continue  # another evaluation of this sensor moved the file first
        problems.append(f"{file}: {verdict.problem} (moved to {moved})")
        context.log.warning(problems[-1])
    # Received files not yet requested include any whose tick died after the move.
    received = exchange.root(store.root) / "received"
    waiting = sorted(p.stem for p in received.glob("*.json")) if received.is_dir() else []
    requests = [
        dg.RunRequest(run_key=batch_id, run_config=merge_run_config(batch_id), tags={"labeling/batch_id": batch_id})
        for batch_id in waiting
        if batch_id not in requested
    ]
    cursor = json.dumps(sorted(requested | {r.run_key for r in requests}))
    if requests:
        return dg.SensorResult(run_requests=requests, cursor=cursor)
    return dg.SensorResult(
        skip_reason=dg.SkipReason("; ".join(problems) or "no completed review batch in the inbox"), cursor=cursor
    )


def merge_run_config(batch_id: str) -> dict:
    """Run config of the merge job for one returned batch."""
    return {
        "ops": {
            REVIEW_ANNOTATIONS.key: {"config": {"batch_id": batch_id}},
            VERIFIED_LABELS.key: {"config": {"batch_id": batch_id}},
        }
    }


@dg.sensor(
    jobs=[retrain, select_review_batch], minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING
)
def retraining_sensor(
    context: dg.SensorEvaluationContext, store: LabelStore, policy: LoopPolicy
) -> dg.SensorResult | dg.SkipReason:
    """After each merge: retrain if the verified labels grew by ``retrain_min_new_boxes``
    since the current model's training data, otherwise send out the next review batch."""
    event = context.instance.get_latest_materialization_event(dg.AssetKey(VERIFIED_LABELS.key))
    if event is None:
        return dg.SkipReason("no verified labels yet")
    metadata = event.asset_materialization.metadata
    snapshot, boxes = metadata["dvc_snapshot"].value, int(metadata["verified_boxes"].value)
    if snapshot == context.cursor:
        return dg.SkipReason(f"verified labels {snapshot} already considered")
    model = ModelRegistry(store.root).current()
    if model is not None and model.training_snapshot == snapshot:
        # Retrained on exactly these labels already (e.g. by run-loop before a daemon started).
        return dg.SensorResult(
            skip_reason=dg.SkipReason(f"model {model.model_version[:12]} was trained on {snapshot}"), cursor=snapshot
        )
    trained_on = int(model.metrics.get("training_boxes", 0)) if model else 0
    if boxes - trained_on < policy.retrain_min_new_boxes:
        context.log.info(
            f"{boxes - trained_on} new verified boxes < {policy.retrain_min_new_boxes}: next batch, same model"
        )
        request = dg.RunRequest(run_key=f"next-batch-{snapshot}", job_name=select_review_batch.name)
    else:
        request = dg.RunRequest(
            run_key=f"retrain-{snapshot}", job_name=retrain.name, tags={"labeling/training_snapshot": snapshot}
        )
    return dg.SensorResult(run_requests=[request], cursor=snapshot)


@dg.sensor(
    jobs=[prelabel_batch, select_review_batch],
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def model_promoted_sensor(context: dg.SensorEvaluationContext, store: LabelStore) -> dg.SensorResult:
    """When the current model changes (or the pool is first scored): pre-label again the batches
    it has not seen, and once every batch is scored with it, select the next review batch.

    A sensor rather than declarative automation: the model version lives in the registry, not in
    an asset's code version or data version that an ``AutomationCondition`` could compare, and the
    review batch must wait for every partition to be scored with the same model, which is a
    condition across partitions of another asset."""
    model = ModelRegistry(store.root).current()
    version = model.model_version if model else ""
    if context.cursor == f"selected:{version}":
        return dg.SensorResult(
            skip_reason=dg.SkipReason(f"batch already selected with model {version[:12] or '(none)'}")
        )
    batches = context.instance.get_dynamic_partitions(ingest_batches.name)
    if not batches:
        return dg.SensorResult(skip_reason=dg.SkipReason("no ingestion batch yet"))
    scored = _scored_batches(store, batches)
    stale = stale_batches(batches, scored, model_version=version)
    if stale:
        # Batches never scored are still in their ingestion run; the others need the new model.
        requests = [
            dg.RunRequest(
                run_key=f"prelabel-{version}-{batch}",
                job_name=prelabel_batch.name,
                partition_key=batch,
                asset_selection=PRELABEL_STEPS,
                tags={"labeling/model_version": version},
            )
            for batch in stale
            if batch in scored
        ]
        return dg.SensorResult(
            run_requests=requests,
            skip_reason=None if requests else dg.SkipReason(f"waiting for {len(stale)} batches to be scored"),
        )
    request = dg.RunRequest(
        run_key=f"select-{version or 'cold-start'}",
        job_name=select_review_batch.name,
        tags={"labeling/model_version": version},
    )
    return dg.SensorResult(run_requests=[request], cursor=f"selected:{version}")


def _scored_batches(store: LabelStore, batches: list[str]) -> dict[str, ScoredBatch]:
    scored = {}
    for batch in batches:
        state = store.root / UNCERTAINTY_SCORES.folder / batch / SCORING_STATE_FILE
        if state.exists():
            scored[batch] = ScoredBatch(**json.loads(state.read_text()))
    return scored


@dg.run_failure_sensor(
    monitored_jobs=[merge_review, retrain],
    request_job=select_review_batch,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def loop_continues_sensor(context: dg.RunFailureSensorContext) -> dg.RunRequest:
    """Keep the loop going when a gate says no: a batch quarantined for poor gold accuracy
    (its images return to the pool) or a model refused promotion (the current one stays).
    The next review batch is drawn from the current model's scores."""
    return dg.RunRequest(run_key=f"after-failed-{context.dagster_run.run_id}")


# Dagster's declarative automation, not a polling sensor: it evaluates the AutomationCondition of
# label_issues (eager: after each new verified_labels) and launches its run. Declared here, on by
# default, rather than left to the default_automation_condition_sensor, which starts switched off.
label_issues_sensor = dg.AutomationConditionSensorDefinition(
    "label_issues_sensor",
    target=dg.AssetSelection.assets(LABEL_ISSUES.key),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Re-rank the verified labels for label errors after each merge (label_issues).",
)
