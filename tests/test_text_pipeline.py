"""The text modality end to end: ingestion and cleaning through the real assets, the Label Studio
Text+Choices interface, and `labeling-dag run-loop --modality text` on BBC News articles."""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from conftest import make_resources
from labeling_dag.assets.cleaning import cleaned_images
from labeling_dag.assets.ingestion import raw_images
from labeling_dag.resources.storage import LabelStore

from labeling_dag.checks import cleaned_images_gate
from labeling_dag.cli import main as cli
from labeling_dag.contracts import CLEANED, RAW_INDEX, REJECTS
from labeling_dag.formats.label_studio import labeling_config as rectangles_config
from labeling_dag.formats.label_studio_export import AnnotatedBox, parse_export
from labeling_dag.formats.label_studio_text import CHOICES
from labeling_dag.formats.review_interface import WHOLE_ITEM
from labeling_dag.ingest_batches import ROOT_BATCH
from labeling_dag.merge import exported_predictions
from labeling_dag.partitions import ingest_batches
from labeling_dag.records import PreLabel, ReviewImage
from labeling_dag.simulation.demo import write_bbc_news_sample

CLASSES = ("business", "sport")

# Long enough that one word changed leaves most of its 3-word shingles, so the changed copy is a
# near duplicate (estimated Jaccard >= 0.8), not a new text.
MATCH_REPORT = (
    "The home side came from two goals down to win the cup final on Saturday afternoon, with the "
    "young striker scoring twice in the last ten minutes in front of a sold out crowd. The manager "
    "said afterwards that the squad had never stopped believing, and that the victory belonged to "
    "the supporters who had travelled across the country to watch the team play in the final."
)
RATES = "The central bank raised interest rates by half a point on Tuesday."


def _write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def _metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, Any]:
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(asset)]
    return {k: v.value for k, v in event.step_materialization_data.materialization.metadata.items()}


# --------------------------------------------------------------------------- ingestion and cleaning


def test_texts_files_and_table_rows_are_ingested_cleaned_rejected_and_deduplicated(tmp_path: Path) -> None:
    workdir, source = tmp_path / "work", tmp_path / "source"
    assert cli(["init", "--workdir", str(workdir), "--classes", ",".join(CLASSES), "--modality", "text"]) == 0
    assert json.loads((workdir / "modality.json").read_text()) == "text"
    rates = _write(source / "a_rates.txt", RATES + "\n")
    match = _write(source / "b_match.txt", MATCH_REPORT + "\n")
    empty = _write(source / "c_empty.txt", " \n")
    latin1 = _write(source / "d_latin1.txt", "Caf\xe9 prices rose again in Paris.".encode("latin-1"))
    phone = "A new phone with a folding screen goes on sale next month."
    jsonl = _write(source / "e_more.jsonl", json.dumps({"id": "j1", "text": phone}) + "\n")
    near = MATCH_REPORT.replace("Saturday", "Sunday")
    budget = "Parliament passed the new budget after a long debate."
    table = _write(source / "f_news.csv", f'id,text\nr1,"{RATES}"\nr2,"{near}"\nr3,"{budget}"\n')
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(ingest_batches.name, [ROOT_BATCH])

    result = dg.materialize(
        [raw_images, cleaned_images, cleaned_images_gate],
        resources=make_resources(workdir, source),
        instance=instance,
        partition_key=ROOT_BATCH,
    )

    assert result.success
    (gate,) = result.get_asset_check_evaluations()
    assert gate.passed
    store = LabelStore(workdir=str(workdir))
    raw = store.read(RAW_INDEX, batch=ROOT_BATCH)
    expected_sources = {
        str(rates),
        str(match),
        str(empty),
        str(latin1),
        f"{jsonl}#j1",
        f"{table}#r1",
        f"{table}#r2",
        f"{table}#r3",
    }
    # One item per file and per table row; the row equal to a file but for its final newline
    # has other bytes, hence its own id.
    assert sorted(raw["source_path"]) == sorted(expected_sources)
    assert raw["image_id"].is_unique
    raw_meta = _metadata(result, "raw_images")
    assert (raw_meta["new_files"], raw_meta["new_images"], raw_meta["skipped_files"]) == (8, 8, [])

    rejects = store.read(REJECTS, batch=ROOT_BATCH)
    assert dict(zip(rejects["source_path"], rejects["reason"])) == {str(empty): "empty", str(latin1): "not_utf8"}
    assert all(str(path) in message for path, message in zip(rejects["source_path"], rejects["message"]))

    cleaned = store.read(CLEANED, batch=ROOT_BATCH).set_index("source_path")
    assert set(cleaned.index) == expected_sources - {str(empty), str(latin1)}
    assert cleaned.loc[f"{table}#r1", "duplicate_of"] == cleaned.loc[str(rates), "image_id"]
    assert cleaned.loc[f"{table}#r2", "near_duplicate_of"] == cleaned.loc[str(match), "image_id"]
    assert list(cleaned.index[cleaned["is_exact_duplicate"]]) == [f"{table}#r1"]
    assert list(cleaned.index[cleaned["is_near_duplicate"]]) == [f"{table}#r2"]
    # The cleaned copy is the text without its final newline, one line high, as wide as its characters.
    rates_row = cleaned.loc[str(rates)]
    assert (workdir / rates_row["path"]).read_text(encoding="utf-8") == RATES
    assert (rates_row["converted_mode"], rates_row["width"], rates_row["height"]) == ("normalised", len(RATES), 1)
    meta = _metadata(result, "cleaned_images")
    assert {key: meta[key] for key in ("images", "rejected", "exact_duplicates", "near_duplicates")} == {
        "images": 6,
        "rejected": 2,
        "exact_duplicates": 1,
        "near_duplicates": 1,
    }
    assert (meta["rejected_empty"], meta["rejected_not_utf8"]) == (1, 1)


