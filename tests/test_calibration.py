"""Unit tests for the labeling_dag.calibration package."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest

from labeling_dag.calibration.class_thresholds import Calibration, calibrate
from labeling_dag.calibration.image_gate import auto_accept_images
from labeling_dag.calibration.spot_checks import sample_spot_checks
from labeling_dag.calibration.thresholds import _wilson_lower, precision_threshold

# Ten reviewed boxes, confidence 0.95 down to 0.50. Tail at each threshold (correct/boxes):
#   0.95 1/1  0.90 2/2  0.85 3/3  0.80 4/4  0.75 5/5  0.70 6/6
#   0.65 6/7 = 0.857   0.60 7/8 = 0.875   0.55 7/9 = 0.778   0.50 7/10 = 0.7
CONF = np.array([0.95, 0.90, 0.85, 0.80, 0.75, 0.70, 0.65, 0.60, 0.55, 0.50])
CORRECT = np.array([True, True, True, True, True, True, False, True, False, False])


@pytest.mark.parametrize(
    ("target", "expected_t", "expected_p"),
    [
        # 1.0 holds down to 0.70 (6/6); 0.65 brings in the first miss.
        (1.0, 0.70, 1.0),
        # 0.65 gives 0.857 and 0.60 gives 0.875, both < 0.9: stop at 0.70.
        (0.9, 0.70, 1.0),
        # 0.65 (0.857) misses 0.86 but 0.60 (0.875) reaches it: the dip does not stop the scan.
        (0.86, 0.60, 7 / 8),
        # 0.55 gives 0.778 < 0.8.
        (0.8, 0.60, 7 / 8),
        # Every tail reaches 0.7, the full set exactly.
        (0.7, 0.50, 0.7),
    ],
)
def test_hand_made_curve(target: float, expected_t: float, expected_p: float) -> None:
    t, p = precision_threshold(CONF, CORRECT, target_precision=target, min_support=1)
    assert t == expected_t
    assert p == pytest.approx(expected_p)


def test_input_order_does_not_matter() -> None:
    perm = np.random.default_rng(3).permutation(CONF.size)
    kwargs = {"target_precision": 0.86, "min_support": 1}
    assert precision_threshold(CONF[perm], CORRECT[perm], **kwargs) == precision_threshold(CONF, CORRECT, **kwargs)


def test_min_support_is_enforced() -> None:
    # Target 0.9 is met only by tails of <= 6 boxes (down to 0.70).
    assert precision_threshold(CONF, CORRECT, target_precision=0.9, min_support=6) == (0.70, 1.0)
    assert precision_threshold(CONF, CORRECT, target_precision=0.9, min_support=7) == (None, None)
    # Fewer boxes than min_support in total: nothing can qualify.
    assert precision_threshold(CONF, CORRECT, target_precision=0.5, min_support=11) == (None, None)


def test_unattainable_target() -> None:
    assert precision_threshold(CONF, np.zeros(10, dtype=bool), min_support=1) == (None, None)
    # The two most confident boxes are wrong, so no tail is ever 100% correct.
    top_wrong = CONF < 0.9
    assert precision_threshold(CONF, top_wrong, target_precision=1.0, min_support=1) == (None, None)
    assert precision_threshold([], [], min_support=1) == (None, None)


def test_tied_confidences_pass_or_fail_together() -> None:
    # Tails: 0.9 -> 1/1 (support 1 < 2); 0.8 -> both 0.8 boxes, 2/3 < 0.9. Splitting the
    # tie after the correct 0.8 box would give 2/2 at support 2, which no threshold can.
    fit = precision_threshold([0.9, 0.8, 0.8], [True, True, False], target_precision=0.9, min_support=2)
    assert fit == (None, None)


def test_precision_exactly_at_target_and_box_at_threshold_counts() -> None:
    # 20 boxes, only the least confident wrong: the full tail is 19/20 = 0.95 exactly.
    conf = np.linspace(0.99, 0.60, 20)
    correct = conf > 0.60
    t, p = precision_threshold(conf, correct, target_precision=0.95, min_support=20)
    assert t == conf.min()
    assert p == 0.95


def test_wilson_bound_is_stricter() -> None:
    # All correct. One-sided 95% Wilson lower bound with z^2 = 1.6449^2 = 2.7055 and p = 1:
    # n / (n + z^2); 20 boxes -> 20 / 22.71 = 0.881 < 0.9, 30 boxes -> 30 / 32.71 = 0.917.
    for n, expected in [(20, None), (30, 0.5)]:
        conf = np.linspace(0.99, 0.5, n)
        correct = np.ones(n, dtype=bool)
        t, _ = precision_threshold(conf, correct, target_precision=0.9, min_support=1, confidence_level=0.95)
        assert t == expected
        assert precision_threshold(conf, correct, target_precision=0.9, min_support=1)[0] == 0.5


def test_wilson_lower_matches_scipy() -> None:
    k, n = np.meshgrid(np.arange(0, 41), np.arange(1, 41))
    k, n = k[k <= n], n[k <= n]
    for level in (0.8, 0.95):
        ours = _wilson_lower(k, n, level)
        theirs = [
            binomtest(int(ki), int(ni), alternative="greater").proportion_ci(level, method="wilson").low
            for ki, ni in zip(k, n, strict=True)
        ]
        np.testing.assert_allclose(ours, theirs, atol=1e-12)


def test_precision_threshold_accepts_zero_one_integers() -> None:
    assert precision_threshold(CONF, CORRECT.astype(int), target_precision=0.86, min_support=1) == (
        0.60,
        7 / 8,
    )


@pytest.mark.parametrize(
    ("confidences", "correct", "kwargs", "match"),
    [
        ([0.5, 0.6], [True], {}, "shape"),
        ([0.5, np.nan], [True, True], {}, "NaN"),
        ([0.5, 1.2], [True, True], {}, r"\[0, 1\]"),
        ([0.5, -0.1], [True, True], {}, r"\[0, 1\]"),
        ([0.5], [2], {}, "booleans"),
        ([0.5], [True], {"target_precision": 0.0}, "target_precision"),
        ([0.5], [True], {"target_precision": 1.5}, "target_precision"),
        ([0.5], [True], {"target_precision": float("nan")}, "target_precision"),
        ([0.5], [True], {"min_support": 0}, "min_support"),
        ([0.5], [True], {"min_support": 2.5}, "min_support"),
        ([0.5], [True], {"min_support": True}, "min_support"),
        ([0.5], [True], {"confidence_level": 1.0}, "confidence_level"),
    ],
)
def test_precision_threshold_validation(
    confidences: list[float], correct: list[object], kwargs: dict[str, object], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        precision_threshold(confidences, correct, **kwargs)  # type: ignore[arg-type]


# Reviewed boxes for calibrate, min_support = 4, target 0.6:
#   car    0.9 T, 0.8 T, 0.7 T, 0.6 F     -> own fit; only the 0.6 tail has 4 boxes, 3/4 -> t 0.6
#   person 0.95 F, 0.85 F, 0.75 T, 0.65 T -> own fit; the 4-box tail is 2/4 = 0.5 -> None
#   bike   0.5 T                          -> support 1 < 4: global
#   truck  (none)                         -> support 0: global
# Pooled, by confidence: 0.95F .9T .85F .8T .75T .7T .65T .6F .5T; tails with >= 4 boxes:
#   0.8 2/4 = 0.5, 0.75 3/5 = 0.6, 0.7 4/6, 0.65 5/7, 0.6 5/8, 0.5 6/9 = 0.667 -> global t 0.5
CLASSES = ["car"] * 4 + ["person"] * 4 + ["bike"]
REVIEW_CONF = [0.9, 0.8, 0.7, 0.6, 0.95, 0.85, 0.75, 0.65, 0.5]
REVIEW_OK = [True, True, True, False, False, False, True, True, True]
NAMES = ["car", "person", "bike", "truck"]


def test_calibrate_per_class_and_global_fallback() -> None:
    cal = calibrate(CLASSES, REVIEW_CONF, REVIEW_OK, class_names=NAMES, target_precision=0.6, min_support=4)
    assert cal.global_threshold == 0.5
    assert cal.global_estimated_precision == pytest.approx(6 / 9)
    assert dict(cal.thresholds) == {"car": 0.6, "person": None, "bike": 0.5, "truck": 0.5}
    assert list(cal.thresholds) == NAMES
    assert dict(cal.support) == {"car": 4, "person": 4, "bike": 1, "truck": 0}
    # Own boxes at/above the threshold: car 3/4; bike 1/1 (under the global threshold).
    assert dict(cal.estimated_precision) == {
        "car": 0.75,
        "person": None,
        "bike": 1.0,
        "truck": None,
    }
    assert (cal.target_precision, cal.min_support, cal.confidence_level) == (0.6, 4, None)
    # A well-reviewed class that misses the target stays blocked, not loosened to global.
    assert cal.threshold_for("person") is None
    assert cal.threshold_for("bike") == 0.5


def test_calibrate_global_unattainable() -> None:
    cal = calibrate(CLASSES, REVIEW_CONF, REVIEW_OK, class_names=NAMES, target_precision=0.8, min_support=4)
    # car: 3/4 < 0.8 -> None; pooled tails with >= 4 boxes peak at 5/7 = 0.714 -> None.
    assert cal.global_threshold is None
    assert all(t is None for t in cal.thresholds.values())
    assert cal.threshold_for("anything") is None


def test_calibrate_empty_review() -> None:
    cal = calibrate([], [], [], class_names=["car"], min_support=1)
    assert cal.thresholds == {"car": None}
    assert cal.support == {"car": 0}
    assert cal.global_threshold is None


def test_calibrate_validation() -> None:
    with pytest.raises(ValueError, match="not in class_names"):
        calibrate(["car", "cat"], [0.5, 0.6], [True, True], class_names=["car"])
    with pytest.raises(ValueError, match="repeat"):
        calibrate(["car"], [0.5], [True], class_names=["car", "car"])
    with pytest.raises(ValueError, match="classes must have shape"):
        calibrate(["car"], [0.5, 0.6], [True, True], class_names=["car"])


CAL = Calibration(
    target_precision=0.9,
    thresholds={"car": 0.6, "person": None},
    global_threshold=0.5,
    support={"car": 30, "person": 30},
    estimated_precision={"car": 0.95, "person": None},
)


def test_auto_accept_images() -> None:
    rows = [
        ("c", "bike", 0.55),  # bike not calibrated on its own -> global 0.5: passes
        ("a", "car", 0.7),
        ("a", "car", 0.6),  # exactly at the threshold: passes
        ("b", "car", 0.7),
        ("b", "person", 0.99),  # person has no threshold: blocks b however confident
        ("d", "car", 0.59),  # below 0.6
        ("a", "car", 0.65),  # a seen again: still accepted, listed once
        ("e", "car", 0.99),
        ("e", "car", 0.1),  # one weak box blocks the image
    ]
    ids, classes, conf = zip(*rows, strict=True)
    assert auto_accept_images(ids, classes, np.array(conf), CAL) == ["c", "a"]


def test_auto_accept_without_global_threshold() -> None:
    cal = Calibration(
        target_precision=0.9,
        thresholds={"car": 0.6},
        global_threshold=None,
        support={"car": 30},
        estimated_precision={"car": 0.95},
    )
    assert auto_accept_images(["x", "y"], ["car", "bike"], [0.9, 0.9], cal) == ["x"]
    assert auto_accept_images([], [], [], cal) == []


def test_auto_accept_validation() -> None:
    with pytest.raises(ValueError, match="equal lengths"):
        auto_accept_images(["x"], ["car", "car"], [0.9, 0.9], CAL)
    with pytest.raises(ValueError, match="shape"):
        auto_accept_images(["x", "y"], ["car", "car"], [0.9], CAL)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        auto_accept_images(["x"], ["car"], [1.5], CAL)


IMAGES = [f"img{i:03d}" for i in range(100)]


@pytest.mark.parametrize(
    ("n", "rate", "expected"),
    [
        (100, 0.05, 5),
        (100, 0.07, 7),  # 0.07 * 100 == 7.000000000000001 in floats; must not become 8
        (3, 0.05, 1),  # ceil(0.15): at least one
        (41, 0.1, 5),  # ceil(4.1)
        (100, 0.0, 0),
        (100, 1.0, 100),
        (0, 0.5, 0),
    ],
)
def test_spot_check_count(n: int, rate: float, expected: int) -> None:
    assert len(sample_spot_checks(IMAGES[:n], rate=rate)) == expected


def test_spot_checks_deterministic_subset_in_input_order() -> None:
    first = sample_spot_checks(IMAGES, rate=0.2, seed=7)
    assert first == sample_spot_checks(IMAGES, rate=0.2, seed=7)
    assert first != sample_spot_checks(IMAGES, rate=0.2, seed=8)
    assert len(set(first)) == len(first)
    positions = [IMAGES.index(i) for i in first]
    assert positions == sorted(positions)
    assert sample_spot_checks(IMAGES, rate=1.0) == IMAGES


def test_spot_check_validation() -> None:
    with pytest.raises(ValueError, match="rate"):
        sample_spot_checks(IMAGES, rate=1.5)
    with pytest.raises(ValueError, match="rate"):
        sample_spot_checks(IMAGES, rate=float("nan"))
    with pytest.raises(ValueError, match="repeat"):
        sample_spot_checks(["a", "a"], rate=0.5)


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(min_value=0, max_value=120),
    percent=st.integers(min_value=0, max_value=100),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_spot_check_count_property(n: int, percent: int, seed: int) -> None:
    picked = sample_spot_checks([f"img{i}" for i in range(n)], rate=percent / 100, seed=seed)
    assert len(picked) == -(-percent * n // 100)  # exact integer ceil(percent * n / 100)


# Confidences on a coarse grid so ties are common.
_boxes = st.lists(
    st.tuples(st.integers(min_value=0, max_value=20).map(lambda i: i / 20), st.booleans()),
    max_size=60,
)


def _qualifies(conf: np.ndarray, ok: np.ndarray, t: float, target: float, min_support: int) -> bool:
    tail = conf >= t
    return bool(tail.sum() >= min_support and ok[tail].mean() >= target)


@settings(max_examples=300, deadline=None)
@given(
    boxes=_boxes,
    target=st.sampled_from([0.5, 0.7, 0.8, 0.9, 0.95, 1.0]),
    min_support=st.integers(min_value=1, max_value=10),
)
def test_threshold_is_valid_and_minimal(boxes: list[tuple[float, bool]], target: float, min_support: int) -> None:
    conf = np.array([c for c, _ in boxes], dtype=np.float64)
    ok = np.array([o for _, o in boxes], dtype=bool)
    t, p = precision_threshold(conf, ok, target_precision=target, min_support=min_support)
    qualifying = [c for c in np.unique(conf) if _qualifies(conf, ok, c, target, min_support)]
    if t is None:
        assert p is None
        assert qualifying == []
        return
    assert t in conf
    tail = conf >= t
    assert tail.sum() >= min_support
    assert p == ok[tail].mean() >= target
    assert t == min(qualifying)


@settings(max_examples=200, deadline=None)
@given(
    boxes=_boxes,
    target=st.sampled_from([0.5, 0.8, 0.9, 0.95]),
    min_support=st.integers(min_value=1, max_value=10),
    level=st.sampled_from([0.8, 0.95, 0.99]),
)
def test_wilson_never_more_permissive(
    boxes: list[tuple[float, bool]], target: float, min_support: int, level: float
) -> None:
    conf = np.array([c for c, _ in boxes], dtype=np.float64)
    ok = np.array([o for _, o in boxes], dtype=bool)
    kwargs = {"target_precision": target, "min_support": min_support}
    raw, _ = precision_threshold(conf, ok, **kwargs)
    strict, _ = precision_threshold(conf, ok, confidence_level=level, **kwargs)
    if strict is not None:
        assert raw is not None
        assert strict >= raw


def test_a_few_lucky_judged_images_open_the_gate_only_without_a_confidence_level() -> None:
    from labeling_dag.calibration.image_gate import image_threshold

    least = np.linspace(0.6, 0.99, 12)
    right = np.ones(12, dtype=bool)
    assert image_threshold(least, right, target_accuracy=0.95, min_support=10).threshold is not None
    # 12 of 12 right: the one-sided 90 % Wilson bound is about 0.88, short of 0.95.
    assert image_threshold(least, right, target_accuracy=0.95, min_support=10, confidence_level=0.9).threshold is None
    many = np.linspace(0.6, 0.99, 60)
    assert image_threshold(many, np.ones(60, bool), target_accuracy=0.95, confidence_level=0.9).threshold is not None
