"""Per-class quality: ultralytics' validator's per-class figures and confusion matrix as a
ModelEvaluation, and the promotion gate's per-class rule (the check called directly)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import TEST_IMGSZ
from labeling_dag.assets.promotion import promotion_gate
from labeling_dag.resources.detector import Detector
from labeling_dag.resources.snapshots import SnapshotStore
from labeling_dag.resources.storage import LabelStore

from labeling_dag import atomic
from labeling_dag.evaluation import (
    ClassDrop,
    ClassQuality,
    ModelEvaluation,
    class_drops,
    class_quality_table,
    confusion_table,
)
from labeling_dag.formats.yolo import load_data_yaml
from labeling_dag.model_cards import card_file_of
from labeling_dag.model_registry import ModelRegistry
from labeling_dag.simulation.sample_data import CLASS_NAMES


@pytest.fixture(scope="module")
def evaluation(tiny_model: Path, seed_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> ModelEvaluation:
    """The tiny model evaluated on its seed dataset's val split by the real validator."""
    out = tmp_path_factory.mktemp("eval") / "val"
    return Detector(imgsz=TEST_IMGSZ, conf=0.05).evaluate(tiny_model, seed_dataset, out)


def _val_boxes(seed_dataset: Path) -> dict[str, int]:
    """Boxes per class in the val split, read from its YOLO label files."""
    dataset = load_data_yaml(seed_dataset)
    names, images = dataset.names, Path(dataset.val_images)
    labels = images.parent.parent / "labels" / images.name
    counts = dict.fromkeys(names, 0)
    for file in labels.glob("*.txt"):
        for line in file.read_text().splitlines():
            counts[names[int(line.split()[0])]] += 1
    return {name: n for name, n in counts.items() if n}


def test_the_validator_gives_per_class_figures_and_a_confusion_matrix(
    evaluation: ModelEvaluation, seed_dataset: Path
) -> None:
    boxes = _val_boxes(seed_dataset)
    assert {row.class_name: row.instances for row in evaluation.per_class} == boxes
    assert evaluation.map50 == pytest.approx(np.mean([row.map50 for row in evaluation.per_class]))
    assert evaluation.map50 > 0.0, "the tiny model finds something"
    for row in evaluation.per_class:
        assert 0.0 <= min(row.precision, row.recall, row.map50_95) and max(row.precision, row.recall) <= 1.0
        assert row.map50_95 <= row.map50 + 1e-9

    confusion = evaluation.confusion
    assert confusion.labels == (*CLASS_NAMES, "background") and confusion.conf == 0.05
    counts = np.array(confusion.counts)
    # Every true box is counted once in its class's column: found as some class, or missed.
    assert {name: int(counts[:, i].sum()) for i, name in enumerate(CLASS_NAMES) if counts[:, i].sum()} == boxes
    assert np.trace(counts[:-1, :-1]) > 0, "some boxes are found with their class"
    assert ModelEvaluation.from_json(json.loads(json.dumps(evaluation.as_json()))) == evaluation


def _quality(name: str, map50: float) -> ClassQuality:
    return ClassQuality(class_name=name, instances=100, precision=0.9, recall=0.8, map50=map50, map50_95=map50 / 2)


def test_class_drops_are_the_classes_losing_more_than_the_tolerance() -> None:
    current = [_quality("circle", 0.9), _quality("square", 0.8), _quality("triangle", 0.7)]
    candidate = [_quality("circle", 0.84), _quality("square", 0.76), _quality("triangle", 0.95)]

    drops = class_drops(candidate, current, tolerance=0.05)

    assert [(d.class_name, round(d.change, 3)) for d in drops] == [("circle", -0.06)]
    assert class_drops(candidate, current, tolerance=0.1) == []
    assert class_drops(candidate, current[1:], tolerance=0.0) == [ClassDrop("square", 0.8, 0.76)]
    table = class_quality_table(candidate, current)
    assert "| circle | 100 | 0.900 | 0.800 | 0.840 | 0.420 | 0.900 | -0.060 |" in table.splitlines()


def test_one_instance_judged_the_other_way_is_not_a_drop() -> None:
    # 14 held-out texts of a class: one answer moves it by 0.071, beyond the 0.05 tolerance.
    few = ClassQuality(class_name="tech", instances=14, precision=1.0, recall=1.0, map50=13 / 14, map50_95=13 / 14)
    assert class_drops([dataclasses.replace(few, map50=12 / 14)], [few], tolerance=0.05) == []
    (drop,) = class_drops([dataclasses.replace(few, map50=11 / 14)], [few], tolerance=0.05)
    assert drop.class_name == "tech"


def test_the_confusion_table_has_a_row_per_predicted_and_a_column_per_true_label(evaluation: ModelEvaluation) -> None:
    lines = confusion_table(evaluation.confusion).splitlines()
    assert lines[0] == "| predicted \\ true | circle | square | triangle | background |"
    assert len(lines) == 2 + len(evaluation.confusion.labels)


def _pending_candidate(root: Path, tiny_model: Path, card: dict) -> LabelStore:
    """A workdir whose registry holds ``tiny_model`` as the candidate awaiting promotion, with ``card``."""
    store = LabelStore(workdir=str(root))
    entry = ModelRegistry(store.root).register(
        tiny_model, task="detect", class_names=CLASS_NAMES, source="retrained", make_current=False
    )
    atomic.write_json(card_file_of(store.root, entry.model_version), {**card, "model_version": entry.model_version})
    return store


@pytest.mark.parametrize(
    ("lost", "class_tolerance", "passed"),
    [
        pytest.param(0.0, 0.05, True, id="no-class-lost"),
        pytest.param(0.04, 0.05, True, id="within-tolerance"),
        pytest.param(0.2, 0.05, False, id="one-class-lost-too-much"),
        pytest.param(0.2, None, True, id="rule-off"),
    ],
)
def test_the_promotion_gate_refuses_a_model_that_loses_a_class(
    tmp_path: Path,
    tiny_model: Path,
    evaluation: ModelEvaluation,
    lost: float,
    class_tolerance: float | None,
    passed: bool,
) -> None:
    """The current model was ``lost`` better on one class, same overall mAP50: only the per-class
    rule can refuse the candidate."""
    first = evaluation.per_class[0]
    current = dataclasses.replace(
        evaluation, per_class=(dataclasses.replace(first, map50=first.map50 + lost), *evaluation.per_class[1:])
    )
    card = {
        "metrics": evaluation.summary(),
        "parent_metrics_same_validation": evaluation.summary(),
        "evaluation": evaluation.as_json(),
        "parent_evaluation_same_validation": current.as_json(),
        "promotion_tolerance": 0.02,
        "class_tolerance": class_tolerance,
    }
    store = _pending_candidate(tmp_path / "work", tiny_model, card)

    result = promotion_gate(store=store, snapshots=SnapshotStore())

    assert result.passed is passed
    drops = result.metadata["class_drops"].value
    assert [drop["class_name"] for drop in drops] == ([] if passed else [first.class_name])
    assert result.metadata["class_tolerance"].value == (class_tolerance if class_tolerance is not None else "off")
