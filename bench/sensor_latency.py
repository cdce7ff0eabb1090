"""Sensor latency: seconds from a completed review export landing in the inbox to its merge run.

Prepares a workdir the way production would have it (a tiny model pre-labelled a generated
pool; K review batches exported, class list fixed), then starts the real ``dagster dev``
(webserver, daemon, code server) over a temporary ``DAGSTER_HOME`` and waits until the
daemon has finished a first tick of ``review_complete_sensor``. For each batch in turn,
after a random pause of up to one sensor interval (so that drops fall at every phase of
the sensor's cycle, as real exports do, instead of right after a tick), the simulated
reviewer's answer is written into ``exchange/inbox/`` atomically (temp file + rename, as
the README asks of any writer), and the latency is the ``merge_review`` run's
``create_timestamp`` (recorded by the daemon when the sensor's run request becomes a run)
minus the moment of the rename. The next batch is dropped only once that run has finished,
so runs never compete with a measurement for the two cores. The headline is the median.

``retraining_sensor`` is stopped in the instance before ``dagster dev`` starts: after each
merge it would launch a retrain or a next-batch run, which would compete for the cores with
the next measurement and is not what is measured. The other sensors stay on; without a
promoted model or a failed run they request nothing.

The sensor's ``minimum_interval_seconds`` (10) bounds what to expect: a file that arrives
just after a tick waits for the next one, so about half the interval plus one evaluation.

    .venv/bin/python bench/sensor_latency.py            # 3 batches
    .venv/bin/python bench/sensor_latency.py --quick    # 1 batch
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC
from pathlib import Path

from offline import REPO, stay_offline
from processes import stop_process_group
from results import write_result

from labeling_dag.ingest_batches import ROOT_BATCH

BIN = Path(sys.executable).parent
BATCH_SIZE = 5
IMGSZ = 96
EPOCHS = 3  # the model only has to propose boxes of the project's classes; its accuracy is not measured
STARTUP_TIMEOUT_S = 240
RUN_TIMEOUT_S = 240
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=3, help="review batches dropped one after another (K)")
    parser.add_argument("--images", type=int, default=40, help="generated pool images")
    parser.add_argument("--quick", action="store_true", help="1 batch over 20 images (CI)")
    parser.add_argument("--out", type=Path, help="JSON result (default: bench/sensor_latency[.quick].json)")
    args = parser.parse_args(argv)
    if args.quick:
        args.batches, args.images = 1, 20
    if args.batches * BATCH_SIZE > args.images // 2:
        parser.error(f"--images must hold at least twice {args.batches} batches of {BATCH_SIZE}")
    args.out = args.out or Path(__file__).with_name(
        "sensor_latency.quick.json" if args.quick else "sensor_latency.json"
    )
    return args


def main(argv: list[str] | None = None) -> float:
    args = parse_args(argv)
    stay_offline()
    import dagster as dg

    from labeling_dag.sensors import review_complete_sensor

    interval = review_complete_sensor.minimum_interval_seconds
    with tempfile.TemporaryDirectory(prefix="bench-sensor-") as tmp:
        tmp_path = Path(tmp)
        started = time.perf_counter()
        data_yaml, work, answers = _prepare(tmp_path, images=args.images, batches=args.batches)
        home = tmp_path / "dagster_home"
        home.mkdir()
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        env = os.environ | {
            "DAGSTER_HOME": str(home),
            "LABELING_DAG_WORKDIR": str(work),
            "LABELING_DAG_SOURCE": str(data_yaml.parent / "images" / "train"),
            "LABELING_DAG_VALIDATION": str(data_yaml),
            # The embedded folder backend: the inbox drop is what is measured.
            "LABELING_DAG_REVIEW_BACKEND": "folder",
        }
        _dagster(["sensor", "stop", "-w", str(REPO / "workspace.yaml"), "retraining_sensor"], env)
        print(f"workdir and instance ready in {time.perf_counter() - started:.0f} s", flush=True)

        instance = dg.DagsterInstance.from_config(str(home))
        log = tmp_path / "dagster-dev.log"
        with open(log, "wb") as log_file:
            server = subprocess.Popen(
                [
                    str(BIN / "dagster"),
                    "dev",
                    "-w",
                    str(REPO / "workspace.yaml"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(_free_port()),
                ],
                cwd=REPO,
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: webserver, daemon, code server and runs stop together
            )
        try:
            up = time.perf_counter()
            _wait_for_first_tick(instance, "review_complete_sensor", server)
            print(f"daemon ticking {time.perf_counter() - up:.0f} s after start", flush=True)
            pauses = random.Random(0)
            measured = []
            for batch_id, answer in answers.items():
                time.sleep(pauses.uniform(0, interval))
                measured.append(_measure(instance, work, batch_id, answer))
        except BaseException:
            print(log.read_text(errors="replace")[-4000:], file=sys.stderr)
            raise
        finally:
            stop_process_group(server, first=signal.SIGINT)

    latencies = [m["latency_s"] for m in measured]
    median = statistics.median(latencies)
    figures = {"batches": measured, "median_latency_s": median, "sensor_minimum_interval_s": interval}
    write_result(args.out, "sensor_latency", figures)
    print(f"sensor latency seconds {median:.1f}")
    return median


def _prepare(tmp_path: Path, *, images: int, batches: int) -> tuple[Path, Path, dict[str, list]]:
    """A workdir with ``batches`` exported review batches; return the dataset, the workdir and each batch's answer."""
    import dagster as dg
    from labeling_dag.assets.cleaning import cleaned_images
    from labeling_dag.assets.ingestion import raw_images
    from labeling_dag.assets.prelabels import pre_labels
    from labeling_dag.assets.review import review_batch
    from labeling_dag.assets.scoring import uncertainty_scores
    from labeling_dag.resources.detector import Detector
    from labeling_dag.resources.review_exchange import FileReviewExchange, FolderReview
    from labeling_dag.resources.snapshots import SnapshotStore
    from labeling_dag.resources.storage import ImageSource, LabelStore

    from labeling_dag.partitions import ingest_batches
    from labeling_dag.simulation.sample_data import CLASS_NAMES, generate_dataset
    from labeling_dag.simulation.simulated_reviewer import load_truth, simulate_review

    data_yaml = generate_dataset(tmp_path / "data", images=images, seed=8, imgsz=IMGSZ)
    weights = Detector(imgsz=IMGSZ, epochs=EPOCHS).train(data_yaml, tmp_path / "train" / "tiny")
    work = tmp_path / "work"
    store = LabelStore(workdir=str(work))
    store.set_class_names(CLASS_NAMES)
    # The resources of tests/conftest.py's make_resources.
    resources = {
        "store": store,
        "source": ImageSource(folder=str(tmp_path / "data" / "images" / "train")),
        "detector": Detector(imgsz=IMGSZ, conf=0.05),
        "snapshots": SnapshotStore(),
        "exchange": FileReviewExchange(),
        "review": FolderReview(),
    }
    assets = [raw_images, cleaned_images, pre_labels, uncertainty_scores, review_batch]
    truth = load_truth(data_yaml, "train")
    answers: dict[str, list] = {}
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(ingest_batches.name, [ROOT_BATCH])
    for seed in range(batches):
        # Another seed gives another batch id; selection skips images a pending batch holds.
        ops = {"review_batch": {"config": {"size": BATCH_SIZE, "seed": seed}}}
        if seed == 0:
            ops["pre_labels"] = {"config": {"seed_model": str(weights)}}
        result = dg.materialize(
            assets,
            resources=resources,
            selection=None if seed == 0 else [review_batch],
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}, "ops": ops},
            instance=instance,
            partition_key=ROOT_BATCH if seed == 0 else None,
        )
        (batch_id,) = [
            e.step_materialization_data.materialization.metadata["batch_id"].value
            for e in result.get_asset_materialization_events()
            if e.asset_key == dg.AssetKey("review_batch")
        ]
        tasks = resources["exchange"].exported_tasks(work, batch_id)
        answers[batch_id] = simulate_review(tasks, truth, class_names=CLASS_NAMES, seed=seed)
    if len(answers) != batches:
        raise RuntimeError(f"expected {batches} distinct review batches, got {sorted(answers)}")
    return data_yaml, work, answers


