"""Starting the loop from a seed model: warm where its classes are (or map to) the pool's,
pretrained where they differ, and a clear refusal of a seed model or map it cannot start from."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pydantic
import pytest
import yaml

from labeling_dag.cli import main
from labeling_dag.model_registry import file_sha256
from labeling_dag.simulation.loop_start import loop_start
from labeling_dag.simulation.sample_data import CLASS_NAMES, generate_dataset

IMGSZ = 64
# The seed model's classes: the pool's shapes under other names and in another order, plus a class
# the pool lacks, so that without a map nothing fits and its class head has another width.
OTHER_CLASSES = {0: "disc", 1: "box", 2: "wedge", 3: "star"}
FULL_MAP = "disc=circle,box=square,wedge=triangle"


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The loop's pool: 40 generated images of circles, squares and triangles."""
    return generate_dataset(tmp_path_factory.mktemp("pool"), images=40, seed=5, imgsz=IMGSZ)


@pytest.fixture(scope="module")
def other_classes_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny detector of OTHER_CLASSES: 2 epochs on other generated images (a few seconds),
    from another seed than the loop's, so its weights are not a from-scratch model's first steps."""
    from labeling_dag.resources.detector import Detector

    root = tmp_path_factory.mktemp("other")
    data_yaml = generate_dataset(root / "data", images=40, seed=9, imgsz=IMGSZ)
    spec = yaml.safe_load(data_yaml.read_text())
    data_yaml.write_text(yaml.safe_dump({**spec, "names": OTHER_CLASSES}))
    return Detector(imgsz=IMGSZ, epochs=2, seed=3).train(data_yaml, root / "trained")


@pytest.fixture(autouse=True)
def own_instance(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each loop gets a temporary Dagster instance, not the project's."""
    monkeypatch.delenv("DAGSTER_HOME", raising=False)


def run_loop_cli(pool: Path, root: Path, *extra: object) -> int:
    """`labeling-dag run-loop`: the random or pre-labelled round 0 and its retraining, tiny sizes."""
    args = [
        "run-loop", "--dataset", pool, "--workdir", root / "work", "--report", root / "report.json", "--rounds", "0",
        "--batch-size", "8", "--seed-labels", "12", "--gold-images", "2", "--imgsz", str(IMGSZ),
        "--cold-start-epochs", "2", "--fine-tune-epochs", "1", "--seed", "1", *extra,
    ]  # fmt: skip
    return main([str(arg) for arg in args])


def registry(work: Path) -> dict:
    return json.loads((work / "models" / "registry.json").read_text())


def card(work: Path, version: str) -> dict:
    return json.loads((work / "models" / "cards" / f"{version}.json").read_text())


def first_batch(work: Path, report: dict) -> pd.DataFrame:
    """The review batch of round 0, one row per image (with the model that pre-labelled it)."""
    batches = pd.read_parquet(work / "review_batch" / "batches.parquet")
    return batches[batches["batch_id"] == report["rounds"][0]["batch_id"]]


def state(weights: Path) -> dict:
    import torch

    return torch.load(weights, map_location="cpu", weights_only=False)["model"].float().state_dict()


@pytest.mark.slow
def test_a_seed_model_of_other_classes_is_the_first_trainings_pretrained_start(pool, other_classes_model, tmp_path):
    """No map and no class in common: round 0 is the random seed round (the seed model pre-labels
    nothing and is never registered) and the first model trains from its weights with a new
    head of the pool's three classes; the report and the card say so."""
    assert run_loop_cli(pool, tmp_path, "--seed-model", other_classes_model) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["dataset"]["start"] == "pretrained"
    assert report["rounds"][0]["images_reviewed"] == 12

    work = tmp_path / "work"
    models = registry(work)["models"]
    assert file_sha256(other_classes_model) not in models
    assert set(first_batch(work, report)["model_version"]) == {""}, "no model chose or pre-labelled round 0"
    (first,) = [entry for entry in models.values() if entry["parent"] is None]
    assert first["source"] == "cold_start" and tuple(first["class_names"]) == CLASS_NAMES
    first_card = card(work, first["model_version"])
    assert first_card["start"] == "pretrained"
    assert first_card["parameters"]["pretrained_sha256"] == file_sha256(other_classes_model)
    assert "architecture" not in first_card["parameters"]

    trained, pretrained = state(work / "models" / f"{first['model_version']}.pt"), state(other_classes_model)
    # The stem convolution barely moves in 2 epochs: it is the pretrained one, not a random init.
    stem = "model.0.conv.weight"
    similarity = float((trained[stem] * pretrained[stem]).sum() / (trained[stem].norm() * pretrained[stem].norm()))
    assert similarity > 0.9
    heads = [key for key in trained if key.endswith(".cv3.0.2.weight")]
    assert [trained[key].shape[0] for key in heads] == [3] and [pretrained[key].shape[0] for key in heads] == [4]


