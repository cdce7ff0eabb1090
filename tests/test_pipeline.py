"""The asset graph materialised for real: raw images to a review batch, gates and snapshots."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import dagster as dg
import pandas as pd
from bad_images import write_bad_images, write_good_images
from conftest import make_resources
from labeling_dag.assets.cleaning import cleaned_images
from labeling_dag.assets.ingestion import raw_images
from labeling_dag.assets.prelabels import pre_labels
from labeling_dag.assets.review import review_batch
from labeling_dag.assets.scoring import uncertainty_scores

from labeling_dag.checks import cleaned_images_gate, pre_labels_gate
from labeling_dag.cli import main as cli
from labeling_dag.ingest_batches import ROOT_BATCH
from labeling_dag.partitions import ingest_batches

ALL = [raw_images, cleaned_images, pre_labels, uncertainty_scores, review_batch, cleaned_images_gate, pre_labels_gate]


PARTITIONED = (raw_images, cleaned_images, pre_labels, uncertainty_scores)


def run(assets, workdir: Path, source: Path, *, seed_model: Path | None = None, size: int = 6, **review):
    """Materialise ``assets`` (plus their checks) over a workdir, like the UI's launchpad would.

    The source folder's loose files are the ingestion batch ``_root``.
    """
    ops: dict = {"review_batch": {"config": {"size": size, **review}}} if review_batch in assets else {}
    if pre_labels in assets and seed_model is not None:
        ops["pre_labels"] = {"config": {"seed_model": str(seed_model)}}
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(ingest_batches.name, [ROOT_BATCH])
    return dg.materialize(
        assets,
        resources=make_resources(workdir, source),
        run_config={"ops": ops},
        instance=instance,
        partition_key=ROOT_BATCH if any(asset in assets for asset in PARTITIONED) else None,
        raise_on_error=False,
    )


def metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    """The metadata values of the asset's materialisation in ``result``."""
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(asset)]
    return {k: v.value for k, v in event.step_materialization_data.materialization.metadata.items()}


def tree_digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder``, by relative path."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_lifecycle_from_raw_images_to_a_label_studio_batch(tmp_path, pool, tiny_model):
    """The five assets and both gates run in one go and leave consistent, typed tables."""
    work = tmp_path / "work"
    result = run(ALL, work, pool, seed_model=tiny_model, size=6)
    assert result.success
    assert all(e.passed for e in result.get_asset_check_evaluations())

    cleaned = pd.read_parquet(work / "cleaned_images" / ROOT_BATCH / "images.parquet")
    assert len(cleaned) == len(list(pool.glob("*.jpg"))) and cleaned["image_id"].is_unique

    boxes = pd.read_parquet(work / "pre_labels" / ROOT_BATCH / "boxes.parquet")
    images = pd.read_parquet(work / "pre_labels" / ROOT_BATCH / "images.parquet")
    registry = json.loads((work / "models" / "registry.json").read_text())
    version = registry["current"]
    assert set(images["image_id"]) == set(cleaned["image_id"])
    assert (images["model_version"] == version).all() and (boxes["model_version"] == version).all()
    assert len(boxes) > 0, "the tiny model at conf 0.05 should propose some boxes"
    probs = boxes["class_probs"].apply(list)
    assert (probs.apply(len) == 3).all()
    assert (probs.apply(max).round(4) == boxes["confidence"].round(4)).all()
    assert boxes[["x", "y", "w", "h"]].apply(lambda c: c.between(0, 1)).all().all()

    scores = pd.read_parquet(work / "uncertainty_scores" / ROOT_BATCH / "scores.parquet")
    assert set(scores["image_id"]) == set(cleaned["image_id"])
    assert scores[["least_confidence", "margin", "entropy"]].apply(lambda c: c.between(0, 1)).all().all()

    batch_id = metadata(result, "review_batch")["batch_id"]
    tasks = json.loads((work / "exchange" / "outbox" / f"{batch_id}.json").read_text())
    assert len(tasks) == 6
    # Half the batch is the strategy's picks, half the calibration sample auto-accept is fitted on.
    batch = pd.read_parquet(work / "review_batch" / "batches.parquet")
    assert batch["by_uncertainty"].tolist().count(True) == 3 and len(batch) == 6
    for task in tasks:
        assert task["data"]["batch_id"] == batch_id
        assert task["data"]["image"].startswith(f"/data/local-files/?d=cleaned_images/{ROOT_BATCH}/files/")
        (prediction,) = task["predictions"]
        assert prediction["model_version"] == version and 0 <= prediction["score"] <= 1
        for region in prediction["result"]:
            assert region["type"] == "rectanglelabels" and 0 <= region["value"]["x"] <= 100
            assert region["value"]["rectanglelabels"][0] in ("circle", "square", "triangle")

    meta = metadata(result, "pre_labels")
    assert meta["model_version"] == version and meta["dvc_snapshot"]


