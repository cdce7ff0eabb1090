"""Unit tests for labeling_dag.training_data.write_yolo_dataset on three tiny images."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
import yaml
from PIL import Image

from labeling_dag.training_data import write_yolo_dataset

CLASS_NAMES = ("cat", "dog")


def _image_file(path: Path, colour: tuple[int, int, int]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 24), colour).save(path)
    return path


@pytest.fixture
def sources(tmp_path: Path) -> dict[str, Path]:
    """Three source images, named unlike their image ids and of two formats."""
    return {
        "img-1": _image_file(tmp_path / "cleaned" / "raw_one.png", (200, 30, 30)),
        "img-2": _image_file(tmp_path / "cleaned" / "raw_two.jpg", (30, 200, 30)),
        "img-3": _image_file(tmp_path / "cleaned" / "raw_three.png", (30, 30, 200)),
    }


@pytest.fixture
def val_images(tmp_path: Path) -> Path:
    """A held-out validation folder (referenced by the dataset, never copied into it)."""
    folder = tmp_path / "validation" / "images" / "val"
    _image_file(folder / "v1.png", (128, 128, 128))
    return folder


def _images(sources: dict[str, Path]) -> pd.DataFrame:
    return pd.DataFrame({"image_id": list(sources), "path": [str(p) for p in sources.values()]})


def _labels(rows: list[tuple[str, str, float, float, float, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["image_id", "class_name", "x", "y", "w", "h"])


# img-1 holds a cat and a dog, img-2 one dog, img-3 was verified as holding nothing.
LABELS = [
    ("img-1", "cat", 0.5, 0.25, 0.1, 0.2),
    ("img-1", "dog", 1 / 3, 0.1234567, 0.25, 0.5),
    ("img-2", "dog", 0.75, 0.75, 0.5, 0.5),
]


def _write(out_dir: Path, sources: dict[str, Path], val_images: Path, labels: list = LABELS) -> Path:
    return write_yolo_dataset(
        out_dir, images=_images(sources), labels=_labels(labels), class_names=CLASS_NAMES, val_images=val_images
    )


def test_data_yaml_points_at_train_and_held_out_val(
    tmp_path: Path, sources: dict[str, Path], val_images: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pins data.yaml: returned path is out_dir/data.yaml; keys path, train, val, names in
    that order; path and val absolute even when given relative; train relative to path;
    names an index -> class mapping in class-list order."""
    monkeypatch.chdir(tmp_path)
    out_dir = tmp_path / "dataset"

    data_yaml = _write(out_dir, sources, Path("validation/images/val"))

    assert data_yaml == out_dir / "data.yaml"
    spec = yaml.safe_load(data_yaml.read_text())
    assert list(spec) == ["path", "train", "val", "names"]
    assert spec == {
        "path": str(out_dir.resolve()),
        "train": "images/train",
        "val": str(val_images.resolve()),
        "names": {0: "cat", 1: "dog"},
    }
    assert Path(spec["path"]).is_absolute() and Path(spec["val"]).is_absolute()


def test_images_are_hard_linked_under_their_image_ids(
    tmp_path: Path, sources: dict[str, Path], val_images: Path
) -> None:
    """Pins the image side: every image (labelled or not) appears as
    images/train/<image_id><source suffix>, hard-linked to its source (same inode) when
    both lie on one file system; the validation images are not copied in."""
    out_dir = tmp_path / "dataset"

    _write(out_dir, sources, val_images)

    train = out_dir / "images" / "train"
    assert sorted(p.name for p in train.iterdir()) == ["img-1.png", "img-2.jpg", "img-3.png"]
    for image_id, source in sources.items():
        target = train / f"{image_id}{source.suffix}"
        assert os.stat(source).st_dev == os.stat(out_dir).st_dev  # same fs: a link is possible
        assert os.path.samefile(source, target)
        assert os.stat(source).st_ino == os.stat(target).st_ino
    assert sorted(p.name for p in out_dir.iterdir()) == ["data.yaml", "images", "labels"]
    assert sorted(p.name for p in (out_dir / "images").iterdir()) == ["train"]


