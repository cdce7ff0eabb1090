"""Stage 1: raw images arrive from the source folder, one ingestion batch (partition) at a time."""

import dagster as dg
import pandas as pd
from labeling_dag.resources.storage import ImageSource, LabelStore

from labeling_dag.contracts import RAW_IMAGES, RAW_INDEX
from labeling_dag.ingest import ingest
from labeling_dag.partitions import ingest_batches


@dg.asset(group_name="labeling", kinds={"python"}, partitions_def=ingest_batches)
def raw_images(context: dg.AssetExecutionContext, store: LabelStore, source: ImageSource) -> dg.MaterializeResult:
    """Every image file of one ingestion batch, stored once under its content hash."""
    batch = context.partition_key
    index = store.read(RAW_INDEX, batch=batch)
    known_ids = set(index["image_id"])
    modality = store.modality()
    new_rows, skipped = ingest(
        source.files(batch),
        index,
        workdir=store.root,
        store_folder=f"{RAW_IMAGES.folder}/{batch}",
        run_id=context.run_id,
        suffixes=modality.item_suffixes,
        tables=modality.table_suffixes,
    )
    if skipped:
        context.log.warning(f"skipped {len(skipped)} files with unsupported extensions, e.g. {skipped[:5]}")
    if len(new_rows):
        index = pd.concat([index, new_rows], ignore_index=True)
        store.write(RAW_INDEX, index, batch=batch)
    return dg.MaterializeResult(
        metadata={
            "new_files": len(new_rows),
            "new_images": len(set(new_rows["image_id"]) - known_ids),
            "total_images": int(index["image_id"].nunique()),
            "skipped_files": dg.MetadataValue.json([str(path) for path in skipped]),
            "source": dg.MetadataValue.path(source.folder),
        }
    )
