"""Confidence thresholds for auto-accepting pre-labels, fitted on human review.

After a review round every reviewed pre-label box is either *correct* (the reviewer kept
it, or moved it to IoU >= 0.5 with the same class) or not; the caller works that out.
From those boxes this module fits, per class, the smallest confidence ``t`` such that the
reviewed boxes at or above ``t`` are correct at least ``target_precision`` of the time,
then auto-accepts unreviewed images whose every pre-label clears its class threshold
(SageMaker Ground Truth's automated labelling, with the target and the guards exposed).

Choosing ``t``: sort the reviewed boxes by confidence, highest first; each distinct
confidence ``c`` is a candidate, and its *tail* is every box with confidence >= ``c``. The
tail's precision is the share of correct boxes in it. The chosen threshold is the smallest
candidate whose tail reaches the target, even where a higher candidate's tail falls
short: the images accepted at ``t`` are exactly that tail's population, so only its overall
precision matters. (Equivalently: the first crossing of the monotone envelope
``max over t' <= t of precision(t')``, as in interpolated precision-recall curves.)

Guards against a few lucky boxes deciding the threshold:

* ``min_support``: a tail counts only with at least that many boxes. A class with fewer
  reviewed boxes in total falls back to the threshold fitted on all classes pooled.
* ``confidence_level``: require the one-sided Wilson score lower bound of the tail
  precision, not the raw share, to reach the target. Since ``t`` is picked as the
  loosest value that passes on the very boxes it is judged on, the raw share at ``t`` is
  an optimistic estimate; the lower bound corrects for that, and spot checks
  (:func:`sample_spot_checks`) measure the real precision on the next round.

What calibrating on boxes cannot see: objects the model missed. An image whose boxes are all
right can still lack a box the model never proposed, and box precision counts it as a success.
So a second, image-level gate (:func:`image_threshold`) is fitted on the images humans judged
whose boxes all cleared their thresholds (reviewed or spot-checked): an image is *fully right*
when no box was wrong and none had to be added. Images are ranked by their least confident box,
and the gate is the smallest such confidence at which the judged images reach the target share
of fully right ones. An image with no pre-label boxes is never auto-accepted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from statistics import NormalDist

import numpy as np
import numpy.typing as npt


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


def _as_confidences(confidences: npt.ArrayLike, n: int, name: str = "confidences") -> np.ndarray:
    c = np.asarray(confidences, dtype=np.float64)
    if c.ndim != 1 or c.shape[0] != n:
        raise ValueError(f"{name} must have shape (n_boxes,) = ({n},); got shape {c.shape}")
    if not np.isfinite(c).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if ((c < 0.0) | (c > 1.0)).any():
        raise ValueError(f"{name} must lie in [0, 1]; got values in [{c.min():.6g}, {c.max():.6g}]")
    return c


def _as_correct(correct: npt.ArrayLike) -> np.ndarray:
    ok = np.asarray(correct)
    if ok.ndim != 1:
        raise ValueError(f"correct must be 1-D with shape (n_boxes,); got shape {ok.shape}")
    if ok.dtype != np.bool_:
        # 0/1 integers are a common spelling of booleans (e.g. a parquet column).
        if ok.size and not np.isin(ok, (0, 1)).all():
            raise ValueError(f"correct must hold booleans (or 0/1); got dtype {ok.dtype}")
        ok = ok.astype(np.bool_)
    return ok


def _check_settings(target_precision: float, min_support: int, confidence_level: float | None) -> None:
    if not 0.0 < target_precision <= 1.0:  # also rejects NaN
        raise ValueError(f"target_precision must lie in (0, 1]; got {target_precision!r}")
    if isinstance(min_support, bool) or not isinstance(min_support, (int, np.integer)) or min_support < 1:
        raise ValueError(f"min_support must be an integer >= 1; got {min_support!r}")
    if confidence_level is not None and not 0.0 < confidence_level < 1.0:
        raise ValueError(f"confidence_level must be None or lie in (0, 1); got {confidence_level!r}")


def _wilson_lower(n_correct: np.ndarray, n: np.ndarray, confidence_level: float) -> np.ndarray:
    """One-sided Wilson score lower bounds, shape of ``n`` (all entries >= 1).

    Matches ``scipy.stats.binomtest(k, n, alternative="greater")
    .proportion_ci(confidence_level, method="wilson").low``, vectorised over every tail at
    once instead of one scipy call per candidate threshold.
    """
    z = NormalDist().inv_cdf(confidence_level)
    p = n_correct / n
    centre = (2 * n * p + z**2) / (2 * (n + z**2))
    half_width = z / (2 * (n + z**2)) * np.sqrt(4 * n * p * (1 - p) + z**2)
    return np.where(n_correct == 0, 0.0, centre - half_width)


def _fit(
    conf: np.ndarray,
    ok: np.ndarray,
    target_precision: float,
    min_support: int,
    confidence_level: float | None,
) -> tuple[float | None, float | None]:
    order = np.argsort(-conf, kind="stable")
    c = conf[order]
    n_correct = np.cumsum(ok[order])
    n_tail = np.arange(1, c.size + 1)
    precision = n_correct / n_tail
    # Boxes tied at a confidence pass or fail together, so only the last row of each
    # run of ties is a tail that a threshold can produce.
    is_tail = np.ones(c.size, dtype=np.bool_)
    is_tail[:-1] = c[1:] != c[:-1]
    evidence = precision if confidence_level is None else _wilson_lower(n_correct, n_tail, confidence_level)
    passing = np.flatnonzero(is_tail & (n_tail >= min_support) & (evidence >= target_precision))
    if passing.size == 0:
        return None, None
    # Rows run from high to low confidence: the last passing row is the smallest threshold.
    i = passing[-1]
    return float(c[i]), float(precision[i])


def precision_threshold(
    confidences: npt.ArrayLike,
    correct: npt.ArrayLike,
    *,
    target_precision: float = 0.95,
    min_support: int = 20,
    confidence_level: float | None = None,
) -> tuple[float | None, float | None]:
    """The smallest confidence threshold that reaches ``target_precision`` on reviewed boxes.

    Candidates are the observed confidences. Threshold ``t`` qualifies when the boxes with
    confidence >= ``t`` number at least ``min_support`` and their precision (or, with
    ``confidence_level``, its one-sided Wilson lower bound) is >= ``target_precision``.

    Args:
        confidences: shape (n,), the model's confidence of each reviewed box, in [0, 1].
        correct: shape (n,), bool; True where the box survived review.
        target_precision: required share of correct boxes at or above ``t``, in (0, 1].
        min_support: fewest boxes at or above ``t`` for it to count, >= 1.
        confidence_level: None to compare the raw precision with the target; otherwise a
            level in (0, 1) for the Wilson lower bound, which only ever raises ``t`` or
            makes it unattainable.

    Returns:
        ``(t, precision)``: ``t`` is an observed confidence (accept boxes with
        confidence >= ``t``), ``precision`` the raw share of correct boxes among those at
        or above it. ``(None, None)`` when no threshold qualifies.

    Raises:
        ValueError: on mismatched lengths, confidences that are not finite or lie outside
            [0, 1], non-boolean ``correct``, or settings outside their ranges.
    """
    _check_settings(target_precision, min_support, confidence_level)
    ok = _as_correct(correct)
    conf = _as_confidences(confidences, ok.shape[0])
    return _fit(conf, ok, target_precision, int(min_support), confidence_level)


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

    A class with at least ``min_support`` reviewed boxes gets :func:`precision_threshold`
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
        target_precision, min_support, confidence_level: as in :func:`precision_threshold`.

    Returns:
        A :class:`Calibration` whose mappings have one entry per ``class_names`` entry,
        in that order.

    Raises:
        ValueError: as :func:`precision_threshold`, and on duplicate ``class_names`` or a
            class in ``classes`` that is not among them.
    """
    _check_settings(target_precision, min_support, confidence_level)
    ok = _as_correct(correct)
    n = ok.shape[0]
    conf = _as_confidences(confidences, n)
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
    global_t, global_p = _fit(conf, ok, target_precision, min_support, confidence_level)
    thresholds: dict[str, float | None] = {}
    support: dict[str, int] = {}
    estimated: dict[str, float | None] = {}
    for name in names:
        mask = cls == name
        support[name] = int(mask.sum())
        if support[name] >= min_support:
            t, _ = _fit(conf[mask], ok[mask], target_precision, min_support, confidence_level)
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
) -> ImageGate:
    """Fit the image-level gate on images humans judged whose boxes all cleared their thresholds.

    The same rule as :func:`precision_threshold`, on images instead of boxes: the smallest
    least-box-confidence ``t`` such that the judged images at or above it number at least
    ``min_support`` and at least ``target_accuracy`` of them were fully right.

    Args:
        least_confidences: shape (n_images,), each judged image's least confident box, in [0, 1].
        fully_right: shape (n_images,), bool; True where the reviewer changed, deleted and added nothing
            (a box moved within IoU 0.5 counts as right, as in evaluation at IoU 0.5).
        target_accuracy: required share of fully right images, in (0, 1].
        min_support: fewest judged images at or above ``t``, >= 1.
    """
    ok = _as_correct(fully_right)
    t, accuracy = precision_threshold(least_confidences, ok, target_precision=target_accuracy, min_support=min_support)
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
    conf = _as_confidences(confidences, len(ids))
    if gate is not None and gate.threshold is None:
        return []
    floor = 0.0 if gate is None else gate.threshold
    accepted: dict[str, bool] = {}
    for image_id, name, c in zip(ids, cls, conf.tolist(), strict=True):
        t = calibration.threshold_for(name)
        accepted[image_id] = accepted.get(image_id, True) and t is not None and c >= max(t, floor)
    return [image_id for image_id, ok in accepted.items() if ok]


