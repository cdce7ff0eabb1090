"""Text classification: one class per text, the second modality.

Items are UTF-8 ``.txt`` files, or the rows of CSV and JSONL tables that ingestion takes apart,
cleaned by :mod:`labeling_dag.text_cleaning` and marked by :mod:`labeling_dag.text_duplicates`
(exact duplicates by normalised text, near duplicates by MinHash); a text's one region is the
whole item, chosen with Label Studio's ``Choices`` (:mod:`labeling_dag.formats.label_studio_text`);
datasets use the YOLO layout with ``.txt`` items (:mod:`labeling_dag.simulation.text_dataset`), so
the training set is written as for images. The model is
:class:`labeling_dag.resources.text_classifier.TextClassifier`.
"""

from __future__ import annotations

from labeling_dag.formats.label_studio_text import CHOICES
from labeling_dag.formats.yolo import load_data_yaml
from labeling_dag.human_time import TEXT_REVIEW_COSTS
from labeling_dag.modalities.modality import Modality
from labeling_dag.text_cleaning import clean_text
from labeling_dag.text_duplicates import mark_text_duplicates
from labeling_dag.text_tables import TABLE_SUFFIXES
from labeling_dag.training_data import write_yolo_dataset

TEXT = Modality(
    name="text",
    item_suffixes=(".txt",),
    clean_item=clean_text,
    mark_duplicates=mark_text_duplicates,
    review=CHOICES,
    write_training_set=write_yolo_dataset,
    read_dataset=load_data_yaml,
    review_costs=TEXT_REVIEW_COSTS,
    table_suffixes=TABLE_SUFFIXES,
)
