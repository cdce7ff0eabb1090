"""The code location: assembles assets, checks, jobs, sensors and resources. Nothing else."""

import os
from collections.abc import Callable
from typing import TypeVar

import dagster as dg

from labeling_dag.assets.annotations import review_annotations
from labeling_dag.assets.cleaning import cleaned_images
from labeling_dag.assets.export import dataset_export
from labeling_dag.assets.ingestion import raw_images
from labeling_dag.assets.label_issues import label_issues
from labeling_dag.assets.prelabels import pre_labels
from labeling_dag.assets.promotion import current_model, promotion_gate
from labeling_dag.assets.review import review_batch
from labeling_dag.assets.scoring import uncertainty_scores
from labeling_dag.assets.training import retrained_model
from labeling_dag.assets.verification import verified_labels
from labeling_dag.checks import cleaned_images_gate, pre_labels_gate, review_quality_gate, verified_labels_gate
from labeling_dag.jobs import (
    export_dataset,
    find_label_issues,
    merge_review,
    prelabel_batch,
    retrain,
    select_review_batch,
)
from labeling_dag.resources.detector import Detector
from labeling_dag.resources.item_model import ItemModel
from labeling_dag.resources.label_studio import LabelStudioReview
from labeling_dag.resources.loop_policy import LoopPolicy
from labeling_dag.resources.review_exchange import FileReviewExchange, FolderReview, ReviewBackend
from labeling_dag.resources.snapshots import SnapshotStore
from labeling_dag.resources.storage import ImageSource, LabelStore
from labeling_dag.resources.text_classifier import TextClassifier
from labeling_dag.sensors import (
    ingest_batch_sensor,
    label_issues_sensor,
    loop_continues_sensor,
    model_promoted_sensor,
    retraining_sensor,
    review_complete_sensor,
)

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
# Outside the loop: no step of the loop's runs (bench/faults.py aims a kill at every asset of ASSETS
# inside those runs). dataset_export is materialised by the export_dataset job; label_issues by
# label_issues_sensor (declarative automation, a run of its own after each merge) or find_label_issues.
ON_DEMAND_ASSETS = [dataset_export, label_issues]
CHECKS = [cleaned_images_gate, pre_labels_gate, review_quality_gate, verified_labels_gate, promotion_gate]
JOBS = [prelabel_batch, select_review_batch, merge_review, retrain, export_dataset, find_label_issues]
SENSORS = [
    ingest_batch_sensor,
    review_complete_sensor,
    retraining_sensor,
    model_promoted_sensor,
    loop_continues_sensor,
    label_issues_sensor,
]


def build_definitions(resources: dict[str, object], executor: dg.ExecutorDefinition | None = None) -> dg.Definitions:
    """The whole graph bound to ``resources`` (the simulated loop binds its own workdir and sizes).

    ``executor`` runs the steps of every job; ``None`` keeps Dagster's default.
    """
    return dg.Definitions(
        assets=[*ASSETS, *ON_DEMAND_ASSETS],
        asset_checks=CHECKS,
        jobs=JOBS,
        sensors=SENSORS,
        resources=resources,
        executor=executor,
    )


def run_executor(name: str) -> dg.ExecutorDefinition | None:
    """The executor a deployment names in ``LABELING_DAG_EXECUTOR`` (default: Dagster's own).

    ``celery`` sends every step to dagster-celery workers; the broker and result backend
    URLs are read from ``CELERY_BROKER_URL`` and ``CELERY_RESULT_BACKEND`` when a run
    starts, not here, so loading the location reads no secret. ``k8s`` runs every step in a
    Kubernetes pod of its own (deploy/helm-values.yaml; needs dagster-k8s in the image).
    The engines are imported only when named: the default location must load without them.
    """
    if name in ("", "default"):
        return None
    if name == "in_process":
        return dg.in_process_executor
    if name == "celery":
        from dagster_celery import celery_executor

        return celery_executor.configured(
            {"broker": {"env": "CELERY_BROKER_URL"}, "backend": {"env": "CELERY_RESULT_BACKEND"}},
            name="celery",
        )
    if name == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    raise ValueError(f"LABELING_DAG_EXECUTOR={name!r}: choose 'default', 'in_process', 'celery' or 'k8s'")


def _label_studio() -> ReviewBackend:
    return LabelStudioReview(
        url=dg.EnvVar("LABEL_STUDIO_URL"),
        api_token=dg.EnvVar("LABEL_STUDIO_API_TOKEN"),
        local_files_path=dg.EnvVar("LABEL_STUDIO_LOCAL_FILES_PATH"),
    )


# The review backends a deployment may name, each built with its settings and secrets as EnvVars.
REVIEW_BACKENDS: dict[str, Callable[[], ReviewBackend]] = {"folder": FolderReview, "label_studio": _label_studio}


# The model of each modality; a deployment names its modality in LABELING_DAG_MODALITY (the
# workdir's own, fixed by `labeling-dag init --modality`).
_Resource = TypeVar("_Resource")

ITEM_MODELS: dict[str, Callable[[], ItemModel]] = {"detection": Detector, "text": TextClassifier}


def item_model(name: str) -> ItemModel:
    """The model resource of the modality a deployment names in ``LABELING_DAG_MODALITY`` (default
    ``detection``)."""
    return _chosen(ITEM_MODELS, "LABELING_DAG_MODALITY", name)


def review_backend(name: str) -> ReviewBackend:
    """The review backend a deployment names in ``LABELING_DAG_REVIEW_BACKEND`` (default ``folder``).

    Which backend runs is a deployment choice made when the location loads (Dagster's
    per-deployment resources pattern); the backend's settings and secrets stay EnvVars.
    """
    return _chosen(REVIEW_BACKENDS, "LABELING_DAG_REVIEW_BACKEND", name)


def _chosen(registry: dict[str, Callable[[], _Resource]], variable: str, name: str) -> _Resource:
    """The resource ``registry`` builds for ``name``, the value of env ``variable``; ``ValueError``
    naming the variable and the choices otherwise."""
    if name not in registry:
        raise ValueError(f"{variable}={name!r}: choose one of {sorted(registry)}")
    return registry[name]()


defs = build_definitions(
    {
        "store": LabelStore(workdir=dg.EnvVar("LABELING_DAG_WORKDIR")),
        "source": ImageSource(folder=dg.EnvVar("LABELING_DAG_SOURCE")),
        "detector": item_model(os.environ.get("LABELING_DAG_MODALITY", "detection")),
        "snapshots": SnapshotStore(),
        "exchange": FileReviewExchange(),
        "review": review_backend(os.environ.get("LABELING_DAG_REVIEW_BACKEND", "folder")),
        "policy": LoopPolicy(validation_dataset=dg.EnvVar("LABELING_DAG_VALIDATION")),
    },
    executor=run_executor(os.environ.get("LABELING_DAG_EXECUTOR", "default")),
)