def test_label_files_hold_class_indices_and_six_decimals(
    tmp_path: Path, sources: dict[str, Path], val_images: Path
) -> None:
    """Pins the label side: one labels/train/<image_id>.txt per image, a line
    "<class index> x y w h" per box in label order with 6-decimal values, and an empty file
    (not a missing one) for the image verified to hold no object."""
    out_dir = tmp_path / "dataset"

    _write(out_dir, sources, val_images)

    labels = out_dir / "labels" / "train"
    assert sorted(p.name for p in labels.iterdir()) == ["img-1.txt", "img-2.txt", "img-3.txt"]
    assert (labels / "img-1.txt").read_text() == (
        "0 0.500000 0.250000 0.100000 0.200000\n1 0.333333 0.123457 0.250000 0.500000\n"
    )
    assert (labels / "img-2.txt").read_text() == "1 0.750000 0.750000 0.500000 0.500000\n"
    assert (labels / "img-3.txt").read_text() == ""


def test_unknown_class_raises_and_writes_nothing(tmp_path: Path, sources: dict[str, Path], val_images: Path) -> None:
    """Pins that a label whose class is not in the class list raises ValueError naming that
    class, before anything is written: no dataset folder, no staging folder left behind."""
    out_dir = tmp_path / "dataset"
    bad = [*LABELS, ("img-3", "horse", 0.5, 0.5, 0.2, 0.2)]

    with pytest.raises(ValueError, match="horse"):
        _write(out_dir, sources, val_images, bad)

    assert not out_dir.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".dataset")]


def test_rebuilding_replaces_the_folder_completely(tmp_path: Path, sources: dict[str, Path], val_images: Path) -> None:
    """Pins that writing into an existing out_dir replaces it as a whole: files from the
    previous build (a dropped image, its labels, anything else) are gone, the new content is
    there, and no staging folder is left next to it."""
    out_dir = tmp_path / "dataset"
    _write(out_dir, sources, val_images)
    (out_dir / "stale.txt").write_text("left over")
    (out_dir / "labels" / "train" / "ghost.txt").write_text("0 0.5 0.5 0.1 0.1\n")

    two = {k: v for k, v in sources.items() if k != "img-1"}
    _write(out_dir, two, val_images, [row for row in LABELS if row[0] != "img-1"])

    assert sorted(p.name for p in out_dir.iterdir()) == ["data.yaml", "images", "labels"]
    assert sorted(p.name for p in (out_dir / "images" / "train").iterdir()) == ["img-2.jpg", "img-3.png"]
    assert sorted(p.name for p in (out_dir / "labels" / "train").iterdir()) == ["img-2.txt", "img-3.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cleaned", "dataset", "validation"]
    # The sources are untouched by removing the old build's links.
    assert all(path.exists() for path in sources.values())


def test_ultralytics_parses_the_dataset(
    tmp_path: Path, sources: dict[str, Path], val_images: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pins compatibility with ultralytics: check_det_dataset accepts the data.yaml (nc equals
    the number of class names, names and paths as written), and ultralytics' own
    image -> label path rule finds our label file for every training image."""
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    from labeling_dag.ultralytics_env import configure_offline

    configure_offline()
    from ultralytics.data.utils import check_det_dataset, img2label_paths

    out_dir = tmp_path / "dataset"
    data_yaml = _write(out_dir, sources, val_images)

    data = check_det_dataset(str(data_yaml))

    assert data["nc"] == len(CLASS_NAMES)
    assert data["names"] == {0: "cat", 1: "dog"}
    assert Path(data["train"]) == (out_dir / "images" / "train").resolve()
    assert Path(data["val"]) == val_images.resolve()
    train_images = sorted(str(p) for p in (out_dir / "images" / "train").iterdir())
    assert [Path(p).read_text() != "" for p in img2label_paths(train_images)] == [True, True, False]
