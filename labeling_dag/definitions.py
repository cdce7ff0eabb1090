"""The code location: assembles assets, checks, jobs and resources. Nothing else."""

from __future__ import annotations

import dagster as dg

from labeling_dag.assets.cleaning import cleaned_images
from labeling_dag.assets.ingestion import raw_images
from labeling_dag.assets.prelabels import pre_labels
from labeling_dag.assets.review import review_batch
from labeling_dag.assets.scoring import uncertainty_scores
from labeling_dag.checks import cleaned_images_gate, pre_labels_gate
from labeling_dag.jobs import prelabel_and_select
from labeling_dag.resources.detector import Detector
from labeling_dag.resources.review_exchange import FileReviewExchange
from labeling_dag.resources.snapshots import SnapshotStore
from labeling_dag.resources.storage import ImageSource, LabelStore

defs = dg.Definitions(
    assets=[raw_images, cleaned_images, pre_labels, uncertainty_scores, review_batch],
    asset_checks=[cleaned_images_gate, pre_labels_gate],
    jobs=[prelabel_and_select],
    resources={
        "store": LabelStore(workdir=dg.EnvVar("LABELING_DAG_WORKDIR")),
        "source": ImageSource(folder=dg.EnvVar("LABELING_DAG_SOURCE")),
        "detector": Detector(),
        "snapshots": SnapshotStore(),
        "exchange": FileReviewExchange(),
    },
)
