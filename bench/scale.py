"""Scale-out: the partitioned pre-label path on 1, then 2 Celery workers, in one run.

Generates N small PNGs (sharp random block patterns, ``--imgsz`` px) in folders of
``--batch-size``, one ingestion batch (dynamic partition) each, and trains a tiny YOLOv8n
for one epoch as the seed model. Then, for 1 worker and then for 2 workers, each time
over a fresh workdir, the same batches go through ``prelabel_batch`` (ingest → clean →
pre-label → score, with the GX gates) exactly as in production:

* the Dagster instance is a fresh PostgreSQL database (deploy/dagster.yaml);
* ``dagster-celery worker start`` workers (deploy/celery.yaml, one step at a time,
  ``OMP_NUM_THREADS=1``: one torch thread per worker) take the steps from Redis;
* one ``dagster job execute ... --tags {"dagster/partition": B}`` per batch with
  ``LABELING_DAG_EXECUTOR=celery`` launches the runs, ``workers + RUNS_AHEAD`` at a time
  (the queue depth deploy/README.md gives a 2-worker deployment), so that a worker finds
  a ready step while other runs wait for their executor's next tick or are starting.

The rate of a phase is the images scored (rows of every ``uncertainty_scores`` table) over
the wall time from the first launch to the last run's end; worker start-up (imports of
torch, ultralytics, GX on the first step) is inside it. The speed-up is rate(2) / rate(1).

Memory: the code server (``dagster api grpc -m labeling_dag.definitions``) is sampled
(psutil, its RSS every 0.25 s) once loaded, and while it evaluates ``ingest_batch_sensor``
over the whole source folder (``dagster sensor preview --grpc-port``), which is where the
daemon's sensor ticks run. The workers' peak RSS (main process and forked children) is
reported too.

    .venv/bin/python bench/scale.py                          # 100 000 images at 32 px, batches of 10 000
    .venv/bin/python bench/scale.py --images 8000 --batch-size 1000
    .venv/bin/python bench/scale.py --quick                  # 240 images, batches of 60 (CI)

PostgreSQL and Redis come from ``LABELING_DAG_TEST_PG_*`` / ``LABELING_DAG_TEST_REDIS_URL``
(default: the local servers, user postgres, Redis db 8).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import psutil
import yaml
from offline import stay_offline
from PIL import Image
from processes import stop_process_group

from labeling_dag.atomic import sync_all

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MODULE = "labeling_dag.definitions"
MIB = 1024 * 1024
RUN_TIMEOUT_S = 3600
STARTUP_TIMEOUT_S = 120
# Walking the workers' process trees every 50 ms took 0.06-0.09 of the 2 cores, which the
# 2-worker phase then lacked: the observer slowed what it measured. A worker's RSS moves
# over seconds (a model load, a batch's tables), so 0.25 s still finds its peak.
SAMPLE_EVERY_S = 0.25
# Runs in flight beyond one per worker. dagster-celery's executor hands a run's next step over
# on a one-second tick and a new run spends ~2 s loading the location, so a run is often not
# ready. With one run ahead (100 000 images), each worker of the 2-worker phase sat idle
# between steps 11-14 % of its time, the one worker 10 %: a step is ready for one worker when
# either of 2 runs is, for both of 2 workers only when 2 of 3 runs are.
RUNS_AHEAD = 2
# Images per ingestion batch (partition). Each run process costs 2-3 s of CPU whatever its
# batch's size (imports, the instance, the executor's loop), taken from the workers' cores
# when two workers fill both: 10 000-image batches gave 401-424 (1 worker) and 671-690
# images/s (2 workers) where 5000-image batches gave 340-346 and 533-536 (bench/RESULTS.md).
BATCH_SIZE = 10_000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000, help="generated images, all pre-labelled in each phase")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="images per ingestion batch (partition)")
    parser.add_argument("--imgsz", type=int, default=32, help="image and inference size in pixels (a multiple of 32)")
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1, 2], help="worker counts, one phase each, in order"
    )
    parser.add_argument("--runs-ahead", type=int, default=RUNS_AHEAD, help="runs in flight beyond one per worker")
    parser.add_argument("--quick", action="store_true", help="240 images in batches of 60 (CI, under 2 minutes)")
    parser.add_argument("--out", type=Path, help="JSON result (default: bench/scale[.quick].json)")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.batch_size = 240, 60
    if args.images < 1 or args.batch_size < 1:
        parser.error("--images and --batch-size must be at least 1")
    if args.runs_ahead < 0:
        parser.error("--runs-ahead must be at least 0")
    if args.imgsz < 32 or args.imgsz % 32:
        parser.error("--imgsz must be a multiple of 32 (YOLO's largest stride)")
    args.out = args.out or Path(__file__).with_name("scale.quick.json" if args.quick else "scale.json")
    return args


def main(argv: list[str] | None = None) -> float:
    args = parse_args(argv)
    stay_offline()
    from labeling_dag.resources.detector import Detector

    from labeling_dag.simulation.sample_data import generate_dataset

    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp, postgres_database() as pg_env:
        tmp_path = Path(tmp)
        started = time.perf_counter()
        batches = write_pool(tmp_path / "source", images=args.images, batch_size=args.batch_size, imgsz=args.imgsz)
        generated = time.perf_counter() - started
        print(f"{args.images} images in {len(batches)} batches written in {generated:.1f} s", flush=True)
        seed = generate_dataset(tmp_path / "seed", images=64, seed=3, imgsz=max(args.imgsz, 64))
        weights = Detector(imgsz=args.imgsz, epochs=1).train(seed, tmp_path / "train" / "tiny")
        config = tmp_path / "run_config.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "ops": {"pre_labels": {"config": {"seed_model": str(weights)}}},
                    "resources": {"detector": {"config": {"imgsz": args.imgsz, "batch": 64}}},
                }
            )
        )

        home = tmp_path / "dagster_home"
        home.mkdir()
        shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
        broker = redis_database()
        base_env = dict(os.environ) | pg_env
        base_env.update(
            DAGSTER_HOME=str(home),
            PATH=f"{BIN}{os.pathsep}{base_env['PATH']}",
            LABELING_DAG_EXECUTOR="celery",
            LABELING_DAG_SOURCE=str(tmp_path / "source"),
            CELERY_BROKER_URL=broker,
            CELERY_RESULT_BACKEND=broker,
            OMP_NUM_THREADS="1",
            DAGSTER_MAX_CONCURRENT_RUNS=str(max(args.workers) + args.runs_ahead),
        )
        os.environ.update(pg_env)
        import dagster as dg

        with dg.DagsterInstance.from_config(str(home)) as instance:
            instance.add_dynamic_partitions("ingest_batches", batches)

        phases = []
        for workers in args.workers:
            env = base_env | {"LABELING_DAG_WORKDIR": str(tmp_path / f"work-{workers}")}
            phase = run_phase(
                env,
                batches,
                config=config,
                workers=workers,
                runs_ahead=args.runs_ahead,
                logs=tmp_path / f"logs-{workers}",
            )
            phases.append(phase)
            print(
                f"{workers} worker(s): {phase['images']} images in {phase['seconds']:.1f} s = "
                f"{phase['images_per_s']:.1f} images/s (worker peak RSS {phase['worker_peak_rss_mib']:.0f} MiB, "
                f"{phase['busy_cores']:.2f} of {os.cpu_count()} cores busy, "
                f"run processes {phase['run_processes_cpu_s']:.1f} CPU s, "
                f"workers in steps {phase['workers_in_steps_share']:.0%}: "
                + ", ".join(f"{step} {total:.0f} s" for step, total in phase["step_seconds"].items())
                + ")",
                flush=True,
            )
        memory = code_server_memory(base_env | {"LABELING_DAG_WORKDIR": str(tmp_path / "work-sensor")})
        print(
            f"code server: {memory['code_server_loaded_rss_mib']:.0f} MiB loaded, "
            f"{memory['sensor_evaluation_peak_rss_mib']:.0f} MiB peak while ingest_batch_sensor read "
            f"{len(batches)} batches",
            flush=True,
        )

    rates = {phase["workers"]: phase["images_per_s"] for phase in phases}
    speed_up = rates[2] / rates[1] if 1 in rates and 2 in rates else float("nan")
    result = {
        "benchmark": "scale",
        "images": args.images,
        "batch_size": args.batch_size,
        "runs_ahead": args.runs_ahead,
        "batches": len(batches),
        "imgsz": args.imgsz,
        "generation_s": generated,
        "phases": phases,
        "speed_up_1_to_2_workers": speed_up,
        **memory,
        "cpu_count": os.cpu_count(),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"scale speed-up {speed_up:.2f}")
    return speed_up


def write_pool(folder: Path, *, images: int, batch_size: int, imgsz: int) -> list[str]:
    """``images`` distinct, sharp PNGs in folders of ``batch_size``; returns the batch keys.

    An 8x8 grid of random colours scaled up without smoothing: sharp edges (not flagged
    blurry), high contrast, and no two alike, at a few hundred microseconds an image.
    """
    rng = np.random.default_rng(0)
    keys = []
    for start in range(0, images, batch_size):
        key = f"batch-{start // batch_size:05d}"
        batch = folder / key
        batch.mkdir(parents=True)
        for index in range(start, min(start + batch_size, images)):
            cells = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
            Image.fromarray(cells).resize((imgsz, imgsz), Image.NEAREST).save(
                batch / f"{index:07d}.png", compress_level=1
            )
        keys.append(key)
    return keys


def run_phase(
    env: dict[str, str], batches: list[str], *, config: Path, workers: int, runs_ahead: int, logs: Path
) -> dict:
    """Every batch through ``prelabel_batch`` on ``workers`` Celery workers; rate and memory."""
    logs.mkdir()
    # Each phase starts with nothing left to write back: the 100 000 generated images (before
    # the first phase) or the first phase's workdir (before the second) would otherwise be
    # flushed to disk while the timed phase runs.
    sync_all()
    pool = [start_worker(f"w{number}", env, logs / f"worker-{number}.log") for number in range(1, workers + 1)]
    sampler = RssSampler([worker.pid for worker in pool])
    try:
        wait_until(
            lambda: all(
                f"w{n}@" in (logs / f"worker-{n}.log").read_text() and "ready" in (logs / f"worker-{n}.log").read_text()
                for n in range(1, workers + 1)
            ),
            what="workers ready",
        )
        with sampler:
            started, cpu_before, runs_before = time.perf_counter(), psutil.cpu_times(), reaped_cpu_seconds()
            since = time.time()
            failures = launch_runs(env, batches, config=config, in_flight=workers + runs_ahead, logs=logs)
            seconds, cpu_after, runs_after = time.perf_counter() - started, psutil.cpu_times(), reaped_cpu_seconds()
    finally:
        for worker in pool:
            stop_process_group(worker)
    if failures:
        raise RuntimeError(f"{len(failures)} runs failed with {workers} workers: see {failures[:3]}")
    import pandas as pd

    scored = sum(
        len(pd.read_parquet(path))
        for path in Path(env["LABELING_DAG_WORKDIR"]).glob("uncertainty_scores/*/scores.parquet")
    )
    steps = step_seconds(env, since=since)
    return {
        "workers": workers,
        "images": scored,
        "seconds": seconds,
        "images_per_s": scored / seconds,
        "worker_peak_rss_mib": sampler.peak / MIB,
        # Whole-machine CPU use (workers, run processes, DVC, PostgreSQL, Redis): on a 2-core
        # machine, 2 / this figure of the 1-worker phase bounds the speed-up 2 workers can give.
        "busy_cores": busy_seconds(cpu_before, cpu_after) / seconds,
        # The run processes (`dagster job execute`, the executor's loop) are the only children
        # this process waits for during the phase: CPU the workers compete with for a core.
        "run_processes_cpu_s": runs_after - runs_before,
        # From each step's start to its end in the event log, summed per step: the time the
        # workers spent inside steps. workers x wall time minus their sum is what the workers
        # waited for a ready step (runs starting, the executor's one-second poll).
        "step_seconds": steps,
        "workers_in_steps_share": sum(steps.values()) / (workers * seconds),
    }


def step_seconds(env: dict[str, str], *, since: float) -> dict[str, float]:
    """Seconds spent in each step (summed over the runs created after ``since``), from the
    STEP_START and STEP_SUCCESS events the workers wrote to the instance."""
    import dagster as dg

    totals: dict[str, float] = {}
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        for record in instance.get_run_records(filters=dg.RunsFilter(created_after=datetime.fromtimestamp(since, UTC))):
            started: dict[str, float] = {}
            for entry in instance.all_logs(
                record.dagster_run.run_id, of_type={dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS}
            ):
                if entry.dagster_event.event_type == dg.DagsterEventType.STEP_START:
                    started[entry.step_key] = entry.timestamp
                else:
                    totals[entry.step_key] = totals.get(entry.step_key, 0.0) + entry.timestamp - started[entry.step_key]
    return totals


def reaped_cpu_seconds() -> float:
    """User + system CPU seconds of every child process this one has waited for so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def busy_seconds(before, after) -> float:
    """CPU seconds the whole machine spent not idle between two ``psutil.cpu_times()``."""
    idle = (after.idle - before.idle) + (getattr(after, "iowait", 0.0) - getattr(before, "iowait", 0.0))
    return (sum(after) - sum(before)) - idle


