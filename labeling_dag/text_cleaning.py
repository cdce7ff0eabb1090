"""Decode and normalise raw texts; duplicates are marked, unusable files rejected.

The text counterpart of :mod:`labeling_dag.cleaning`: a cleaned text is a row of the same
``CLEANED_COLUMNS`` table as a cleaned image, so every later stage reads one schema. For a text:

- ``path``: the cleaned copy, ``<out_folder>/files/<image_id>.txt``, UTF-8 without a BOM.
- ``width``: the number of characters of the cleaned text; ``height``: 1.
- ``converted_mode``: ``"normalised"`` when cleaning changed the file's bytes (a BOM, CRLF line
  ends, a decomposed accent, surrounding whitespace such as the usual final newline), else ``""``.
- ``pixel_hash``: sha256 of the text's duplicate key (NFC, casefolded, runs of whitespace
  collapsed to one space), so texts differing only in case or spacing are exact duplicates.
- ``phash``: the text's MinHash signature (:data:`NUM_PERM` 32-bit values, hex, 8 characters
  each) over 3-word shingles of the duplicate key (single words for texts under 3 words).
- The image quality columns hold neutral values: ``exif_transposed`` False, ``blur_variance``
  and ``contrast`` 0.0, ``is_blurry`` and ``is_low_contrast`` False.

Cleaning decodes strict UTF-8 (a UTF-8 BOM is dropped), applies Unicode NFC, turns CRLF and CR
into LF and strips leading and trailing whitespace. Files that cannot be used raise
:class:`~labeling_dag.image_quality.ImageRejected` with reason ``empty``, ``not_utf8``,
``binary``, ``too_long`` or ``unreadable``; nothing is silently dropped.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from labeling_dag import atomic
from labeling_dag.image_quality import ImageRejected

# Longest cleaned text, in characters: about 15 000 words, far beyond what an annotator reads
# to pick a class, and a bound on the memory one item takes.
MAX_TEXT_CHARS = 100_000

# Estimated Jaccard similarity of two texts' shingle sets from which the later one is a near
# duplicate: one word changed in a 60-word text still scores about 0.9.
NEAR_DUPLICATE_JACCARD = 0.8

# MinHash signature size and permutation seed. Fixed so that signatures written by any run
# compare with any other; changing either makes every stored ``phash`` incomparable.
NUM_PERM = 128
MINHASH_SEED = 1
# datasketch's permutation scheme, named rather than defaulted so that a new datasketch default
# cannot silently change the signatures.
_MINHASH_SCHEME = "affine32"
_SHINGLE_WORDS = 3

# A text with more than this share of control characters (other than tab, line feed, carriage
# return, form feed, vertical tab) is binary data that happens to decode as UTF-8.
MAX_CONTROL_SHARE = 0.1
# Unicode's control characters (category Cc) but those five.
_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")

_BOM = b"\xef\xbb\xbf"
# UTF-8 takes at most 4 bytes a character: a larger file cannot hold an acceptable text (but for
# surrounding whitespace), and is not read whole.
_MAX_TEXT_BYTES = len(_BOM) + 4 * MAX_TEXT_CHARS


def clean_text(raw_file: Path, *, image_id: str, workdir: Path, out_folder: str) -> dict[str, object]:
    """Decode and normalise one raw text file and write its cleaned copy; return its row (without
    duplicate marks), as :func:`labeling_dag.cleaning.clean_image` does for an image.

    A text whose bytes cleaning leaves unchanged is linked, not copied: the raw store is
    content-addressed and never rewritten in place. Raises ``ImageRejected``.
    """
    raw = _read(raw_file)
    text = _clean(raw_file, _decode(raw_file, raw))
    data = text.encode("utf-8")
    target = workdir / out_folder / "files" / f"{image_id}.txt"
    if data == raw:
        atomic.link_file(raw_file, target)
    else:
        atomic.write_bytes(target, data)
    key = duplicate_key(text)
    return {
        "image_id": image_id,
        "path": str(target.relative_to(workdir)),
        "width": len(text),
        "height": 1,
        "exif_transposed": False,
        "converted_mode": "" if data == raw else "normalised",
        "pixel_hash": hashlib.sha256(key.encode("utf-8")).hexdigest(),
        "phash": text_signature(key),
        "blur_variance": 0.0,
        "contrast": 0.0,
        "is_blurry": False,
        "is_low_contrast": False,
    }


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
    minhash = MinHash(num_perm=NUM_PERM, seed=MINHASH_SEED, scheme=_MINHASH_SCHEME)
    minhash.update_batch([shingle.encode("utf-8") for shingle in sorted(shingles)])
    return minhash.hashvalues.astype(">u4").tobytes().hex()


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

    Indexing and order as :func:`labeling_dag.image_quality.find_near_duplicates`: signatures
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
        return LeanMinHash(seed=MINHASH_SEED, hashvalues=values[index], scheme=_MINHASH_SCHEME)

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


def _read(path: Path) -> bytes:
    """The file's bytes, read no further than a too-long text could reach."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(_MAX_TEXT_BYTES + 1)
    except OSError as exc:
        raise ImageRejected(path, "unreadable", f"cannot open file ({exc})") from exc
    if len(raw) > _MAX_TEXT_BYTES:
        raise ImageRejected(
            path,
            "too_long",
            f"file is larger than {_MAX_TEXT_BYTES} bytes, more than a text of at most "
            f"{MAX_TEXT_CHARS} characters can take",
        )
    return raw


def _decode(path: Path, raw: bytes) -> str:
    """Strict UTF-8, without a BOM; binary data is told apart from text in another encoding."""
    body = raw.removeprefix(_BOM)
    start = len(raw) - len(body)
    if not body:
        raise ImageRejected(path, "empty", f"file holds no text ({len(raw)} bytes)")
    nul = body.find(b"\x00")
    if nul >= 0:
        raise ImageRejected(
            path,
            "binary",
            f"a NUL byte at offset {start + nul}: binary data, or text in UTF-16 or UTF-32, which is not accepted",
        )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = body[exc.start : exc.end].hex(" ")
        raise ImageRejected(
            path, "not_utf8", f"not valid UTF-8: byte(s) {bad} at offset {start + exc.start} ({exc.reason})"
        ) from exc
    controls = len(_CONTROLS.findall(text))
    if controls > MAX_CONTROL_SHARE * len(text):
        raise ImageRejected(
            path,
            "binary",
            f"{controls} of {len(text)} characters are control characters (more than "
            f"{MAX_CONTROL_SHARE:.0%}): binary data, not text",
        )
    return text


def _clean(path: Path, text: str) -> str:
    """NFC, LF line ends, no surrounding whitespace; rejects what is then empty or too long."""
    cleaned = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n").strip()
    if not cleaned:
        raise ImageRejected(path, "empty", f"text has nothing but whitespace ({len(text)} characters)")
    if len(cleaned) > MAX_TEXT_CHARS:
        raise ImageRejected(
            path, "too_long", f"text has {len(cleaned)} characters, more than the limit of {MAX_TEXT_CHARS}"
        )
    return cleaned
