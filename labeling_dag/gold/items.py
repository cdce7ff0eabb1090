"""What every gold reader returns (:class:`GoldItem` with its :class:`GoldBox` answers), the
error it raises, and the checks all of them make: project class names, local images, valid boxes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labeling_dag.formats.label_studio_boxes import ls_percent_to_norm
from labeling_dag.model_registry import file_sha256
from labeling_dag.records import NormBox
from labeling_dag.review_intake import check_image_ref


class GoldImportError(ValueError):
    """A gold file that cannot be imported; the message names the file and the problem."""


@dataclass(frozen=True)
class GoldBox:
    """One known box of a gold image, under its project class name."""

    class_name: str
    box: NormBox


@dataclass(frozen=True)
class GoldItem:
    """A gold image: its file, its id (sha256 of the bytes) and its known boxes."""

    image: Path
    image_id: str
    boxes: tuple[GoldBox, ...]


class Renamer:
    """Source class name -> project class name, refusing names outside the project."""

    def __init__(self, path: Path, class_names: Sequence[str], class_map: Mapping[str, str]) -> None:
        self.path, self.class_names, self.class_map = path, frozenset(class_names), class_map

    def __call__(self, name: str, where: str) -> str:
        renamed = self.class_map.get(name, name)
        if renamed not in self.class_names:
            raise GoldImportError(
                f"{self.path}: {where}: class {name!r} is not a project class {sorted(self.class_names)} "
                "(map it with --class-map)"
            )
        return renamed


def item_of(image: Path, boxes: list[GoldBox]) -> GoldItem:
    """The gold item of an image file and its boxes, identified as ingestion will identify it."""
    return GoldItem(image=image, image_id=file_sha256(image), boxes=tuple(boxes))


def local_image(ref: Any, root: Path, path: Path, where: str) -> Path:
    """The local file an image reference names under ``root``; anything else is refused."""
    try:
        image = check_image_ref(ref, data_root=root)
    except ValueError as error:
        raise GoldImportError(
            f"{path}: {where}: {error}; gold images must be local files under {root} (--gold-images)"
        ) from error
    if image is None or not image.is_file():
        raise GoldImportError(f"{path}: {where}: image {ref!r} is not a file under {root} (--gold-images)")
    return image


def norm_box(percent: Mapping[str, Any], path: Path, where: str) -> NormBox:
    """A box in percent of the image (Label Studio's, or COCO's converted) as a normalised box."""
    try:
        return ls_percent_to_norm(percent)
    except ValueError as error:
        raise GoldImportError(f"{path}: {where}: invalid box: {error}") from error
