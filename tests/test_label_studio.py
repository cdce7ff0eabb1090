"""The Label Studio review backend against a real Label Studio server (installed on first use)."""

from __future__ import annotations

import copy
import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests
from labeling_dag.resources.label_studio import LabelStudioReview
from labeling_dag.resources.review_exchange import ReviewBackendError
from PIL import Image

from labeling_dag.contracts import LABELS, REVIEW_BATCHES
from labeling_dag.formats.label_studio import labeling_config, review_task
from labeling_dag.formats.label_studio_export import parse_all_annotations, parse_export
from labeling_dag.merge import edit_rows
from labeling_dag.records import NormBox, PreLabel, ReviewImage
from tests.faults.review_files import batch_rows
from tests.label_studio_server import LabelStudioServer, free_port, label_studio_fixture

pytestmark = pytest.mark.slow

CLASSES = ("car", "person", "bicycle")
MODEL = "model-sha-1234"
label_studio = pytest.fixture(scope="module")(label_studio_fixture())


class Api:
    """Direct API access, as a reviewer's browser or an admin would act."""

    def __init__(self, server: LabelStudioServer) -> None:
        self.url = server.url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Token {server.token}"

    def get(self, path: str, **params: Any) -> Any:
        response = self.session.get(self.url + path, params=params, timeout=30)
        response.raise_for_status()
        return response.json()

    def send(self, method: str, path: str, body: Any = None) -> requests.Response:
        response = self.session.request(method, self.url + path, json=body, timeout=30)
        response.raise_for_status()
        return response

    def user_id(self) -> int:
        return int(self.get("/api/current-user/whoami")["id"])

    def annotate(self, task_id: int, result: list[dict[str, Any]], **fields: Any) -> None:
        """Save an annotation of ``result``; ``fields`` are further annotation fields, e.g. ``lead_time``."""
        body = {"result": result, "completed_by": self.user_id(), **fields}
        self.send("POST", f"/api/tasks/{task_id}/annotations/", body)

    def task_count(self, project_id: int) -> int:
        return int(self.get("/api/tasks/", project=project_id, page_size=1)["total"])


@pytest.fixture
def api(label_studio: LabelStudioServer) -> Api:
    return Api(label_studio)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path / "work"


def backend(server: LabelStudioServer, title: str, **overrides: Any) -> LabelStudioReview:
    return LabelStudioReview(url=server.url, api_token=server.token, project_title=title, **overrides)


def images(count: int, *, prefix: str = "img", model: str = MODEL) -> list[ReviewImage]:
    """Images with two or three pre-labelled boxes each, spread so that no two boxes overlap."""
    records = []
    for i in range(count):
        image_id = f"{prefix}-{i:04d}"
        labels = tuple(
            PreLabel(
                box_id=f"{image_id}-b{j}",
                image_id=image_id,
                class_name=CLASSES[(i + j) % len(CLASSES)],
                box=NormBox(0.15 + 0.3 * j, 0.3 + 0.05 * (i % 5), 0.2, 0.25),
                confidence=0.5 + 0.1 * j,
                class_probs=(0.5, 0.3, 0.2),
                model_version=model,
            )
            for j in range(2 + i % 2)
        )
        records.append(
            ReviewImage(
                image_id=image_id,
                image_ref=f"/data/local-files/?d=cleaned_images/files/{image_id}.png",
                width=640,
                height=480,
                score=0.1 * (i % 10),
                pre_labels=labels,
            )
        )
    return records


def batch_tasks(batch_id: str, count: int, **kwargs: Any) -> list[dict[str, Any]]:
    return [
        review_task(image, batch_id=batch_id, model_version=MODEL, pre_label_run_id="run-1")
        for image in images(count, **kwargs)
    ]


def recorded(workdir: Path, batch_id: str) -> dict[str, Any]:
    return json.loads((workdir / "exchange" / "label_studio" / f"{batch_id}.json").read_text())


