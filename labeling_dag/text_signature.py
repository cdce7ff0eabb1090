"""A text's duplicate identity: its duplicate key (what exact duplicates share) and the MinHash
signature of its word shingles (what near duplicates are estimated from).

Both go into the cleaned table (``pixel_hash`` is the key's sha256, ``phash`` the signature,
:mod:`labeling_dag.text_cleaning`) and are compared by :mod:`labeling_dag.text_duplicates`; the
MinHash parameters are fixed here so that every run's signatures compare with every other's.
"""

from __future__ import annotations

import unicodedata

# Estimated Jaccard similarity of two texts' shingle sets from which the later one is a near
# duplicate: one word changed in a 60-word text still scores about 0.9.
NEAR_DUPLICATE_JACCARD = 0.8

# MinHash signature size and permutation seed. Fixed so that signatures written by any run
# compare with any other; changing either makes every stored ``phash`` incomparable.
NUM_PERM = 128
MINHASH_SEED = 1
# datasketch's permutation scheme, named rather than defaulted so that a new datasketch default
# cannot silently change the signatures.
MINHASH_SCHEME = "affine32"
_SHINGLE_WORDS = 3


def duplicate_key(text: str) -> str:
    """What two texts must share to be exact duplicates: NFC, casefolded, whitespace collapsed.

    Casefolding can leave decomposed characters, hence NFC after it as well.
    """
    folded = unicodedata.normalize("NFC", unicodedata.normalize("NFC", text).casefold())
    return " ".join(folded.split())


def text_signature(key: str) -> str:
    """The MinHash signature of a duplicate key's word shingles, as hex (8 characters a value).

    Shingles are runs of 3 consecutive words, so word order counts; a text under 3 words is
    the set of its words.
    """
    from datasketch import MinHash

    words = key.split()
    size = min(_SHINGLE_WORDS, len(words))
    shingles = {" ".join(words[i : i + size]) for i in range(len(words) - size + 1)}
    minhash = MinHash(num_perm=NUM_PERM, seed=MINHASH_SEED, scheme=MINHASH_SCHEME)
    minhash.update_batch([shingle.encode("utf-8") for shingle in sorted(shingles)])
    return minhash.hashvalues.astype(">u4").tobytes().hex()
