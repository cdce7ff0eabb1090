"""The stage contracts and the Definitions agree: every asset has one, and each says how it is partitioned."""

import pandas as pd
import pytest
from labeling_dag.resources.storage import LabelStore

from labeling_dag import contracts
from labeling_dag.contracts import CLEANED, PARTITIONED_FOLDERS, REVIEW_BATCHES, STAGES
from labeling_dag.definitions import defs


def _assets():
    graph = defs.resolve_asset_graph()
    return {key.to_user_string(): graph.get(key) for key in graph.get_all_asset_keys()}


def test_every_asset_has_a_contract_and_every_contract_an_asset():
    assert {stage.key for stage in STAGES if stage.key is not None} == set(_assets())


def test_each_stage_owns_its_own_folder():
    folders = [stage.folder for stage in STAGES]
    assert len(folders) == len(set(folders))


def test_partitioned_stages_are_the_partitioned_assets():
    assets = _assets()
    for stage in STAGES:
        if stage.key is not None:
            assert stage.partitioned == (assets[stage.key].partitions_def is not None), stage.key
    assert set(PARTITIONED_FOLDERS) == {stage.folder for stage in STAGES if stage.partitioned}


def test_every_table_belongs_to_a_stage_and_is_named_once():
    tables = [value for value in vars(contracts).values() if isinstance(value, contracts.Table)]
    by_stage = {stage.folder: stage for stage in STAGES}
    assert all(table.partitioned == by_stage[table.folder].partitioned for table in tables)
    assert len({(table.folder, table.name) for table in tables}) == len(tables)
    assert contracts.ISSUE_SCORES.columns is contracts.SUSPECTS.columns


def test_a_subset_of_columns_must_be_in_the_schema():
    assert CLEANED.select("path", "image_id") == ("path", "image_id")
    with pytest.raises(KeyError, match="cleaned_images/images"):
        CLEANED.select("image_id", "no_such_column")


def test_a_partitioned_table_is_written_per_batch_and_read_as_the_pool(tmp_path):
    store = LabelStore(workdir=str(tmp_path))
    empty = {"str": "", "int64": 0, "float64": 0.0, "bool": False}
    row = pd.DataFrame([{name: empty[dtype] for name, dtype in CLEANED.columns.items()}]).astype(CLEANED.columns)
    with pytest.raises(ValueError, match="batch"):
        store.write(CLEANED, row)
    with pytest.raises(ValueError, match="batch"):
        store.write(REVIEW_BATCHES, pd.DataFrame(), batch="b1")
    with pytest.raises(ValueError, match="not partitioned"):
        store.read(REVIEW_BATCHES, batch="b1")
    store.write(CLEANED, row.assign(image_id="a"), batch="b1")
    store.write(CLEANED, row.assign(image_id="b"), batch="b2")
    assert store.read(CLEANED)["image_id"].tolist() == ["a", "b"]
    assert store.read(CLEANED, batch="b2")["image_id"].tolist() == ["b"]
    assert (tmp_path / "cleaned_images" / "b1" / "images.parquet").is_file()
