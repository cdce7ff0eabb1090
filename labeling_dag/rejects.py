"""Why a raw item cannot be used: :class:`ImageRejected` and its machine-readable reasons.

Decoding an image (:mod:`labeling_dag.image_decoding`) and cleaning a text
(:mod:`labeling_dag.text_cleaning`) both raise it; the ``cleaned_images`` asset counts the
reasons and writes each rejected file to the rejects table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

RejectReason = Literal[
    "unreadable",  # the file could not be opened (missing, a directory, no permission)
    "zero_byte",
    "not_an_image",  # no image format recognises the content (HTML, random bytes)
    "unsupported_format",  # a real image in a format we do not label (GIF, ICO, ...)
    "decompression_bomb",
    "too_small",
    "truncated",  # a recognised format whose data ends early or is corrupt
    # Texts (labeling_dag.text_cleaning):
    "empty",  # no characters but whitespace, a 0-byte file included
    "not_utf8",  # bytes that are not valid UTF-8
    "binary",  # a NUL byte or a high share of control characters
    "too_long",  # more characters than text_cleaning.MAX_TEXT_CHARS
]


class ImageRejected(Exception):
    """An image file that cannot be used, with a machine-readable ``reason``.

    ``str(exc)`` is ``"{path}: {problem}"`` so a log line names the file.
    """

    def __init__(self, path: Path, reason: RejectReason, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.reason: RejectReason = reason
        self.problem = problem

    def __reduce__(self) -> tuple[type[ImageRejected], tuple[Path, RejectReason, str]]:
        # Exceptions pickle as cls(*self.args); ours takes different arguments, and Dagster
        # may pickle errors across process boundaries.
        return (type(self), (self.path, self.reason, self.problem))
