"""``labeling-dag run-loop``: the active-learning loop end to end, with a simulated reviewer.

The train split of a YOLO dataset is the unlabelled pool; only the simulated reviewer reads
its labels. Every round goes through the production definitions: jobs run against a real
Dagster instance, and the sensors' own evaluation functions decide what runs next.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from labeling_dag.contracts import GOLD_LABELS
from labeling_dag.simulation.loop_driver import JobExecutor, JobRequest, LoopDriver, RunOutcome
from labeling_dag.simulation.loop_measures import RoundRecord, dataset_summary, round_record
from labeling_dag.simulation.loop_settings import LoopSettings


def loop_resources(settings: LoopSettings) -> dict[str, object]:
    """The resources of the code location, bound to the simulated loop's workdir and sizes."""
    from labeling_dag.formats.yolo import load_data_yaml
    from labeling_dag.resources.loop_policy import LoopPolicy
    from labeling_dag.resources.review_exchange import FileReviewExchange, FolderReview
    from labeling_dag.resources.snapshots import SnapshotStore
    from labeling_dag.resources.storage import ImageSource, LabelStore
    from labeling_dag.simulation.loop_start import loop_start

    spec = load_data_yaml(settings.dataset)
    # A text pool starts from its zero-shot classifier (_seed_model), never from a detector.
    start = None if settings.modality == "text" else loop_start(settings.seed_model, settings.class_map, spec.names)
    return {
        "store": LabelStore(workdir=str(settings.workdir.resolve())),
        "source": ImageSource(folder=str(spec.train_images)),
        "detector": _item_model(settings),
        "snapshots": SnapshotStore(),
        "exchange": FileReviewExchange(),
        "review": FolderReview(),
        "policy": LoopPolicy(
            validation_dataset=str(settings.dataset.resolve()),
            retrain_min_new_boxes=settings.retrain_min_new_boxes,
            cold_start_epochs=settings.cold_start_epochs,
            fine_tune_epochs=settings.fine_tune_epochs,
            pretrained_weights=str(start.weights) if start and start.kind == "pretrained" else "",
        ),
    }


def _item_model(settings: LoopSettings):
    """The model resource of the pool's modality, sized for the simulation."""
    cache = str(settings.training_cache or "")
    if settings.modality == "text":
        from labeling_dag.resources.text_classifier import TextClassifier

        # Every round predicts the pool again: its texts are embedded once.
        embeddings = cache or str(settings.workdir.resolve() / "embedding_cache")
        functions = str(settings.labeling_functions or "")
        return TextClassifier(seed=settings.seed, embedding_cache=embeddings, labeling_functions=functions)
    from labeling_dag.resources.detector import Detector

    return Detector(imgsz=settings.imgsz, seed=settings.seed, training_cache=cache)


def execute_in_this_process(
    settings: LoopSettings, instance, request: JobRequest, *, run_id: str | None = None
) -> RunOutcome:
    """Run ``request`` here through the production definitions bound to ``settings``."""
    from labeling_dag.definitions import build_definitions

    result = (
        build_definitions(loop_resources(settings))
        .resolve_job_def(request.job_name)
        .execute_in_process(
            run_config=request.run_config,
            instance=instance,
            asset_selection=list(request.asset_selection) if request.asset_selection else None,
            tags=request.tags,
            partition_key=request.partition_key,
            run_id=run_id,
            raise_on_error=False,
        )
    )
    return RunOutcome(result.run_id, result.dagster_run, list(result.all_events), result.success)


def run_outcome(instance, run_id: str) -> RunOutcome:
    """The outcome of a run as the instance recorded it (for a run made by another process)."""
    import dagster as dg

    run = instance.get_run_by_id(run_id)
    if run is None:
        raise KeyError(f"run {run_id} is not in the instance at {instance.root_directory}")
    events = [record.dagster_event for record in instance.all_logs(run_id) if record.dagster_event is not None]
    return RunOutcome(run_id, run, events, run.status == dg.DagsterRunStatus.SUCCESS)


