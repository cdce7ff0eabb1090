"""Tests for the labeling_dag.quality_gates suites: each rule on crafted rows, empty and pandas-3 frames.

All tests share the module's cached GX context, so only the first validation pays for
importing great_expectations.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from labeling_dag.quality_gates.cleaned_images import IMAGE_COLUMNS, validate_cleaned_images
from labeling_dag.quality_gates.pre_labels import BOX_COLUMNS, validate_pre_labels
from labeling_dag.quality_gates.results import GateResult

CLASSES = ("cat", "dog")
HEX_A = "a" * 64
HEX_B = "0123456789abcdef" * 4
MODEL = "f" * 64


def _images() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "image_id": [HEX_A, HEX_B],
            "path": ["raw/a.jpg", "raw/b.png"],
            "width": [640, 1],
            "height": [480, 1],
            "is_exact_duplicate": [False, False],
            "is_near_duplicate": [False, True],
            "blur_variance": [153.2, 0.0],
            "contrast": [0.31, 1.0],
            "is_blurry": [False, True],
            "is_low_contrast": [False, False],
        }
    )


def _boxes() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "box_id": ["b0", "b1", "b2"],
            "image_id": [HEX_A, HEX_A, HEX_B],
            "class_name": ["cat", "dog", "cat"],
            "x": [0.5, 0.1, 0.9],
            "y": [0.5, 0.25, 0.75],
            "w": [1.0, 0.2, 0.2],
            "h": [0.4, 0.5, 0.5],
            "confidence": [0.9, 0.0, 1.0],
            "model_version": [MODEL, MODEL, MODEL],
            # Columns the gate must ignore, including one named like a derived edge column.
            "class_probs": [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]],
            "left": [-5.0, 7.0, None],
        }
    )


def _failed_counts(result: GateResult) -> dict[str, int]:
    return {o.detail: o.unexpected_count for o in result.failed()}


def _set(df: pd.DataFrame, row: int, column: str, value: object) -> pd.DataFrame:
    df.loc[row, column] = value
    return df


def test_valid_images_pass() -> None:
    result = validate_cleaned_images(_images())
    assert result.success, result.failed()
    assert result.suite == "cleaned_images"
    assert result.evaluated_rows == 2
    assert result.failed() == ()
    assert {o.column for o in result.outcomes} == set(IMAGE_COLUMNS)
    assert all(o.unexpected_count == 0 for o in result.outcomes)


def test_valid_boxes_pass_and_extra_columns_are_ignored() -> None:
    result = validate_pre_labels(_boxes(), class_names=CLASSES)
    assert result.success, result.failed()
    assert result.suite == "pre_labels"
    assert result.evaluated_rows == 3
    assert {o.column for o in result.outcomes} == set(BOX_COLUMNS) | {
        "left",
        "right",
        "top",
        "bottom",
    }


def test_outcomes_follow_suite_order_with_expectation_types() -> None:
    outcomes = validate_pre_labels(_boxes(), class_names=CLASSES).outcomes
    assert outcomes[0].detail == "box_id not null"
    assert outcomes[0].expectation == "expect_column_values_to_not_be_null"
    assert outcomes[-1].detail == "model_version is sha256 hex"
    assert outcomes[-1].expectation == "expect_column_values_to_match_regex"
    assert len({o.detail for o in outcomes}) == len(outcomes)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        pytest.param(
            lambda df: _set(df, 2, "x", 0.95),
            {"right edge x + w/2 in [0, 1]": 1},
            id="box-outside-right",
        ),
        pytest.param(
            lambda df: _set(df, 1, "y", 0.1),
            {"top edge y - h/2 in [0, 1]": 1},
            id="box-outside-top",
        ),
        pytest.param(lambda df: _set(df, 1, "w", 0.0), {"w in (0, 1]": 1}, id="zero-width"),
        pytest.param(
            lambda df: _set(df, 0, "h", 1.5),
            {"h in (0, 1]": 1, "top edge y - h/2 in [0, 1]": 1, "bottom edge y + h/2 in [0, 1]": 1},
            id="too-tall",
        ),
        pytest.param(
            lambda df: _set(df, 0, "class_name", "horse"),
            {"class_name in class_names": 1},
            id="unknown-class",
        ),
        pytest.param(
            lambda df: _set(df, 1, "confidence", 1.5),
            {"confidence between 0 and 1": 1},
            id="confidence-above-1",
        ),
        pytest.param(
            lambda df: _set(df, 2, "model_version", None),
            {"model_version not null": 1},
            id="missing-model-version",
        ),
        pytest.param(
            lambda df: _set(df, 0, "model_version", "yolov8n"),
            {"model_version is sha256 hex": 1},
            id="model-version-not-hex",
        ),
        pytest.param(lambda df: _set(df, 2, "box_id", "b0"), {"box_id unique": 2}, id="duplicate-box-id"),
        pytest.param(lambda df: _set(df, 1, "image_id", None), {"image_id not null": 1}, id="no-image-id"),
        # A NaN centre would slip through the range rules, which skip missing values.
        pytest.param(lambda df: _set(df, 0, "x", math.nan), {"x not null": 1}, id="nan-x"),
    ],
)
def test_each_box_rule_fails_on_a_bad_row(
    mutate: Callable[[pd.DataFrame], pd.DataFrame], expected: dict[str, int]
) -> None:
    result = validate_pre_labels(mutate(_boxes()), class_names=CLASSES)
    assert not result.success
    assert _failed_counts(result) == expected


def test_edges_within_tolerance_pass_and_beyond_it_fail() -> None:
    boxes = _boxes().iloc[:1].copy()
    boxes["w"] = 1.0 + 1e-7  # left edge -5e-8, right edge 1 + 5e-8: float32 rounding noise
    boxes["x"] = 0.5
    result = validate_pre_labels(boxes, class_names=CLASSES)
    assert _failed_counts(result) == {"w in (0, 1]": 1}

    boxes["w"] = 0.2
    boxes["x"] = 0.1 - 1e-5
    assert _failed_counts(validate_pre_labels(boxes, class_names=CLASSES)) == {"left edge x - w/2 in [0, 1]": 1}


def test_class_names_are_bound_per_validation() -> None:
    boxes = _boxes()
    assert validate_pre_labels(boxes, class_names=["cat", "dog"]).success
    result = validate_pre_labels(boxes, class_names=["dog"])
    assert _failed_counts(result) == {"class_name in class_names": 2}
    assert validate_pre_labels(boxes, class_names=("cat", "dog", "bird")).success


def test_class_names_as_single_string_is_rejected() -> None:
    with pytest.raises(TypeError, match="sequence of names"):
        validate_pre_labels(_boxes(), class_names="cat")


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        pytest.param(
            lambda df: _set(df, 0, "image_id", "A" * 64),
            {"image_id is sha256 hex": 1},
            id="uppercase-image-id",
        ),
        pytest.param(
            lambda df: _set(df, 1, "image_id", "abc"),
            {"image_id is sha256 hex": 1},
            id="short-image-id",
        ),
        pytest.param(lambda df: _set(df, 1, "image_id", HEX_A), {"image_id unique": 2}, id="duplicate-image"),
        pytest.param(
            lambda df: _set(df, 0, "contrast", 1.2),
            {"contrast between 0 and 1": 1},
            id="contrast-above-1",
        ),
        pytest.param(
            lambda df: _set(df, 1, "blur_variance", -0.5),
            {"blur_variance >= 0": 1},
            id="negative-blur",
        ),
        pytest.param(lambda df: _set(df, 0, "width", 0), {"width >= 1": 1}, id="zero-width"),
        pytest.param(lambda df: _set(df, 0, "path", None), {"path not null": 1}, id="no-path"),
    ],
)
def test_each_image_rule_fails_on_a_bad_row(
    mutate: Callable[[pd.DataFrame], pd.DataFrame], expected: dict[str, int]
) -> None:
    result = validate_cleaned_images(mutate(_images()))
    assert not result.success
    assert _failed_counts(result) == expected


@pytest.mark.parametrize(
    "empty",
    [
        pytest.param(lambda df: df.iloc[:0], id="typed-columns"),
        pytest.param(lambda df: pd.DataFrame([]), id="no-columns"),
    ],
)
def test_empty_tables_pass(empty: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
    images = validate_cleaned_images(empty(_images()))
    boxes = validate_pre_labels(empty(_boxes()), class_names=CLASSES)
    for result in (images, boxes):
        assert result.success, result.failed()
        assert result.evaluated_rows == 0
        assert result.outcomes


def test_missing_column_in_non_empty_table_raises() -> None:
    with pytest.raises(ValueError, match=r"pre_labels table lacks columns \['confidence'\]"):
        validate_pre_labels(_boxes().drop(columns="confidence"), class_names=CLASSES)


def test_column_gx_cannot_evaluate_raises_instead_of_reporting() -> None:
    images = _images()
    images["width"] = images["width"].astype(str)
    with pytest.raises(RuntimeError, match=r"could not evaluate 'width >= 1'"):
        validate_cleaned_images(images)


@pytest.mark.parametrize("dtype", ["str", "string", "string[pyarrow]"])
def test_pandas_string_dtypes(dtype: str) -> None:
    boxes = _boxes()
    text_columns = ["box_id", "image_id", "class_name", "model_version"]
    boxes[text_columns] = boxes[text_columns].astype(dtype)
    assert validate_pre_labels(boxes, class_names=CLASSES).success

    # Missing values in string dtypes are pd.NA or NaN, not None.
    boxes.loc[1, "model_version"] = None
    boxes.loc[2, "class_name"] = "horse"
    assert boxes["model_version"].dtype == dtype
    assert _failed_counts(validate_pre_labels(boxes, class_names=CLASSES)) == {
        "model_version not null": 1,
        "class_name in class_names": 1,
    }

    images = _images()
    images[["image_id", "path"]] = images[["image_id", "path"]].astype(dtype)
    images.loc[0, "image_id"] = "not-a-digest"
    assert _failed_counts(validate_cleaned_images(images)) == {"image_id is sha256 hex": 1}


def test_as_metadata_is_flat_and_json_serialisable() -> None:
    result = validate_pre_labels(_set(_boxes(), 0, "confidence", 1.5), class_names=CLASSES)
    metadata = json.loads(json.dumps(result.as_metadata()))
    assert metadata["evaluated_rows"] == 3
    assert metadata["confidence between 0 and 1"] == {"success": False, "unexpected_count": 1}
    assert metadata["x between 0 and 1"] == {"success": True, "unexpected_count": 0}
    assert len(metadata) == len(result.outcomes) + 1


def test_validation_prints_nothing(capfd: pytest.CaptureFixture[str]) -> None:
    validate_cleaned_images(_images())
    validate_pre_labels(_boxes(), class_names=CLASSES)
    out, err = capfd.readouterr()
    assert out == ""
    assert err == ""


def test_module_import_does_not_import_great_expectations() -> None:
    # A fresh interpreter, since this test process has imported GX already.
    suites = ("cleaned_images", "pre_labels", "review_quality", "verified_labels")
    code = (
        "import importlib, sys\n"
        f"for suite in {suites!r}:\n"
        "    importlib.import_module(f'labeling_dag.quality_gates.{suite}')\n"
        "assert 'great_expectations' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent)
