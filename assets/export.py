"""Stage 7b: every verified snapshot as a dataset a trainer reads, versioned beside it."""

import dagster as dg
from labeling_dag.resources.snapshots import SnapshotStore
from labeling_dag.resources.storage import LabelStore

from labeling_dag.contracts import DATASET_EXPORT, VERIFIED_LABELS
from labeling_dag.dataset_export import SOURCES, ExportError, ExportRequest, export_dataset, parse_sources, parse_split


class ExportConfig(dg.Config):
    """The export's format (``yolo``, ``coco`` or ``labelstudio``), label sources and split.

    ``split`` reads like the CLI's ``--split``, e.g. ``train=0.8,val=0.2``; the seeded shuffle
    assigns each image to one split.
    """

    format: str = "yolo"
    sources: str = ",".join(SOURCES)
    split: str = "train=1"
    seed: int = 0


@dg.asset(group_name="labeling", deps=[VERIFIED_LABELS.key], kinds={"dvc"})
def dataset_export(
    context: dg.AssetExecutionContext, config: ExportConfig, store: LabelStore, snapshots: SnapshotStore
) -> dg.MaterializeResult:
    """The active verified labels exported under ``dataset_export/`` with provenance.csv, DVC-snapshotted."""
    try:
        request = ExportRequest(
            format=config.format,
            sources=parse_sources(config.sources),
            split=parse_split(config.split),
            seed=config.seed,
        )
        summary = export_dataset(store.root, store.root / DATASET_EXPORT.folder, request)
    except ExportError as error:
        raise dg.Failure(f"dataset_export: {error}") from error
    snapshot_id = snapshots.snapshot(store.root, DATASET_EXPORT.folder, run_id=context.run_id)
    return dg.MaterializeResult(
        metadata={
            "format": summary.format,
            "images": summary.images,
            "labels": summary.labels,
            "per_split": dg.MetadataValue.json(summary.per_split),
            "verified_snapshot": summary.snapshot,
            "dvc_snapshot": snapshot_id,
            "path": dg.MetadataValue.path(str(summary.out_dir)),
        },
        data_version=dg.DataVersion(snapshot_id),
    )
