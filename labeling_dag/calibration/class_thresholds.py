"""Per-class auto-accept thresholds: each class with enough reviewed boxes gets its own, the others
the threshold fitted on every class pooled."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from labeling_dag.calibration.inputs import as_confidences, as_correct, check_settings
from labeling_dag.calibration.thresholds import fit_threshold


@dataclass(frozen=True)
class Calibration:
    """Per-class auto-accept thresholds, as fitted by :func:`calibrate`.

    ``thresholds`` holds the threshold in force for every class the model knows: its own
    fit where it has at least ``min_support`` reviewed boxes (``support``), otherwise
    ``global_threshold``. A value of None means boxes of that class are never
    auto-accepted. ``estimated_precision[c]`` is the raw share of correct boxes among
    class ``c``'s reviewed boxes at or above its threshold (None when there are none, or
    no threshold); for a class on the global threshold it rests on fewer than
    ``min_support`` boxes and can sit below the target.
    """

    target_precision: float
    thresholds: Mapping[str, float | None]
    global_threshold: float | None
    support: Mapping[str, int]
    estimated_precision: Mapping[str, float | None]
    global_estimated_precision: float | None = None
    min_support: int = 20
    confidence_level: float | None = None

    def threshold_for(self, class_name: str) -> float | None:
        """The minimum confidence to auto-accept a box of ``class_name``; None = never.

        A class missing from ``thresholds`` has no reviewed boxes of its own, so it gets
        ``global_threshold`` like any other class below ``min_support``.
        """
        return self.thresholds.get(class_name, self.global_threshold)


def calibrate(
    classes: Sequence[str],
    confidences: npt.ArrayLike,
    correct: npt.ArrayLike,
    *,
    class_names: Sequence[str],
    target_precision: float = 0.95,
    min_support: int = 20,
    confidence_level: float | None = None,
) -> Calibration:
    """Fit a threshold per class, falling back to a pooled one for sparsely reviewed classes.

    A class with at least ``min_support`` reviewed boxes gets :func:`~.thresholds.precision_threshold`
    on its own boxes, which may be None: the review showed the model is not reliable
    enough on that class, and a looser pooled threshold would hide it. Every other class
    gets the threshold fitted on all reviewed boxes of all classes (itself None when the
    pool cannot reach the target either).

    Args:
        classes: shape (n,), the class the model predicted for each reviewed box; every
            name must be in ``class_names``.
        confidences: shape (n,), the model's confidence of each box, in [0, 1].
        correct: shape (n,), bool; True where the box survived review.
        class_names: every class the model predicts, each once.
        target_precision, min_support, confidence_level: as in :func:`~.thresholds.precision_threshold`.

    Returns:
        A :class:`Calibration` whose mappings have one entry per ``class_names`` entry,
        in that order.

    Raises:
        ValueError: as :func:`~.thresholds.precision_threshold`, and on duplicate ``class_names`` or a
            class in ``classes`` that is not among them.
    """
    check_settings(target_precision, min_support, confidence_level)
    ok = as_correct(correct)
    n = ok.shape[0]
    conf = as_confidences(confidences, n)
    cls = np.asarray(list(classes), dtype=object)
    if cls.shape != (n,):
        raise ValueError(f"classes must have shape (n_boxes,) = ({n},); got shape {cls.shape}")
    names = list(class_names)
    if len(set(names)) != len(names):
        raise ValueError(f"class_names must not repeat a name; got {names}")
    unknown = sorted(set(cls.tolist()) - set(names), key=str)
    if unknown:
        raise ValueError(f"classes contains names not in class_names: {unknown}")

    min_support = int(min_support)
    global_t, global_p = fit_threshold(conf, ok, target_precision, min_support, confidence_level)
    thresholds: dict[str, float | None] = {}
    support: dict[str, int] = {}
    estimated: dict[str, float | None] = {}
    for name in names:
        mask = cls == name
        support[name] = int(mask.sum())
        if support[name] >= min_support:
            t, _ = fit_threshold(conf[mask], ok[mask], target_precision, min_support, confidence_level)
        else:
            t = global_t
        thresholds[name] = t
        # Judged on this class's own boxes even under the global threshold, so a class the
        # pooled fit serves badly shows up in the record.
        above = mask & (conf >= t) if t is not None else np.zeros(n, dtype=np.bool_)
        estimated[name] = float(ok[above].mean()) if above.any() else None
    return Calibration(
        target_precision=float(target_precision),
        thresholds=thresholds,
        global_threshold=global_t,
        support=support,
        estimated_precision=estimated,
        global_estimated_precision=global_p,
        min_support=min_support,
        confidence_level=confidence_level,
    )
