"""Tests for labeling_dag.image_decoding, image_quality and near_duplicates: rejections,
normalisation, scores, deduplication."""

from __future__ import annotations

import pickle
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from labeling_dag import near_duplicates
from labeling_dag.image_decoding import load_image
from labeling_dag.image_quality import InspectedImage, inspect_image, is_blurry, is_low_contrast
from labeling_dag.near_duplicates import find_near_duplicates, phash_distance
from labeling_dag.rejects import ImageRejected
from tests.bad_images import write_bad_images, write_good_images, write_special_images

REJECT_REASONS = (
    "zero_byte",
    "truncated",
    "not_an_image",
    "decompression_bomb",
    "too_small",
    "unsupported_format",
)


@pytest.fixture(scope="module")
def bad_images(tmp_path_factory: pytest.TempPathFactory) -> dict[Path, str]:
    folder = tmp_path_factory.mktemp("bad")
    return {folder / name: reason for name, reason in write_bad_images(folder).items()}


@pytest.fixture(scope="module")
def good_images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_good_images(tmp_path_factory.mktemp("good"), 20)


@pytest.fixture(scope="module")
def special_images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("special")
    return {kind: folder / name for name, kind in write_special_images(folder).items()}


@pytest.fixture(scope="module")
def inspected_specials(
    special_images: dict[str, Path],
) -> dict[str, tuple[Image.Image, InspectedImage]]:
    return {kind: inspect_image(path) for kind, path in special_images.items()}


# --- rejections -------------------------------------------------------------------------


@pytest.mark.parametrize("reason", REJECT_REASONS)
def test_each_bad_kind_is_rejected_with_its_reason_and_names_the_file(bad_images: dict[Path, str], reason: str) -> None:
    paths = [path for path, expected in bad_images.items() if expected == reason]
    assert paths, f"write_bad_images wrote no file for {reason}"
    for path in paths:
        for decode in (load_image, inspect_image):
            with pytest.raises(ImageRejected) as caught:
                decode(path)
            assert caught.value.reason == reason
            assert caught.value.path == path
            assert str(caught.value).startswith(f"{path}: ")
            assert len(str(caught.value)) > len(f"{path}: ")


def test_truncation_message_quotes_pillow(bad_images: dict[Path, str]) -> None:
    path = next(p for p in bad_images if p.name == "truncated.jpg")
    pattern = r"truncated\.jpg: truncated or corrupt image data \(image file is truncated"
    with pytest.raises(ImageRejected, match=pattern):
        load_image(path)


