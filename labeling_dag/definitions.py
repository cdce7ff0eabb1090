"""The code location: assembles assets, checks, jobs, sensors and resources. Nothing else."""

import dagster as dg

from labeling_dag.assets.cleaning import cleaned_images
from labeling_dag.assets.ingestion import raw_images
from labeling_dag.assets.prelabels import pre_labels
from labeling_dag.assets.review import review_batch
from labeling_dag.assets.scoring import uncertainty_scores
from labeling_dag.assets.training import current_model, promotion_gate, retrained_model
from labeling_dag.assets.verification import review_annotations, verified_labels
from labeling_dag.checks import cleaned_images_gate, pre_labels_gate, review_quality_gate, verified_labels_gate
from labeling_dag.jobs import merge_review, prelabel_and_select, retrain
from labeling_dag.resources.detector import Detector
from labeling_dag.resources.loop_policy import LoopPolicy
from labeling_dag.resources.review_exchange import FileReviewExchange
from labeling_dag.resources.snapshots import SnapshotStore
from labeling_dag.resources.storage import ImageSource, LabelStore
from labeling_dag.sensors import loop_continues_sensor, model_promoted_sensor, retraining_sensor, review_complete_sensor

ASSETS = [
    raw_images,
    cleaned_images,
    pre_labels,
    uncertainty_scores,
    review_batch,
    review_annotations,
    verified_labels,
    retrained_model,
    current_model,
]
CHECKS = [cleaned_images_gate, pre_labels_gate, review_quality_gate, verified_labels_gate, promotion_gate]
JOBS = [prelabel_and_select, merge_review, retrain]
SENSORS = [review_complete_sensor, retraining_sensor, model_promoted_sensor, loop_continues_sensor]


def build_definitions(resources: dict[str, object]) -> dg.Definitions:
    """The whole graph bound to ``resources`` (the simulated loop binds its own workdir and sizes)."""
    return dg.Definitions(assets=ASSETS, asset_checks=CHECKS, jobs=JOBS, sensors=SENSORS, resources=resources)


defs = build_definitions(
    {
        "store": LabelStore(workdir=dg.EnvVar("LABELING_DAG_WORKDIR")),
        "source": ImageSource(folder=dg.EnvVar("LABELING_DAG_SOURCE")),
        "detector": Detector(),
        "snapshots": SnapshotStore(),
        "exchange": FileReviewExchange(),
        "policy": LoopPolicy(validation_dataset=dg.EnvVar("LABELING_DAG_VALIDATION")),
    }
)
