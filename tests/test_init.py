"""`labeling-dag init`: class list, seed model (its classes remapped when asked) and gold items."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
from conftest import TEST_IMGSZ
from labeling_dag.resources.detector import Detector, model_info

from labeling_dag.cli import main as cli
from labeling_dag.model_registry import ModelRegistry, file_sha256
from labeling_dag.simulation.sample_data import CLASS_NAMES, generate_dataset
from labeling_dag.simulation.simulated_reviewer import load_truth


@pytest.fixture
def gold_yaml(tmp_path: Path) -> Path:
    return generate_dataset(tmp_path / "gold", images=4, seed=31, imgsz=TEST_IMGSZ)


def _state(root: Path) -> dict[str, tuple[bytes, int]]:
    """Bytes and modification time of every file under ``root``."""
    return {
        str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(root.rglob("*")) if p.is_file()
    }


def _truth_rows(gold_yaml: Path) -> pd.DataFrame:
    truth = load_truth(gold_yaml, "train") | load_truth(gold_yaml, "val")
    rows = [
        {"image_id": i, "class_name": b.class_name, "x": b.box.x, "y": b.box.y, "w": b.box.w, "h": b.box.h}
        for i, boxes in truth.items()
        for b in boxes
    ]
    return pd.DataFrame(rows).sort_values(["image_id", "class_name", "x"]).reset_index(drop=True)


def _gold(work: Path) -> pd.DataFrame:
    frame = pd.read_parquet(work / "gold" / "labels.parquet")
    return frame.sort_values(["image_id", "class_name", "x"]).reset_index(drop=True)


def test_init_sets_up_a_workdir_and_a_second_run_changes_nothing(tmp_path, tiny_model, gold_yaml, capsys):
    work, source = tmp_path / "work", tmp_path / "source"
    args = ["init", "--workdir", str(work), "--classes-from", str(gold_yaml), "--seed-model", str(tiny_model)]
    args += ["--gold", str(gold_yaml), "--source", str(source)]
    assert cli(args) == 0
    assert "registered as current model" in capsys.readouterr().out

    assert json.loads((work / "classes.json").read_text()) == list(CLASS_NAMES)
    current = ModelRegistry(work).current()
    assert current.model_version == file_sha256(tiny_model) and current.source == "seed_model"
    assert ModelRegistry(work).verified_path(current).read_bytes() == tiny_model.read_bytes()
    pd.testing.assert_frame_equal(_gold(work), _truth_rows(gold_yaml), check_dtype=False)
    copied = sorted(file_sha256(p) for p in (source / "gold").iterdir())
    assert copied == sorted(set(_truth_rows(gold_yaml)["image_id"]))

    before = _state(tmp_path)
    assert cli(args) == 0
    assert "already the current model" in capsys.readouterr().out
    assert _state(tmp_path) == before


def test_a_seed_model_with_other_class_names_and_order_is_remapped(tmp_path, tiny_model, seed_dataset):
    """Project classes box, wedge, disc; the model's circle, square, triangle mapped onto them:
    the registered model predicts the same boxes and scores, each under its project class."""
    work = tmp_path / "work"
    mapping = "circle=disc,square=box,triangle=wedge"
    args = ["init", "--workdir", str(work), "--classes", "box,wedge,disc", "--seed-model", str(tiny_model)]
    assert cli([*args, "--class-map", mapping]) == 0
    entry = ModelRegistry(work).current()
    weights = ModelRegistry(work).verified_path(entry)
    assert entry.parent == file_sha256(tiny_model) and entry.model_version != entry.parent
    assert model_info(weights) == ("detect", ("box", "wedge", "disc"))

    images = sorted((seed_dataset.parent / "images" / "val").glob("*.jpg"))[:6]
    detector = Detector(imgsz=TEST_IMGSZ, conf=0.05)
    renamed = dict(pair.split("=") for pair in mapping.split(","))
    boxes = 0
    for before, after in zip(detector.predict(tiny_model, images), detector.predict(weights, images), strict=True):
        assert [renamed[CLASS_NAMES[c]] for c in before.class_ids] == [entry.class_names[c] for c in after.class_ids]
        assert after.boxes_xywhn == pytest.approx(before.boxes_xywhn, abs=1e-4)
        assert after.confidences == pytest.approx(before.confidences, abs=1e-4)
        assert after.class_probs == pytest.approx(before.class_probs[:, [1, 2, 0]], abs=1e-4)
        boxes += len(after.class_ids)
    assert boxes > 0

    state = _state(work)
    assert cli([*args, "--class-map", mapping]) == 0
    assert _state(work) == state


def test_a_class_map_may_drop_model_classes(tmp_path, tiny_model, seed_dataset):
    work = tmp_path / "work"
    args = ["init", "--workdir", str(work), "--classes", "disc,box", "--seed-model", str(tiny_model)]
    assert cli([*args, "--class-map", "circle=disc,square=box"]) == 0
    weights = ModelRegistry(work).verified_path(ModelRegistry(work).current())
    assert model_info(weights) == ("detect", ("disc", "box"))
    images = sorted((seed_dataset.parent / "images" / "val").glob("*.jpg"))[:4]
    for prediction in Detector(imgsz=TEST_IMGSZ, conf=0.05).predict(weights, images):
        assert set(prediction.class_ids.tolist()) <= {0, 1} and prediction.class_probs.shape[1:] == (2,)


@pytest.mark.parametrize(
    ("classes", "class_map", "message"),
    [
        ("a,b,c", "", "map them with --class-map"),
        ("circle,square,triangle,star", "", "differ from the class list"),
        ("disc,box", "circle=disc,hexagon=box", "'hexagon'"),
        ("disc,box,wedge", "circle=disc,square=box", "project class 'wedge' has no model class"),
        ("disc,box", "circle=disc,square=disc", "would all predict project class 'disc'"),
        ("disc,box", "circle", "not MODEL_CLASS=PROJECT_CLASS"),
    ],
)
def test_a_seed_model_that_does_not_fit_is_refused_and_nothing_is_written(
    tmp_path, tiny_model, capsys, classes, class_map, message
):
    work = tmp_path / "work"
    args = ["init", "--workdir", str(work), "--classes", classes, "--seed-model", str(tiny_model)]
    assert cli([*args, "--class-map", class_map]) == 1
    assert message in capsys.readouterr().err
    assert not work.exists()


def test_bad_inputs_name_the_file_and_the_problem(tmp_path, gold_yaml, capsys):
    work = tmp_path / "work"
    base = ["init", "--workdir", str(work), "--classes", ",".join(CLASS_NAMES)]
    label = sorted((gold_yaml.parent / "labels" / "train").glob("*.txt"))[0]
    label.write_text("0 0.5 0.5 0.2\n")
    assert cli([*base, "--gold", str(gold_yaml)]) == 1
    assert f"{label}:1" in capsys.readouterr().err

    assert cli([*base, "--seed-model", str(tmp_path / "missing.pt")]) == 1
    assert "missing.pt: seed model does not exist" in capsys.readouterr().err
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    assert cli([*base, "--seed-model", str(tmp_path / "junk.pt")]) == 1
    assert "junk.pt: not an ultralytics model" in capsys.readouterr().err
    assert cli(["init", "--workdir", str(work), "--classes", "a,a"]) == 1
    assert "--classes" in capsys.readouterr().err
    assert not work.exists()

    assert cli(base) == 0
    assert cli(["init", "--workdir", str(work), "--classes", "cat,dog"]) == 1
    assert "classes.json" in capsys.readouterr().err
    assert json.loads((work / "classes.json").read_text()) == list(CLASS_NAMES)


def _coco_from(gold_yaml: Path, out: Path) -> Path:
    """The gold dataset's answers written as a COCO JSON (pixels, top-left corner)."""
    from PIL import Image

    truth = load_truth(gold_yaml, "train") | load_truth(gold_yaml, "val")
    by_id = {file_sha256(p): p for p in sorted(gold_yaml.parent.glob("images/*/*.jpg"))}
    images, annotations = [], []
    for number, (image_id, boxes) in enumerate(sorted(truth.items()), start=1):
        path = by_id[image_id]
        width, height = Image.open(path).size
        images.append({"id": number, "file_name": os.path.relpath(path, out.parent), "width": width, "height": height})
        for b in boxes:
            w, h = b.box.w * width, b.box.h * height
            bbox = [b.box.x * width - w / 2, b.box.y * height - h / 2, w, h]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": number,
                    "category_id": 1 + CLASS_NAMES.index(b.class_name),
                    "bbox": bbox,
                }
            )
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(CLASS_NAMES)]
    out.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return out