# --------------------------------------------------------------------------- Label Studio Text+Choices


def _parsed_label_config(xml: str) -> dict[str, Any]:
    """The ``parsed_label_config`` Label Studio's project API returns for ``xml``: per control tag
    (one with ``toName``) its type, targets, the object tags it reads and its choice values."""
    root = ET.fromstring(xml)
    objects = {tag.get("name"): tag for tag in root.iter() if tag.get("value", "").startswith("$")}
    parsed = {}
    for control in (tag for tag in root.iter() if tag.get("toName")):
        targets = control.get("toName", "").split(",")
        parsed[control.get("name")] = {
            "type": control.tag,
            "to_name": targets,
            "inputs": [
                {"type": objects[name].tag, "value": objects[name].get("value", "").removeprefix("$")}
                for name in targets
                if name in objects
            ],
            "labels": [child.get("value") for child in control if child.get("value") is not None],
        }
    return parsed


def test_the_choices_config_fits_its_own_check_and_refuses_another() -> None:
    xml = CHOICES.labeling_config(CLASSES)
    parsed = _parsed_label_config(xml)

    assert parsed["label"]["type"] == "Choices"
    assert parsed["label"]["labels"] == list(CLASSES)
    assert CHOICES.config_problem(parsed, CLASSES) is None
    assert CHOICES.config_problem(parsed, ("business", "sport", "tech")) == (
        "offers the choices ['business', 'sport'], but the pipeline's classes are ['business', 'sport', 'tech']"
    )
    assert CHOICES.config_problem(_parsed_label_config(rectangles_config(CLASSES)), CLASSES) == (
        "has no Choices control named 'label'"
    )


