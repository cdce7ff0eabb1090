"""How right a labelled dataset is, measured against reference labels (box precision and recall).

Used where a reference exists: the simulated loop and the benchmarks score the verified labels
against the truth only the simulated reviewer reads. Boxes match one-to-one within a class at
IoU >= 0.5 (:func:`labeling_dag.agreement.score_against_gold`), the convention of mAP50, so a
box with the wrong class is both a false positive and a missed object.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from labeling_dag.agreement import score_against_gold
from labeling_dag.records import NormBox

Boxes = Sequence[tuple[str, NormBox]]


@dataclass(frozen=True)
class Counts:
    """Matched (tp), spurious (fp) and missed (fn) boxes over some images; ``exact_images`` had
    none wrong or missing."""

    images: int = 0
    exact_images: int = 0
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.images + other.images,
            self.exact_images + other.exact_images,
            self.tp + other.tp,
            self.fp + other.fp,
            self.fn + other.fn,
        )

    def summary(self) -> dict[str, float | int | None]:
        """Precision, recall and the share of exactly right images (None where nothing was counted)."""
        return {
            "images": self.images,
            "boxes": self.tp + self.fp,
            "precision": self.tp / (self.tp + self.fp) if self.tp + self.fp else None,
            "recall": self.tp / (self.tp + self.fn) if self.tp + self.fn else None,
            "image_accuracy": self.exact_images / self.images if self.images else None,
        }


def _count(labels: Boxes, truth: Boxes) -> Counts:
    score = score_against_gold("", "", labels, truth)
    exact = score.false_positives == 0 and score.false_negatives == 0
    return Counts(1, int(exact), score.true_positives, score.false_positives, score.false_negatives)


def label_quality(
    labels: Mapping[str, Boxes],
    truth: Mapping[str, Boxes],
    sources: Mapping[str, str],
    *,
    class_names: Sequence[str],
) -> dict[str, object]:
    """Score the labelled images of a dataset against the truth.

    Args:
        labels: the dataset's ``(class_name, box)`` list per image; an image missing here but
            present in ``sources`` was labelled empty.
        truth: the reference boxes of every image (an image not in it has none).
        sources: who vouches for each labelled image (e.g. human, auto_accepted, gold); only
            these images are scored.
        class_names: the classes reported one by one.

    Returns:
        ``precision``, ``recall``, ``image_accuracy`` and ``images`` over every labelled image,
        ``per_class`` (the same per class, counting only that class's boxes) and
        ``per_source`` (the same per source).
    """
    overall, per_class, per_source = Counts(), {name: Counts() for name in class_names}, {}
    for image_id, source in sources.items():
        mine, reference = list(labels.get(image_id, ())), list(truth.get(image_id, ()))
        counts = _count(mine, reference)
        overall += counts
        per_source[source] = per_source.get(source, Counts()) + counts
        for name in class_names:
            per_class[name] += _count([b for b in mine if b[0] == name], [b for b in reference if b[0] == name])
    return {
        **overall.summary(),
        "per_class": {name: counts.summary() for name, counts in per_class.items()},
        "per_source": {source: counts.summary() for source, counts in sorted(per_source.items())},
    }
