"""Stage 2: decode every raw image of a batch; reject what cannot be used, flag what is doubtful."""

import dagster as dg
import pandas as pd
from labeling_dag.resources.snapshots import SnapshotStore
from labeling_dag.resources.storage import LabelStore
from tqdm import tqdm

from labeling_dag import atomic
from labeling_dag.cleaning import reject_row
from labeling_dag.contracts import (
    CLEANED,
    CLEANED_COLUMNS,
    CLEANED_IMAGES,
    RAW_IMAGES,
    RAW_INDEX,
    REJECT_COLUMNS,
    REJECTS,
)
from labeling_dag.partitions import ingest_batches
from labeling_dag.rejects import ImageRejected


@dg.asset(group_name="labeling", deps=[RAW_IMAGES.key], kinds={"pillow"}, partitions_def=ingest_batches)
def cleaned_images(
    context: dg.AssetExecutionContext, store: LabelStore, snapshots: SnapshotStore
) -> dg.MaterializeResult:
    """Upright RGB images with quality flags and duplicate marks, plus a rejects table, per batch."""
    batch = context.partition_key
    raw = store.read(RAW_INDEX, batch=batch).drop_duplicates("image_id")
    cleaned = store.read(CLEANED, batch=batch)
    rejects = store.read(REJECTS, batch=batch)
    todo = raw[~raw["image_id"].isin(cleaned["image_id"]) & ~raw["image_id"].isin(rejects["image_id"])]
    # The same bytes may arrive in several batches: the batch that claims an image first owns it.
    owners = store.claim_images(todo["image_id"].tolist(), batch)
    owned = todo["image_id"].map(owners).eq(batch)
    todo = todo[owned]

    modality = store.modality()
    rows, rejected = [], []
    for item in tqdm(todo.itertuples(index=False), total=len(todo), desc=f"cleaning {batch}", unit="img", disable=None):
        try:
            row = modality.clean_item(
                store.root / item.stored_path,
                image_id=item.image_id,
                workdir=store.root,
                out_folder=f"{CLEANED_IMAGES.folder}/{batch}",
            )
            rows.append(row | {"source_path": item.source_path, "run_id": context.run_id})
        except ImageRejected as error:
            rejected.append(reject_row(item.image_id, item.source_path, error, context.run_id))
            context.log.warning(rejected[-1]["message"])

    new = pd.DataFrame(rows, columns=[c for c in CLEANED_COLUMNS if c not in _MARKS]).astype(
        {c: t for c, t in CLEANED_COLUMNS.items() if c not in _MARKS}
    )
    # Duplicates are marked against every batch cleaned so far, this one included.
    pool = store.read(CLEANED, only=_POOL_COLUMNS)
    marked = modality.mark_duplicates(new, pool).astype(CLEANED_COLUMNS)
    cleaned = pd.concat([cleaned, marked], ignore_index=True)
    rejects = pd.concat(
        [rejects, pd.DataFrame(rejected, columns=list(REJECT_COLUMNS)).astype(REJECT_COLUMNS)], ignore_index=True
    )
    store.write(REJECTS, rejects, batch=batch)
    store.write(CLEANED, cleaned, batch=batch)
    summary = _summary(cleaned, rejects)
    # DVC's metrics file counts the whole pool, every batch so far.
    pool = pd.concat([pool, marked[list(_POOL_COLUMNS)]], ignore_index=True)
    atomic.write_json(store.root / "metrics" / f"{CLEANED_IMAGES.folder}.json", _summary(pool, store.read(REJECTS)))

    snapshot_id = snapshots.snapshot(store.root, f"{CLEANED_IMAGES.folder}/{batch}", run_id=context.run_id)
    return dg.MaterializeResult(
        metadata={
            **summary,
            "new_images": len(new),
            "new_rejects": len(rejected),
            "owned_by_other_batches": int((~owned).sum()),
            "rejects": dg.MetadataValue.md(
                rejects.tail(50)[["source_path", "reason", "message"]].to_markdown(index=False)
            )
            if len(rejects)
            else "none",
            "dvc_snapshot": snapshot_id,
            "path": dg.MetadataValue.path(str(store.root / CLEANED_IMAGES.folder / batch)),
        },
        data_version=dg.DataVersion(snapshot_id),
    )


_MARKS = ("duplicate_of", "near_duplicate_of", "is_exact_duplicate", "is_near_duplicate")
# What duplicate marking and the pool's counts read of every other batch.
_POOL_COLUMNS = CLEANED.select(
    "image_id", "pixel_hash", "phash", "is_exact_duplicate", "is_near_duplicate", "is_blurry", "is_low_contrast"
)


def _summary(cleaned: pd.DataFrame, rejects: pd.DataFrame) -> dict[str, int]:
    """Counts for the UI and for ``dvc metrics show``."""
    return {
        "images": len(cleaned),
        "rejected": len(rejects),
        "exact_duplicates": int(cleaned["is_exact_duplicate"].sum()),
        "near_duplicates": int(cleaned["is_near_duplicate"].sum()),
        "blurry": int(cleaned["is_blurry"].sum()),
        "low_contrast": int(cleaned["is_low_contrast"].sum()),
        **{f"rejected_{reason}": int(count) for reason, count in rejects["reason"].value_counts().items()},
    }