@pytest.mark.slow
def test_a_class_map_makes_the_same_model_a_warm_start(pool, other_classes_model, tmp_path):
    """With --class-map the model's head is remapped to the pool's classes; the remapped model is
    registered first, pre-labels round 0, and the model fine-tuned from it says it started warm."""
    assert run_loop_cli(pool, tmp_path, "--seed-model", other_classes_model, "--class-map", FULL_MAP) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["dataset"]["start"] == "warm"

    work = tmp_path / "work"
    index = registry(work)
    (seed,) = [version for version, entry in index["models"].items() if entry["source"] == "seed_model"]
    assert tuple(index["models"][seed]["class_names"]) == CLASS_NAMES
    assert seed != file_sha256(other_classes_model), "the remapped copy, not the file as given"
    assert set(first_batch(work, report)["model_version"]) == {seed}, "the remapped model pre-labelled round 0"
    children = [entry for entry in index["models"].values() if entry["parent"] == seed]
    assert children and all(card(work, child["model_version"])["start"] == "warm" for child in children)


def test_a_seed_model_whose_classes_include_the_pools_starts_warm_without_a_map(other_classes_model):
    """Classes found by name (reordered, extras dropped) need no map; a partial overlap is no warm start."""
    start = loop_start(other_classes_model, {}, ("wedge", "disc"))
    assert (start.kind, start.order) == ("warm", (2, 0))
    assert loop_start(other_classes_model, {}, ("disc", "hexagon")).kind == "pretrained"
    assert loop_start(None, {}, CLASS_NAMES).kind == "cold"


@pytest.mark.parametrize(
    ("seed_model", "class_map", "message"),
    [
        ("missing.pt", "", "missing.pt: seed model does not exist"),
        ("junk.pt", "", "junk.pt: seed model is not an ultralytics model"),
        ("model", "disc=circle,box=square", "project class 'triangle' has no model class"),
        ("model", "disc=circle,box=square,wedge=hexagon", "which are not project classes"),
        ("model", "disc", "'disc' is not MODEL_CLASS=PROJECT_CLASS"),
        ("", FULL_MAP, "give a seed model too"),
    ],
)
def test_a_seed_model_the_loop_cannot_start_from_is_refused_naming_the_file(
    pool, other_classes_model, tmp_path, capsys, seed_model, class_map, message
):
    """A missing file, a non-model, or a map that does not fit: exit 1, one line naming the file
    and the problem, before anything is written."""
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    model = other_classes_model if seed_model == "model" else tmp_path / seed_model
    extra = [*(["--seed-model", model] if seed_model else []), *(["--class-map", class_map] if class_map else [])]
    assert run_loop_cli(pool, tmp_path, *extra) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: ") and message in error
    if seed_model and "=" in class_map:
        assert str(model) in error
    assert not (tmp_path / "work").exists() and not (tmp_path / "report.json").exists()


def test_loop_policy_refuses_pretrained_weights_that_are_no_detector(pool, other_classes_model, tmp_path):
    """The production resource checks its pretrained weights when built, naming the file; an
    EnvVar is checked when a run resolves it."""
    import dagster as dg
    from labeling_dag.resources.loop_policy import LoopPolicy

    assert LoopPolicy(validation_dataset=str(pool), pretrained_weights=str(other_classes_model))
    assert LoopPolicy(validation_dataset=str(pool), pretrained_weights=dg.EnvVar("LABELING_DAG_PRETRAINED"))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    for weights, problem in (
        (tmp_path / "missing.pt", "does not exist"),
        (tmp_path / "junk.pt", "is not an ultralytics"),
    ):
        with pytest.raises(pydantic.ValidationError, match=rf"{weights.name}: pretrained_weights {problem}"):
            LoopPolicy(validation_dataset=str(pool), pretrained_weights=str(weights))


def test_pretrained_weights_are_part_of_the_training_key(pool, other_classes_model, tmp_path):
    """Training from pretrained weights is another training than from the YAML: another cache
    entry; the same pretrained request again takes the stored weights."""
    from labeling_dag.resources.detector import Detector

    cache = tmp_path / "cache"
    detector = Detector(imgsz=IMGSZ, epochs=1, seed=1, training_cache=str(cache))
    from_yaml = detector.train(pool, tmp_path / "yaml")
    pretrained = detector.train(pool, tmp_path / "pretrained", base_weights=other_classes_model)
    assert len(list(cache.glob("*.pt"))) == 2 and file_sha256(from_yaml) != file_sha256(pretrained)
    again = detector.train(pool, tmp_path / "again", base_weights=other_classes_model)
    assert file_sha256(again) == file_sha256(pretrained) and not (tmp_path / "again" / "weights" / "best.pt").exists()
