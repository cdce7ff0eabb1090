"""The Dagster code location as its users meet it: imports, CLIs, lineage, the console script.

Most tests run the installed command-line tools (``dagster``, ``dg``, ``labeling-dag``) in
subprocesses, from the bin folder next to ``sys.executable``, with a throw-away
DAGSTER_HOME (telemetry off) so that nothing is written to the checkout's instance.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bad_images import write_good_images

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MODULE = "labeling_dag.definitions"

LINEAGE = (
    "raw_images",
    "cleaned_images",
    "pre_labels",
    "uncertainty_scores",
    "review_batch",
    "review_annotations",
    "verified_labels",
    "dataset_export",
    "label_issues",
    "retrained_model",
    "current_model",
)
PARTITIONED_STAGES = LINEAGE[:4]
# scikit-learn (with SciPy) alone took 1.3 s of a 3 s load before it moved into the function using it.
HEAVY_MODULES = ("torch", "ultralytics", "great_expectations", "sklearn", "scipy", "cleanlab")

# Installed into a subprocess through PYTHONPATH: records, then refuses, every attempt to
# reach a non-loopback address, so that a test can assert that a command stays offline.
_NETWORK_GUARD = """
import ipaddress, os, socket

_LOG = os.environ["NETWORK_GUARD_LOG"]
_connect, _getaddrinfo = socket.socket.connect, socket.getaddrinfo


def _local(host):
    if host in (None, "", "localhost") or str(host).startswith("/"):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


def _refuse(what):
    with open(_LOG, "a") as log:
        log.write(what + "\\n")
    raise OSError(f"network disabled by the test: {what}")


def connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _local(address[0]):
        _refuse(f"connect {address!r}")
    return _connect(self, address)


def getaddrinfo(host, *args, **kwargs):
    if not _local(host):
        _refuse(f"getaddrinfo {host!r}")
    return _getaddrinfo(host, *args, **kwargs)


