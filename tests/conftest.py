"""Shared fixtures: generated data, a tiny trained model, resources over a temp workdir."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Direct `pytest` runs (not through make) still find the project's DVC and stay offline.
os.environ["PATH"] = f"{REPO / '.tools' / 'bin'}{os.pathsep}{os.environ['PATH']}"
os.environ.setdefault("LABELING_DAG_CONFIG_DIR", str(REPO / ".labeling-dag"))
os.environ.setdefault("YOLO_CONFIG_DIR", os.environ["LABELING_DAG_CONFIG_DIR"])
os.environ["YOLO_OFFLINE"] = "1"

TEST_IMGSZ = 96


@pytest.fixture(scope="session")
def seed_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small labelled dataset (data.yaml) to train the tiny model on."""
    from labeling_dag.simulation.sample_data import generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("seed"), images=200, seed=11, imgsz=TEST_IMGSZ)


@pytest.fixture(scope="session")
def tiny_model(seed_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A YOLOv8n built from its YAML config and trained briefly (real ultralytics training).

    20 epochs on 160 images (~30 s on 2 cores) is the least that reliably yields boxes
    above a 0.05 confidence floor (mAP50 ~0.17); fewer steps leave the head silent.
    """
    from labeling_dag.resources.detector import Detector

    out = tmp_path_factory.mktemp("train") / "tiny"
    return Detector(imgsz=TEST_IMGSZ, epochs=20).train(seed_dataset, out)


@pytest.fixture
def pool(tmp_path: Path) -> Path:
    """A folder of 24 generated, unlabelled pool images."""
    from labeling_dag.simulation.sample_data import generate_dataset

    generate_dataset(tmp_path / "pool", images=24, seed=5, imgsz=TEST_IMGSZ, val_fraction=0.0)
    return tmp_path / "pool" / "images" / "train"


def make_resources(workdir: Path, source: Path, **detector: object) -> dict[str, object]:
    """The resources of the code location, over a test workdir and source folder."""
    from labeling_dag.resources.detector import Detector
    from labeling_dag.resources.review_exchange import FileReviewExchange, FolderReview
    from labeling_dag.resources.snapshots import SnapshotStore
    from labeling_dag.resources.storage import ImageSource, LabelStore

    return {
        "store": LabelStore(workdir=str(workdir)),
        "source": ImageSource(folder=str(source)),
        "detector": Detector(**{"imgsz": TEST_IMGSZ, "conf": 0.05, **detector}),
        "snapshots": SnapshotStore(),
        "exchange": FileReviewExchange(),
        "review": FolderReview(),
    }
