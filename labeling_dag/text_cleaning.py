"""Decode and normalise raw texts; unusable files are rejected.

The text counterpart of :mod:`labeling_dag.cleaning`: a cleaned text is a row of the same
``CLEANED_COLUMNS`` table as a cleaned image, so every later stage reads one schema. For a text:

- ``path``: the cleaned copy, ``<out_folder>/files/<image_id>.txt``, UTF-8 without a BOM.
- ``width``: the number of characters of the cleaned text; ``height``: 1.
- ``converted_mode``: ``"normalised"`` when cleaning changed the file's bytes (a BOM, CRLF line
  ends, a decomposed accent, surrounding whitespace such as the usual final newline), else ``""``.
- ``pixel_hash``: sha256 of the text's duplicate key (NFC, casefolded, runs of whitespace
  collapsed to one space), so texts differing only in case or spacing are exact duplicates.
- ``phash``: the text's MinHash signature (:mod:`labeling_dag.text_signature`: 128 32-bit
  values, hex, 8 characters each) over 3-word shingles of the duplicate key (single words for
  texts under 3 words).
- The image quality columns hold neutral values: ``exif_transposed`` False, ``blur_variance``
  and ``contrast`` 0.0, ``is_blurry`` and ``is_low_contrast`` False.

Cleaning decodes strict UTF-8 (a UTF-8 BOM is dropped), applies Unicode NFC, turns CRLF and CR
into LF and strips leading and trailing whitespace. Files that cannot be used raise
:class:`~labeling_dag.rejects.ImageRejected` with reason ``empty``, ``not_utf8``,
``binary``, ``too_long`` or ``unreadable``; nothing is silently dropped.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from pathlib import Path

from labeling_dag import atomic
from labeling_dag.rejects import ImageRejected
from labeling_dag.text_signature import duplicate_key, text_signature

# Longest cleaned text, in characters: about 15 000 words, far beyond what an annotator reads
# to pick a class, and a bound on the memory one item takes.
MAX_TEXT_CHARS = 100_000

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


def _read(path: Path) -> bytes:
    """The file's bytes, read no further than a too-long text could reach."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(_MAX_TEXT_BYTES + 1)
    except OSError as exc:
        raise ImageRejected(path, "unreadable", f"cannot open file ({exc})") from exc
    if len(raw) > _MAX_TEXT_BYTES:
        limit = f"more than a text of at most {MAX_TEXT_CHARS} characters can take"
        raise ImageRejected(path, "too_long", f"file is larger than {_MAX_TEXT_BYTES} bytes, {limit}")
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
