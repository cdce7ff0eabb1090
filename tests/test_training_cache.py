"""The training cache: an identical training request takes the stored weights, any change trains.

The key is tested on generated datasets without training; one slow test trains a 1-epoch
model for real and checks that the second request, in an unrelated folder, does not train.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from labeling_dag.resources.detector import Detector

from labeling_dag.formats.yolo import label_path_for, load_data_yaml
from labeling_dag.simulation.sample_data import generate_dataset
from labeling_dag.training_cache import training_key

ENVIRONMENT = {"ultralytics": "x", "torch": "y", "threads": 1}
ARGS = {"epochs": 3, "imgsz": 64, "seed": 0, "data": "/somewhere/data.yaml", "project": "/p", "name": "run"}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("cache-data"), images=16, seed=5, imgsz=64)


def _copy(dataset: Path, to: Path) -> Path:
    """The dataset copied to ``to``, its data.yaml pointing at the copy."""
    shutil.copytree(dataset.parent, to)
    copied = to / dataset.name
    copied.write_text(copied.read_text().replace(str(dataset.parent), str(to)))
    assert load_data_yaml(copied).root == to
    return copied


def test_the_same_content_elsewhere_has_the_same_key(dataset: Path, tmp_path: Path) -> None:
    moved = _copy(dataset, tmp_path / "elsewhere")
    other_places = ARGS | {"data": str(moved), "project": str(tmp_path), "name": "other"}
    assert training_key(dataset, "yolov8n.yaml", ARGS, environment=ENVIRONMENT) == training_key(
        moved, "yolov8n.yaml", other_places, environment=ENVIRONMENT
    )


@pytest.mark.parametrize(
    "change",
    ["label", "image", "removed image", "epochs", "base", "threads"],
)
def test_anything_that_decides_the_weights_changes_the_key(dataset: Path, tmp_path: Path, change: str) -> None:
    copy = _copy(dataset, tmp_path / "copy")
    spec = load_data_yaml(copy)
    first_train = sorted(spec.train_images.glob("*.jpg"))[0]
    args, base, environment = ARGS, "yolov8n.yaml", ENVIRONMENT
    if change == "label":
        label = label_path_for(first_train)
        label.write_text(label.read_text().replace("0.", "0.0", 1) or "0 0.5 0.5 0.1 0.1\n")
    elif change == "image":
        first_train.write_bytes(first_train.read_bytes() + b"\0")
    elif change == "removed image":
        first_train.unlink()
    elif change == "epochs":
        args = ARGS | {"epochs": 4}
    elif change == "base":
        base = "0" * 64
    else:
        environment = ENVIRONMENT | {"threads": 2}
    assert training_key(dataset, "yolov8n.yaml", ARGS, environment=ENVIRONMENT) != training_key(
        copy, base, args, environment=environment
    )


@pytest.mark.slow
def test_a_repeated_training_takes_the_stored_weights(dataset: Path, tmp_path: Path) -> None:
    detector = Detector(imgsz=64, batch=8, epochs=1, seed=3, training_cache=str(tmp_path / "cache"))
    first = detector.train(dataset, tmp_path / "first" / "run")
    assert (first.parent / "best.pt").exists()  # trained
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 1

    second = detector.train(_copy(dataset, tmp_path / "moved"), tmp_path / "second" / "run")
    assert second.read_bytes() == first.read_bytes()
    assert not (second.parent / "best.pt").exists()  # not trained: taken from the cache

    third = detector.train(dataset, tmp_path / "third" / "run", epochs=2)
    assert (third.parent / "best.pt").exists() and third.read_bytes() != first.read_bytes()
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 2
