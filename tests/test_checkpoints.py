"""Reproducible weights files: the same training gives the same bytes, hence the same model version.

Real ultralytics training (1 epoch, 16 generated 64 px images) in two unrelated folders, then a
fine-tune of the result, twice each. The registry versions a model by the sha256 of its file, so
this is what lets a run re-done after a crash end with the model the uninterrupted run made.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import torch
from labeling_dag.resources.detector import Detector, model_info

from labeling_dag.checkpoints import portable_args, write_reproducible
from labeling_dag.model_registry import file_sha256

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from labeling_dag.simulation.sample_data import generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("ckpt-data"), images=16, seed=5, imgsz=64)


@pytest.fixture(scope="module")
def trainings(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two cold starts of one recipe, each in its own unrelated folder."""
    detector = Detector(imgsz=64, batch=8, epochs=1, seed=3)
    return [detector.train(dataset, tmp_path_factory.mktemp(name) / "run") for name in ("first", "second")]


def test_two_trainings_of_one_recipe_give_identical_files(trainings: list[Path]) -> None:
    first, second = trainings
    assert first.name == "model.pt" and first != second
    assert first.read_bytes() == second.read_bytes()
    # ultralytics' own checkpoints of the same two runs differ (date, times, paths).
    assert (first.parent / "best.pt").read_bytes() != (second.parent / "best.pt").read_bytes()


def test_the_file_names_no_path_date_or_commit(trainings: list[Path], tmp_path_factory: pytest.TempPathFactory) -> None:
    data = zipfile.ZipFile(trainings[0]).read("archive/data.pkl")
    for marker in (
        str(trainings[0].parents[2]).encode(),
        str(tmp_path_factory.getbasetemp()).encode(),
        b"save_dir",
        b"pt_path",
        b"2026-",
    ):
        assert marker not in data, marker
    content = torch.load(trainings[0], weights_only=False)
    assert not {"date", "git", "train_results", "train_metrics"} & content.keys()
    assert "data" not in content["train_args"] and content["train_args"]["imgsz"] == 64


def test_reproducible_file_loads_and_fine_tunes_reproducibly(
    trainings: list[Path], dataset: Path, tmp_path: Path
) -> None:
    assert model_info(trainings[0]) == ("detect", ("circle", "square", "triangle"))
    detector = Detector(imgsz=64, batch=8, epochs=1, seed=3)
    tuned = [
        detector.train(dataset, tmp_path / name, base_weights=base, epochs=1, lr0=1e-4, mosaic=0.0, warmup_epochs=0)
        for name, base in (("a", trainings[0]), ("b", trainings[1]))
    ]
    assert file_sha256(tuned[0]) == file_sha256(tuned[1]) != file_sha256(trainings[0])


def test_rewriting_is_idempotent(trainings: list[Path], tmp_path: Path) -> None:
    again = write_reproducible(trainings[0], tmp_path / "again.pt")
    assert again.read_bytes() == trainings[0].read_bytes()
    assert not list(tmp_path.glob(".*.tmp"))


def test_portable_args_keep_the_recipe_and_drop_the_places() -> None:
    args = {
        "data": "/a/data.yaml",
        "project": "/a",
        "name": "run",
        "save_dir": "/a/run",
        "model": "/a/m.pt",
        "imgsz": 64,
        "lr0": 0.01,
    }
    assert portable_args(args) == {"imgsz": 64, "lr0": 0.01}
