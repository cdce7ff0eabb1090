"""Exact and near duplicate texts, marked in the cleaned table as duplicate images are.

An exact duplicate shares an earlier text's duplicate key; a near duplicate's MinHash signature
(:mod:`labeling_dag.text_signature`) estimates a Jaccard similarity of at least
:data:`~labeling_dag.text_signature.NEAR_DUPLICATE_JACCARD` with an earlier kept text.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from labeling_dag.text_signature import MINHASH_SCHEME, MINHASH_SEED, NEAR_DUPLICATE_JACCARD, NUM_PERM


def mark_text_duplicates(new: pd.DataFrame, existing: pd.DataFrame) -> pd.DataFrame:
    """Fill the duplicate columns of ``new`` against ``existing`` rows and earlier ``new`` rows.

    The contract of :func:`labeling_dag.cleaning.mark_duplicates`: an exact duplicate has the
    same duplicate key (``pixel_hash``) as an earlier text and points at the first of them. A
    near duplicate's signature estimates a Jaccard similarity of at least
    :data:`NEAR_DUPLICATE_JACCARD` with an earlier text that is itself kept, and points at the
    earliest such text. Earlier = already cleaned, then ingestion order.
    """
    new = new.copy()
    first_by_key: dict[str, str] = dict(zip(existing["pixel_hash"][::-1], existing["image_id"][::-1]))
    duplicate_of = [first_by_key.setdefault(key, own) for own, key in zip(new["image_id"], new["pixel_hash"])]
    new["duplicate_of"] = [orig if orig != own else "" for orig, own in zip(duplicate_of, new["image_id"])]
    new["is_exact_duplicate"] = new["duplicate_of"] != ""

    kept_existing = existing[~existing["is_exact_duplicate"] & ~existing["is_near_duplicate"]]
    unique_new = new[~new["is_exact_duplicate"]]
    reference_ids = list(kept_existing["image_id"]) + list(unique_new["image_id"])
    matches = find_near_duplicate_texts(list(unique_new["phash"]), reference=list(kept_existing["phash"]))
    near = pd.Series("", index=new.index, dtype="str")
    near.loc[unique_new.index] = [reference_ids[m] if m is not None else "" for m in matches]
    new["near_duplicate_of"] = near
    new["is_near_duplicate"] = near != ""
    return new


def find_near_duplicate_texts(signatures: Sequence[str], *, reference: Sequence[str] = ()) -> list[int | None]:
    """Greedy near-duplicate detection over MinHash signatures (:func:`text_signature`).

    Indexing and order as :func:`labeling_dag.near_duplicates.find_near_duplicates`: signatures
    are numbered in ``[*reference, *signatures]``, reference ones are kept, and each of
    ``signatures`` in turn is a duplicate of the kept one with the smallest index whose
    estimated Jaccard similarity is at least :data:`NEAR_DUPLICATE_JACCARD`, else kept itself.

    A ``MinHashLSH`` index finds the candidates, so the cost grows with the number of similar
    pairs rather than with all pairs. Its banding (:func:`_banding`) makes it exact: a pair at
    the threshold differs in fewer signature positions than there are bands, so some band
    agrees whole and the pair is always a candidate.

    Raises:
        ValueError: for a signature that is not hex of :data:`NUM_PERM` values.
    """
    from datasketch import LeanMinHash, MinHashLSH

    if not signatures:
        return []
    values = _parse_signatures([*reference, *signatures])
    lsh = MinHashLSH(num_perm=NUM_PERM, params=_banding())

    def sketch(index: int) -> LeanMinHash:
        return LeanMinHash(seed=MINHASH_SEED, hashvalues=values[index], scheme=MINHASH_SCHEME)

    for index in range(len(reference)):
        lsh.insert(index, sketch(index))
    duplicate_of: list[int | None] = []
    for index in range(len(reference), len(values)):
        candidates = np.array(sorted(lsh.query(sketch(index))), dtype=np.int64)
        similar = candidates[(values[candidates] == values[index]).mean(axis=1) >= NEAR_DUPLICATE_JACCARD]
        if similar.size:
            duplicate_of.append(int(similar[0]))
        else:
            lsh.insert(index, sketch(index))
            duplicate_of.append(None)
    return duplicate_of


def _banding() -> tuple[int, int]:
    """(bands, rows) of the LSH index: as many rows a band as keeps more bands than the positions
    in which two signatures at :data:`NEAR_DUPLICATE_JACCARD` can differ, so one band of such a
    pair always agrees whole (32 bands of 4 rows for 128 values at 0.8, which differ in <= 25)."""
    most_differing = int(NUM_PERM * (1 - NEAR_DUPLICATE_JACCARD) + 1e-9)
    rows = max(r for r in range(1, NUM_PERM + 1) if NUM_PERM // r > most_differing)
    return NUM_PERM // rows, rows


def _parse_signatures(signatures: Sequence[str]) -> np.ndarray:
    """The (M, NUM_PERM) uint32 values of M hex signatures."""
    width = 8 * NUM_PERM
    for signature in signatures:
        if len(signature) != width:
            raise ValueError(f"not a MinHash signature of {NUM_PERM} values: {signature[:40]!r}...")
    try:
        packed = bytes.fromhex("".join(signatures))
    except ValueError as exc:
        raise ValueError(f"MinHash signatures must be hex: {exc}") from exc
    return np.frombuffer(packed, dtype=">u4").astype(np.uint32).reshape(len(signatures), NUM_PERM)
