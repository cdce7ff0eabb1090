"""The Label Studio API token (a ``dg.EnvVar``) appears nowhere in what a run leaves behind.

A cold-start review batch is materialised through the production definitions against a real
Label Studio server: ``prelabel_batch`` (raw and cleaned images of partition ``_root``), then
``select_review_batch``, whose ``review`` resource is ``LabelStudioReview`` with its URL and
token read from the environment. Then the same with a wrong token, which fails the run. After
each, the run's event log (every record, serialised, metadata and error chains included), every
file under the instance's folder (event and run databases, captured compute logs) and whatever
the process printed are searched for the token.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
from conftest import make_resources
from labeling_dag.resources.label_studio import LabelStudioReview
from labeling_dag.resources.loop_policy import LoopPolicy
from labeling_dag.resources.storage import LabelStore

from labeling_dag.definitions import build_definitions
from labeling_dag.ingest_batches import ROOT_BATCH
from labeling_dag.partitions import ingest_batches
from tests.label_studio_server import LabelStudioServer, label_studio_fixture

pytestmark = pytest.mark.slow

CLASSES = ("circle", "square", "triangle")
label_studio = pytest.fixture(scope="module")(label_studio_fixture())


def _materialise_review_batch(
    workdir: Path, pool: Path, instance: dg.DagsterInstance, title: str
) -> dg.ExecuteInProcessResult:
    """Raw → cleaned for ``_root``, then the review batch handed to Label Studio; the last run's result."""
    resources = make_resources(workdir, pool) | {
        "review": LabelStudioReview(
            url=dg.EnvVar("LABEL_STUDIO_URL"), api_token=dg.EnvVar("LABEL_STUDIO_API_TOKEN"), project_title=title
        ),
        "policy": LoopPolicy(validation_dataset=str(workdir / "unused.yaml")),
    }
    LabelStore(workdir=str(workdir)).set_class_names(CLASSES)
    defs = build_definitions(resources)
    instance.add_dynamic_partitions(ingest_batches.name, [ROOT_BATCH])
    prelabel = defs.resolve_job_def("prelabel_batch").execute_in_process(
        instance=instance,
        partition_key=ROOT_BATCH,
        asset_selection=[dg.AssetKey("raw_images"), dg.AssetKey("cleaned_images")],
    )
    assert prelabel.success
    return defs.resolve_job_def("select_review_batch").execute_in_process(
        run_config={"ops": {"review_batch": {"config": {"size": 6}}}}, instance=instance, raise_on_error=False
    )


def _places_holding(secret: str, instance: dg.DagsterInstance, run_id: str, printed: str) -> list[str]:
    """Where ``secret`` occurs: event records of the run, files under the instance folder, printed output."""
    places = [
        f"event {record.dagster_event.event_type_value if record.dagster_event else 'log'}"
        for record in instance.all_logs(run_id)
        if secret in repr(record) or secret in dg.serialize_value(record)
    ]
    for path in Path(instance.root_directory).rglob("*"):
        if path.is_file() and secret.encode() in path.read_bytes():
            places.append(str(path))
    if secret in printed:
        places.append("stdout/stderr")
    return places


def test_token_is_nowhere_in_a_successful_runs_logs(
    label_studio: LabelStudioServer,
    tmp_path: Path,
    pool: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """The batch reaches the server (so the token was used) and the token is nowhere in the run's traces."""
    monkeypatch.setenv("LABEL_STUDIO_URL", label_studio.url)
    monkeypatch.setenv("LABEL_STUDIO_API_TOKEN", label_studio.token)
    (tmp_path / "home").mkdir()
    with dg.DagsterInstance.local_temp(str(tmp_path / "home")) as instance:
        result = _materialise_review_batch(tmp_path / "work", pool, instance, "secrets-ok")
        assert result.success
        [materialization] = result.asset_materializations_for_node("review_batch")
        assert materialization.metadata["review_location"].value.startswith(label_studio.url)
        out, err = capfd.readouterr()
        assert _places_holding(label_studio.token, instance, result.run_id, out + err) == []
        # The search does read what the run recorded: the server URL, from the metadata, is found.
        assert any(
            place.startswith("event ASSET_MATERIALIZATION")
            for place in _places_holding(label_studio.url, instance, result.run_id, "")
        )


def test_token_is_nowhere_when_the_server_refuses_it(
    label_studio: LabelStudioServer,
    tmp_path: Path,
    pool: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A wrong token: the step fails with an error that says the server refused it, and neither the
    wrong token nor the real one appears in the event log, the instance's files or the output."""
    wrong = "0f1e2d3c4b5a69788796a5b4c3d2e1f0deadbeef"
    monkeypatch.setenv("LABEL_STUDIO_URL", label_studio.url)
    monkeypatch.setenv("LABEL_STUDIO_API_TOKEN", wrong)
    (tmp_path / "home").mkdir()
    with dg.DagsterInstance.local_temp(str(tmp_path / "home")) as instance:
        result = _materialise_review_batch(tmp_path / "work", pool, instance, "secrets-refused")
        assert not result.success
        [failure] = [event for event in result.all_events if event.event_type_value == "STEP_FAILURE"]
        message = failure.event_specific_data.error.to_string()
        assert "401" in message or "403" in message or "refused" in message.lower(), message[-2000:]
        out, err = capfd.readouterr()
        for secret in (wrong, label_studio.token):
            assert _places_holding(secret, instance, result.run_id, out + err) == []
        # The search does read the failure: the error's own words are found in the event log.
        assert any(
            place == "event STEP_FAILURE"
            for place in _places_holding(message.splitlines()[0][:60], instance, result.run_id, "")
        )