def test_rerunning_every_asset_is_idempotent(tmp_path, pool, tiny_model):
    """A second run over unchanged input ingests nothing, predicts nothing and re-exports the same batch."""
    work = tmp_path / "work"
    first = run(ALL, work, pool, seed_model=tiny_model)
    tables = {name: tree_digest(work / name) for name in ("raw_images", "pre_labels", "review_batch")}
    outbox = tree_digest(work / "exchange")
    second = run(ALL, work, pool, seed_model=tiny_model)
    assert second.success
    assert metadata(second, "raw_images")["new_files"] == 0
    assert metadata(second, "cleaned_images")["new_images"] == 0
    assert metadata(second, "pre_labels")["newly_predicted"] == 0
    assert metadata(second, "pre_labels")["dvc_snapshot"] == metadata(first, "pre_labels")["dvc_snapshot"]
    assert metadata(second, "cleaned_images")["dvc_snapshot"] == metadata(first, "cleaned_images")["dvc_snapshot"]
    assert metadata(second, "review_batch")["batch_id"] == metadata(first, "review_batch")["batch_id"]
    assert tree_digest(work / "raw_images") == tables["raw_images"]
    assert tree_digest(work / "exchange") == outbox
    assert len(pd.read_parquet(work / "review_batch" / "batches.parquet")) == 6


def test_new_review_batches_never_reselect_images(tmp_path, pool, tiny_model):
    """When the pool grows, the next batch holds only images no earlier batch took."""
    work = tmp_path / "work"
    run(ALL, work, pool, seed_model=tiny_model, size=10)
    write_good_images(pool, 12, seed=7, size=96)
    second = run(ALL, work, pool, seed_model=tiny_model, size=10, strategy="entropy")
    assert second.success
    batches = pd.read_parquet(work / "review_batch" / "batches.parquet")
    assert batches["batch_id"].nunique() == 2
    assert batches["image_id"].is_unique and len(batches) == 20


def test_bad_files_are_rejected_with_reasons_and_good_ones_kept(tmp_path):
    """Corrupt, truncated, empty, fake and bomb files land in the rejects table; nothing crashes."""
    source = tmp_path / "src"
    write_good_images(source, 5, seed=1)
    expected = write_bad_images(source)
    (source / "notes.txt").write_text("not an image")
    work = tmp_path / "work"
    first = run([raw_images, cleaned_images, cleaned_images_gate], work, source)
    assert first.success

    rejects = pd.read_parquet(work / "cleaned_images" / ROOT_BATCH / "rejects.parquet")
    by_name = {Path(p).name: reason for p, reason in zip(rejects["source_path"], rejects["reason"])}
    # Two bad files can share bytes (and so an id); each distinct content is judged once.
    for name, reason in expected.items():
        if name in by_name:
            assert by_name[name] == reason, name
    assert set(by_name.values()) == set(expected.values())
    for message, path in zip(rejects["message"], rejects["source_path"]):
        assert message.startswith(f"{path}: "), message
    assert len(pd.read_parquet(work / "cleaned_images" / ROOT_BATCH / "images.parquet")) == 5
    assert metadata(first, "raw_images")["skipped_files"] == [str(source / "notes.txt")]

    again = run([raw_images, cleaned_images, cleaned_images_gate], work, source)
    assert metadata(again, "raw_images")["new_files"] == 0
    assert metadata(again, "cleaned_images")["new_rejects"] == 0
    assert len(pd.read_parquet(work / "cleaned_images" / ROOT_BATCH / "rejects.parquet")) == len(rejects)


def test_duplicates_exif_and_quality_flags(tmp_path):
    """Exact and near duplicates are marked, EXIF orientation applied, blur and low contrast flagged."""
    from bad_images import write_special_images

    source = tmp_path / "src"
    kinds = write_special_images(source)
    work = tmp_path / "work"
    assert run([raw_images, cleaned_images, cleaned_images_gate], work, source).success
    cleaned = pd.read_parquet(work / "cleaned_images" / ROOT_BATCH / "images.parquet")
    raw = pd.read_parquet(work / "raw_images" / ROOT_BATCH / "index.parquet")
    kind_of = {row.image_id: kinds[Path(row.source_path).name] for row in raw.itertuples()}
    flags = cleaned.assign(kind=cleaned["image_id"].map(kind_of)).set_index("kind")
    # Byte-identical copies share one id at ingestion; pixel-identical re-encodings are exact duplicates.
    assert raw.loc[raw["source_path"].str.endswith(_name(kinds, "exact_duplicate")), "image_id"].iloc[0] in set(
        cleaned["image_id"]
    )
    assert flags.loc["near_duplicate", "is_near_duplicate"]
    assert not flags.loc["original", "is_near_duplicate"]
    assert flags.loc["blurry", "is_blurry"] and not flags.loc["original", "is_blurry"]
    assert flags.loc["low_contrast", "is_low_contrast"]
    rotated = flags.loc["exif_rotated"]
    assert rotated["exif_transposed"] and (rotated["width"], rotated["height"]) == (64, 96)
    assert (work / rotated["path"]).suffix == ".png"


