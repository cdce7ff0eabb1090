"""Object detection on images: the modality every workdir held before there was a choice.

Items are image files, decoded and checked by :mod:`labeling_dag.cleaning` (exact duplicates by
pixels, near duplicates by perceptual hash); regions are boxes drawn with Label Studio's
``RectangleLabels``; datasets, the training set among them, are Ultralytics YOLO datasets.
"""

from __future__ import annotations

from labeling_dag.cleaning import clean_image, mark_duplicates
from labeling_dag.formats.label_studio_export import RECTANGLES
from labeling_dag.formats.yolo import load_data_yaml
from labeling_dag.human_time import ReviewCosts
from labeling_dag.ingest import INGESTED_SUFFIXES
from labeling_dag.modalities.modality import Modality
from labeling_dag.training_data import write_yolo_dataset

DETECTION = Modality(
    name="detection",
    item_suffixes=INGESTED_SUFFIXES,
    clean_item=clean_image,
    mark_duplicates=mark_duplicates,
    review=RECTANGLES,
    write_training_set=write_yolo_dataset,
    read_dataset=load_data_yaml,
    review_costs=ReviewCosts(),
)
