"""Stage 2: decode every raw image of a batch; reject what cannot be used, flag what is doubtful."""

import dagster as dg
import pandas as pd
from labeling_dag.assets.ingestion import FOLDER as RAW
from labeling_dag.resources.snapshots import SnapshotStore
from labeling_dag.resources.storage import LabelStore
from tqdm import tqdm

from labeling_dag import atomic
from labeling_dag.cleaning import IMAGE_COLUMNS, REJECT_COLUMNS, clean_image, mark_duplicates, reject_row
from labeling_dag.image_quality import ImageRejected
from labeling_dag.ingest import RAW_COLUMNS
from labeling_dag.partitions import ingest_batches

FOLDER = "cleaned_images"


@dg.asset(group_name="labeling", deps=["raw_images"], kinds={"pillow"}, partitions_def=ingest_batches)
def cleaned_images(
    context: dg.AssetExecutionContext, store: LabelStore, snapshots: SnapshotStore
) -> dg.MaterializeResult:
    """Upright RGB images with quality flags and duplicate marks, plus a rejects table, per batch."""
    batch = context.partition_key
    raw = store.read_partition(RAW, batch, "index", RAW_COLUMNS).drop_duplicates("image_id")
    cleaned = store.read_partition(FOLDER, batch, "images", IMAGE_COLUMNS)
    rejects = store.read_partition(FOLDER, batch, "rejects", REJECT_COLUMNS)
    todo = raw[~raw["image_id"].isin(cleaned["image_id"]) & ~raw["image_id"].isin(rejects["image_id"])]
    # The same bytes may arrive in several batches: the batch that claims an image first owns it.
    owners = store.claim_images(todo["image_id"].tolist(), batch)
    owned = todo["image_id"].map(owners).eq(batch)
    todo = todo[owned]

    rows, rejected = [], []
    for item in tqdm(todo.itertuples(index=False), total=len(todo), desc=f"cleaning {batch}", unit="img", disable=None):
        try:
            row = clean_image(
                store.root / item.stored_path,
                image_id=item.image_id,
                workdir=store.root,
                out_folder=f"{FOLDER}/{batch}",
            )
            rows.append(row | {"source_path": item.source_path, "run_id": context.run_id})
        except ImageRejected as error:
            rejected.append(reject_row(item.image_id, item.source_path, error, context.run_id))
            context.log.warning(rejected[-1]["message"])

    new = pd.DataFrame(rows, columns=[c for c in IMAGE_COLUMNS if c not in _MARKS]).astype(
        {c: t for c, t in IMAGE_COLUMNS.items() if c not in _MARKS}
    )
    # Duplicates are marked against every batch cleaned so far, this one included.
    pool = store.read_table(FOLDER, "images", IMAGE_COLUMNS, only=_POOL_COLUMNS)
    marked = mark_duplicates(new, pool).astype(IMAGE_COLUMNS)
    cleaned = pd.concat([cleaned, marked], ignore_index=True)
    rejects = pd.concat(
        [rejects, pd.DataFrame(rejected, columns=list(REJECT_COLUMNS)).astype(REJECT_COLUMNS)], ignore_index=True
    )
    store.write_partition(FOLDER, batch, "rejects", rejects)
    store.write_partition(FOLDER, batch, "images", cleaned)
    summary = _summary(cleaned, rejects)
    # DVC's metrics file counts the whole pool, every batch so far.
    pool = pd.concat([pool, marked[list(_POOL_COLUMNS)]], ignore_index=True)
    atomic.write_json(
        store.root / "metrics" / f"{FOLDER}.json", _summary(pool, store.read_table(FOLDER, "rejects", REJECT_COLUMNS))
    )

    snapshot_id = snapshots.snapshot(store.root, f"{FOLDER}/{batch}", run_id=context.run_id)
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
            "path": dg.MetadataValue.path(str(store.root / FOLDER / batch)),
        },
        data_version=dg.DataVersion(snapshot_id),
    )


_MARKS = ("duplicate_of", "near_duplicate_of", "is_exact_duplicate", "is_near_duplicate")
# What duplicate marking and the pool's counts read of every other batch.
_POOL_COLUMNS = (
    "image_id",
    "pixel_hash",
    "phash",
    "is_exact_duplicate",
    "is_near_duplicate",
    "is_blurry",
    "is_low_contrast",
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