def _name(kinds: dict[str, str], kind: str) -> str:
    return next(name for name, k in kinds.items() if k == kind)


def test_failing_gate_blocks_downstream_assets(tmp_path, pool, tiny_model):
    """A pre-label row with a box outside the image fails the GX gate, and scoring does not run."""
    work = tmp_path / "work"
    assert run(ALL, work, pool, seed_model=tiny_model).success
    boxes = pd.read_parquet(work / "pre_labels" / ROOT_BATCH / "boxes.parquet")
    images = pd.read_parquet(work / "pre_labels" / ROOT_BATCH / "images.parquet")
    broken = boxes.iloc[:1].assign(box_id="pl-broken", x=0.99, w=0.5)
    broken = broken.assign(image_id=images["image_id"].iloc[0])
    pd.concat([boxes, broken]).to_parquet(work / "pre_labels" / ROOT_BATCH / "boxes.parquet", index=False)

    result = run([pre_labels, pre_labels_gate, uncertainty_scores], work, pool, seed_model=tiny_model)
    assert not result.success
    (evaluation,) = result.get_asset_check_evaluations()
    assert not evaluation.passed
    meta = {k: v.value for k, v in evaluation.metadata.items()}
    assert meta["right edge x + w/2 in [0, 1]"]["unexpected_count"] == 1
    assert "right edge x + w/2 in [0, 1]" in meta["failed_expectations"]
    assert not any(e.asset_key == dg.AssetKey("uncertainty_scores") for e in result.get_asset_materialization_events())


def test_restore_brings_a_snapshot_back_bit_exact_from_the_remote(tmp_path, monkeypatch, capsys):
    """`labeling-dag restore` rebuilds an old cleaned_images snapshot even with the local DVC cache gone."""
    source = tmp_path / "src"
    write_good_images(source, 4, seed=2)
    work = tmp_path / "work"
    first = run([raw_images, cleaned_images], work, source)
    first_id = metadata(first, "cleaned_images")["dvc_snapshot"]
    first_tree = tree_digest(work / "cleaned_images")

    write_good_images(source, 3, seed=3)
    second = run([raw_images, cleaned_images], work, source)
    assert metadata(second, "cleaned_images")["dvc_snapshot"] != first_id
    assert tree_digest(work / "cleaned_images") != first_tree

    shutil.rmtree(work / ".dvc" / "cache")
    assert cli(["restore", "cleaned_images", first_id, "--workdir", str(work)]) == 0
    assert tree_digest(work / "cleaned_images") == first_tree
    assert first_id in capsys.readouterr().out


def _clean_batch(workdir: str, source: str, batch: str) -> bool:
    """One ingestion batch through raw_images and cleaned_images, in a process of its own."""
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(ingest_batches.name, [batch])
    result = dg.materialize(
        [raw_images, cleaned_images, cleaned_images_gate],
        resources=make_resources(Path(workdir), Path(source)),
        instance=instance,
        partition_key=batch,
    )
    return result.success


def test_parallel_batches_sharing_pictures_clean_each_picture_once(tmp_path):
    """Two batches holding the same three pictures, cleaned at the same time in two processes:
    every picture is cleaned by exactly one batch, both raw indexes keep their source files,
    and each batch has its own table and DVC snapshot."""
    from concurrent.futures import ProcessPoolExecutor

    source, work = tmp_path / "src", tmp_path / "work"
    shared = write_good_images(tmp_path / "shared", 3, seed=4)
    for batch, seed in (("b1", 5), ("b2", 6)):
        write_good_images(source / batch, 4, seed=seed)
        for picture in shared:
            shutil.copy(picture, source / batch / f"{batch}-{picture.name}")

    with ProcessPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(_clean_batch, [str(work)] * 2, [str(source)] * 2, ["b1", "b2"]))
    assert outcomes == [True, True]

    tables = {batch: pd.read_parquet(work / "cleaned_images" / batch / "images.parquet") for batch in ("b1", "b2")}
    cleaned = pd.concat(tables.values())
    assert cleaned["image_id"].is_unique and len(cleaned) == 4 + 4 + 3
    shared_ids = {hashlib.sha256(p.read_bytes()).hexdigest() for p in shared}
    assert shared_ids <= set(cleaned["image_id"])
    for batch in ("b1", "b2"):
        raw = pd.read_parquet(work / "raw_images" / batch / "index.parquet")
        assert len(raw) == 7 and shared_ids <= set(raw["image_id"])
        assert (work / "cleaned_images" / f"{batch}.dvc").is_file()
