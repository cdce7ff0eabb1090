"""Security: review files cannot reach outside the data root, weights load only when their
sha256 matches the registry, and external commands never go through a shell.

(The secret-token-in-event-log test lives with the Label Studio tests.)
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import pickle
import re
from pathlib import Path

import dagster as dg
import pytest
from conftest import make_resources
from labeling_dag.assets.prelabels import pre_labels
from labeling_dag.resources.storage import LabelStore

from labeling_dag.model_registry import ModelIntegrityError, ModelRegistry, file_sha256
from labeling_dag.review_intake import check_image_ref, judge_review_file
from tests.faults.review_files import (
    CLASSES,
    EXCHANGE,
    answer,
    drop,
    export_batch,
    listing,
    quarantined,
    stored_state,
    tick,
)

REPO = Path(__file__).resolve().parents[2]
BATCH = "batch-s"
INSTANCE = dg.DagsterInstance.ephemeral()


@pytest.fixture
def store(tmp_path: Path) -> LabelStore:
    """A workdir with the class list fixed and one batch sent out for review."""
    label_store = LabelStore(workdir=str(tmp_path / "work"))
    label_store.set_class_names(CLASSES)
    export_batch(label_store, BATCH)
    return label_store


# --- image references in review files ---------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "problem"),
    [
        ("/data/local-files/?d=../../../etc/passwd", "climbs out of the data root"),
        ("/data/local-files/?d=cleaned_images/../../secret.png", "climbs out of the data root"),
        ("/data/local-files/?d=..%2F..%2Fetc%2Fpasswd", "climbs out of the data root"),
        ("http://localhost:8080/data/local-files/?d=../../etc/passwd", "climbs out of the data root"),
        ("../outside.png", "climbs out of the data root"),
        ("/data/local-files/?d=/etc/passwd", "is an absolute path"),
        ("/data/local-files/?d=%2Fetc%2Fpasswd", "is an absolute path"),
        ("/etc/passwd", "is an absolute path other than the one the batch was exported with"),
        ("/data/../../etc/passwd", "climbs out of its root"),
        ("file:///etc/passwd", "file: URL"),
        ("https://images.example.org/a.png", "is a URL other than the one the batch was exported with"),
        ("s3://bucket/..%2F..%2Fsecret.png", "climbs out of its root"),
        ("/data/local-files/?d=a.png&d=../../b.png", "names no single local file"),
        ("/data/local-files/?d=a.png%00.jpg", "NUL byte"),
        (42, "must be a non-empty string"),
    ],
)
def test_review_file_pointing_outside_the_data_root_is_quarantined(
    store: LabelStore, ref: object, problem: str
) -> None:
    """Through the real sensor: the whole file is refused, naming the task and the reference."""
    export = answer(EXCHANGE.exported_tasks(store.root, BATCH))
    export[1]["data"]["image"] = ref
    before = stored_state(store.root)
    file = drop(store, "answer.json", export)

    result = tick(store, INSTANCE)

    assert result.run_requests == []
    [(moved, report)] = quarantined(store)
    assert report["file"] == str(file)
    assert f"task for image '{BATCH}-img1'" in report["problem"] and problem in report["problem"]
    assert report["problem"] in result.skip_message
    assert json.loads(moved.read_text())[1]["data"]["image"] == ref
    assert listing(store, "inbox") == [] and listing(store, "received") == []
    assert stored_state(store.root) == before


def _judge(store: LabelStore, ref: str) -> str | None:
    """The problem judge_review_file finds in an otherwise correct answer whose task 0 shows ``ref``."""
    export = answer(EXCHANGE.exported_tasks(store.root, BATCH))
    export[0]["data"]["image"] = ref
    file = drop(store, "answer.json", export)
    return judge_review_file(
        file,
        exported_tasks=lambda batch: EXCHANGE.exported_tasks(store.root, batch),
        already_received=lambda batch: False,
        class_names=CLASSES,
        data_root=store.root,
    ).problem


def test_symlinks_out_of_the_data_root_are_refused(store: LabelStore, tmp_path: Path) -> None:
    secret = tmp_path / "outside" / "secret.png"
    secret.parent.mkdir()
    secret.write_bytes(b"not yours")
    files = store.root / "cleaned_images" / "files"
    files.mkdir(parents=True)
    (files / "link.png").symlink_to(secret)
    (store.root / "cleaned_images" / "linked_folder").symlink_to(secret.parent, target_is_directory=True)
    (files / "real.png").write_bytes(b"an image")
    (files / "alias.png").symlink_to(files / "real.png")

    for ref in ("/data/local-files/?d=cleaned_images/files/link.png", "cleaned_images/linked_folder/secret.png"):
        problem = _judge(store, ref)
        assert problem is not None
        assert f"resolves to {secret}, outside the data root {store.root}" in problem
    # A symlink that stays inside the data root is fine, and so is a URL or absolute path when it
    # is the very reference the batch was exported with.
    assert _judge(store, "/data/local-files/?d=cleaned_images/files/alias.png") is None
    assert check_image_ref("cleaned_images/files/alias.png", data_root=store.root) == files / "real.png"
    for remote in ("https://images.example.org/a.png", "gs://bucket/a.png", "/data/upload/1/a.png"):
        assert check_image_ref(remote, data_root=store.root, sent=remote) is None


# --- model weights ----------------------------------------------------------------------------


class _Payload:
    """What a hostile checkpoint carries: unpickling it runs code (here it only creates a file)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    """A registry whose current model is a (stand-in) weights file."""
    model_registry = ModelRegistry(tmp_path / "work")
    weights = tmp_path / "weights.pt"
    weights.write_bytes(b"stand-in for a real checkpoint")
    model_registry.register(weights, task="detect", class_names=CLASSES, source="seed_model")
    return model_registry