def test_export_creates_project_imports_predictions_and_is_idempotent(
    label_studio: LabelStudioServer, api: Api
) -> None:
    # The server's local-files document root plays the workdir, as in a real deployment.
    workdir = label_studio.document_root
    tasks = batch_tasks("b-export", 6)
    (workdir / "cleaned_images" / "files").mkdir(parents=True)
    for task in tasks:
        Image.new("RGB", (640, 480), "gray").save(
            workdir / "cleaned_images" / "files" / f"{task['data']['image_id']}.png"
        )
    review = backend(label_studio, "export-test", local_files_path=str(workdir / "cleaned_images"))

    location = review.export(workdir, "b-export", copy.deepcopy(tasks), CLASSES)

    record = recorded(workdir, "b-export")
    project = api.get(f"/api/projects/{record['project_id']}/")
    assert location == f"{label_studio.url}/projects/{project['id']}/"
    assert label_studio.token not in location
    assert project["title"] == "export-test"
    assert project["label_config"] == labeling_config(CLASSES)
    assert project["model_version"] == MODEL  # the labelling stream shows this version's predictions
    assert len(record["task_ids"]) == 6
    for sent, task_id in zip(tasks, record["task_ids"]):
        stored = api.get(f"/api/tasks/{task_id}")
        assert stored["data"] == sent["data"]
        (prediction,) = stored["predictions"]
        assert prediction["model_version"] == MODEL
        assert prediction["result"] == sent["predictions"][0]["result"]  # region ids = pre-label box ids
        assert prediction["score"] == pytest.approx(sent["predictions"][0]["score"])
    # The images resolve through the connected local-files storage.
    image = api.session.get(f"{label_studio.url}{tasks[0]['data']['image']}", timeout=30)
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"

    assert review.export(workdir, "b-export", copy.deepcopy(tasks), CLASSES) == location
    assert api.task_count(project["id"]) == 6
    assert recorded(workdir, "b-export") == record
    assert len(api.get("/api/storages/localfiles/", project=project["id"])) == 1


def test_export_refuses_a_project_with_other_labels(label_studio: LabelStudioServer, workdir: Path) -> None:
    review = backend(label_studio, "other-labels")
    review.export(workdir, "b-one", batch_tasks("b-one", 1), CLASSES)
    with pytest.raises(ReviewBackendError, match=r"offers the labels .* but the pipeline's classes are"):
        review.export(workdir, "b-two", batch_tasks("b-two", 1), ("car", "truck"))


def _moved(region: dict[str, Any], dx: float) -> dict[str, Any]:
    region = copy.deepcopy(region)
    region["value"]["x"] += dx
    return region


def test_collect_returns_a_batch_once_every_task_is_annotated(
    label_studio: LabelStudioServer, api: Api, workdir: Path
) -> None:
    batch = "b-collect"
    tasks = batch_tasks(batch, 6)
    review = backend(label_studio, "collect-test")
    review.export(workdir, batch, copy.deepcopy(tasks), CLASSES)
    task_ids = recorded(workdir, batch)["task_ids"]
    stored = {task_id: api.get(f"/api/tasks/{task_id}")["predictions"][0]["result"] for task_id in task_ids}
    added = {
        "id": "reviewer-new-1",
        "from_name": "label",
        "to_name": "image",
        "type": "rectanglelabels",
        "original_width": 640,
        "original_height": 480,
        "image_rotation": 0,
        "value": {"x": 40.0, "y": 80.0, "width": 10.0, "height": 10.0, "rotation": 0, "rectanglelabels": ["person"]},
    }
    reviews = [
        stored[task_ids[0]],  # accepted unchanged, region ids kept
        [_moved(stored[task_ids[1]][0], 3.0), *stored[task_ids[1]][1:]],  # one box moved
        [*stored[task_ids[2]], added],  # one box added
        stored[task_ids[3]][1:],  # one box deleted
        stored[task_ids[4]],
        stored[task_ids[5]],
    ]
    for task_id, result in zip(task_ids[:-1], reviews[:-1]):
        api.annotate(task_id, result)
    assert review.collect(workdir, open_batches=[batch, "never-exported"]) == []

    api.annotate(task_ids[-1], reviews[-1])
    (collected,) = review.collect(workdir, open_batches=[batch, "never-exported"])

    assert collected.batch_id == batch
    assert [task["id"] for task in collected.tasks] == task_ids
    annotations = parse_export(collected.tasks, class_names=CLASSES, expected_batch_id=batch)
    assert [a.image_id for a in annotations] == [task["data"]["image_id"] for task in tasks]
    assert {a.reviewer for a in annotations} == {str(api.user_id())}
    assert [len(a.boxes) for a in annotations] == [len(result) for result in reviews]
    moved = annotations[1].boxes[0]
    assert moved.region_id == stored[task_ids[1]][0]["id"]
    assert moved.box.x == pytest.approx(images(6)[1].pre_labels[0].box.x + 0.03)
    assert annotations[2].boxes[-1].region_id == "reviewer-new-1"
    assert annotations[2].boxes[-1].class_name == "person"

    edits = edit_rows(annotations, tasks, batch_id=batch, gold_ids=set(), spot_check_ids=set())
    kinds = {image_id: Counter(group) for image_id, group in edits.groupby("image_id")["edit_kind"]}
    ids = [task["data"]["image_id"] for task in tasks]
    assert kinds[ids[0]] == Counter(accepted=2)
    assert kinds[ids[1]] == Counter(accepted=2, moved=1)
    assert kinds[ids[2]] == Counter(accepted=2, added=1)
    assert kinds[ids[3]] == Counter(accepted=2, deleted=1)
    assert kinds[ids[4]] == Counter(accepted=2) and kinds[ids[5]] == Counter(accepted=3)
    assert set(edits["model_version"]) == {MODEL}