def launch_runs(env: dict[str, str], batches: list[str], *, config: Path, in_flight: int, logs: Path) -> list[Path]:
    """One ``dagster job execute`` per batch, ``in_flight`` at a time; the logs of the failed ones."""
    waiting, running, failed = list(batches), {}, []
    while waiting or running:
        while waiting and len(running) < in_flight:
            batch = waiting.pop(0)
            log = logs / f"run-{batch}.log"
            with log.open("w") as out:
                running[batch] = (
                    subprocess.Popen(
                        [
                            str(BIN / "dagster"),
                            "job",
                            "execute",
                            "-m",
                            MODULE,
                            "-j",
                            "prelabel_batch",
                            "--tags",
                            json.dumps({"dagster/partition": batch}),
                            "-c",
                            str(config),
                        ],  # fmt: skip
                        cwd=REPO,
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    ),
                    log,
                )
        time.sleep(0.2)
        for batch, (process, log) in list(running.items()):
            if process.poll() is not None:
                del running[batch]
                if process.returncode != 0:
                    failed.append(log)
    return failed


def code_server_memory(env: dict[str, str]) -> dict[str, float]:
    """Peak RSS of the code server once loaded, and while it evaluates ``ingest_batch_sensor``."""
    port = free_port()
    server = subprocess.Popen(
        [str(BIN / "dagster"), "api", "grpc", "-m", MODULE, "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_until(lambda: port_open(port), what="code server")
        with RssSampler([server.pid]) as loaded:
            time.sleep(1.0)
        with RssSampler([server.pid]) as evaluating:
            preview = subprocess.run(
                [
                    str(BIN / "dagster"),
                    "sensor",
                    "preview",
                    "ingest_batch_sensor",
                    "--grpc-host",
                    "127.0.0.1",
                    "--grpc-port",
                    str(port),
                ],
                cwd=REPO,
                env=env,
                capture_output=True,
                text=True,
                timeout=RUN_TIMEOUT_S,
                check=False,
            )
        if preview.returncode != 0 or "run" not in preview.stdout.lower():
            raise RuntimeError(
                f"sensor preview failed (exit {preview.returncode}): {preview.stdout[-2000:]} {preview.stderr[-2000:]}"
            )
    finally:
        stop_process_group(server)
    return {"code_server_loaded_rss_mib": loaded.peak / MIB, "sensor_evaluation_peak_rss_mib": evaluating.peak / MIB}


class RssSampler:
    """Samples, every SAMPLE_EVERY_S in a thread, the summed RSS of some processes and their children."""

    def __init__(self, pids: list[int]) -> None:
        self._processes = [psutil.Process(pid) for pid in pids]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.peak = 0

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            total = 0
            for process in self._processes:
                try:
                    total += sum(p.memory_info().rss for p in [process, *process.children(recursive=True)])
                except psutil.Error:
                    continue
            self.peak = max(self.peak, total)
            self._stop.wait(SAMPLE_EVERY_S)


def start_worker(name: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    """A Celery worker taking one step at a time, in a process group of its own."""
    with log.open("w") as out:
        return subprocess.Popen(
            [
                str(BIN / "dagster-celery"),
                "worker",
                "start",
                "-A",
                "dagster_celery.app",
                "-y",
                str(REPO / "deploy" / "celery.yaml"),
                "-n",
                name,
                "--",
                "--concurrency=1",
            ],  # fmt: skip
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_until(probe: Callable[[], bool], *, what: str, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not probe():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not ready after {timeout_s:.0f} s")
        time.sleep(0.2)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def postgres_database() -> Iterator[dict[str, str]]:
    """A fresh database on the PostgreSQL server; the deploy/dagster.yaml variables for it."""
    import psycopg2

    server = {
        "host": os.environ.get("LABELING_DAG_TEST_PG_HOST", "127.0.0.1"),
        "port": int(os.environ.get("LABELING_DAG_TEST_PG_PORT", "5432")),
        "user": os.environ.get("LABELING_DAG_TEST_PG_USER", "postgres"),
        "password": os.environ.get("LABELING_DAG_TEST_PG_PASSWORD", ""),
    }
    name = f"labeling_dag_bench_{uuid.uuid4().hex[:12]}"

    def admin(statement: str) -> None:
        # psycopg2's `with connection` opens a transaction even under autocommit: close it by hand.
        with closing(psycopg2.connect(dbname="postgres", **server)) as connection:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(statement)

    admin(f'CREATE DATABASE "{name}"')
    try:
        yield {
            "DAGSTER_PG_HOST": server["host"],
            "DAGSTER_PG_PORT": str(server["port"]),
            "DAGSTER_PG_DB": name,
            "DAGSTER_PG_USERNAME": server["user"],
            "DAGSTER_PG_PASSWORD": server["password"],
        }
    finally:
        admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def redis_database() -> str:
    """The broker's URL, its database emptied of any earlier run's messages."""
    import redis

    url = os.environ.get("LABELING_DAG_TEST_REDIS_URL", "redis://127.0.0.1:6379/8")
    redis.Redis.from_url(url).flushdb()
    return url


if __name__ == "__main__":
    main()