def test_a_checkpoint_swapped_for_a_hostile_pickle_is_refused_unread(registry: ModelRegistry, tmp_path: Path) -> None:
    entry = registry.current()
    assert entry is not None
    stored = registry.verified_path(entry)
    marker = tmp_path / "payload-ran"
    payload = pickle.dumps(_Payload(marker))
    # The payload is live: whoever unpickles it runs it (torch.load(weights_only=False) included).
    pickle.loads(payload)
    assert marker.exists()
    marker.unlink()

    stored.write_bytes(payload)

    with pytest.raises(ModelIntegrityError) as caught:
        registry.verified_path(entry)
    message = str(caught.value)
    assert message.startswith(
        f"{stored}: sha256 {file_sha256(stored)} does not match registered model version {entry.model_version}"
    )
    assert "refusing to load" in message
    assert not marker.exists()


def test_registry_entries_and_symlinks_cannot_redirect_the_weights(registry: ModelRegistry, tmp_path: Path) -> None:
    entry = registry.current()
    assert entry is not None
    stored = registry.verified_path(entry)
    hostile = tmp_path / "hostile.pt"
    hostile.write_bytes(pickle.dumps(_Payload(tmp_path / "payload-ran")))

    # An edited registry.json whose entry points at another file with matching sha256.
    redirected = dataclasses.replace(
        entry, model_version=file_sha256(hostile), path=os.path.relpath(hostile, registry.workdir)
    )
    with pytest.raises(ModelIntegrityError, match=r"is registered at '\.\./hostile\.pt', not at the registry's copy"):
        registry.verified_path(redirected)
    with pytest.raises(ModelIntegrityError, match=r"model version '\.\./hostile' is not a sha256"):
        registry.verified_path(dataclasses.replace(entry, model_version="../hostile"))

    # The registry's copy replaced by a symlink, even to identical bytes.
    twin = tmp_path / "twin.pt"
    twin.write_bytes(stored.read_bytes())
    stored.unlink()
    stored.symlink_to(twin)
    with pytest.raises(
        ModelIntegrityError, match=re.escape(f"{stored}: weights of model {entry.model_version} are a symlink")
    ):
        registry.verified_path(entry)
    assert not (tmp_path / "payload-ran").exists()


