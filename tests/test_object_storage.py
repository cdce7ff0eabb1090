"""Object storage: raw images arriving in an S3 bucket, snapshots kept on an S3 DVC remote.

Runs against moto's S3 server, a real HTTP server speaking the S3 API, started on 127.0.0.1;
the pipeline, the sensor, s3fs and DVC talk to it over the network exactly as they would to AWS.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import boto3
import dagster as dg
import pytest
import requests
import s3fs
from bad_images import write_bad_images, write_good_images
from labeling_dag.assets.cleaning import cleaned_images
from labeling_dag.assets.ingestion import raw_images
from labeling_dag.resources.snapshots import SnapshotStore
from labeling_dag.resources.storage import ImageSource, LabelStore
from moto.server import ThreadedMotoServer

from labeling_dag.cli import main as cli
from labeling_dag.contracts import CLEANED, RAW_INDEX, REJECTS
from labeling_dag.definitions import defs
from labeling_dag.partitions import ingest_batches
from labeling_dag.sensors import ingest_batch_sensor

pytestmark = pytest.mark.slow

BUCKET = "labeling-dag-test"
SOURCE = f"s3://{BUCKET}/incoming"
REMOTE = f"s3://{BUCKET}/dvc"
FIRST, SECOND = "2026-11-01", "2026-11-02"


@pytest.fixture
def s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """moto's S3 server on a free port of 127.0.0.1, with an empty bucket; yields its endpoint URL.

    Credentials and endpoint reach every client (s3fs here, DVC in its subprocess) the way a
    deployment passes them: standard AWS environment variables, nothing in any config.
    """
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    # moto keeps its buckets per process, not per server: start every test from an empty S3.
    requests.post(f"{endpoint}/moto-api/reset", timeout=10).raise_for_status()
    unset = (
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_ENDPOINT_URL_S3",
        "LABELING_DAG_DVC_REMOTE",
        "LABELING_DAG_DVC_ENDPOINT_URL",
    )
    for name in unset:
        monkeypatch.delenv(name, raising=False)
    # A developer's own ~/.aws must not leak into the test, nor the test into it.
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    yield endpoint
    # fsspec caches one S3 filesystem per set of options: drop the one bound to this server.
    s3fs.S3FileSystem.clear_instance_cache()
    server.stop()


def _upload(files: dict[str, Path]) -> None:
    """Put each local file under its key in the test bucket."""
    client = boto3.client("s3")
    for key, path in files.items():
        client.upload_file(str(path), BUCKET, key)


def _keys(prefix: str) -> list[str]:
    """Every key under ``prefix`` in the test bucket."""
    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def _tick(source: ImageSource, instance: dg.DagsterInstance, cursor: str | None = None) -> dg.SensorExecutionData:
    context = dg.build_sensor_context(
        instance=instance,
        instance_ref=instance.get_ref(),
        cursor=cursor,
        resources={"source": source},
        definitions=defs,
    )
    return ingest_batch_sensor.evaluate_tick(context)


def _digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder``, by relative path."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_batches_from_s3_prefixes_are_ingested_cleaned_and_snapshotted_to_s3(
    s3: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sensor finds each batch prefix of the bucket, raw_images + cleaned_images run for both
    partitions reading the objects, every snapshot lands on the S3 DVC remote, a rewritten object
    re-triggers only its batch, and `labeling-dag restore` brings a snapshot back from S3 alone."""
    local = tmp_path / "generated"
    good = write_good_images(local / "good", 6)
    bad = write_bad_images(local / "bad")
    (local / "notes.txt").write_text("not an image")
    _upload(
        {
            **{f"incoming/{FIRST}/{path.name}": path for path in good[:3]},
            f"incoming/{FIRST}/camera-2/{good[3].name}": good[3],  # batches are searched recursively
            f"incoming/{FIRST}/.upload-in-progress.png": good[4],  # hidden: ignored
            f"incoming/{SECOND}/{good[4].name}": good[4],
            f"incoming/{SECOND}/{good[5].name}": good[5],
            f"incoming/{SECOND}/truncated.png": local / "bad" / "truncated.png",
            f"incoming/{SECOND}/notes.txt": local / "notes.txt",
            "incoming/bad name!/x.png": good[0],
        }
    )
    assert bad["truncated.png"] == "truncated"
    source = ImageSource(folder=SOURCE)
    home = tmp_path / "dagster_home"
    home.mkdir()
    instance = dg.DagsterInstance.local_temp(str(home))

    first = _tick(source, instance)
    assert [r.partition_key for r in first.run_requests] == [FIRST, SECOND]
    [added] = first.dynamic_partitions_requests
    assert list(added.partition_keys) == [FIRST, SECOND]
    instance.add_dynamic_partitions(ingest_batches.name, list(added.partition_keys))
    again = _tick(source, instance, cursor=first.cursor)
    assert again.run_requests == [] and f"{SOURCE}/bad name!: not an ingestion batch" in again.skip_message

    work = tmp_path / "work"
    snapshots = SnapshotStore(remote=REMOTE, remote_endpoint_url=s3)
    resources = {"store": LabelStore(workdir=str(work)), "source": source, "snapshots": snapshots}
    snapshot_ids = {}
    for batch in (FIRST, SECOND):
        result = dg.materialize(
            [raw_images, cleaned_images], resources=resources, instance=instance, partition_key=batch
        )
        assert result.success
        [event] = [e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey("cleaned_images")]
        snapshot_ids[batch] = event.step_materialization_data.materialization.metadata["dvc_snapshot"].value

    store = LabelStore(workdir=str(work))
    raw = store.read(RAW_INDEX, batch=FIRST)
    expected_first = sorted(
        [f"{SOURCE}/{FIRST}/{p.name}" for p in good[:3]] + [f"{SOURCE}/{FIRST}/camera-2/{good[3].name}"]
    )
    assert sorted(raw["source_path"]) == expected_first
    for row in raw.itertuples():
        assert hashlib.sha256((work / row.stored_path).read_bytes()).hexdigest() == row.image_id
    cleaned_first = store.read(CLEANED, batch=FIRST)
    assert sorted(cleaned_first["source_path"]) == expected_first
    assert set(cleaned_first["image_id"]) == set(raw["image_id"])
    cleaned_second = store.read(CLEANED, batch=SECOND)
    assert sorted(cleaned_second["source_path"]) == sorted(f"{SOURCE}/{SECOND}/{p.name}" for p in good[4:6])
    rejects = store.read(REJECTS, batch=SECOND)
    assert rejects[["source_path", "reason"]].to_dict("records") == [
        {"source_path": f"{SOURCE}/{SECOND}/truncated.png", "reason": "truncated"}
    ]
    assert not store.read(RAW_INDEX, batch=SECOND)["source_path"].str.endswith(".txt").any()

    # Each snapshot's directory object (and the files it lists) is on the S3 remote, not on local disk.
    stored = set(_keys("dvc/"))
    for snapshot_id in snapshot_ids.values():
        assert f"dvc/files/md5/{snapshot_id[:2]}/{snapshot_id[2:]}.dir" in stored
    assert len(stored) >= len(cleaned_first) + len(cleaned_second) + len(rejects) + 2
    assert not (work / ".dvc-storage").exists()

    # A rewritten object changes its ETag: only its batch is asked for again.
    boto3.client("s3").upload_file(str(good[0]), BUCKET, f"incoming/{SECOND}/{good[5].name}")
    rewritten = _tick(source, instance, cursor=first.cursor)
    assert [r.partition_key for r in rewritten.run_requests] == [SECOND]
    assert rewritten.dynamic_partitions_requests == []

    # Lose the local DVC cache and the folder: the deployment's environment alone (remote from
    # LABELING_DAG_DVC_REMOTE, endpoint from LABELING_DAG_DVC_ENDPOINT_URL) brings it back.
    before = _digest(work / "cleaned_images" / FIRST)
    shutil.rmtree(work / ".dvc" / "cache")
    shutil.rmtree(work / "cleaned_images" / FIRST)
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv("LABELING_DAG_DVC_REMOTE", REMOTE)
    monkeypatch.setenv("LABELING_DAG_DVC_ENDPOINT_URL", s3)
    assert cli(["restore", "cleaned_images", snapshot_ids[FIRST], "--batch", FIRST, "--workdir", str(work)]) == 0
    assert _digest(work / "cleaned_images" / FIRST) == before


def test_missing_prefix_or_batch_is_a_clear_error(s3: str) -> None:
    """A source prefix holding nothing, or a batch gone from it, is named in the error."""
    with pytest.raises(FileNotFoundError, match=f"{SOURCE}: image source prefix does not exist"):
        ImageSource(folder=SOURCE).batches()
    boto3.client("s3").put_object(Bucket=BUCKET, Key="incoming/loose.png", Body=b"x")
    source = ImageSource(folder=SOURCE)
    assert source.batches() == (["_root"], [])
    assert [str(path) for path in source.files("_root")] == [f"{SOURCE}/loose.png"]
    with pytest.raises(
        FileNotFoundError, match=f"{SOURCE}/{FIRST}: ingestion batch '{FIRST}' is not in the source folder"
    ):
        source.files(FIRST)