def run_loop(
    settings: LoopSettings,
    *,
    on_round: Callable[[RoundRecord], None] = lambda record: None,
    execute: JobExecutor | None = None,
) -> list[RoundRecord]:
    """Run the seed round and ``settings.rounds`` active-learning rounds; return one record per round.

    ``execute`` runs each job (default: in this process, against the same instance). A seed model
    that cannot start the loop (missing, no detector, a class map that does not fit) raises
    :class:`labeling_dag.simulation.loop_start.SeedModelError` before any job runs.
    """
    import dagster as dg

    from labeling_dag.definitions import build_definitions
    from labeling_dag.formats.yolo import load_data_yaml
    from labeling_dag.resources.storage import LabelStore
    from labeling_dag.workdir_init import InitRequest, init_workdir

    spec = load_data_yaml(settings.dataset)
    seed_model = _seed_model(settings, spec.names)
    resources = loop_resources(settings)
    defs = build_definitions(resources)
    # An instance on disk, as the daemon's: partitioned run requests resolve through its ref.
    if os.environ.get("DAGSTER_HOME"):
        instance = dg.DagsterInstance.get()
    else:
        instance = dg.DagsterInstance.local_temp(tempfile.mkdtemp(prefix="labeling-dag-instance-"))
    store: LabelStore = resources["store"]
    # The workdir's modality and class list, as `labeling-dag init` records them.
    init_workdir(
        InitRequest(
            workdir=store.root,
            classes=spec.names,
            modality=settings.modality,
            class_descriptions=settings.class_descriptions,
        )
    )
    truth = settings.truth()
    _register_gold(store, truth, count=settings.gold_images, seed=settings.seed)
    driver = LoopDriver(defs, instance, resources, settings, execute or execute_in_this_process, seed_model)

    records: list[RoundRecord] = []
    driver.tick("ingest_batch_sensor")
    driver.select_when_scored()
    batch_id = driver.latest_batch()
    while batch_id is not None:
        started = time.perf_counter()
        round_number = len(records)
        _answer_batch(store, resources["exchange"], batch_id, truth, settings, round_number)
        driver.tick("review_complete_sensor")
        driver.advance()
        record = round_record(store, truth, round_number, batch_id, time.perf_counter() - started)
        records.append(record)
        on_round(record)
        batch_id = _next_batch(driver.latest_batch(), batch_id, record, settings)
    return records


def _seed_model(settings: LoopSettings, class_names: tuple[str, ...]) -> Path | None:
    """The detector that pre-labels round 0 of a warm start; None where round 0 is drawn at random
    or, for texts, pre-labelled by the zero-shot model ``init`` registered from the class descriptions."""
    if settings.modality == "text":  # `init` registered its zero-shot first model
        return None
    from labeling_dag.simulation.loop_start import loop_start, warm_seed_model

    start = loop_start(settings.seed_model, settings.class_map, class_names)
    return warm_seed_model(start, class_names, settings.workdir / "seed_model") if start.kind == "warm" else None


def _next_batch(latest: str | None, answered: str, record: RoundRecord, settings: LoopSettings) -> str | None:
    """The batch of the next round, or None to stop: the pool is done (no new batch was
    selected), the round cap is reached or the human-time budget is spent."""
    if latest == answered or (settings.rounds is not None and record.round >= settings.rounds):
        return None
    if settings.max_human_seconds is not None and record.human_seconds >= settings.max_human_seconds:
        return None
    return latest


def _register_gold(store, truth, *, count: int, seed: int) -> None:
    """Known answers for ``count`` pool images, drawn by seed: the gold items mixed into batches."""
    from labeling_dag.contracts import GOLD_COLUMNS

    ids = sorted(truth)
    rng = np.random.default_rng(seed)
    chosen = [ids[i] for i in sorted(rng.choice(len(ids), size=min(count, len(ids)), replace=False))]
    rows = [
        {
            "image_id": image_id,
            "class_name": box.class_name,
            "x": box.box.x,
            "y": box.box.y,
            "w": box.box.w,
            "h": box.box.h,
        }
        for image_id in chosen
        for box in truth[image_id]
    ]
    store.write(GOLD_LABELS, pd.DataFrame(rows, columns=list(GOLD_COLUMNS)).astype(GOLD_COLUMNS))


def _answer_batch(store, exchange, batch_id: str, truth, settings: LoopSettings, round_number: int) -> None:
    """The simulated reviewers answer the batch and drop the export into the inbox.

    Every task gets an annotation of ``reviewer-1``; a task asking for several annotators
    (``data.annotators``) gets one more from each of ``reviewer-2`` on, each with its own mistakes.
    """
    from labeling_dag import atomic
    from labeling_dag.formats.label_studio_export import required_annotations
    from labeling_dag.simulation.simulated_reviewer import MISTAKES, simulate_review

    answered = exchange.exported_tasks(store.root, batch_id)
    for number in range(1, max(map(required_annotations, answered), default=1) + 1):
        wanted = [index for index, task in enumerate(answered) if required_annotations(task) >= number]
        done = simulate_review(
            [answered[index] for index in wanted],
            truth,
            class_names=store.class_names(),
            error_rate=settings.reviewer_error_rate,
            seed=settings.seed * 1000 + round_number + (number - 1) * 1_000_000,
            reviewer=f"reviewer-{number}",
            reviewer_id=number,
            annotated_at=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=round_number, hours=number - 1),
            interface=store.modality().review,
            mistakes=MISTAKES[settings.modality],
        )
        for index, task in zip(wanted, done):
            answered[index] = task
    atomic.write_json(exchange.root(store.root) / "inbox" / f"{batch_id}.json", answered)


def run_and_report(settings: LoopSettings, report: Path) -> dict[str, object]:
    """Run the loop printing a line per round, write the report and its PNG, print the table
    and the dataset's closing lines; return the report's ``dataset`` object."""
    from labeling_dag.simulation.loop_report import format_dataset, format_round, format_table, write_report

    records = run_loop(settings, on_round=lambda record: print(format_round(record, settings.modality), flush=True))
    dataset = dataset_summary(settings)
    png = write_report(records, report, settings, dataset)
    print(format_table(records))
    print(format_dataset(dataset))
    print(f"report: {report}\nplot: {png}")
    return dataset
