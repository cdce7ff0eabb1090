"""A model's quality on the held-out validation split, overall and per class, and the per-class
promotion rule.

Pure records and functions: :meth:`labeling_dag.resources.detector.Detector.evaluate` fills a
:class:`ModelEvaluation` from ultralytics' validator; the model card keeps it as JSON
(:meth:`ModelEvaluation.as_json`), and the promotion gate and the UI read it back from there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

BACKGROUND = "background"


@dataclass(frozen=True)
class ClassQuality:
    """One class's figures on the validation split (ultralytics' per-class results).

    ``precision`` and ``recall`` are taken at the confidence that maximises the mean F1 over
    classes (ultralytics' operating point); ``map50`` is AP at IoU 0.5, ``map50_95`` AP averaged
    over IoU 0.5 to 0.95. All in [0, 1], higher is better. ``instances`` is the number of the
    class's boxes in the validation split.
    """

    class_name: str
    instances: int
    precision: float
    recall: float
    map50: float
    map50_95: float


@dataclass(frozen=True)
class ConfusionMatrix:
    """Box counts indexed ``[predicted][true]`` over ``labels`` (the class names, then ``background``).

    A prediction matched to no true box counts in the ``background`` column, a true box no
    prediction found in the ``background`` row. Predictions count from confidence ``conf`` up.
    """

    labels: tuple[str, ...]
    counts: tuple[tuple[int, ...], ...]
    conf: float


@dataclass(frozen=True)
class ModelEvaluation:
    """A model's validation figures: overall mAP, per class (only the classes with boxes in the
    validation split, in class order) and the confusion matrix."""

    map50: float
    map50_95: float
    per_class: tuple[ClassQuality, ...]
    confusion: ConfusionMatrix

    def summary(self) -> dict[str, float]:
        """The overall figures, as the model registry and ``metrics.json`` keep them."""
        return {"map50": self.map50, "map50_95": self.map50_95}

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict that :meth:`from_json` reads back."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelEvaluation:
        """The evaluation :meth:`as_json` wrote."""
        confusion = data["confusion"]
        return cls(
            map50=float(data["map50"]),
            map50_95=float(data["map50_95"]),
            per_class=tuple(ClassQuality(**row) for row in data["per_class"]),
            confusion=ConfusionMatrix(
                labels=tuple(confusion["labels"]),
                counts=tuple(tuple(int(n) for n in row) for row in confusion["counts"]),
                conf=float(confusion["conf"]),
            ),
        )


@dataclass(frozen=True)
class ClassDrop:
    """A class whose mAP50 fell from the current model's to the candidate's (``change`` < 0)."""

    class_name: str
    current_map50: float
    candidate_map50: float

    @property
    def change(self) -> float:
        """Candidate minus current mAP50."""
        return self.candidate_map50 - self.current_map50


def class_drops(
    candidate: Sequence[ClassQuality], current: Sequence[ClassQuality], *, tolerance: float
) -> list[ClassDrop]:
    """The classes whose mAP50 the candidate lowers by more than ``tolerance``, in class order.

    Only classes with boxes in the validation split are compared (both models are evaluated on
    the same split, so both lists hold the same classes); a class only one list holds is skipped.
    A class of ``n`` validation instances cannot show a change finer than ``1 / n``: one instance
    judged the other way is noise, not a drop, so a drop must also exceed one instance's worth
    (12 held-out texts of a class: one answer moves it by 0.083, beyond a 0.05 tolerance).
    """
    before = {row.class_name: row.map50 for row in current}
    return [
        drop
        for row in candidate
        if row.class_name in before
        for drop in [ClassDrop(row.class_name, before[row.class_name], row.map50)]
        if drop.change < -max(tolerance, 1.0 / max(row.instances, 1)) - 1e-9
    ]


def class_quality_table(candidate: Sequence[ClassQuality], current: Sequence[ClassQuality] = ()) -> str:
    """A markdown table of the per-class figures, with the current model's mAP50 beside them when given."""
    before = {row.class_name: row.map50 for row in current}
    header = "| class | boxes | precision | recall | mAP50 | mAP50-95 |"
    rule = "| --- | ---: | ---: | ---: | ---: | ---: |"
    if before:
        header, rule = header + " current mAP50 | change |", rule + " ---: | ---: |"
    lines = [header, rule]
    for row in candidate:
        line = (
            f"| {row.class_name} | {row.instances} | {row.precision:.3f} | {row.recall:.3f} "
            f"| {row.map50:.3f} | {row.map50_95:.3f} |"
        )
        if before:
            old = before.get(row.class_name)
            line += " - | - |" if old is None else f" {old:.3f} | {row.map50 - old:+.3f} |"
        lines.append(line)
    return "\n".join(lines)


def confusion_table(confusion: ConfusionMatrix) -> str:
    """The confusion matrix as a markdown table: a row per predicted label, a column per true one."""
    lines = [
        "| predicted \\ true | " + " | ".join(confusion.labels) + " |",
        "| --- |" + " ---: |" * len(confusion.labels),
    ]
    lines += [
        f"| {label} | " + " | ".join(str(n) for n in row) + " |"
        for label, row in zip(confusion.labels, confusion.counts)
    ]
    return "\n".join(lines)