def test_a_task_asking_for_two_annotators_is_collected_once_two_have_annotated_it(
    label_studio: LabelStudioServer, api: Api, workdir: Path
) -> None:
    """Consensus in Label Studio: the task's overlap is set to the annotators it asks for, and the
    batch comes back only once a second annotator (another user) has labelled it too."""
    batch = "b-overlap"
    tasks = batch_tasks(batch, 3)
    tasks[1] = review_task(images(3)[1], batch_id=batch, model_version=MODEL, pre_label_run_id="run-1", annotators=2)
    review = backend(label_studio, "overlap-test")
    review.export(workdir, batch, copy.deepcopy(tasks), CLASSES)
    task_ids = recorded(workdir, batch)["task_ids"]
    assert [api.get(f"/api/tasks/{task_id}")["overlap"] for task_id in task_ids] == [1, 2, 1]
    for task_id in task_ids:
        api.annotate(task_id, api.get(f"/api/tasks/{task_id}")["predictions"][0]["result"])
    assert review.collect(workdir, open_batches=[batch]) == []

    second = api.send("POST", "/api/users/", {"email": "second-annotator@example.com", "username": "second"}).json()
    shared = api.get(f"/api/tasks/{task_ids[1]}")["predictions"][0]["result"]
    api.annotate(task_ids[1], shared[1:], completed_by=second["id"])
    (collected,) = review.collect(workdir, open_batches=[batch])

    everyone = parse_all_annotations(collected.tasks, class_names=CLASSES, expected_batch_id=batch)
    shared_image = tasks[1]["data"]["image_id"]
    assert len({a.reviewer for a in everyone if a.image_id == shared_image}) == 2
    assert [len(a.boxes) for a in everyone if a.image_id == shared_image] == [len(shared), len(shared) - 1]


