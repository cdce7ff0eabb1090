"""The modality seam: the registry, the workdir's recorded modality, and the stages that ask it."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import dagster as dg
import pytest
from conftest import make_resources

from labeling_dag.cli import main as cli
from labeling_dag.formats.label_studio_export import AnnotatedBox, parse_export
from labeling_dag.formats.label_studio_text import CHOICES
from labeling_dag.ingest_batches import ROOT_BATCH
from labeling_dag.modalities import MODALITIES, MODALITY_FILE, modality_named, workdir_modality
from labeling_dag.modalities.detection import DETECTION
from labeling_dag.partitions import ingest_batches
from labeling_dag.records import NormBox


def test_every_registered_modality_is_complete_and_known_by_its_own_name() -> None:
    for name, modality in MODALITIES.items():
        assert modality.name == name
        assert modality.item_suffixes and all(s.startswith(".") and s == s.lower() for s in modality.item_suffixes)
        for field in dataclasses.fields(modality):
            assert getattr(modality, field.name) is not None, f"{name}.{field.name}"


def test_an_unknown_modality_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown modality 'audio'.*'detection'"):
        modality_named("audio")


def test_a_workdir_without_modality_file_holds_detection(tmp_path: Path) -> None:
    assert workdir_modality(tmp_path) is DETECTION


@pytest.mark.parametrize(
    ("content", "problem"),
    [("{not json", "not valid JSON"), ('["detection"]', "expected a JSON string"), ('"audio"', "unknown modality")],
)
def test_a_bad_modality_file_is_named_with_its_problem(tmp_path: Path, content: str, problem: str) -> None:
    (tmp_path / MODALITY_FILE).write_text(content)
    with pytest.raises(ValueError, match=problem) as error:
        workdir_modality(tmp_path)
    assert str(tmp_path / MODALITY_FILE) in str(error.value)


def test_init_records_the_modality_once_and_refuses_another(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    init = ["init", "--workdir", str(tmp_path), "--classes", "cat,dog"]
    assert cli([*init, "--modality", "detection"]) == 0
    assert "modality: detection\n" in capsys.readouterr().out
    assert json.loads((tmp_path / MODALITY_FILE).read_text()) == "detection"

    assert cli(init) == 0
    assert "modality: detection (already set)" in capsys.readouterr().out

    assert cli([*init, "--modality", "audio"]) == 1
    assert "--modality: unknown modality 'audio'" in capsys.readouterr().err

    monkeypatch.setitem(MODALITIES, "text", dataclasses.replace(DETECTION, name="text"))
    assert cli([*init, "--modality", "text"]) == 1
    assert f"{tmp_path / MODALITY_FILE}: the workdir holds 'detection' items, not 'text'" in capsys.readouterr().err


def test_a_workdir_with_classes_but_no_modality_file_is_taken_for_detection(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "classes.json").write_text('["cat", "dog"]')
    monkeypatch.setitem(MODALITIES, "text", dataclasses.replace(DETECTION, name="text"))
    assert cli(["init", "--workdir", str(tmp_path), "--classes", "cat,dog", "--modality", "text"]) == 1
    assert "holds 'detection' items, not 'text'" in capsys.readouterr().err
    assert not (tmp_path / MODALITY_FILE).exists()


def test_annotations_are_read_by_the_interface_of_the_modality() -> None:
    choice = {"id": "c1", "type": "choices", "from_name": "label", "to_name": "text", "value": {"choices": ["dog"]}}
    box = {
        "id": "r1",
        "type": "rectanglelabels",
        "from_name": "label",
        "to_name": "image",
        "value": {"x": 10, "y": 10, "width": 20, "height": 20, "rectanglelabels": ["cat"]},
    }
    task = {
        "id": 1,
        "data": {"image_id": "item-1", "batch_id": "b"},
        "annotations": [{"id": 7, "completed_by": 1, "created_at": "2026-01-01T00:00:00Z", "result": [choice, box]}],
        "predictions": [{"result": [{**choice, "id": "p1"}, {**box, "id": "p2"}]}],
    }
    (as_classification,) = parse_export([task], class_names=["cat", "dog"], interface=CHOICES)
    assert as_classification.boxes == (AnnotatedBox("c1", "dog", NormBox(0.5, 0.5, 1.0, 1.0)),)
    assert as_classification.prediction_region_ids == ("p1",)
    (as_detection,) = parse_export([task], class_names=["cat", "dog"])
    assert [b.class_name for b in as_detection.boxes] == ["cat"]
    assert as_detection.prediction_region_ids == ("p2",)


def test_ingestion_takes_the_files_of_the_workdirs_modality(
    tmp_path: Path, pool: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from labeling_dag.assets.ingestion import raw_images

    source = tmp_path / "source"
    source.mkdir()
    first, second = sorted(pool.glob("*.jpg"))[:2]
    shutil.copy(first, source / "a.jpg")
    shutil.copy(second, source / "b.jpg")
    (source / "c.png").write_bytes((source / "a.jpg").read_bytes())
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / MODALITY_FILE).write_text('"png-only"')
    monkeypatch.setitem(
        MODALITIES, "png-only", dataclasses.replace(DETECTION, name="png-only", item_suffixes=(".png",))
    )
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(ingest_batches.name, [ROOT_BATCH])
    result = dg.materialize(
        [raw_images], resources=make_resources(workdir, source), instance=instance, partition_key=ROOT_BATCH
    )
    (event,) = result.get_asset_materialization_events()
    meta = {k: v.value for k, v in event.step_materialization_data.materialization.metadata.items()}
    assert meta["new_files"] == 1
    assert sorted(Path(p).name for p in meta["skipped_files"]) == ["a.jpg", "b.jpg"]


def test_a_model_of_another_modality_is_refused_with_the_setting_to_change() -> None:
    from labeling_dag.resources.detector import Detector
    from labeling_dag.resources.text_classifier import TextClassifier

    from labeling_dag.cold_start import WrongModelError, check_model_fits

    check_model_fits(TextClassifier(), modality_named("text"))
    with pytest.raises(WrongModelError, match="LABELING_DAG_MODALITY=text"):
        check_model_fits(Detector(), modality_named("text"))
