"""`labeling-dag export` and the dataset_export asset over a workdir verified through the real jobs."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from labeling_dag.assets.export import dataset_export
from labeling_dag.resources.snapshots import SnapshotStore
from labeling_dag.resources.storage import LabelStore
from verified_workdir import VerifiedWorkdir, build_verified_workdir, tree_digest

from labeling_dag.cli import main as cli
from labeling_dag.contracts import LABEL_COLUMNS, VERIFIED_IMAGE_COLUMNS
from labeling_dag.dataset_export import PROVENANCE_COLUMNS
from labeling_dag.formats.yolo import load_data_yaml, read_yolo_labels
from labeling_dag.merge import active
from labeling_dag.simulation.sample_data import CLASS_NAMES


@pytest.fixture(scope="module")
def verified(tmp_path_factory: pytest.TempPathFactory) -> VerifiedWorkdir:
    return build_verified_workdir(tmp_path_factory.mktemp("verified"))


def _active(work: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    labels = active(pd.read_parquet(work / "verified_labels" / "labels.parquet").astype(LABEL_COLUMNS))
    images = active(pd.read_parquet(work / "verified_labels" / "images.parquet").astype(VERIFIED_IMAGE_COLUMNS))
    return labels, images


def _export(verified: VerifiedWorkdir, out: Path, *args: str) -> int:
    return cli(["export", "--workdir", str(verified.work), "--out", str(out), *args])


def test_yolo_export_has_every_verified_image_once_with_its_labels_and_provenance(verified, tmp_path, capsys):
    """Every active verified image under a unique name (the gold and pool pictures both called
    img_0000x.jpg keep apart), a label file per image whose lines are its verified boxes, a
    data.yaml the project's YOLO reader resolves, and one provenance row per label."""
    out = tmp_path / "yolo"
    assert _export(verified, out, "--split", "train=0.7,val=0.3", "--seed", "3") == 0
    assert verified.snapshots[-1] in capsys.readouterr().out
    labels, images = _active(verified.work)

    spec = load_data_yaml(out / "data.yaml")
    assert spec.names == CLASS_NAMES and spec.train_images == out / "images" / "train"
    files = sorted(p for p in (out / "images").rglob("*.jpg"))
    assert len(files) == len(images) == 15 and len({p.name.casefold() for p in files}) == 15
    assert sum(p.name.startswith("img_00000") for p in files) == 2, "the clashing names were not both kept"
    assert {p.parent.name for p in files} == {"train", "val"}

    provenance = pd.read_csv(out / "provenance.csv", keep_default_na=False)
    assert tuple(provenance.columns) == PROVENANCE_COLUMNS
    assert sorted(provenance["label_id"]) == sorted(labels["label_id"])
    assert set(provenance["snapshot"]) == {verified.snapshots[-1]}
    assert set(provenance["source"]) == {"human", "gold"}
    assert (provenance.loc[provenance["source"] == "human", "review_batch_id"] != "").all()
    assert (provenance.loc[provenance["source"] == "human", "reviewer"] == "reviewer-1").all()
    for file, rows in provenance.groupby("file"):
        label_file = out / "labels" / Path(file).parent.name / f"{Path(file).stem}.txt"
        boxes = read_yolo_labels(label_file)
        expected = labels.set_index("label_id").loc[rows["label_id"]]
        assert sorted(CLASS_NAMES[b[0]] for b in boxes) == sorted(expected["class_name"])
        assert sorted(round(b[1], 6) for b in boxes) == sorted(round(x, 6) for x in expected["x"])
    assert len(list((out / "labels").rglob("*.txt"))) == len(files)


def test_the_same_export_twice_gives_the_same_bytes(verified, tmp_path):
    out = tmp_path / "again"
    assert _export(verified, out, "--split", "train=0.5,val=0.25,test=0.25", "--seed", "1") == 0
    first = tree_digest(out)
    assert _export(verified, out, "--split", "train=0.5,val=0.25,test=0.25", "--seed", "1") == 0
    assert tree_digest(out) == first
    assert "test: images/test" in (out / "data.yaml").read_text()


