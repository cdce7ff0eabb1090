"""The YOLO dataset readers: label files, data.yaml and the image -> label path convention."""

from __future__ import annotations

from pathlib import Path

import pytest

from labeling_dag.formats.yolo import label_path_for, load_data_yaml, read_yolo_labels


def test_read_yolo_labels_parses_and_skips_blank_lines(tmp_path: Path) -> None:
    label_file = tmp_path / "a.txt"
    label_file.write_text("0 0.5 0.5 0.2 0.3\n\n2 0.1 0.9 0.05 0.1\n")
    assert read_yolo_labels(label_file) == [(0, 0.5, 0.5, 0.2, 0.3), (2, 0.1, 0.9, 0.05, 0.1)]
    (tmp_path / "empty.txt").write_text("")
    assert read_yolo_labels(tmp_path / "empty.txt") == []


@pytest.mark.parametrize(
    "bad_line",
    [
        "0 0.5 0.5 0.2",
        "0 0.5 0.5 0.2 0.3 0.4",
        "x 0.5 0.5 0.2 0.3",
        "1.5 0.5 0.5 0.2 0.3",
        "-1 0.5 0.5 0.2 0.3",
        "0 0.5 abc 0.2 0.3",
        "0 1.5 0.5 0.2 0.3",
        "0 0.5 0.5 nan 0.3",
        "0 0.5 0.5 0.0 0.3",
    ],
)
def test_read_yolo_labels_errors_name_file_and_line(tmp_path: Path, bad_line: str) -> None:
    label_file = tmp_path / "bad.txt"
    label_file.write_text(f"0 0.5 0.5 0.2 0.3\n{bad_line}\n")
    with pytest.raises(ValueError, match=rf"^{label_file}:2: "):
        read_yolo_labels(label_file)


def test_load_data_yaml_without_path_uses_yaml_folder(tmp_path: Path) -> None:
    (tmp_path / "cfg").mkdir()
    yaml_file = tmp_path / "cfg" / "data.yaml"
    yaml_file.write_text("train: ../imgs/tr\nval: v\nnames: [a, b]\n")
    spec = load_data_yaml(yaml_file)
    assert spec.root == tmp_path / "cfg"
    assert spec.train_images == tmp_path / "imgs" / "tr"
    assert spec.val_images == tmp_path / "cfg" / "v"
    assert spec.names == ("a", "b")


def test_load_data_yaml_relative_and_absolute_path(tmp_path: Path) -> None:
    yaml_file = tmp_path / "data.yaml"
    yaml_file.write_text("path: sets/one\ntrain: images/train\nval: images/val\nnames: {1: b, 0: a}\n")
    spec = load_data_yaml(yaml_file)
    assert spec.root == tmp_path / "sets" / "one"
    assert spec.train_images == tmp_path / "sets" / "one" / "images" / "train"
    assert spec.names == ("a", "b")

    elsewhere = tmp_path / "elsewhere"
    yaml_file.write_text(f"path: {elsewhere}\ntrain: {tmp_path / 'abs'}\nval: images/val\nnames: [a]\n")
    spec = load_data_yaml(yaml_file)
    assert spec.root == elsewhere
    assert spec.train_images == tmp_path / "abs"
    assert spec.val_images == elsewhere / "images" / "val"


@pytest.mark.parametrize(
    "content",
    [
        "- just\n- a list\n",
        "val: v\nnames: [a]\n",
        "train: [a, b]\nval: v\nnames: [a]\n",
        "train: t\nval: v\n",
        "train: t\nval: v\nnames: {0: a, 2: c}\n",
        "train: t\nval: v\nnames: []\n",
    ],
)
def test_load_data_yaml_rejects_malformed(tmp_path: Path, content: str) -> None:
    yaml_file = tmp_path / "data.yaml"
    yaml_file.write_text(content)
    with pytest.raises(ValueError, match=str(yaml_file)):
        load_data_yaml(yaml_file)


@pytest.mark.parametrize(
    ("image", "label"),
    [
        ("/d/images/train/x.jpg", "/d/labels/train/x.txt"),
        ("/images/d/images/val/a.b.png", "/images/d/labels/val/a.b.txt"),
        ("images/train/x.jpeg", "labels/train/x.txt"),
        ("/d/images/x.jpg", "/d/labels/x.txt"),
    ],
)
def test_label_path_for(image: str, label: str) -> None:
    assert label_path_for(Path(image)) == Path(label)


def test_label_path_for_requires_images_folder() -> None:
    with pytest.raises(ValueError, match="images"):
        label_path_for(Path("/d/pictures/train/x.jpg"))
    with pytest.raises(ValueError):
        label_path_for(Path("/d/train/images"))  # a file named "images" is not a folder
