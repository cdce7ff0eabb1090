"""Decode, normalise and assess raw images; duplicates are marked, bad files rejected.

Nothing is silently dropped: every raw image ends up either in the cleaned table or in
the rejects table with a reason.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from labeling_dag import atomic
from labeling_dag.image_quality import inspect_image, is_blurry, is_low_contrast
from labeling_dag.near_duplicates import find_near_duplicates
from labeling_dag.rejects import ImageRejected


def clean_image(raw_file: Path, *, image_id: str, workdir: Path, out_folder: str) -> dict[str, object]:
    """Decode one raw file and write its cleaned copy; return its row (without duplicate marks).

    Files that needed an EXIF rotation or a colour conversion are stored as lossless PNG of
    the upright RGB image; all others keep their original bytes. Raises ``ImageRejected``.
    """
    image, facts = inspect_image(raw_file)
    if facts.exif_transposed or facts.converted_mode is not None:
        target = workdir / out_folder / "files" / f"{image_id}.png"
        with atomic.atomic_path(target) as tmp:
            image.save(tmp, format="PNG")
    else:
        target = workdir / out_folder / "files" / f"{image_id}{raw_file.suffix.lower()}"
        # The raw store is content-addressed and never rewritten in place: a link costs no
        # data write, where a copy wrote and synced every image a second time.
        atomic.link_file(raw_file, target)
    return {
        "image_id": image_id,
        "path": str(target.relative_to(workdir)),
        "width": facts.width,
        "height": facts.height,
        "exif_transposed": facts.exif_transposed,
        "converted_mode": facts.converted_mode or "",
        "pixel_hash": hashlib.sha256(f"{image.size}".encode() + image.tobytes()).hexdigest(),
        "phash": facts.phash,
        "blur_variance": facts.blur_variance,
        "contrast": facts.contrast,
        "is_blurry": is_blurry(facts.blur_variance),
        "is_low_contrast": is_low_contrast(facts.contrast),
    }


def reject_row(image_id: str, source_path: str, error: ImageRejected, run_id: str) -> dict[str, object]:
    """The rejects-table row for a file that could not be used, its message naming the source file."""
    return {
        "image_id": image_id,
        "source_path": source_path,
        "reason": error.reason,
        "message": f"{source_path}: {error.problem}",
        "run_id": run_id,
    }


def mark_duplicates(new: pd.DataFrame, existing: pd.DataFrame, *, max_distance: int = 6) -> pd.DataFrame:
    """Fill the duplicate columns of ``new`` against ``existing`` rows and earlier ``new`` rows.

    An exact duplicate has the same decoded pixels as an earlier image (same picture, other
    encoding or name). A near duplicate is within ``max_distance`` bits of perceptual hash of
    an earlier image that is itself kept. Earlier = already cleaned, then ingestion order.
    """
    new = new.copy()
    first_by_pixels: dict[str, str] = dict(zip(existing["pixel_hash"][::-1], existing["image_id"][::-1]))
    duplicate_of = []
    for image_id, pixel_hash in zip(new["image_id"], new["pixel_hash"]):
        duplicate_of.append(first_by_pixels.setdefault(pixel_hash, image_id))
    new["duplicate_of"] = [orig if orig != own else "" for orig, own in zip(duplicate_of, new["image_id"])]
    new["is_exact_duplicate"] = new["duplicate_of"] != ""

    kept_existing = existing[~existing["is_exact_duplicate"] & ~existing["is_near_duplicate"]]
    unique_new = new[~new["is_exact_duplicate"]]
    reference_ids = list(kept_existing["image_id"]) + list(unique_new["image_id"])
    matches = find_near_duplicates(
        list(unique_new["phash"]), max_distance=max_distance, reference=list(kept_existing["phash"])
    )
    near = pd.Series("", index=new.index, dtype="str")
    near.loc[unique_new.index] = [reference_ids[m] if m is not None else "" for m in matches]
    new["near_duplicate_of"] = near
    new["is_near_duplicate"] = near != ""
    return new


def pool_images(cleaned: pd.DataFrame) -> set[str]:
    """The images that need labels: every cleaned image but exact copies of another (they share its labels)."""
    return set(cleaned.loc[~cleaned["is_exact_duplicate"], "image_id"])
