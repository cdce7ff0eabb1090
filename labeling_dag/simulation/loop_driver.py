"""How the simulated loop drives the production definitions: the jobs it asks for, the outcome it
reads back, and the sensors it evaluates the way the daemon would, one step at a time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from labeling_dag.contracts import REVIEW_BATCHES
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


class LoopDriver:
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