def test_pre_labels_refuses_a_tampered_current_model(registry: ModelRegistry, tmp_path: Path) -> None:
    """The asset that loads weights fails its run naming the file; it predicts and stores nothing."""
    entry = registry.current()
    assert entry is not None
    stored = registry.workdir / entry.path
    marker = tmp_path / "payload-ran"
    stored.write_bytes(pickle.dumps(_Payload(marker)))
    before = stored_state(registry.workdir, ignore=())
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("ingest_batches", ["batch-1"])

    result = dg.materialize(
        [pre_labels],
        partition_key="batch-1",
        instance=instance,
        resources=make_resources(registry.workdir, tmp_path / "source"),
        raise_on_error=False,
    )

    assert not result.success
    [failure] = [event for event in result.all_events if event.event_type == dg.DagsterEventType.STEP_FAILURE]
    error = failure.step_failure_data.error.cause  # Dagster wraps what the asset raised
    assert error.cls_name == "ModelIntegrityError"
    assert error.message.startswith(f"labeling_dag.model_registry.ModelIntegrityError: {stored}: sha256")
    assert not marker.exists()
    assert {k: v for k, v in stored_state(registry.workdir, ignore=()).items() if k != "classes.json"} == before


# --- external commands ------------------------------------------------------------------------

PRODUCTION = ("labeling_dag", "assets", "resources", "bench")
_SUBPROCESS_CALLS = {"run", "Popen", "call", "check_call", "check_output"}


def _sources() -> list[Path]:
    files = sorted(path for folder in PRODUCTION for path in (REPO / folder).rglob("*.py"))
    assert len(files) > 40, files  # the scan really sees the code base
    return files


def test_no_shell_anywhere_in_the_code() -> None:
    pattern = re.compile(
        r"shell\s*=\s*True|os\.system\(|os\.popen\(|getstatusoutput\(|getoutput\(|create_subprocess_shell\("
    )
    offenders = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for path in _sources()
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if pattern.search(line)
    ]
    assert offenders == []


def _list_bound(name: str, function: ast.AST) -> bool:
    """True when ``name`` is, in ``function``, a parameter typed ``list[...]`` or only ever assigned list literals."""
    arguments = function.args if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)) else None
    if arguments is not None:
        for argument in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]:
            if argument.arg == name:
                annotation = argument.annotation
                return (
                    isinstance(annotation, ast.Subscript)
                    and isinstance(annotation.value, ast.Name)
                    and annotation.value.id == "list"
                )
    values = [
        node.value
        for node in ast.walk(function)
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign))
        and any(
            isinstance(target, ast.Name) and target.id == name
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        )
    ]
    return bool(values) and all(isinstance(value, ast.List) for value in values)


def test_every_subprocess_call_takes_an_argument_list() -> None:
    """AST check: each subprocess call gets a list (a literal, a list-typed parameter, or a name
    only ever bound to list literals), never a string, and no ``shell`` keyword at all."""
    checked, offenders = 0, []
    for path in _sources():
        tree = ast.parse(path.read_text(), filename=str(path))
        functions = [node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
        for node in ast.walk(tree):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in _SUBPROCESS_CALLS
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "subprocess"
            ):
                continue
            checked += 1
            where = f"{path.relative_to(REPO)}:{node.lineno}"
            command = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "args"), None)
            enclosing = [f for f in functions if f.lineno <= node.lineno <= (f.end_lineno or f.lineno)]
            scope = min(enclosing, key=lambda f: (f.end_lineno or f.lineno) - f.lineno) if enclosing else tree
            if any(keyword.arg == "shell" for keyword in node.keywords):
                offenders.append(f"{where}: shell= keyword")
            elif isinstance(command, (ast.List, ast.ListComp)):
                continue
            elif isinstance(command, ast.Name) and _list_bound(command.id, scope):
                continue
            else:
                offenders.append(f"{where}: command is {ast.unparse(command) if command else 'missing'}")
    assert checked >= 4  # DVC and git in resources/snapshots.py, the benchmark children
    assert offenders == []