def test_large_batch_is_imported_in_chunks(
    label_studio: LabelStudioServer, api: Api, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, str]] = []
    original = requests.Session.request

    def counting(self: requests.Session, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        calls.append((method, url))
        return original(self, method, url, *args, **kwargs)

    monkeypatch.setattr(requests.Session, "request", counting)
    review = backend(label_studio, "large-test")
    started = time.monotonic()
    review.export(workdir, "b-large", batch_tasks("b-large", 1200), CLASSES)
    elapsed = time.monotonic() - started

    imports = [url for method, url in calls if method == "POST" and url.endswith("/import")]
    assert len(imports) == 3  # 500 + 500 + 200
    assert len(calls) <= 8, calls
    project_id = recorded(workdir, "b-large")["project_id"]
    assert len(set(recorded(workdir, "b-large")["task_ids"])) == 1200
    assert api.task_count(project_id) == 1200
    assert elapsed < 60

    calls.clear()
    assert review.collect(workdir, open_batches=["b-large"]) == []
    assert len(calls) == 2  # one page of 1000 tasks, then the remaining 200


def test_wrong_token_is_reported_without_the_token(label_studio: LabelStudioServer, workdir: Path) -> None:
    token = "not-the-token-0123456789abcdef"
    review = LabelStudioReview(url=label_studio.url, api_token=token, project_title="token-test")
    with pytest.raises(ReviewBackendError, match="rejected the API token") as raised:
        review.export(workdir, "b-token", batch_tasks("b-token", 1), CLASSES)
    assert token not in str(raised.value)
    assert token not in repr(review)


def test_unreachable_server_is_reported_with_its_url(workdir: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    review = LabelStudioReview(url=url, api_token="secret-token-value", timeout_seconds=2)
    with pytest.raises(ReviewBackendError, match="unreachable") as raised:
        review.export(workdir, "b-gone", batch_tasks("b-gone", 1), CLASSES)
    assert url in str(raised.value)
    assert "secret-token-value" not in str(raised.value)


def test_deleted_project_fails_collect(label_studio: LabelStudioServer, api: Api, workdir: Path) -> None:
    review = backend(label_studio, "deleted-project-test")
    review.export(workdir, "b-doomed", batch_tasks("b-doomed", 2), CLASSES)
    project_id = recorded(workdir, "b-doomed")["project_id"]
    api.send("DELETE", f"/api/projects/{project_id}/")
    with pytest.raises(ReviewBackendError, match=rf"project {project_id} .*no longer exists"):
        review.collect(workdir, open_batches=["b-doomed"])


def test_deleted_task_fails_collect_until_the_batch_is_exported_again(
    label_studio: LabelStudioServer, api: Api, workdir: Path
) -> None:
    tasks = batch_tasks("b-holey", 3)
    review = backend(label_studio, "deleted-task-test")
    review.export(workdir, "b-holey", copy.deepcopy(tasks), CLASSES)
    task_ids = recorded(workdir, "b-holey")["task_ids"]
    api.send("DELETE", f"/api/tasks/{task_ids[1]}/")
    with pytest.raises(ReviewBackendError, match=rf"task {task_ids[1]} of review batch 'b-holey'"):
        review.collect(workdir, open_batches=["b-holey"])

    review.export(workdir, "b-holey", copy.deepcopy(tasks), CLASSES)
    renewed = recorded(workdir, "b-holey")["task_ids"]
    assert renewed[0] == task_ids[0] and renewed[2] == task_ids[2] and renewed[1] not in task_ids
    assert review.collect(workdir, open_batches=["b-holey"]) == []


def test_gold_items_carry_nothing_that_marks_them(label_studio: LabelStudioServer, api: Api, workdir: Path) -> None:
    tasks = batch_tasks("b-mixed", 4)
    # The pipeline counts image 2 as gold; nothing that reaches Label Studio may tell.
    review = backend(label_studio, "mixed-test")
    review.export(workdir, "b-mixed", copy.deepcopy(tasks), CLASSES)
    for task_id in recorded(workdir, "b-mixed")["task_ids"]:
        stored = api.get(f"/api/tasks/{task_id}")
        assert "gold" not in json.dumps({"data": stored["data"], "meta": stored["meta"]}).lower()
        assert "gold" not in json.dumps(stored).lower()
    assert set(tasks[2]["data"]) == set(tasks[0]["data"])


def test_sensor_merges_a_batch_completed_in_label_studio(
    label_studio: LabelStudioServer, api: Api, workdir: Path
) -> None:
    """review_complete_sensor polls Label Studio, delivers the finished batch to the inbox and requests its merge."""
    import dagster as dg
    from labeling_dag.resources.review_exchange import FileReviewExchange
    from labeling_dag.resources.storage import LabelStore

    from labeling_dag.sensors import merge_run_config, review_complete_sensor

    batch = "b-sensor"
    tasks = batch_tasks(batch, 3, prefix="sensor")
    store, exchange = LabelStore(workdir=str(workdir)), FileReviewExchange()
    store.set_class_names(CLASSES)
    review = backend(label_studio, "sensor-test")
    exchange.export(workdir, batch, tasks)  # what review_batch writes before handing over
    review.export(workdir, batch, copy.deepcopy(tasks), CLASSES)
    resources = {"store": store, "exchange": exchange, "review": review}
    instance = dg.DagsterInstance.ephemeral()

    def tick(cursor: str | None) -> dg.SensorExecutionData:
        context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
        return review_complete_sensor.evaluate_tick(context)

    waiting = tick(None)
    assert not waiting.run_requests
    for task_id in recorded(workdir, batch)["task_ids"]:
        api.annotate(task_id, api.get(f"/api/tasks/{task_id}")["predictions"][0]["result"])
    done = tick(waiting.cursor)
    (request,) = done.run_requests
    assert request.run_key == batch and request.run_config == merge_run_config(batch)
    received = json.loads(exchange.received_file(workdir, batch).read_text())
    assert len(parse_export(received, class_names=CLASSES, expected_batch_id=batch)) == 3
    assert not tick(done.cursor).run_requests  # nothing is collected or requested twice


# Set to a folder to save the export this test downloads, and the outbox it answers, there:
# how tests/data/label_studio_1.23.2_export.json and ..._outbox.json were captured (this test
# alone, on a fresh server, so that the project and task ids are 1, 2, 3...).
CAPTURE_ENV = "LABELING_DAG_CAPTURE_LABEL_STUDIO_EXPORT"


def test_label_studios_own_json_export_is_accepted_by_the_inbox(
    label_studio: LabelStudioServer, api: Api, workdir: Path
) -> None:
    """The file a user gets from Export -> JSON (predictions as bare ids, Label Studio's own
    task and annotation fields) passes the inbox as downloaded, and keeps the annotators' lead_time."""
    from labeling_dag.resources.review_exchange import FileReviewExchange

    from labeling_dag import atomic
    from labeling_dag.review_intake import judge_review_file

    batch = "b-own-export"
    tasks = batch_tasks(batch, 3, prefix="own")
    exchange = FileReviewExchange()
    exchange.export(workdir, batch, tasks)  # what review_batch writes before handing over
    backend(label_studio, "own-export-test").export(workdir, batch, copy.deepcopy(tasks), CLASSES)
    project_id, task_ids = recorded(workdir, batch)["project_id"], recorded(workdir, batch)["task_ids"]
    predicted = [api.get(f"/api/tasks/{task_id}")["predictions"][0]["result"] for task_id in task_ids]
    results = [predicted[0], [_moved(predicted[1][0], 3.0), *predicted[1][1:]], predicted[2]]
    for task_id, result in zip(task_ids, results):
        api.annotate(task_id, result, lead_time=12.5)

    # GET /api/projects/<id>/export?exportType=JSON: the synchronous export behind the SDK's
    # projects.exports.download_sync; it holds the annotated tasks, here all of them.
    response = api.session.get(
        f"{label_studio.url}/api/projects/{project_id}/export", params={"exportType": "JSON"}, timeout=60
    )
    response.raise_for_status()
    exported = json.loads(response.content)
    assert [task["id"] for task in exported] == task_ids
    # The shape that used to be refused: predictions listed by id, not as objects.
    assert all(len(task["predictions"]) == 1 and isinstance(task["predictions"][0], int) for task in exported), [
        task["predictions"] for task in exported
    ]
    inbox_file = workdir / "exchange" / "inbox" / f"{batch}.json"
    atomic.write_bytes(inbox_file, response.content)
    if capture := os.environ.get(CAPTURE_ENV):
        atomic.write_bytes(Path(capture) / "label_studio_1.23.2_export.json", response.content)
        atomic.copy_file(exchange.outbox_file(workdir, batch), Path(capture) / "label_studio_1.23.2_outbox.json")

    verdict = judge_review_file(
        inbox_file,
        exported_tasks=lambda batch_id: exchange.exported_tasks(workdir, batch_id) if batch_id == batch else None,
        already_received=lambda batch_id: False,
        class_names=CLASSES,
        data_root=workdir,
        settle_seconds=0,
    )
    assert verdict.accepted, verdict.problem
    assert verdict.batch_id == batch

    annotations = parse_export(exported, class_names=CLASSES, expected_batch_id=batch)
    stored = [api.get(f"/api/tasks/{task_id}")["annotations"][0]["lead_time"] for task_id in task_ids]
    assert stored == [12.5] * 3  # what the server recorded
    assert [a.lead_time for a in annotations] == stored
    assert [a.prediction_region_ids for a in annotations] == [()] * 3  # ids name no regions
    assert {a.reviewer for a in annotations} == {str(api.user_id())}
    # The merge compares with the predictions in the outbox, so the ids lose it nothing.
    outbox = exchange.exported_tasks(workdir, batch)
    edits = edit_rows(annotations, outbox, batch_id=batch, gold_ids=set(), spot_check_ids=set())
    kinds = {image_id: Counter(group) for image_id, group in edits.groupby("image_id")["edit_kind"]}
    assert [kinds[task["data"]["image_id"]] for task in tasks] == [
        Counter(accepted=2),
        Counter(accepted=2, moved=1),
        Counter(accepted=2),
    ]


def test_sensor_reports_a_stopped_server_and_recovers(workdir: Path) -> None:
    """With Label Studio down the tick skips with the cause (and no token); nothing is lost."""
    import dagster as dg
    from labeling_dag.resources.review_exchange import FileReviewExchange
    from labeling_dag.resources.storage import LabelStore

    from labeling_dag.sensors import review_complete_sensor

    store, exchange = LabelStore(workdir=str(workdir)), FileReviewExchange()
    store.set_class_names(CLASSES)
    exchange.export(workdir, "b-down", batch_tasks("b-down", 2, prefix="down"))
    dead = LabelStudioReview(url=f"http://127.0.0.1:{free_port()}", api_token="secret-token-xyz")
    (workdir / "exchange" / "label_studio").mkdir(parents=True)
    (workdir / "exchange" / "label_studio" / "b-down.json").write_text(
        json.dumps({"project_id": 1, "task_ids": [1, 2]})
    )
    context = dg.build_sensor_context(
        instance=dg.DagsterInstance.ephemeral(), resources={"store": store, "exchange": exchange, "review": dead}
    )
    result = review_complete_sensor.evaluate_tick(context)
    assert not result.run_requests
    assert "review backend" in result.skip_message and "127.0.0.1" in result.skip_message
    assert "secret-token-xyz" not in result.skip_message
    assert exchange.open_batches(workdir) == ["b-down"]


class Pipeline:
    """A workdir where one batch went out to Label Studio, with the review sensor and the merge job over it."""

    def __init__(self, server: LabelStudioServer, workdir: Path, batch: str, title: str, images: int) -> None:
        import dagster as dg
        from labeling_dag.resources.review_exchange import FileReviewExchange
        from labeling_dag.resources.storage import LabelStore

        self.tasks = batch_tasks(batch, images, prefix="rev")
        self.store, self.exchange = LabelStore(workdir=str(workdir)), FileReviewExchange()
        self.store.set_class_names(CLASSES)
        self.review = backend(server, title)
        self.instance = dg.DagsterInstance.ephemeral()
        self.cursor: str | None = None
        # What review_batch records and writes before handing the batch over.
        self.store.write(
            REVIEW_BATCHES,
            batch_rows(batch, [t["data"]["image_id"] for t in self.tasks], model_version=MODEL, run_id="select-run"),
        )
        self.exchange.export(workdir, batch, self.tasks)
        self.review.export(workdir, batch, copy.deepcopy(self.tasks), CLASSES)
        self.task_ids = recorded(workdir, batch)["task_ids"]

    def tick(self) -> list[str]:
        """One review_complete_sensor tick from the cursor the last one left; the run keys it requests."""
        result = self.evaluate(self.cursor)
        self.cursor = result.cursor
        return [request.run_key for request in result.run_requests]

    def evaluate(self, cursor: str | None) -> Any:
        """A review_complete_sensor tick from ``cursor`` (a replay when it is an old one)."""
        import dagster as dg

        from labeling_dag.sensors import review_complete_sensor

        resources = {"store": self.store, "exchange": self.exchange, "review": self.review}
        return review_complete_sensor.evaluate_tick(
            dg.build_sensor_context(instance=self.instance, cursor=cursor, resources=resources)
        )

    def annotate_all(self, api: Api) -> dict[int, list[dict[str, Any]]]:
        """Every task annotated by accepting its predictions; task id -> the result saved."""
        results = {task_id: api.get(f"/api/tasks/{task_id}")["predictions"][0]["result"] for task_id in self.task_ids}
        for task_id, result in results.items():
            api.annotate(task_id, result)
        return results

    def merge(self, merge_id: str) -> None:
        """The merge_review job of one returned batch or revision, as the sensor's run request configures it."""
        import dagster as dg
        from labeling_dag.assets.annotations import review_annotations
        from labeling_dag.assets.verification import verified_labels
        from labeling_dag.resources.snapshots import SnapshotStore

        from labeling_dag.checks import review_quality_gate
        from labeling_dag.sensors import merge_run_config

        result = dg.materialize(
            [review_annotations, verified_labels, review_quality_gate],
            resources={"store": self.store, "exchange": self.exchange, "snapshots": SnapshotStore()},
            run_config=merge_run_config(merge_id),
            instance=self.instance,
        )
        assert result.success

    def labels(self) -> Any:
        """The verified labels table, retired rows included."""

        return self.store.read(LABELS)


def test_an_annotation_edited_after_the_merge_comes_back_as_a_revision(
    label_studio: LabelStudioServer, api: Api, workdir: Path
) -> None:
    """Export, annotate, merge; then a reviewer moves a box of one merged task and re-saves
    another unchanged. The next tick files the moved task alone as revision <batch>.r2 and
    requests its merge; its merge retires that image's rows (kept) and adds the new ones;
    the other images keep theirs; trace shows both. Ticks in between and after start nothing."""
    from labeling_dag.lineage import Workdir, trace_image
    from labeling_dag.merge import active

    batch = "b-revised"
    pipeline = Pipeline(label_studio, workdir, batch, "revision-test", images=3)
    results = pipeline.annotate_all(api)
    assert pipeline.tick() == [batch]
    pipeline.merge(batch)
    merged = pipeline.labels()
    assert len(merged) == sum(len(result) for result in results.values()) and (merged["retired_by"] == "").all()
    assert pipeline.tick() == []  # nothing was edited: no revision

    edited_task, resaved_task = pipeline.task_ids[1], pipeline.task_ids[2]
    edited_image = pipeline.tasks[1]["data"]["image_id"]
    (annotation,) = api.get(f"/api/tasks/{edited_task}")["annotations"]
    moved = [_moved(results[edited_task][0], 5.0), *results[edited_task][1:]]
    api.send("PATCH", f"/api/annotations/{annotation['id']}/", {"result": moved})
    (unchanged,) = api.get(f"/api/tasks/{resaved_task}")["annotations"]
    api.send("PATCH", f"/api/annotations/{unchanged['id']}/", {"result": results[resaved_task]})

    revision = f"{batch}.r2"
    before_tick = pipeline.cursor
    assert pipeline.tick() == [revision]
    # The tick replayed (its cursor lost): the same run key again, nothing filed twice.
    filed = sorted(path.name for path in (workdir / "exchange").rglob("*.json"))
    assert [request.run_key for request in pipeline.evaluate(before_tick).run_requests] == [revision]
    assert sorted(path.name for path in (workdir / "exchange").rglob("*.json")) == filed
    received = json.loads(pipeline.exchange.received_file(workdir, revision).read_text())
    assert [(task["id"], task["data"]["batch_id"]) for task in received] == [(edited_task, revision)]
    outbox = pipeline.exchange.exported_tasks(workdir, revision)
    assert [task["data"]["image_id"] for task in outbox] == [edited_image]
    assert pipeline.tick() == []  # the revision awaits its merge: nothing is filed twice
    pipeline.merge(revision)
    assert pipeline.tick() == []

    labels = pipeline.labels()
    current = active(labels)
    old = labels[labels["merge_id"] == batch]
    assert sorted(old.loc[old["retired_by"] != "", "image_id"].unique()) == [edited_image]
    assert (old.loc[old["image_id"] != edited_image, "retired_by"] == "").all()
    assert set(old.loc[old["image_id"] == edited_image, "retired_by"]) == {revision}
    new = current[current["image_id"] == edited_image]
    assert set(new["merge_id"]) == {revision} and set(new["review_batch_id"]) == {revision}
    box = results[edited_task][0]["id"]
    (was,) = old.loc[old["pre_label_id"] == box, "x"]
    (now,) = new.loc[new["pre_label_id"] == box, ["x", "edit_kind"]].values.tolist()
    assert now == [pytest.approx(was + 0.05), "moved"]
    # Nothing lost, nothing doubled: every image's boxes in force come from one merge.
    assert len(current) == len(merged)
    assert current.groupby("image_id")["merge_id"].nunique().max() == 1

    trace = "\n".join(trace_image(Workdir(workdir), edited_image))
    assert f"retired by merge {revision}" in trace
    assert f"review: batch {batch} by" in trace and f"review: batch {batch} revision 2 by" in trace
    assert trace.count("(source human, active)") == len(new)

    # Edited once more: compared with what revision 2 brought in, it becomes revision 3.
    relabelled = copy.deepcopy(moved)
    relabelled[0]["value"]["rectanglelabels"] = [
        "bicycle" if relabelled[0]["value"]["rectanglelabels"] != ["bicycle"] else "car"
    ]
    api.send("PATCH", f"/api/annotations/{annotation['id']}/", {"result": relabelled})
    assert pipeline.tick() == [f"{batch}.r3"]
    pipeline.merge(f"{batch}.r3")
    labels = pipeline.labels()
    assert set(labels.loc[labels["merge_id"] == revision, "retired_by"]) == {f"{batch}.r3"}
    assert set(active(labels).loc[lambda rows: rows["image_id"] == edited_image, "merge_id"]) == {f"{batch}.r3"}
    assert len(active(labels)) == len(merged) and len(labels) == len(merged) + 2 * len(new)


def test_an_edit_that_cannot_be_merged_is_reported_and_taken_once_fixed(
    label_studio: LabelStudioServer, api: Api, workdir: Path
) -> None:
    """A merged task relabelled to a class the pipeline does not have (the API accepts it) is
    named in the tick's skip reason and filed as nothing; fixed in Label Studio, it comes back."""
    batch = "b-unmergeable"
    pipeline = Pipeline(label_studio, workdir, batch, "unmergeable-test", images=2)
    results = pipeline.annotate_all(api)
    assert pipeline.tick() == [batch]
    pipeline.merge(batch)
    task_id = pipeline.task_ids[0]
    (annotation,) = api.get(f"/api/tasks/{task_id}")["annotations"]
    wrong = copy.deepcopy(results[task_id])
    wrong[0]["value"]["rectanglelabels"] = ["truck"]
    api.send("PATCH", f"/api/annotations/{annotation['id']}/", {"result": wrong})

    result = pipeline.evaluate(pipeline.cursor)

    assert not result.run_requests
    assert (
        f"task {task_id} (image {pipeline.tasks[0]['data']['image_id']!r}) of merged batch {batch!r}"
        in result.skip_message
    )
    assert (
        "unknown class label 'truck'" in result.skip_message and "fix it in the labelling tool" in result.skip_message
    )
    assert not list((workdir / "exchange" / "inbox").glob("*")) and not (workdir / "exchange" / "quarantine").exists()

    fixed = copy.deepcopy(wrong)
    fixed[0]["value"]["rectanglelabels"] = [
        "person" if results[task_id][0]["value"]["rectanglelabels"] != ["person"] else "car"
    ]
    api.send("PATCH", f"/api/annotations/{annotation['id']}/", {"result": fixed})
    assert pipeline.tick() == [f"{batch}.r2"]


def test_an_unreadable_edit_checkpoint_is_reported_with_its_path(workdir: Path) -> None:
    """The record of the last check for edits, corrupted, stops the check with a message naming
    the file and the way out, before any request (the server here does not even exist)."""
    review = LabelStudioReview(url=f"http://127.0.0.1:{free_port()}", api_token="token", timeout_seconds=2)
    folder = workdir / "exchange" / "label_studio"
    folder.mkdir(parents=True)
    (folder / "b-merged.json").write_text(json.dumps({"project_id": 3, "task_ids": [1]}))
    (folder / "_checked_until.json").write_text(json.dumps({"3": "yesterday"}))

    with pytest.raises(ReviewBackendError, match=r"_checked_until.json .* is unreadable .*delete it"):
        review.edited(workdir, settled={"b-merged"}, unsettled=set())


def test_an_exported_dataset_imports_into_label_studio_with_its_labels(
    label_studio: LabelStudioServer, api: Api, tmp_path: Path
) -> None:
    """`labeling-dag export --format labelstudio` into the server's document root: the project
    takes its labelling config and tasks as written, and the server's own JSON export, read back
    by `labeling-dag init --gold`, holds exactly the verified boxes."""
    import pandas as pd

    from labeling_dag.cli import main as cli
    from labeling_dag.contracts import LABEL_COLUMNS
    from labeling_dag.merge import active
    from tests.verified_workdir import build_verified_workdir

    verified = build_verified_workdir(tmp_path / "verified")
    out = label_studio.document_root / "export"
    prefix = "/data/local-files/?d=export/"
    export = ["export", "--workdir", str(verified.work), "--format", "labelstudio", "--out", str(out)]
    assert cli([*export, "--image-url-prefix", prefix]) == 0
    tasks = json.loads((out / "tasks" / "train.json").read_text())

    config = (out / "labeling_config.xml").read_text()
    project = api.send("POST", "/api/projects/", {"title": "exported-dataset", "label_config": config}).json()
    api.send("POST", f"/api/projects/{project['id']}/import", tasks)
    assert api.task_count(project["id"]) == len(tasks)
    response = api.session.get(
        f"{label_studio.url}/api/projects/{project['id']}/export", params={"exportType": "JSON"}, timeout=60
    )
    response.raise_for_status()
    exported = json.loads(response.content)
    assert len(exported) == len(tasks) and all(len(task["annotations"]) == 1 for task in exported)

    downloaded = tmp_path / "label-studio-export.json"
    downloaded.write_bytes(response.content)
    again = tmp_path / "again"
    gold = ["--gold", str(downloaded), "--gold-images", str(label_studio.document_root)]
    assert cli(["init", "--workdir", str(again), "--classes", "circle,square,triangle", *gold]) == 0
    key = ["image_id", "class_name", "x", "y", "w", "h"]
    got = pd.read_parquet(again / "gold" / "labels.parquet")[key].sort_values(key).reset_index(drop=True)
    labels = active(pd.read_parquet(verified.work / "verified_labels" / "labels.parquet").astype(LABEL_COLUMNS))
    want = labels[key].sort_values(key).reset_index(drop=True)
    assert list(zip(got["image_id"], got["class_name"])) == list(zip(want["image_id"], want["class_name"]))
    assert got[key[2:]].to_numpy() == pytest.approx(want[key[2:]].to_numpy(), abs=1e-6)


def test_a_text_batch_is_reviewed_with_choices_and_read_back_as_accepted_or_relabelled(
    label_studio: LabelStudioServer, api: Api, workdir: Path
) -> None:
    from labeling_dag.formats.label_studio_text import CHOICES, text_task
    from labeling_dag.formats.review_interface import WHOLE_ITEM
    from labeling_dag.modalities import MODALITY_FILE

    workdir.mkdir(parents=True)
    (workdir / MODALITY_FILE).write_text('"text"')
    batch, classes = "b-text", ("business", "sport")
    items = [
        ReviewImage(
            image_id=f"text-{i}",
            image_ref=f"/data/local-files/?d=cleaned_images/files/text-{i}.txt",
            width=120,
            height=1,
            score=0.5,
            pre_labels=(PreLabel(f"text-{i}-r0", f"text-{i}", "sport", WHOLE_ITEM, 0.7, (0.3, 0.7), MODEL),),
        )
        for i in range(2)
    ]
    tasks = [text_task(item, batch_id=batch, model_version=MODEL, pre_label_run_id="run-1") for item in items]
    review = backend(label_studio, "text-test")
    review.export(workdir, batch, copy.deepcopy(tasks), classes)

    project = api.get(f"/api/projects/{recorded(workdir, batch)['project_id']}")
    assert project["parsed_label_config"]["label"]["type"] == "Choices"
    task_ids = recorded(workdir, batch)["task_ids"]
    predicted = api.get(f"/api/tasks/{task_ids[0]}")["predictions"][0]["result"]
    assert [region["value"]["choices"] for region in predicted] == [["sport"]]
    api.annotate(task_ids[0], predicted)  # the proposed class kept
    changed = api.get(f"/api/tasks/{task_ids[1]}")["predictions"][0]["result"]
    api.annotate(task_ids[1], [{**changed[0], "value": {"choices": ["business"]}}])

    (collected,) = review.collect(workdir, open_batches=[batch])
    annotations = parse_export(collected.tasks, class_names=classes, expected_batch_id=batch, interface=CHOICES)
    assert [(a.boxes[0].class_name, a.boxes[0].box) for a in annotations] == [
        ("sport", WHOLE_ITEM),
        ("business", WHOLE_ITEM),
    ]
    edits = edit_rows(annotations, tasks, batch_id=batch, gold_ids=set(), spot_check_ids=set(), interface=CHOICES)
    assert dict(zip(edits["image_id"], edits["edit_kind"])) == {"text-0": "accepted", "text-1": "relabelled"}