def test_bomb_is_rejected_from_the_header_even_with_pillows_guard_disabled(
    bad_images: dict[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bomb = next(p for p, reason in bad_images.items() if reason == "decompression_bomb")
    assert bomb.stat().st_size < 1_000
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    started = time.perf_counter()
    with pytest.raises(ImageRejected) as caught:
        inspect_image(bomb)
    assert time.perf_counter() - started < 1.0
    assert caught.value.reason == "decompression_bomb"
    # Our own message, not Pillow's: the header check ran before any decoding.
    assert "20000x20000" in str(caught.value)


def test_max_pixels_is_an_inclusive_limit(good_images: list[Path]) -> None:
    assert load_image(good_images[0], max_pixels=64 * 64).size == (64, 64)
    with pytest.raises(ImageRejected) as caught:
        load_image(good_images[0], max_pixels=64 * 64 - 1)
    assert caught.value.reason == "decompression_bomb"


def test_pillows_bomb_warning_rejects_without_leaking_filters(
    good_images: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # 64 x 64 = 4096 pixels lies between Pillow's warning (3000) and error (6000) limits.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)
    filters_before = list(warnings.filters)
    with pytest.raises(ImageRejected) as caught:
        load_image(good_images[0])
    assert caught.value.reason == "decompression_bomb"
    assert warnings.filters == filters_before
    assert Image.MAX_IMAGE_PIXELS == 3000


@pytest.mark.parametrize(("size", "accepted"), [((8, 8), True), ((7, 200), False), ((200, 7), False)])
def test_minimum_side(tmp_path: Path, size: tuple[int, int], accepted: bool) -> None:
    path = tmp_path / "small.png"
    Image.new("RGB", size, (10, 200, 30)).save(path)
    if accepted:
        assert load_image(path).size == size
    else:
        with pytest.raises(ImageRejected) as caught:
            load_image(path)
        assert caught.value.reason == "too_small"


def test_unopenable_paths_are_unreadable(tmp_path: Path) -> None:
    directory = tmp_path / "folder.jpg"
    directory.mkdir()
    for path in (directory, tmp_path / "missing.jpg"):
        with pytest.raises(ImageRejected) as caught:
            load_image(path)
        assert caught.value.reason == "unreadable"
        assert str(caught.value).startswith(f"{path}: ")


def test_rejection_survives_pickling(bad_images: dict[Path, str]) -> None:
    with pytest.raises(ImageRejected) as caught:
        load_image(next(iter(bad_images)))
    copy = pickle.loads(pickle.dumps(caught.value))
    assert (copy.reason, copy.path, str(copy)) == (
        caught.value.reason,
        caught.value.path,
        str(caught.value),
    )


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=2048))
def test_random_bytes_raise_only_image_rejected(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.getbasetemp() / "random.jpg"
    path.write_bytes(data)
    try:
        load_image(path)
    except ImageRejected:
        pass


_VALID_ENCODINGS = [
    ("JPEG", {}),
    ("PNG", {}),
    ("WEBP", {}),
    ("BMP", {}),
    ("TIFF", {"compression": "tiff_lzw"}),
]


@settings(max_examples=300, deadline=None)
@given(
    encoding=st.sampled_from(_VALID_ENCODINGS),
    cut=st.floats(0.0, 1.0),
    flips=st.lists(st.tuples(st.floats(0.0, 1.0, exclude_max=True), st.integers(0, 255)), max_size=8),
)
def test_damaged_valid_files_are_decoded_or_rejected(
    tmp_path_factory: pytest.TempPathFactory,
    encoding: tuple[str, dict[str, str]],
    cut: float,
    flips: list[tuple[float, int]],
) -> None:
    image_format, params = encoding
    source = Image.radial_gradient("L").resize((48, 40)).convert("RGB")
    path = tmp_path_factory.getbasetemp() / "damaged.img"
    source.save(path, image_format, **params)
    data = bytearray(path.read_bytes())
    for position, value in flips:
        data[int(position * len(data))] = value
    path.write_bytes(bytes(data[: max(1, int(cut * len(data)))]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns about the corrupt EXIF it skips
        try:
            assert load_image(path).mode == "RGB"
        except ImageRejected:
            pass


# --- accepted images and their normalisation ---------------------------------------------


def test_good_images_are_clean_rgb(good_images: list[Path]) -> None:
    for path in good_images:
        image, info = inspect_image(path)
        assert image.mode == "RGB"
        assert (info.width, info.height) == image.size == (64, 64)
        assert not info.exif_transposed
        assert info.converted_mode is None
        assert len(info.phash) == 16
        assert not is_blurry(info.blur_variance)
        assert not is_low_contrast(info.contrast)


def test_every_special_image_is_accepted_as_rgb(
    inspected_specials: dict[str, tuple[Image.Image, InspectedImage]],
) -> None:
    for kind, (image, info) in inspected_specials.items():
        assert image.mode == "RGB", kind
        assert image.size == (info.width, info.height), kind


def test_exif_orientation_is_applied(
    special_images: dict[str, Path],
    inspected_specials: dict[str, tuple[Image.Image, InspectedImage]],
) -> None:
    image, info = inspected_specials["exif_rotated"]
    assert info.exif_transposed
    assert (info.width, info.height) == (64, 96)  # stored 96 wide x 64 high
    with Image.open(special_images["exif_rotated"]) as stored:
        assert stored.size == (96, 64)
        # Orientation 6 means "rotate 90 degrees clockwise to display".
        expected = np.asarray(stored.convert("RGB").transpose(Image.Transpose.ROTATE_270))
    assert np.array_equal(np.asarray(image), expected)


@pytest.mark.parametrize(
    ("kind", "converted_mode"),
    [
        ("cmyk", "CMYK"),
        ("grey16", "I;16"),
        ("palette_transparent", "P"),
        ("png_named_jpg", None),
        ("near_duplicate", None),
        ("exif_rotated", None),
    ],
)
def test_converted_mode_records_the_decoded_mode(
    inspected_specials: dict[str, tuple[Image.Image, InspectedImage]],
    kind: str,
    converted_mode: str | None,
) -> None:
    _, info = inspected_specials[kind]
    assert info.converted_mode == converted_mode
    assert info.exif_transposed == (kind == "exif_rotated")


def test_sixteen_bit_grey_is_scaled_not_clipped(
    special_images: dict[str, Path],
    inspected_specials: dict[str, tuple[Image.Image, InspectedImage]],
) -> None:
    pixels = np.asarray(inspected_specials["grey16"][0])
    with Image.open(special_images["grey16"]) as stored:
        raw = np.asarray(stored).astype(np.float64)
    assert raw.max() > 60_000  # the fixture really uses the 16-bit range
    assert np.array_equal(pixels[..., 0], pixels[..., 1])
    assert pixels.min() < 64 and pixels.max() > 192
    assert (pixels == 255).mean() < 0.5
    assert abs(pixels.mean() - raw.mean() / 257) < 1.0


def test_palette_transparency_is_composited_on_white(
    inspected_specials: dict[str, tuple[Image.Image, InspectedImage]],
) -> None:
    pixels = np.asarray(inspected_specials["palette_transparent"][0])
    assert (pixels[:, :32] == 255).all()  # transparent half; its palette colour is black
    assert (pixels[:, 32:] != 255).any()


def test_cmyk_is_converted_to_matching_rgb(
    special_images: dict[str, Path],
    inspected_specials: dict[str, tuple[Image.Image, InspectedImage]],
) -> None:
    with Image.open(special_images["cmyk"]) as stored:
        assert stored.mode == "CMYK"
        expected = np.asarray(stored.convert("RGB"), dtype=np.int16)
    assert np.array_equal(np.asarray(inspected_specials["cmyk"][0], dtype=np.int16), expected)


@pytest.mark.parametrize(
    ("mode", "image_format"),
    [("L", "PNG"), ("1", "BMP"), ("LA", "PNG"), ("RGBA", "WEBP"), ("F", "TIFF"), ("I", "TIFF")],
)
def test_other_modes_become_rgb(tmp_path: Path, mode: str, image_format: str) -> None:
    grey = np.asarray(Image.linear_gradient("L").resize((32, 24)))
    if mode in ("F", "I"):
        source = Image.fromarray(grey.astype(np.float32 if mode == "F" else np.int32) * 1000 - 5000)
    else:
        source = Image.fromarray(grey).convert(mode)
    if mode in ("LA", "RGBA"):
        source.putalpha(0)  # fully transparent: must come out white
    path = tmp_path / f"image.{image_format.lower()}"
    source.save(path, image_format, **({"lossless": True} if image_format == "WEBP" else {}))
    image, info = inspect_image(path)
    assert image.mode == "RGB"
    assert info.converted_mode == source.mode
    pixels = np.asarray(image)
    if mode in ("LA", "RGBA"):
        assert (pixels == 255).all()
    if mode in ("F", "I"):  # no declared bit depth: the observed range is stretched
        assert (pixels.min(), pixels.max()) == (0, 255)


def test_returned_image_does_not_depend_on_the_file(good_images: list[Path], tmp_path: Path) -> None:
    path = tmp_path / "moved.png"
    path.write_bytes(good_images[0].read_bytes())
    image = load_image(path)
    path.unlink()
    assert np.asarray(image).shape == (64, 64, 3)


# --- scores ------------------------------------------------------------------------------


def test_scores_follow_their_definitions(good_images: list[Path]) -> None:
    image, info = inspect_image(good_images[0])
    grey = np.asarray(image.convert("L"))
    assert info.blur_variance == pytest.approx(cv2.Laplacian(grey, cv2.CV_64F).var())
    assert info.contrast == pytest.approx(grey.std() / 255)
    assert 0.0 <= info.contrast <= 0.5


def test_blur_and_contrast_flags_on_crafted_images(
    inspected_specials: dict[str, tuple[Image.Image, InspectedImage]],
) -> None:
    blurry = inspected_specials["blurry"][1]
    assert is_blurry(blurry.blur_variance)
    assert not is_low_contrast(blurry.contrast)
    assert is_low_contrast(inspected_specials["low_contrast"][1].contrast)
    original = inspected_specials["original"][1]
    assert not is_blurry(original.blur_variance)
    assert not is_low_contrast(original.contrast)


def test_thresholds_are_strict_lower_bounds() -> None:
    assert is_blurry(99.9) and not is_blurry(100.0)
    assert is_blurry(150.0, threshold=200.0)
    assert is_low_contrast(0.049) and not is_low_contrast(0.05)
    assert not is_low_contrast(0.05, threshold=0.01)


# --- hashes and near-duplicates ----------------------------------------------------------


def test_phash_distance() -> None:
    assert phash_distance("be3f33361862c7c0", "be3f33361862c7c0") == 0
    assert phash_distance("0" * 16, "f" * 16) == 64
    assert phash_distance("0000000000000001", "0000000000000003") == 1
    assert phash_distance("0000000000000001", "8000000000000000") == 2
    with pytest.raises(ValueError):
        phash_distance("00", "0000")
    with pytest.raises(ValueError):
        phash_distance("zz", "00")


def test_duplicates_found_among_real_images(
    good_images: list[Path],
    inspected_specials: dict[str, tuple[Image.Image, InspectedImage]],
) -> None:
    kinds = [f"good{i}" for i in range(len(good_images))] + list(inspected_specials)
    hashes = [inspect_image(path)[1].phash for path in good_images] + [
        info.phash for _, info in inspected_specials.values()
    ]
    duplicate_of = find_near_duplicates(hashes)
    found = {kinds[i]: kinds[j] for i, j in enumerate(duplicate_of) if j is not None}
    assert found == {"exact_duplicate": "original", "near_duplicate": "original"}
    assert phash_distance(inspected_specials["original"][1].phash, inspected_specials["exact_duplicate"][1].phash) == 0


def test_reference_hashes_come_first_in_the_index() -> None:
    a, b, c = "0000000000000000", "00000000ffffffff", "ffffffffffffffff"
    near_b = "00000000fffffff0"
    assert find_near_duplicates([near_b, c, c], reference=[a, b]) == [1, None, 3]
    assert find_near_duplicates([a], reference=[a, a]) == [0]


def test_only_kept_images_count_as_originals() -> None:
    # B is 4 bits from A, C is 4 bits from B but 8 from A: B goes, so C stays.
    a, b, c = "0000000000000000", "000000000000000f", "00000000000000ff"
    assert find_near_duplicates([a, b, c], max_distance=6) == [None, 0, None]
    assert find_near_duplicates([a, b, c], max_distance=8) == [None, 0, 0]
    assert find_near_duplicates([a, b, c], max_distance=3) == [None, None, None]


def test_near_duplicate_edge_cases() -> None:
    assert find_near_duplicates([]) == []
    assert find_near_duplicates([], reference=["00"]) == []
    assert find_near_duplicates(["0f", "0f"], max_distance=0) == [None, 0]
    with pytest.raises(ValueError):
        find_near_duplicates(["00", "0000"])
    with pytest.raises(ValueError):
        find_near_duplicates(["00"], reference=["0000"])
    with pytest.raises(ValueError):
        find_near_duplicates(["00"], max_distance=-1)


def _brute_force(phashes: list[str], reference: list[str], max_distance: int) -> list[int | None]:
    hashes = [*reference, *phashes]
    kept = [True] * len(reference)
    result: list[int | None] = []
    for index in range(len(reference), len(hashes)):
        match = next(
            (k for k in range(index) if kept[k] and phash_distance(hashes[k], hashes[index]) <= max_distance),
            None,
        )
        result.append(match)
        kept.append(match is None)
    return result


def _clustered_hashes(rng: np.random.Generator, n: int, n_bytes: int) -> list[str]:
    """Random hashes where about a third are copies of an earlier one with 0-8 bits flipped."""
    hashes: list[bytes] = []
    for _ in range(n):
        if hashes and rng.random() < 0.35:
            value = bytearray(hashes[rng.integers(len(hashes))])
            for bit in rng.choice(8 * n_bytes, rng.integers(0, 9), replace=False):
                value[bit // 8] ^= 1 << (bit % 8)
            hashes.append(bytes(value))
        else:
            hashes.append(rng.bytes(n_bytes))
    return [h.hex() for h in hashes]


@pytest.mark.parametrize("block_elements", [1, 37, 1 << 22])
@pytest.mark.parametrize("n_bytes", [8, 32])
def test_vectorised_search_matches_brute_force(
    monkeypatch: pytest.MonkeyPatch, block_elements: int, n_bytes: int
) -> None:
    # Tiny blocks force many block boundaries, where the kept set carries over.
    monkeypatch.setattr(near_duplicates, "_BLOCK_ELEMENTS", block_elements)
    rng = np.random.default_rng(n_bytes)
    hashes = _clustered_hashes(rng, 260, n_bytes)
    reference, phashes = hashes[:40], hashes[40:]
    expected = _brute_force(phashes, reference, 6)
    assert any(index is not None and index < 40 for index in expected)
    assert any(index is not None and index >= 40 for index in expected)
    assert find_near_duplicates(phashes, reference=reference, max_distance=6) == expected


def test_ten_thousand_hashes_are_fast() -> None:
    rng = np.random.default_rng(0)
    hashes = [rng.bytes(8).hex() for _ in range(10_000)]
    started = time.perf_counter()
    assert find_near_duplicates(hashes[:5_000] + hashes[:5_000])[5_000:] == list(range(5_000))
    assert time.perf_counter() - started < 10.0


def test_html_saved_as_jpg_is_not_an_image_even_after_ultralytics_patches_pillow(tmp_path):
    """Ultralytics wraps Image.open with a HEIF-plugin installer; content sniffing must not go through it."""
    from labeling_dag.ultralytics_env import configure_offline

    configure_offline()
    import ultralytics.utils.patches  # noqa: F401  (applies the Image.open patch)

    page = tmp_path / "page.jpg"
    page.write_text("<!DOCTYPE html><html><body>not a picture</body></html>")
    with pytest.raises(ImageRejected) as caught:
        inspect_image(page)
    assert caught.value.reason == "not_an_image"