def test_gold_from_a_coco_json_equals_gold_from_the_yolo_dataset(tmp_path, gold_yaml, capsys):
    coco = _coco_from(gold_yaml, tmp_path / "gold.json")
    work = tmp_path / "work"
    assert cli(["init", "--workdir", str(work), "--classes", ",".join(CLASS_NAMES), "--gold", str(coco)]) == 0
    got, expected = _gold(work), _truth_rows(gold_yaml)
    assert list(got["image_id"]) == list(expected["image_id"])
    assert got[["x", "y", "w", "h"]].to_numpy() == pytest.approx(expected[["x", "y", "w", "h"]].to_numpy(), abs=1e-6)

    document = json.loads(coco.read_text())
    document["annotations"][0]["category_id"] = 99
    coco.write_text(json.dumps(document))
    assert (
        cli(["init", "--workdir", str(tmp_path / "other"), "--classes", ",".join(CLASS_NAMES), "--gold", str(coco)])
        == 1
    )
    assert f"{coco}: annotation 1: unknown category_id 99" in capsys.readouterr().err


def test_a_label_studio_gold_file_must_point_at_local_images(tmp_path, capsys):
    tasks = [{"id": 7, "data": {"image": "https://example.com/a.jpg"}, "annotations": [{"result": []}]}]
    gold = tmp_path / "export.json"
    gold.write_text(json.dumps(tasks))
    assert cli(["init", "--workdir", str(tmp_path / "w"), "--classes", "a", "--gold", str(gold)]) == 1
    error = capsys.readouterr().err
    assert str(gold) in error and "task #0 (id=7)" in error and "https://example.com/a.jpg" in error
