"""The image-level auto-accept gate, for what box thresholds cannot see: objects the model missed.

Fitted on the images humans judged whose boxes all cleared their thresholds, and applied with the
per-class thresholds to pick the images accepted without review.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy.typing as npt

from labeling_dag.calibration.class_thresholds import Calibration
from labeling_dag.calibration.inputs import as_confidences, as_correct
from labeling_dag.calibration.thresholds import precision_threshold


@dataclass(frozen=True)
class ImageGate:
    """The image-level auto-accept gate, as fitted by :func:`image_threshold`.

    ``threshold``: the least confidence every box of an auto-accepted image must reach (None:
    accept no image). ``accuracy``: the share of fully right images among the judged ones at or
    above it. ``support``: how many judged images the fit saw.
    """

    threshold: float | None
    accuracy: float | None
    support: int


def image_threshold(
    least_confidences: npt.ArrayLike,
    fully_right: npt.ArrayLike,
    *,
    target_accuracy: float = 0.95,
    min_support: int = 10,
    confidence_level: float | None = None,
) -> ImageGate:
    """Fit the image-level gate on images humans judged whose boxes all cleared their thresholds.

    The same rule as :func:`~.thresholds.precision_threshold`, on images instead of boxes: the smallest
    least-box-confidence ``t`` such that the judged images at or above it number at least
    ``min_support`` and at least ``target_accuracy`` of them were fully right.

    Args:
        least_confidences: shape (n_images,), each judged image's least confident box, in [0, 1].
        fully_right: shape (n_images,), bool; True where the reviewer changed, deleted and added nothing
            (a box moved within IoU 0.5 counts as right, as in evaluation at IoU 0.5).
        target_accuracy: required share of fully right images, in (0, 1].
        min_support: fewest judged images at or above ``t``, >= 1.
        confidence_level: where given, the share's one-sided Wilson lower bound at this level, not
            the share itself, must reach ``target_accuracy`` (see :func:`~.thresholds.precision_threshold`).
    """
    ok = as_correct(fully_right)
    t, accuracy = precision_threshold(
        least_confidences,
        ok,
        target_precision=target_accuracy,
        min_support=min_support,
        confidence_level=confidence_level,
    )
    return ImageGate(threshold=t, accuracy=accuracy, support=int(ok.shape[0]))


def auto_accept_images(
    image_ids: Sequence[str],
    classes: Sequence[str],
    confidences: npt.ArrayLike,
    calibration: Calibration,
    *,
    gate: ImageGate | None = None,
) -> list[str]:
    """Images whose every pre-label box clears its class threshold (and the image gate, if given).

    Boxes come as flat rows, one per box. A box clears when its confidence is >= its
    class's :meth:`Calibration.threshold_for`; a class without a threshold never clears,
    so one such box keeps its whole image for humans. With ``gate``, every box must also
    reach ``gate.threshold``, and a gate without a threshold accepts nothing. An image with
    no boxes has no rows here and so is never accepted: a calibration fitted on boxes says
    nothing about the objects the model failed to propose.

    Args:
        image_ids: shape (n_boxes,), the image each box belongs to.
        classes: shape (n_boxes,), each box's predicted class.
        confidences: shape (n_boxes,), each box's confidence, in [0, 1].
        calibration: the thresholds to apply.
        gate: the image-level gate (:func:`image_threshold`); None applies box thresholds only.

    Returns:
        The accepted image ids, each once, in order of first appearance in ``image_ids``.

    Raises:
        ValueError: on mismatched lengths or confidences that are not finite or lie
            outside [0, 1].
    """
    ids = list(image_ids)
    cls = list(classes)
    if len(cls) != len(ids):
        raise ValueError(f"image_ids and classes must have equal lengths; got {len(ids)} and {len(cls)}")
    conf = as_confidences(confidences, len(ids))
    if gate is not None and gate.threshold is None:
        return []
    floor = 0.0 if gate is None else gate.threshold
    accepted: dict[str, bool] = {}
    for image_id, name, c in zip(ids, cls, conf.tolist(), strict=True):
        t = calibration.threshold_for(name)
        accepted[image_id] = accepted.get(image_id, True) and t is not None and c >= max(t, floor)
    return [image_id for image_id, ok in accepted.items() if ok]
