"""Tests for the synthetic YOLO dataset generator, and for the YOLO readers on what it writes."""

from __future__ import annotations

import dataclasses
import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from labeling_dag.cli import main
from labeling_dag.formats.yolo import DatasetSpec, label_path_for, load_data_yaml, read_yolo_labels
from labeling_dag.simulation import sample_data
from labeling_dag.simulation.sample_data import CLASS_NAMES, DOMAINS, generate_dataset

SMALL = {"images": 12, "imgsz": 64}


def _files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by relative path, with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated dataset, shared by the read-only tests; returns its data.yaml."""
    return generate_dataset(tmp_path_factory.mktemp("ds") / "out", seed=3, **SMALL)


def test_layout_and_data_yaml(dataset: Path) -> None:
    root = dataset.parent
    assert dataset == root / "data.yaml"
    assert yaml.safe_load(dataset.read_text()) == {
        "path": str(root.resolve()),
        "train": "images/train",
        "val": "images/val",
        "names": {0: "circle", 1: "square", 2: "triangle"},
    }
    train = sorted(p.name for p in (root / "images" / "train").iterdir())
    val = sorted(p.name for p in (root / "images" / "val").iterdir())
    assert len(train) + len(val) == 12
    assert len(val) == round(12 * 0.2)
    assert sorted(train + val) == [f"img_{i:05d}.jpg" for i in range(12)]
    for split, names in (("train", train), ("val", val)):
        labels = sorted(p.name for p in (root / "labels" / split).iterdir())
        assert labels == [name.replace(".jpg", ".txt") for name in names]
    assert not [p for p in root.rglob(".*")], "temporary files left behind"


def test_images_are_rgb_of_requested_size(dataset: Path) -> None:
    for image_path in dataset.parent.glob("images/*/*.jpg"):
        with Image.open(image_path) as image:
            assert image.format == "JPEG"
            assert image.mode == "RGB"
            assert image.size == (64, 64)


def test_labels_are_valid_yolo(dataset: Path) -> None:
    label_files = list(dataset.parent.glob("labels/*/*.txt"))
    assert label_files
    for label_file in label_files:
        lines = label_file.read_text().splitlines()
        assert 1 <= len(lines) <= 4
        for line in lines:
            class_id, *values = line.split()
            assert all(len(value.split(".")[1]) == 6 for value in values), line
        for class_id, xc, yc, w, h in read_yolo_labels(label_file):
            assert 0 <= class_id < len(CLASS_NAMES)
            assert w > 0 and h > 0
            # The whole box, not only its centre, lies inside the image.
            assert 0 <= xc - w / 2 and xc + w / 2 <= 1
            assert 0 <= yc - h / 2 and yc + h / 2 <= 1
            # Shapes span roughly 12-40 % of the side (triangles a little less on one axis).
            assert 0.05 <= max(w, h) <= 0.5


def test_boxes_match_drawn_shapes(dataset: Path) -> None:
    """Box pixels stand out from the background, and each box edge touches a shape."""
    for image_path in dataset.parent.glob("images/*/*.jpg"):
        pixels = np.asarray(Image.open(image_path).convert("RGB"), dtype=np.float64)
        size = pixels.shape[0]
        boxes = [
            tuple(round(v * size) for v in (xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2))
            for _, xc, yc, w, h in read_yolo_labels(label_path_for(image_path))
        ]
        inside = np.zeros((size, size), dtype=bool)
        for left, top, right, bottom in boxes:
            inside[top:bottom, left:right] = True
        background = np.median(pixels[~inside], axis=0)
        distance = np.linalg.norm(pixels - background, axis=-1)
        assert distance[inside].mean() > distance[~inside].mean() + 30, image_path.name

        # Tight: the two outermost rows/columns on every side of a box hold shape pixels.
        # Two, not one, because JPEG can blur a lone triangle-tip pixel into the background.
        for left, top, right, bottom in boxes:
            edges = (
                distance[top : top + 2, left:right],
                distance[bottom - 2 : bottom, left:right],
                distance[top:bottom, left : left + 2],
                distance[top:bottom, right - 2 : right],
            )
            assert all(edge.max() > 40 for edge in edges), (image_path.name, (left, top, right, bottom))


def test_same_seed_gives_identical_bytes(tmp_path: Path) -> None:
    generate_dataset(tmp_path / "a", seed=7, **SMALL)
    generate_dataset(tmp_path / "b", seed=7, **SMALL)
    files_a, files_b = _files(tmp_path / "a"), _files(tmp_path / "b")
    del files_a["data.yaml"], files_b["data.yaml"]  # holds the absolute output folder
    assert files_a == files_b


def test_different_seed_gives_different_images(tmp_path: Path) -> None:
    generate_dataset(tmp_path / "a", seed=1, **SMALL)
    generate_dataset(tmp_path / "b", seed=2, **SMALL)
    images_a = sorted(p.read_bytes() for p in (tmp_path / "a").glob("images/*/*.jpg"))
    images_b = sorted(p.read_bytes() for p in (tmp_path / "b").glob("images/*/*.jpg"))
    assert not set(images_a) & set(images_b)


def test_rerun_into_same_dir_is_idempotent(tmp_path: Path) -> None:
    generate_dataset(tmp_path, seed=5, **SMALL)
    first = _files(tmp_path)
    generate_dataset(tmp_path, seed=5, **SMALL)
    assert _files(tmp_path) == first


def test_rerun_with_fewer_images_removes_stale_outputs_only(tmp_path: Path) -> None:
    generate_dataset(tmp_path, seed=5, **SMALL)
    (tmp_path / "labels" / "train.cache").write_bytes(b"stale ultralytics cache")
    (tmp_path / "images" / "train" / "notes.md").write_text("not ours")
    generate_dataset(tmp_path, seed=5, images=4, imgsz=64)
    images = sorted(p.name for p in tmp_path.glob("images/*/*.jpg"))
    labels = sorted(p.name for p in tmp_path.glob("labels/*/*.txt"))
    assert images == [f"img_{i:05d}.jpg" for i in range(4)]
    assert labels == [f"img_{i:05d}.txt" for i in range(4)]
    assert not (tmp_path / "labels" / "train.cache").exists()
    assert (tmp_path / "images" / "train" / "notes.md").read_text() == "not ours"


def test_failed_rerun_leaves_no_data_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    generate_dataset(tmp_path, seed=5, **SMALL)
    real_render = sample_data._render_image

    def render_then_fail(seed: int, index: int, imgsz: int, domain: sample_data.Domain):  # type: ignore[no-untyped-def]
        if index == 5:
            raise RuntimeError("simulated crash")
        return real_render(seed, index, imgsz, domain)

    monkeypatch.setattr(sample_data, "_render_image", render_then_fail)
    with pytest.raises(RuntimeError, match="simulated crash"):
        generate_dataset(tmp_path, seed=6, **SMALL)
    assert not (tmp_path / "data.yaml").exists()


@pytest.mark.parametrize(
    ("images", "val_fraction", "expected_val"),
    [(12, 0.2, 2), (10, 0.0, 1), (2, 0.01, 1), (2, 0.9, 1), (1, 0.5, 0), (20, 0.5, 10)],
)
def test_val_count(tmp_path: Path, images: int, val_fraction: float, expected_val: int) -> None:
    generate_dataset(tmp_path, images=images, imgsz=32, val_fraction=val_fraction)
    assert len(list(tmp_path.glob("images/val/*.jpg"))) == expected_val
    assert len(list(tmp_path.glob("images/train/*.jpg"))) == images - expected_val


def test_class_frequencies_are_imbalanced(tmp_path: Path) -> None:
    generate_dataset(tmp_path, images=120, imgsz=32, seed=11)
    counts = Counter(box[0] for f in tmp_path.glob("labels/*/*.txt") for box in read_yolo_labels(f))
    assert set(counts) == {0, 1, 2}
    assert counts[0] > counts[1] > counts[2]


def test_source_labels_are_pinned(tmp_path: Path) -> None:
    """Source must not drift: tests, fault suites and recorded benchmarks rely on its exact output.

    Labels, not JPEG bytes, are pinned, because those also depend on the libjpeg build.
    """
    generate_dataset(tmp_path, seed=3, **SMALL)
    labels = b"".join(p.read_bytes() for p in sorted(tmp_path.glob("labels/*/*.txt")))
    assert hashlib.sha256(labels).hexdigest() == "3f4ff805c90739db597f7dd5fea8e51a71acf243a136d6cbca3e16402b58fa07"


def test_target_is_deterministic_and_differs_from_source(tmp_path: Path) -> None:
    for name, domain in (("t1", "target"), ("t2", "target"), ("s", "source")):
        generate_dataset(tmp_path / name, seed=7, domain=domain, **SMALL)
    target, again, source = (_files(tmp_path / name) for name in ("t1", "t2", "s"))
    for files in (target, again, source):
        del files["data.yaml"]  # holds the absolute output folder
    assert target == again
    assert target.keys() == source.keys()  # same layout and split
    assert all(target[name] != source[name] for name in target if name.endswith(".jpg"))
    assert [target[name] for name in target if name.endswith(".txt")] != [
        source[name] for name in source if name.endswith(".txt")
    ]


def test_target_labels_are_valid_yolo(tmp_path: Path) -> None:
    generate_dataset(tmp_path, images=40, imgsz=64, seed=2, domain="target")
    assert load_data_yaml(tmp_path / "data.yaml").names == CLASS_NAMES
    for label_file in tmp_path.glob("labels/*/*.txt"):
        boxes = read_yolo_labels(label_file)
        assert 1 <= len(boxes) <= DOMAINS["target"].max_shapes
        for class_id, xc, yc, w, h in boxes:
            assert 0 <= class_id < len(CLASS_NAMES)
            assert 0 <= xc - w / 2 and xc + w / 2 <= 1
            assert 0 <= yc - h / 2 and yc + h / 2 <= 1


def test_target_clutter_is_not_labelled() -> None:
    """Clutter has its own random stream: removing it changes pixels but never the labels."""
    target = DOMAINS["target"]
    clean = dataclasses.replace(target, max_distractors=0)
    cluttered_images = 0
    for index in range(20):
        image, boxes = sample_data._render_image(4, index, 64, target)
        clean_image, clean_boxes = sample_data._render_image(4, index, 64, clean)
        assert boxes == clean_boxes
        cluttered_images += image.tobytes() != clean_image.tobytes()
    assert cluttered_images >= 10  # 0-3 items each, so about three images in four


def test_target_class_frequencies_follow_its_weights(tmp_path: Path) -> None:
    generate_dataset(tmp_path, images=300, imgsz=32, seed=11, domain="target")
    counts = Counter(box[0] for f in tmp_path.glob("labels/*/*.txt") for box in read_yolo_labels(f))
    total = sum(counts.values())
    for class_id, weight in enumerate(DOMAINS["target"].class_weights):
        assert abs(counts[class_id] / total - weight) < 0.05, counts
    assert counts.most_common(1)[0][0] == CLASS_NAMES.index("triangle")


def test_cli_sample_data_domain(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["sample-data", "--images", "4", "--imgsz", "32", "--seed", "9"]
    assert main([*argv, str(tmp_path / "cli"), "--domain", "target"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "cli" / "data.yaml")
    generate_dataset(tmp_path / "api", images=4, imgsz=32, seed=9, domain="target")
    assert main([*argv, str(tmp_path / "default")]) == 0  # source unless asked
    generate_dataset(tmp_path / "source", images=4, imgsz=32, seed=9)
    for cli, api in (("cli", "api"), ("default", "source")):
        cli_files, api_files = _files(tmp_path / cli), _files(tmp_path / api)
        del cli_files["data.yaml"], api_files["data.yaml"]
        assert cli_files == api_files
    with pytest.raises(SystemExit):
        main([*argv, str(tmp_path / "bad"), "--domain", "night"])
    assert "invalid choice: 'night'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"images": 0}, "images must be >= 1"),
        ({"imgsz": 31}, "imgsz must be >= 32"),
        ({"val_fraction": 1.0}, "val_fraction must be in"),
        ({"val_fraction": -0.1}, "val_fraction must be in"),
        ({"val_fraction": float("nan")}, "val_fraction must be in"),
        ({"seed": -1}, "seed must be >= 0"),
        ({"domain": "night"}, "unknown domain 'night', known: source, target"),
    ],
)
def test_argument_errors(tmp_path: Path, kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate_dataset(tmp_path / "out", **kwargs)  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()


def test_load_data_yaml_of_generated_dataset(dataset: Path) -> None:
    root = dataset.parent.resolve()
    assert load_data_yaml(dataset) == DatasetSpec(
        root=root,
        train_images=root / "images" / "train",
        val_images=root / "images" / "val",
        names=CLASS_NAMES,
    )


def test_label_path_for_matches_generated_layout(dataset: Path) -> None:
    for image_path in dataset.parent.glob("images/*/*.jpg"):
        assert label_path_for(image_path).is_file()