def _measure(instance, work: Path, batch_id: str, answer: list) -> dict[str, float | str]:
    """Drop one answered batch into the inbox; seconds until its merge run exists, and until it finished."""
    import dagster as dg

    from labeling_dag import atomic

    atomic.write_json(work / "exchange" / "inbox" / f"{batch_id}.json", answer)
    dropped = time.time()  # after the rename: from here on the sensor can see the file
    record = _wait_for(
        lambda: next(
            iter(
                instance.get_run_records(
                    filters=dg.RunsFilter(job_name="merge_review", tags={"dagster/run_key": batch_id})
                )
            ),
            None,
        ),
        what=f"a merge_review run for {batch_id}",
    )
    created = record.create_timestamp
    # SQLite run storage hands back naive datetimes in UTC.
    latency = (created if created.tzinfo else created.replace(tzinfo=UTC)).timestamp() - dropped
    print(f"batch {batch_id}: merge_review run created {latency:.1f} s after the drop", flush=True)
    run_id = record.dagster_run.run_id

    def finished_record():
        latest = instance.get_run_record_by_id(run_id)
        return latest if latest.dagster_run.status.value in FINISHED else None

    finished = _wait_for(finished_record, what=f"merge_review run {run_id} to finish")
    return {
        "batch_id": batch_id,
        "latency_s": latency,
        "run_status": finished.dagster_run.status.value,
        "drop_to_run_end_s": finished.end_time - dropped if finished.end_time else None,
    }


def _wait_for(probe, *, what: str, timeout_s: float = RUN_TIMEOUT_S):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.25)
    raise TimeoutError(f"no {what} within {timeout_s} s")


def _wait_for_first_tick(instance, sensor_name: str, server: subprocess.Popen) -> None:
    """Block until the daemon has finished evaluating ``sensor_name`` once (or dagster dev died).

    A tick is recorded when it starts; a file dropped during that first, slow evaluation
    (the code server's first call) would be seen at once and measure nothing typical.
    """

    def ticked() -> bool:
        if server.poll() is not None:
            raise RuntimeError(f"dagster dev exited with {server.returncode} before the daemon ticked")
        states = [s for s in instance.all_instigator_state() if s.instigator_name == sensor_name]
        ticks = [t for s in states for t in instance.get_ticks(s.instigator_origin_id, s.selector_id, limit=5)]
        return any(t.status.value != "STARTED" for t in ticks)

    _wait_for(ticked, what=f"first tick of {sensor_name}", timeout_s=STARTUP_TIMEOUT_S)


def _dagster(args: list[str], env: dict[str, str]) -> None:
    completed = subprocess.run(
        [str(BIN / "dagster"), *args], cwd=REPO, env=env, capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        raise RuntimeError(f"dagster {' '.join(args)} failed (exit {completed.returncode}): {completed.stderr[-2000:]}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


if __name__ == "__main__":
    main()