def test_coco_export_loads_in_pycocotools_and_scores_ap_1_against_itself(verified, tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    out = tmp_path / "coco"
    assert _export(verified, out, "--format", "coco", "--split", "train=0.6,val=0.4") == 0
    labels, images = _active(verified.work)
    counted_images = counted_boxes = 0
    for split in ("train", "val"):
        truth = COCO(str(out / "annotations" / f"instances_{split}.json"))
        assert [c["name"] for c in truth.loadCats(truth.getCatIds())] == list(CLASS_NAMES)
        for image in truth.loadImgs(truth.getImgIds()):
            assert (out / "images" / split / image["file_name"]).is_file()
        detections = [{**ann, "score": 1.0} for ann in truth.loadAnns(truth.getAnnIds())]
        evaluation = COCOeval(truth, truth.loadRes(detections), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
        assert evaluation.stats[0] == pytest.approx(1.0)
        counted_images += len(truth.getImgIds())
        counted_boxes += len(truth.getAnnIds())
    assert (counted_images, counted_boxes) == (len(images), len(labels))


def test_label_studio_export_round_trips_as_gold_answers(verified, tmp_path):
    """The Label Studio tasks, read back by `init --gold` (its Label Studio reader), give the verified boxes."""
    out = tmp_path / "ls"
    assert _export(verified, out, "--format", "labelstudio") == 0
    tasks = json.loads((out / "tasks" / "train.json").read_text())
    assert all(task["data"]["image"].startswith("/data/local-files/?d=images/train/") for task in tasks)
    assert "<RectangleLabels" in (out / "labeling_config.xml").read_text()

    again = tmp_path / "again"
    gold = ["--gold", str(out / "tasks" / "train.json"), "--gold-images", str(out)]
    assert cli(["init", "--workdir", str(again), "--classes", ",".join(CLASS_NAMES), *gold]) == 0
    read_back = pd.read_parquet(again / "gold" / "labels.parquet")
    labels, _ = _active(verified.work)
    key = ["image_id", "class_name", "x", "y"]
    got = read_back[key].round(5).sort_values(key).reset_index(drop=True)
    assert got.equals(labels[key].round(5).sort_values(key).reset_index(drop=True))


def test_an_older_snapshot_and_a_source_filter(verified, tmp_path):
    """--snapshot exports the labels of the first merge only; --sources gold only the gold answers."""
    old = tmp_path / "old"
    assert _export(verified, old, "--snapshot", verified.snapshots[0]) == 0
    provenance = pd.read_csv(old / "provenance.csv", keep_default_na=False)
    assert set(provenance["snapshot"]) == {verified.snapshots[0]}
    assert provenance["merge_id"].nunique() == 1
    assert len(list((old / "images").rglob("*.jpg"))) == 9  # 6 reviewed + 3 gold

    gold = tmp_path / "gold"
    assert _export(verified, gold, "--sources", "gold") == 0
    assert set(pd.read_csv(gold / "provenance.csv")["source"]) == {"gold"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--split", "train=0.8,val=0.1"], "sum to 0.9"),
        (["--split", "train=0.8,dev=0.2"], "'dev=0.2'"),
        (["--sources", "human,robot"], "robot"),
        (["--snapshot", "0123abcd"], "0123abcd"),
    ],
)
def test_bad_export_arguments_are_clean_errors(verified, tmp_path, capsys, args, message):
    out = tmp_path / "out"
    assert _export(verified, out, *args) == 1
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_a_folder_that_is_no_export_is_never_replaced(verified, tmp_path, capsys):
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert _export(verified, out) == 1
    assert "not an earlier export" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_dataset_export_asset_is_snapshotted_and_restorable(verified, capsys):
    """Materialised with dagster: a YOLO export under the workdir, DVC-snapshotted; a later COCO
    export replaces it, and `labeling-dag restore dataset_export` brings the YOLO one back bit-exact."""
    resources = {"store": LabelStore(workdir=str(verified.work)), "snapshots": SnapshotStore()}
    first = dg.materialize([dataset_export], resources=resources)
    assert first.success
    meta = first.asset_materializations_for_node("dataset_export")[0].metadata
    assert meta["format"].value == "yolo" and meta["verified_snapshot"].value == verified.snapshots[-1]
    yolo_id, yolo_tree = meta["dvc_snapshot"].value, tree_digest(verified.work / "dataset_export")
    assert "data.yaml" in yolo_tree

    coco = dg.materialize(
        [dataset_export], resources=resources, run_config={"ops": {"dataset_export": {"config": {"format": "coco"}}}}
    )
    assert coco.success
    assert (verified.work / "dataset_export" / "annotations" / "instances_train.json").is_file()

    assert cli(["restore", "dataset_export", yolo_id, "--workdir", str(verified.work)]) == 0
    assert tree_digest(verified.work / "dataset_export") == yolo_tree
    assert yolo_id in capsys.readouterr().out


@pytest.mark.slow
def test_yolo_export_trains_in_ultralytics_as_it_is(verified, tmp_path):
    """One real ultralytics epoch on the exported data.yaml, nothing rewritten first."""
    from labeling_dag.ultralytics_env import configure_offline

    out = tmp_path / "yolo"
    assert _export(verified, out, "--split", "train=0.7,val=0.3") == 0
    configure_offline()
    from ultralytics import YOLO

    YOLO("yolov8n.yaml").train(
        data=str(out / "data.yaml"),
        epochs=1,
        imgsz=96,
        batch=4,
        workers=0,
        device="cpu",
        project=str(tmp_path / "runs"),
        name="export",
        plots=False,
        verbose=False,
    )
    assert (tmp_path / "runs" / "export" / "weights" / "last.pt").is_file()
