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
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from labeling_dag.contracts import GOLD_LABELS, REVIEW_BATCHES
from labeling_dag.simulation.loop_measures import RoundRecord, dataset_summary, round_record
from labeling_dag.simulation.loop_settings import LoopSettings


@dataclass(frozen=True)
class JobRequest:
    """One job run the loop asks for: what ``execute_in_process`` is given, run config complete."""

    job_name: str
    run_config: dict
    asset_selection: tuple | None = None
    tags: dict | None = None
    partition_key: str | None = None


@dataclass(frozen=True)
class RunOutcome:
    """What the loop reads back from a finished run, in-process or not (the fields of
    ``ExecuteInProcessResult`` it uses)."""

    run_id: str
    dagster_run: object
    all_events: list
    success: bool


# Runs one job against the instance and returns its outcome. The default runs it in this
# process; the fault suite (bench/faults.py) runs it in a child process it may kill.
JobExecutor = Callable[[LoopSettings, object, JobRequest], RunOutcome]


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
    driver = _Driver(defs, instance, resources, settings, execute or execute_in_this_process, seed_model)

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


class _Driver:
    """Runs jobs and evaluates sensors the way the daemon would, one step at a time."""

    def __init__(
        self, defs, instance, resources, settings: LoopSettings, execute: JobExecutor, seed_model: Path | None
    ) -> None:
        self.defs, self.instance, self.resources = defs, instance, resources
        self.settings, self.execute = settings, execute
        self.seed_model = seed_model  # pre-labels round 0 of a warm start
        self.cursors: dict[str, str | None] = {}
        self.run_keys: set[str] = set()
        self.last_run = None

    def run_job(
        self, job_name: str, *, run_config: dict | None = None, asset_selection=None, tags=None, partition_key=None
    ):
        """Execute a job of the definitions in the instance, with the loop's settings filled in."""
        ops = {**(run_config or {}).get("ops", {})}
        if job_name == "select_review_batch":
            # The first batch is the random seed batch; later ones are the loop's rounds.
            size = self.settings.batch_size if len(self.batches_out()) else self.settings.seed_labels
            ops["review_batch"] = {
                "config": {
                    "size": size,
                    "strategy": self.settings.strategy,
                    "diversity": self.settings.diversity,
                    "cost_aware": self.settings.cost_aware,
                    "seed": self.settings.seed,
                    "overlap_rate": self.settings.overlap_rate,
                    "annotators_per_item": self.settings.annotators_per_item,
                }
            }
        if job_name == "prelabel_batch" and self.seed_model is not None:
            ops["pre_labels"] = {"config": {"seed_model": str(self.seed_model)}}
        if "review_annotations" in ops:
            costs = asdict(self.settings.costs())
            ops["review_annotations"] = {"config": ops["review_annotations"]["config"] | {"review_costs": costs}}
        if "verified_labels" in ops:
            overrides = {
                "target_precision": self.settings.target_precision,
                "target_image_accuracy": self.settings.target_image_accuracy,
                "confidence_level": self.settings.confidence_level,
                "auto_accept": self.settings.auto_accept,
                "seed": self.settings.seed,
            }
            ops["verified_labels"] = {"config": ops["verified_labels"]["config"] | overrides}
        request = JobRequest(
            job_name,
            {"loggers": {"console": {"config": {"log_level": "WARNING"}}}, "ops": ops},
            tuple(asset_selection) if asset_selection else None,
            dict(tags) if tags else None,
            partition_key,
        )
        self.last_run = self.execute(self.settings, self.instance, request)
        _raise_unexpected_failure(self.last_run)
        return self.last_run

    def tick(self, sensor_name: str) -> None:
        import dagster as dg

        sensor = self.defs.resolve_sensor_def(sensor_name)
        context = dg.build_sensor_context(
            instance=self.instance,
            instance_ref=self.instance.get_ref(),
            cursor=self.cursors.get(sensor_name),
            resources=self.resources,
            definitions=self.defs,
        )
        result = sensor.evaluate_tick(context)
        self.cursors[sensor_name] = result.cursor
        for added in result.dynamic_partitions_requests or []:
            self.instance.add_dynamic_partitions(added.partitions_def_name, list(added.partition_keys))
        for request in result.run_requests or []:
            self._launch(request, request.job_name or sensor.job_name, sensor_name)

    def select_when_scored(self) -> None:
        """Tick ``model_promoted_sensor`` until it selects a review batch: its first ticks may
        send stale ingestion batches to be pre-labelled again by the current model."""
        for _ in range(3):
            before = self.last_run
            self.tick("model_promoted_sensor")
            if self.last_run is before or self.last_run.dagster_run.job_name == "select_review_batch":
                return

    def advance(self) -> None:
        """Follow the sensors from the last run until the next review batch is out (or nothing runs).

        merge succeeded → retraining_sensor; retrain succeeded → model_promoted_sensor; any
        merge or retrain run failed at a gate → loop_continues_sensor.
        """
        import dagster as dg

        while self.last_run is not None:
            run, job_name = self.last_run, self.last_run.dagster_run.job_name
            if not run.success and job_name in ("merge_review", "retrain"):
                sensor = self.defs.resolve_sensor_def("loop_continues_sensor")
                failure = next(e for e in run.all_events if e.event_type_value == "PIPELINE_FAILURE")
                context = dg.build_run_status_sensor_context(
                    sensor_name=sensor.name,
                    dagster_event=failure,
                    dagster_instance=self.instance,
                    dagster_run=run.dagster_run,
                ).for_run_failure()
                self._launch(sensor(context), "select_review_batch", sensor.name)
            elif job_name == "merge_review":
                self.tick("retraining_sensor")
            elif job_name == "retrain":
                self.select_when_scored()
            if self.last_run is run or self.last_run.dagster_run.job_name == "select_review_batch":
                return

    def _launch(self, request, job_name: str, sensor_name: str) -> None:
        if request.run_key in self.run_keys:  # the daemon launches one run per key
            return
        self.run_keys.add(request.run_key)
        # The daemon's own tags: a daemon started later on this instance (`make ui`) then
        # recognises these runs by their keys and does not launch them a second time.
        tags = {**request.tags, "dagster/run_key": request.run_key, "dagster/sensor_name": sensor_name}
        self.run_job(
            job_name,
            run_config=request.run_config,
            asset_selection=request.asset_selection,
            tags=tags,
            partition_key=request.partition_key,
        )

    def batches_out(self) -> pd.DataFrame:
        """The review-batch table so far."""

        return self.resources["store"].read(REVIEW_BATCHES)

    def latest_batch(self) -> str | None:
        """The batch exported last, None before the first."""
        batches = self.batches_out()
        return str(batches["batch_id"].iloc[-1]) if len(batches) else None


def _raise_unexpected_failure(result) -> None:
    """A run may fail because a blocking gate said no (a refused model, a quarantined batch);
    any other step failure is a bug or bad input and stops the simulation."""
    for event in result.all_events:
        if event.event_type_value != "STEP_FAILURE":
            continue
        error = event.event_specific_data.error
        if "DagsterAssetCheckFailedError" not in error.to_string() and "Blocking check" not in error.to_string():
            raise RuntimeError(f"run {result.run_id} step {event.step_key} failed: {error.to_string()}")


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
