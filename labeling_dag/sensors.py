"""Sensors close the loop: review comes back → merge; labels grew → retrain; model promoted → re-prelabel.

The asset graph stays a DAG (pre_labels reads the registry's current model instead of
depending on ``current_model``); these sensors are the explicit back edges of the cycle.
Each one polls cheaply, keeps its state in the cursor and keys its runs so that a tick
repeated or retried never launches the same work twice.
"""

import json

import dagster as dg

from labeling_dag.jobs import merge_review, prelabel_and_select, retrain
from labeling_dag.model_registry import ModelRegistry
from labeling_dag.resources.loop_policy import LoopPolicy
from labeling_dag.resources.label_studio import ReviewBackendError
from labeling_dag.resources.review_exchange import FileReviewExchange, ReviewBackend
from labeling_dag.resources.storage import LabelStore
from labeling_dag.review_intake import judge_review_file

PRELABEL_STEPS = [dg.AssetKey("pre_labels"), dg.AssetKey("uncertainty_scores"), dg.AssetKey("review_batch")]


@dg.sensor(job=merge_review, minimum_interval_seconds=10, default_status=dg.DefaultSensorStatus.RUNNING)
def review_complete_sensor(
    context: dg.SensorEvaluationContext, store: LabelStore, exchange: FileReviewExchange, review: ReviewBackend
) -> dg.SensorResult:
    """Launch the merge of every review batch that came back complete; quarantine bad files.

    Batches completed in the labelling tool are first delivered into the inbox, so they pass
    the same checks as a file dropped there by hand.
    """
    requested = set(json.loads(context.cursor)) if context.cursor else set()
    problems = []
    try:
        for batch in review.collect(store.root, open_batches=exchange.open_batches(store.root)):
            exchange.deliver(store.root, batch)
    except ReviewBackendError as error:
        problems.append(f"review backend: {error}")
        context.log.warning(problems[-1])
    for file in exchange.inbox_files(store.root):
        verdict = judge_review_file(
            file,
            exported_tasks=lambda batch: exchange.exported_tasks(store.root, batch)
            if exchange.outbox_file(store.root, batch).exists()
            else None,
            already_received=lambda batch: exchange.received_file(store.root, batch).exists(),
            class_names=store.class_names(),
        )
        if verdict.accepted:
            exchange.receive(store.root, file, verdict.batch_id)
        else:
            moved = exchange.quarantine(store.root, file, verdict.problem)
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
    return dg.SensorResult(skip_reason=dg.SkipReason("; ".join(problems) or "no completed review batch in the inbox"), cursor=cursor)


def merge_run_config(batch_id: str) -> dict:
    """Run config of the merge job for one returned batch."""
    return {"ops": {"review_annotations": {"config": {"batch_id": batch_id}}, "verified_labels": {"config": {"batch_id": batch_id}}}}


@dg.sensor(jobs=[retrain, prelabel_and_select], minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def retraining_sensor(context: dg.SensorEvaluationContext, store: LabelStore, policy: LoopPolicy) -> dg.SensorResult | dg.SkipReason:
    """After each merge: retrain if the verified labels grew by ``retrain_min_new_boxes``
    since the current model's training data, otherwise send out the next review batch."""
    event = context.instance.get_latest_materialization_event(dg.AssetKey("verified_labels"))
    if event is None:
        return dg.SkipReason("no verified labels yet")
    metadata = event.asset_materialization.metadata
    snapshot, boxes = metadata["dvc_snapshot"].value, int(metadata["verified_boxes"].value)
    if snapshot == context.cursor:
        return dg.SkipReason(f"verified labels {snapshot} already considered")
    model = ModelRegistry(store.root).current()
    if model is not None and model.training_snapshot == snapshot:
        # Retrained on exactly these labels already (e.g. by run-loop before a daemon started).
        return dg.SensorResult(skip_reason=dg.SkipReason(f"model {model.model_version[:12]} was trained on {snapshot}"), cursor=snapshot)
    trained_on = int(model.metrics.get("training_boxes", 0)) if model else 0
    if boxes - trained_on < policy.retrain_min_new_boxes:
        context.log.info(f"{boxes - trained_on} new verified boxes < {policy.retrain_min_new_boxes}: next batch, same model")
        request = dg.RunRequest(run_key=f"next-batch-{snapshot}", job_name=prelabel_and_select.name, asset_selection=[dg.AssetKey("review_batch")])
    else:
        request = dg.RunRequest(run_key=f"retrain-{snapshot}", job_name=retrain.name, tags={"labeling/training_snapshot": snapshot})
    return dg.SensorResult(run_requests=[request], cursor=snapshot)


@dg.sensor(job=prelabel_and_select, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def model_promoted_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    """When a new model becomes current, pre-label what is not verified yet and pick the next batch."""
    event = context.instance.get_latest_materialization_event(dg.AssetKey("current_model"))
    if event is None:
        return dg.SkipReason("no model promoted yet")
    version = event.asset_materialization.metadata["model_version"].value
    if version == context.cursor:
        return dg.SkipReason(f"model {version[:12]} already pre-labelled the pool")
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=f"prelabel-{version}", asset_selection=PRELABEL_STEPS, tags={"labeling/model_version": version})],
        cursor=version,
    )



@dg.run_failure_sensor(
    monitored_jobs=[merge_review, retrain], request_job=prelabel_and_select, default_status=dg.DefaultSensorStatus.RUNNING
)
def loop_continues_sensor(context: dg.RunFailureSensorContext) -> dg.RunRequest:
    """Keep the loop going when a gate says no: a batch quarantined for poor gold accuracy
    (its images return to the pool) or a model refused promotion (the current one stays).
    The next review batch is drawn from the current model's scores."""
    return dg.RunRequest(run_key=f"after-failed-{context.dagster_run.run_id}", asset_selection=[dg.AssetKey("review_batch")])