def test_a_text_task_carries_its_url_and_its_predicted_choice_back_through_the_export() -> None:
    pre_label = PreLabel(
        box_id="pl-1",
        image_id="text-1",
        class_name="sport",
        box=WHOLE_ITEM,
        confidence=0.87,
        class_probs=(0.13, 0.87),
        model_version="m1",
    )
    item = ReviewImage(
        image_id="text-1",
        image_ref="/data/local-files/?d=cleaned_images/_root/files/text-1.txt",
        width=120,
        height=1,
        score=0.4,
        pre_labels=(pre_label,),
    )
    task = CHOICES.task(item, batch_id="b1", model_version="m1", pre_label_run_id="run-1")

    assert task["data"]["text"] == item.image_ref
    (region,) = task["predictions"][0]["result"]
    assert region["value"] == {"choices": ["sport"]}
    (predicted,) = exported_predictions(task, CHOICES)
    assert (predicted.box_id, predicted.class_name, predicted.box) == ("pl-1", "sport", WHOLE_ITEM)
    assert predicted.confidence == pytest.approx(0.87)

    # The reviewer keeps the predicted region but changes its class.
    answer = {**region, "value": {"choices": ["business"]}}
    annotation = {"id": 1, "completed_by": 7, "created_at": "2026-01-01T00:00:00Z", "result": [answer]}
    (parsed,) = parse_export([{**task, "id": 1, "annotations": [annotation]}], class_names=CLASSES, interface=CHOICES)
    assert parsed.boxes == (AnnotatedBox("pl-1", "business", WHOLE_ITEM),)
    assert parsed.prediction_region_ids == ("pl-1",)
    assert (parsed.image_id, parsed.batch_id, parsed.reviewer) == ("text-1", "b1", "7")


# --------------------------------------------------------------------------- run-loop --modality text


@pytest.fixture
def own_instance(monkeypatch: pytest.MonkeyPatch) -> None:
    """The loop records its runs in a temporary Dagster instance, not the project's."""
    monkeypatch.delenv("DAGSTER_HOME", raising=False)


@pytest.mark.slow
@pytest.mark.usefixtures("own_instance")
def test_run_loop_labels_a_bbc_news_sample_accurately_in_less_than_hand_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = write_bbc_news_sample(tmp_path / "bbc.csv", per_class=20, seed=1)
    report = tmp_path / "report.json"
    args = [
        "run-loop", "--modality", "text", "--dataset", dataset, "--workdir", tmp_path / "work", "--report", report,
        "--until-labelled", "--seed", "1",
    ]  # fmt: skip

    assert cli([str(arg) for arg in args]) == 0

    summary = json.loads(report.read_text())["dataset"]
    # The pool is the distinct texts of the train split (80 rows): the corpus repeats some articles.
    pool = {path.read_bytes() for path in (tmp_path / "work-dataset" / "texts" / "train").glob("*.txt")}
    assert summary["pool_items"] == summary["items_labelled"] == len(pool) > 70
    assert summary["accuracy"] >= 0.9
    assert summary["human_time_ratio"] < 1
    assert report.with_suffix(".png").is_file()
    out = capsys.readouterr().out
    assert "human time:" in out and "texts labelled, accuracy" in out
    # The labelled texts leave as a Label Studio text classification project.
    export = ["export", "--workdir", tmp_path / "work", "--format", "labelstudio", "--out", tmp_path / "ls"]
    assert cli([str(arg) for arg in export]) == 0
    assert "<Choices" in (tmp_path / "ls" / "labeling_config.xml").read_text()
    (task, *_) = json.loads((tmp_path / "ls" / "tasks" / "train.json").read_text())
    assert task["data"]["text"].endswith(".txt")
    assert [item["type"] for item in task["annotations"][0]["result"]] == ["choices"]


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.mark.parametrize(
    ("header", "rows", "problem"),
    [
        (["text", "class"], [["Shares fell.", "business"]], "no ['label'] column"),
        (["text", "label"], [], "no rows"),
        (["text", "label"], [["Shares fell.", ""]], "row 2 has an empty text or label"),
    ],
)
@pytest.mark.usefixtures("own_instance")
def test_a_bad_dataset_csv_stops_run_loop_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], header: list[str], rows: list[list[str]], problem: str
) -> None:
    dataset = _write_csv(tmp_path / "bad.csv", header, rows)
    workdir = tmp_path / "work"
    report = tmp_path / "r.json"
    args = ["run-loop", "--modality", "text", "--dataset", dataset, "--workdir", workdir, "--report", report]

    assert cli([str(arg) for arg in args]) == 1

    error = capsys.readouterr().err
    assert error.startswith(f"error: {dataset}: ") and problem in error
    assert not workdir.exists() and not report.exists()


