"""`labeling-dag restore` of the unpartitioned assets: verified_labels and current_model (registry included)."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest
from labeling_dag.assets.promotion import current_model
from labeling_dag.resources.snapshots import SnapshotStore
from labeling_dag.resources.storage import LabelStore
from verified_workdir import build_verified_workdir, tree_digest

from labeling_dag import atomic
from labeling_dag.cli import main as cli
from labeling_dag.model_cards import card_file_of
from labeling_dag.model_registry import ModelRegistry, file_sha256
from labeling_dag.simulation.sample_data import CLASS_NAMES


def test_verified_labels_come_back_bit_exact_from_the_remote(tmp_path, capsys):
    """After two merges, the first merge's verified_labels snapshot is restored from the DVC
    remote alone (local cache deleted), byte for byte."""
    verified = build_verified_workdir(tmp_path)
    assert tree_digest(verified.work / "verified_labels") != verified.first_tree
    shutil.rmtree(verified.work / ".dvc" / "cache")

    first = verified.snapshots[0]
    assert cli(["restore", "verified_labels", first, "--workdir", str(verified.work)]) == 0
    assert tree_digest(verified.work / "verified_labels") == verified.first_tree
    assert first in capsys.readouterr().out

    assert cli(["restore", "verified_labels", first, "--batch", "_root", "--workdir", str(verified.work)]) == 1
    assert "not partitioned" in capsys.readouterr().err


def _promote(store: LabelStore, weights: Path, *, parent: str | None) -> str:
    """Register ``weights`` as the candidate with a model card, then materialise current_model;
    returns the model_store snapshot id."""
    entry = ModelRegistry(store.root).register(
        weights, task="detect", class_names=CLASS_NAMES, source="retrained", parent=parent, make_current=False
    )
    card = {
        "model_version": entry.model_version,
        "parent": parent,
        "training_snapshot": f"snapshot-of-{entry.model_version[:8]}",
        "training_images": 10,
        "training_boxes": 20,
        "metrics": {"map50": 0.5, "map50_95": 0.3},
        "class_names": list(CLASS_NAMES),
    }
    atomic.write_json(card_file_of(store.root, entry.model_version), card)
    result = dg.materialize([current_model], resources={"store": store, "snapshots": SnapshotStore()})
    assert result.success
    return result.asset_materializations_for_node("current_model")[0].metadata["dvc_snapshot"].value


def _nudged(weights: Path, target: Path) -> Path:
    """A copy of ``weights`` with one class bias moved: another model, another version."""
    import torch

    content = torch.load(weights, map_location="cpu", weights_only=False)
    with torch.no_grad():
        content["model"].model[-1].cv3[0][-1].bias += 0.01
    torch.save(content, target)
    return target


def test_current_model_comes_back_and_the_registry_follows(tmp_path, tiny_model, capsys):
    """Two promotions (A, then B); restoring A's snapshot puts A's bytes in model_store and makes
    A the registry's current model, and does so again when the registry lost A's copy."""
    store = LabelStore(workdir=str(tmp_path / "work"))
    store.set_class_names(CLASS_NAMES)
    model_a = tiny_model
    model_b = _nudged(tiny_model, tmp_path / "b.pt")
    snapshot_a = _promote(store, model_a, parent=None)
    tree_a = tree_digest(store.root / "model_store")
    snapshot_b = _promote(store, model_b, parent=file_sha256(model_a))
    registry = ModelRegistry(store.root)
    version_a, version_b = file_sha256(model_a), file_sha256(model_b)
    assert registry.current().model_version == version_b

    assert cli(["restore", "current_model", snapshot_a, "--workdir", str(store.root)]) == 0
    assert tree_digest(store.root / "model_store") == tree_a
    assert version_a in capsys.readouterr().out
    assert registry.current().model_version == version_a
    assert registry.verified_path(registry.current()).read_bytes() == model_a.read_bytes()
    assert registry.promotions() == [version_a, version_b]

    # The registry lost A's weights and card: restoring brings them back from model_store.
    assert cli(["restore", "current_model", snapshot_b, "--workdir", str(store.root)]) == 0
    assert registry.current().model_version == version_b
    (store.root / "models" / f"{version_a}.pt").unlink()
    card_file_of(store.root, version_a).unlink()
    assert cli(["restore", "current_model", snapshot_a, "--workdir", str(store.root)]) == 0
    assert registry.verified_path(registry.current()).read_bytes() == model_a.read_bytes()
    assert card_file_of(store.root, version_a).read_bytes() == (store.root / "model_store" / "card.json").read_bytes()


def test_an_asset_without_snapshots_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli(["restore", "review_batch", "abc", "--workdir", str(tmp_path)])
    assert "invalid choice" in capsys.readouterr().err