def sample_spot_checks(image_ids: Sequence[str], *, rate: float = 0.05, seed: int = 0) -> list[str]:
    """A random share of auto-accepted images to send back to humans.

    Reviewing them next round measures the precision auto-acceptance really delivers,
    including missed objects that box calibration cannot see.

    Args:
        image_ids: the auto-accepted images, each once.
        rate: share to re-check, in [0, 1]. ``ceil(rate * n)`` images are drawn, so at
            least one whenever ``rate > 0`` and there is any image.
        seed: seeds the draw; the same ids, rate and seed give the same sample.

    Returns:
        The drawn ids, without repeats, in their ``image_ids`` order.

    Raises:
        ValueError: on ``rate`` outside [0, 1] or repeated ids.
    """
    if not 0.0 <= rate <= 1.0:  # also rejects NaN
        raise ValueError(f"rate must lie in [0, 1]; got {rate!r}")
    ids = list(image_ids)
    if len(set(ids)) != len(ids):
        raise ValueError("image_ids must not repeat an id")
    # Read rate as the decimal it was written as: 0.07 * 100 is 7.000000000000001 in
    # binary floating point, and its ceiling would draw 8 images instead of 7.
    k = math.ceil(Fraction(str(float(rate))) * len(ids))
    drawn = np.random.default_rng(seed).choice(len(ids), size=k, replace=False)
    return [ids[i] for i in np.sort(drawn).tolist()]