# --------------------------------------------------------------------------- init of a text workdir


def test_init_registers_a_zero_shot_first_model_from_the_class_descriptions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from labeling_dag.model_registry import ModelRegistry
    from labeling_dag.text_model import read_text_model

    descriptions = _write(tmp_path / "descriptions.json", json.dumps({"sport": "sport: football, tennis, cricket"}))
    init = ["init", "--workdir", str(tmp_path / "work"), "--modality", "text", "--classes", ",".join(CLASSES)]
    assert cli([*init, "--class-descriptions", str(descriptions)]) == 0
    assert "registered as current model" in capsys.readouterr().out
    current = ModelRegistry(tmp_path / "work").current()
    assert current is not None and current.task == "classify" and current.class_names == CLASSES
    model = read_text_model(tmp_path / "work" / current.path)
    assert model.class_descriptions == ("business", "sport: football, tennis, cricket")
    # Run again: the first model is registered once, and nothing else changes.
    assert cli(init) == 0
    assert ModelRegistry(tmp_path / "work").current() == current


def test_init_refuses_descriptions_of_unknown_classes_and_a_text_model_of_other_classes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from labeling_dag.text_model import zero_shot_weights

    init = ["init", "--workdir", str(tmp_path / "work"), "--modality", "text", "--classes", ",".join(CLASSES)]
    bad = _write(tmp_path / "descriptions.json", json.dumps({"weather": "rain"}))
    assert cli([*init, "--class-descriptions", str(bad)]) == 1
    assert "['weather'] are not in the class list" in capsys.readouterr().err
    broken = _write(tmp_path / "broken.json", "{not json")
    assert cli([*init, "--class-descriptions", str(broken)]) == 1
    assert f"{broken}: not a readable JSON file" in capsys.readouterr().err
    other = zero_shot_weights(("politics", "tech"), tmp_path / "other.json")
    assert cli([*init, "--seed-model", str(other)]) == 1
    assert "the model's classes ['politics', 'tech'] differ" in capsys.readouterr().err
    assert not (tmp_path / "work" / "models").exists()


def test_init_takes_gold_texts_from_a_labelled_text_dataset(tmp_path: Path) -> None:
    from labeling_dag.contracts import GOLD_LABELS
    from labeling_dag.simulation.text_dataset import text_dataset_from_csv
    from labeling_dag.tables import read

    rows = [[MATCH_REPORT, "sport", "train"], [RATES, "business", "train"], ["Shares fell again.", "business", "val"]]
    table = _write_csv(tmp_path / "gold.csv", ["text", "label", "split"], rows)
    data_yaml = text_dataset_from_csv(table, tmp_path / "g")
    init = ["init", "--workdir", str(tmp_path / "work"), "--modality", "text", "--classes", ",".join(CLASSES)]
    assert cli([*init, "--gold", str(data_yaml), "--source", str(tmp_path / "source")]) == 0
    gold = read(tmp_path / "work", GOLD_LABELS)
    assert sorted(gold["class_name"]) == ["business", "business", "sport"]
    assert set(zip(gold["x"], gold["y"], gold["w"], gold["h"])) == {(0.5, 0.5, 1.0, 1.0)}
    copied = sorted(path.read_text(encoding="utf-8") for path in (tmp_path / "source" / "gold").iterdir())
    assert copied == sorted([MATCH_REPORT, RATES, "Shares fell again."])