socket.socket.connect = connect
socket.getaddrinfo = getaddrinfo
"""


@pytest.fixture
def dagster_env(tmp_path: Path) -> dict[str, str]:
    """Environment for the CLIs: the project venv first on PATH, a fresh DAGSTER_HOME, no network.

    The network guard's log is ``env["NETWORK_GUARD_LOG"]``; it stays absent when no
    subprocess tried to reach the network.
    """
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    guard = tmp_path / "network_guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(_NETWORK_GUARD)
    env = dict(os.environ)  # conftest already put .tools/bin on PATH and set the config dirs
    env.update(
        DAGSTER_HOME=str(home),
        PATH=f"{BIN}{os.pathsep}{env['PATH']}",
        VIRTUAL_ENV=str(BIN.parent),
        PYTHONPATH=os.pathsep.join(filter(None, [str(guard), env.get("PYTHONPATH")])),
        NETWORK_GUARD_LOG=str(tmp_path / "network_attempts.log"),
        NO_COLOR="1",
        COLUMNS="200",
    )
    env.pop("DAGSTER_CLOUD_API_TOKEN", None)
    return env


def _run(args: list[str | Path], *, env: dict[str, str] | None = None, timeout: float = 60, cwd: Path = REPO):
    """Run a command, capturing its text output; never hangs longer than ``timeout`` seconds."""
    return subprocess.run(
        [str(arg) for arg in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _output(completed: subprocess.CompletedProcess[str]) -> str:
    return f"exit {completed.returncode}\n--- stdout\n{completed.stdout}\n--- stderr\n{completed.stderr}"


def _assert_offline(env: dict[str, str]) -> None:
    log = Path(env["NETWORK_GUARD_LOG"])
    assert not log.exists(), f"the command tried to reach the network:\n{log.read_text()}"


def _files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by relative path, with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --- 1. loading the code location is light ------------------------------------------


def test_definitions_import_loads_no_heavy_libraries(dagster_env: dict[str, str]) -> None:
    """Importing the code location leaves torch, ultralytics, great_expectations, scikit-learn,
    SciPy and cleanlab unimported.

    Dagster imports the definitions module in every process it starts (webserver, daemon,
    each run worker), so the heavy libraries must only be imported inside the assets,
    checks and resources that use them.
    """
    probe = (
        "import json, sys\n"
        f"import {MODULE}\n"
        f"heavy = {list(HEAVY_MODULES)!r}\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in heavy)\n"
        "print(json.dumps(loaded))\n"
    )
    completed = _run([sys.executable, "-c", probe], env=dagster_env, timeout=120)
    assert completed.returncode == 0, _output(completed)
    assert json.loads(completed.stdout.strip().splitlines()[-1]) == []


# --- 2. the Dagster CLIs load it ------------------------------------------------------


def test_dagster_definitions_validate_passes(dagster_env: dict[str, str]) -> None:
    """``dagster definitions validate -m labeling_dag.definitions`` loads the location and exits 0."""
    completed = _run([BIN / "dagster", "definitions", "validate", "-m", MODULE], env=dagster_env, timeout=120)
    assert completed.returncode == 0, _output(completed)
    assert "Validation successful" in completed.stdout + completed.stderr
    _assert_offline(dagster_env)


def test_dg_check_defs_passes_offline(dagster_env: dict[str, str]) -> None:
    """``dg check defs`` in the repo root finds the project from [tool.dg], loads it and exits 0.

    Run with ``--use-active-venv`` and VIRTUAL_ENV set to the project venv, so that dg
    uses this environment (no uv, no venv resolution); any network access is refused and
    recorded, and the test fails if there was any.
    """
    completed = _run([BIN / "dg", "check", "defs", "--use-active-venv"], env=dagster_env, timeout=120)
    assert completed.returncode == 0, _output(completed)
    assert "All definitions loaded successfully" in completed.stdout, _output(completed)
    _assert_offline(dagster_env)


def test_dagster_asset_list_names_every_lifecycle_asset(dagster_env: dict[str, str]) -> None:
    """``dagster asset list`` shows exactly the lifecycle's assets, one per line.

    Dagster prints them sorted by key, not in lineage order, so the set is compared.
    """
    completed = _run([BIN / "dagster", "asset", "list", "-m", MODULE], env=dagster_env, timeout=120)
    assert completed.returncode == 0, _output(completed)
    listed = [line.strip() for line in completed.stdout.splitlines() if line.strip()]
    assert sorted(listed) == sorted(LINEAGE), _output(completed)
    _assert_offline(dagster_env)


# --- 3. the antlr trap ----------------------------------------------------------------


def test_project_venv_has_the_antlr_dagster_needs() -> None:
    """The project venv holds antlr4 4.13 (Dagster's selection parser), not DVC's 4.9 pin.

    DVC's hydra pins antlr4-python3-runtime 4.9; installed into the same venv it
    downgrades antlr and every ``--select`` fails with "ord() expected". DVC therefore
    lives in its own venv (.tools/) and is called as a program.
    """
    assert importlib.metadata.version("antlr4-python3-runtime").startswith("4.13")
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.version("dvc")


def test_materialize_with_asset_selection(dagster_env: dict[str, str], tmp_path: Path) -> None:
    """``dagster asset materialize --select raw_images,cleaned_images --partition B`` runs in the installed env.

    The selection string goes through Dagster's antlr parser (broken by antlr 4.9), and
    cleaned_images snapshots its folder with the DVC of .tools/ (on PATH), so this covers
    both halves of the two-venv split. The cleaned table must hold every source image
    under its content hash, with its cleaned file written, and the blocking gate must
    have run and passed. The images sit in the ingestion batch (partition) ``2026-11-25``,
    which the ingestion sensor would have added to the instance.
    """
    import dagster as dg

    source, workdir = tmp_path / "src", tmp_path / "work"
    images = write_good_images(source / "2026-11-25", 4, seed=7)
    env = dagster_env | {"LABELING_DAG_WORKDIR": str(workdir), "LABELING_DAG_SOURCE": str(source)}
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        instance.add_dynamic_partitions("ingest_batches", ["2026-11-25"])

    completed = _run(
        [
            BIN / "dagster",
            "asset",
            "materialize",
            "-m",
            MODULE,
            "--select",
            "raw_images,cleaned_images",
            "--partition",
            "2026-11-25",
        ],
        env=env,
        timeout=180,
    )
    output = completed.stdout + completed.stderr
    assert "ord() expected" not in output, _output(completed)
    assert completed.returncode == 0, _output(completed)
    assert "RUN_SUCCESS" in output, _output(completed)
    assert any("cleaned_images_gate" in line and "passed" in line for line in output.splitlines()), output
    _assert_offline(env)

    import pandas as pd

    table = workdir / "cleaned_images" / "2026-11-25" / "images.parquet"
    assert table.is_file()
    cleaned = pd.read_parquet(table)
    assert sorted(cleaned["image_id"]) == sorted(hashlib.sha256(p.read_bytes()).hexdigest() for p in images)
    assert sorted(cleaned["source_path"]) == sorted(str(p) for p in images)
    assert all((workdir / path).is_file() for path in cleaned["path"])
    assert (workdir / "cleaned_images" / "2026-11-25.dvc").is_file(), (
        "the batch of cleaned_images was not snapshotted with DVC"
    )


# --- 4. snapshot of the definitions ---------------------------------------------------


def test_definitions_snapshot() -> None:
    """The shape of the code location: assets, lineage, gates, jobs and resources.

    A change here changes what operators see in the UI and what runs in production, so it
    must be deliberate: update this snapshot together with the definitions.
    """
    import dagster as dg

    from labeling_dag.definitions import defs

    dg.Definitions.validate_loadable(defs)  # every required resource key is provided, the graph resolves
    graph = defs.resolve_asset_graph()

    assert [key.to_user_string() for key in graph.toposorted_asset_keys] == list(LINEAGE)
    upstream = {
        key.to_user_string(): sorted(parent.to_user_string() for parent in graph.get(key).parent_keys)
        for key in graph.get_all_asset_keys()
    }
    assert upstream == {
        "raw_images": [],
        "cleaned_images": ["raw_images"],
        "pre_labels": ["cleaned_images"],
        "uncertainty_scores": ["pre_labels"],
        "review_batch": ["uncertainty_scores"],
        "review_annotations": ["review_batch"],
        "verified_labels": ["pre_labels", "review_annotations"],
        "dataset_export": ["verified_labels"],
        "label_issues": ["verified_labels"],
        "retrained_model": ["verified_labels"],
        # The loop's back edge (current_model -> pre_labels) is a sensor, not a dependency.
        "current_model": ["retrained_model"],
    }

    checks = {
        (check_key.asset_key.to_user_string(), check_key.name): graph.get(check_key).blocking
        for check_key in graph.asset_check_keys
    }
    assert checks == {
        ("cleaned_images", "cleaned_images_gate"): True,
        ("pre_labels", "pre_labels_gate"): True,
        ("review_annotations", "review_quality_gate"): True,
        ("verified_labels", "verified_labels_gate"): True,
        ("retrained_model", "promotion_gate"): True,
    }

    jobs = {
        job.name: {key.to_user_string() for key in job.asset_layer.selected_asset_keys}
        for job in defs.resolve_all_job_defs()
        if not job.name.startswith("__")
    }
    assert jobs == {
        "prelabel_batch": set(PARTITIONED_STAGES),
        "select_review_batch": {"review_batch"},
        "merge_review": {"review_annotations", "verified_labels"},
        "retrain": {"retrained_model", "current_model"},
        "export_dataset": {"dataset_export"},
        "find_label_issues": {"label_issues"},
    }
    sensors = sorted(sensor.name for sensor in defs.sensors or [])
    assert sensors == [
        "ingest_batch_sensor",
        "label_issues_sensor",
        "loop_continues_sensor",
        "model_promoted_sensor",
        "retraining_sensor",
        "review_complete_sensor",
    ]
    # One dynamic partition per ingestion batch on the pre-label path; selection stays global.
    partitioned = {
        key.to_user_string() for key in graph.get_all_asset_keys() if graph.get(key).partitions_def is not None
    }
    assert partitioned == set(PARTITIONED_STAGES)
    assert {graph.get(dg.AssetKey(name)).partitions_def.name for name in PARTITIONED_STAGES} == {"ingest_batches"}

    assert sorted(defs.resources or {}) == ["detector", "exchange", "policy", "review", "snapshots", "source", "store"]
    # Deployments point the location at their folders through these variables.
    workdir, folder = defs.resources["store"].workdir, defs.resources["source"].folder
    assert isinstance(workdir, dg.EnvVar) and workdir == "LABELING_DAG_WORKDIR"
    assert isinstance(folder, dg.EnvVar) and folder == "LABELING_DAG_SOURCE"


# --- 5. labeling-dag sample-data -------------------------------------------------------


def test_sample_data_cli_is_deterministic(tmp_path: Path) -> None:
    """``labeling-dag sample-data OUT --images 6 --seed 3`` writes data.yaml and 6 images, reproducibly.

    Running it again into the same folder gives byte-identical files (data.yaml holds the
    absolute OUT path, so it is only compared within one folder); another folder gets
    the same images and labels.
    """
    out, other = tmp_path / "out", tmp_path / "other"
    command = [BIN / "labeling-dag", "sample-data", out, "--images", "6", "--seed", "3"]

    first = _run(command, timeout=60)
    assert first.returncode == 0, _output(first)
    assert first.stdout.strip() == str(out / "data.yaml")
    assert (out / "data.yaml").is_file()
    assert len(list(out.glob("images/*/*.jpg"))) == 6
    assert len(list(out.glob("labels/*/*.txt"))) == 6
    written = _files(out)

    second = _run(command, timeout=60)
    assert second.returncode == 0, _output(second)
    assert _files(out) == written

    third = _run([*command[:2], other, *command[3:]], timeout=60)
    assert third.returncode == 0, _output(third)
    without_yaml = {name: data for name, data in written.items() if name != "data.yaml"}
    assert {name: data for name, data in _files(other).items() if name != "data.yaml"} == without_yaml


def test_sample_data_cli_rejects_zero_images(tmp_path: Path) -> None:
    """``--images 0`` exits non-zero, says what is wrong with ``images``, and writes no data.yaml."""
    out = tmp_path / "out"
    completed = _run([BIN / "labeling-dag", "sample-data", out, "--images", "0"], timeout=60)
    assert completed.returncode != 0, _output(completed)
    assert "images" in completed.stderr, _output(completed)
    assert not (out / "data.yaml").exists()


def test_sample_data_cli_reports_bad_arguments_without_traceback(tmp_path: Path) -> None:
    """A bad ``sample-data`` argument is a one-line usage error, not a Python traceback.

    Argument errors are the user's, not the program's: like argparse's own errors they get
    a message and a non-zero exit, and no stack trace.
    """
    for bad in (["--images", "0"], ["--seed", "-1"], ["--imgsz", "8"]):
        completed = _run([BIN / "labeling-dag", "sample-data", tmp_path / "out", *bad], timeout=60)
        assert completed.returncode != 0, _output(completed)
        assert "Traceback" not in completed.stderr, _output(completed)
        assert bad[0].removeprefix("--") in completed.stderr, _output(completed)


# --- 6. labeling-dag restore ---------------------------------------------------------


def test_restore_unknown_snapshot_is_a_clean_error(tmp_path: Path) -> None:
    """Restoring a snapshot id that does not exist fails with a message naming it, no traceback.

    The workdir is left untouched: no DVC repository is created just to report the error.
    """
    empty = tmp_path / "empty"
    empty.mkdir()
    completed = _run([BIN / "labeling-dag", "restore", "cleaned_images", "nosuchid", "--workdir", empty], timeout=60)
    assert completed.returncode != 0, _output(completed)
    assert "nosuchid" in completed.stderr and "cleaned_images" in completed.stderr, _output(completed)
    assert "Traceback" not in completed.stderr, _output(completed)
    assert list(empty.iterdir()) == []


def test_restore_without_workdir_is_a_clean_error(tmp_path: Path) -> None:
    """Without --workdir and without LABELING_DAG_WORKDIR, restore says how to give one, no traceback."""
    env = {k: v for k, v in os.environ.items() if k != "LABELING_DAG_WORKDIR"}
    completed = _run([BIN / "labeling-dag", "restore", "pre_labels", "someid"], env=env, cwd=tmp_path, timeout=60)
    assert completed.returncode != 0, _output(completed)
    assert "--workdir" in completed.stderr and "LABELING_DAG_WORKDIR" in completed.stderr, _output(completed)
    assert "Traceback" not in completed.stderr, _output(completed)


def test_the_review_backend_is_picked_by_name_from_the_registry() -> None:
    """Each registered name builds its backend; an unknown one is refused, naming the choices."""
    from labeling_dag.resources.label_studio import LabelStudioReview
    from labeling_dag.resources.review_exchange import FolderReview

    from labeling_dag.definitions import REVIEW_BACKENDS, review_backend

    assert isinstance(review_backend("folder"), FolderReview)
    assert isinstance(review_backend("label_studio"), LabelStudioReview)
    with pytest.raises(
        ValueError, match=r"LABELING_DAG_REVIEW_BACKEND='cvat': choose one of \['folder', 'label_studio'\]"
    ):
        review_backend("cvat")
    assert set(REVIEW_BACKENDS) == {"folder", "label_studio"}


def test_the_model_is_picked_by_the_deployments_modality() -> None:
    """Each modality builds its model resource; an unknown one is refused, naming the choices."""
    from labeling_dag.resources.detector import Detector
    from labeling_dag.resources.text_classifier import TextClassifier

    from labeling_dag.definitions import item_model

    assert isinstance(item_model("detection"), Detector)
    assert isinstance(item_model("text"), TextClassifier)
    with pytest.raises(ValueError, match=r"LABELING_DAG_MODALITY='audio': choose one of \['detection', 'text'\]"):
        item_model("audio")
