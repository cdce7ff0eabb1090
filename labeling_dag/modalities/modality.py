"""The record a modality is: the functions the lifecycle calls where it must know what an item is."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from labeling_dag.formats.review_interface import ReviewInterface
from labeling_dag.formats.yolo import DatasetSpec
from labeling_dag.human_time import ReviewCosts


@dataclass(frozen=True)
class Modality:
    """What the lifecycle needs to know about one kind of item, as plain functions.

    Attributes:
        name: the name a workdir records and ``labeling-dag init --modality`` takes.
        item_suffixes: the file extensions ingestion stores (lower case, with the dot); whether
            a file really is such an item is for ``clean_item`` to decide.
        clean_item: ``(raw_file, *, image_id, workdir, out_folder) -> row`` writes the cleaned
            copy under ``workdir/out_folder`` and returns its ``CLEANED_COLUMNS`` row without the
            duplicate marks; raises :class:`labeling_dag.rejects.ImageRejected` with a reason.
        mark_duplicates: ``(new, existing) -> new`` fills the duplicate columns of the new rows.
        review: the items and regions in Label Studio: its labelling config, the check of an
            existing project's config, the importable tasks and how annotations are read back.
        write_training_set: ``(out_dir, *, images, labels, class_names, val_images) -> path`` the
            training set the model resource trains on (for detection a YOLO ``data.yaml``).
        read_dataset: ``path -> DatasetSpec`` a labelled dataset of the modality (the held-out
            validation set, a seed dataset): its class names and its splits.
        review_costs: the seconds a reviewer spends per action on such an item, where the
            intake's configuration sets none (:mod:`labeling_dag.human_time`).
        table_suffixes: the files ingestion takes apart into one item per row (none for images).
    """

    name: str
    item_suffixes: tuple[str, ...]
    clean_item: Callable[..., dict[str, object]]
    mark_duplicates: Callable[[pd.DataFrame, pd.DataFrame], pd.DataFrame]
    review: ReviewInterface
    write_training_set: Callable[..., Path]
    read_dataset: Callable[[Path], DatasetSpec]
    review_costs: ReviewCosts
    table_suffixes: tuple[str, ...] = ()
