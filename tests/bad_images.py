"""Writers of image files for the image-quality tests: good, broken and awkward-but-valid.

Everything is generated from fixed seeds, so every call writes byte-identical files, and
everything is small (the decompression bomb is a few dozen bytes on disk).
"""

from __future__ import annotations

import io
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

# Offset for the seeds of special images so that they never reuse the content of
# write_good_images(seed=0..), which would make them near-duplicates of good images.
_SPECIAL_SEED = 1_000_000


def write_good_images(folder: Path, n: int, *, seed: int = 0, size: int = 64) -> list[Path]:
    """Write ``n`` sharp, textured, mutually distinct RGB PNGs of ``size`` x ``size``.

    Image ``i`` depends only on ``(seed, i)``. Files are ``good_{seed}_{i:04d}.png``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(n):
        path = folder / f"good_{seed}_{index:04d}.png"
        _textured(np.random.default_rng([seed, index]), (size, size)).save(path)
        paths.append(path)
    return paths


def write_bad_images(folder: Path) -> dict[str, str]:
    """Write one unusable file per failure kind; return {file name: expected reject reason}."""
    folder.mkdir(parents=True, exist_ok=True)
    source = _textured(np.random.default_rng([_SPECIAL_SEED, 0]), (64, 64))
    jpeg, png = _encode(source, "JPEG", quality=90), _encode(source, "PNG")
    rng = np.random.default_rng([_SPECIAL_SEED, 1])
    files = {
        "zero_byte.jpg": (b"", "zero_byte"),
        "truncated.jpg": (jpeg[: len(jpeg) // 2], "truncated"),
        "truncated.png": (png[: len(png) // 2], "truncated"),
        "truncated.webp": (_encode(source, "WEBP")[:60], "truncated"),
        "truncated.tif": (_encode(source, "TIFF")[:200], "truncated"),
        "html_page.jpg": (
            b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head><body><h1>Not Found</h1></body></html>\n",
            "not_an_image",
        ),
        "random_bytes.png": (rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(), "not_an_image"),
        "png_signature_only.png": (b"\x89PNG\r\n\x1a\n", "not_an_image"),
        "document.jpg": (
            b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n",
            "not_an_image",
        ),
        "drawing.png": (
            b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="64" height="64">'
            b'<rect width="64" height="64"/></svg>',
            "not_an_image",
        ),
        "bomb.png": (_header_only_png(20_000, 20_000), "decompression_bomb"),
        "bomb_header.jpg": (_jpeg_declaring(jpeg, 20_000, 20_000), "decompression_bomb"),
        "zlib_bomb.png": (_zero_png(8_000, 8_000), "decompression_bomb"),
        "one_pixel.png": (_encode(Image.new("RGB", (1, 1), (200, 30, 30)), "PNG"), "too_small"),
        "thin_strip.png": (_encode(Image.new("RGB", (4000, 4), (200, 30, 30)), "PNG"), "too_small"),
        "animation.jpg": (_encode(source.resize((16, 16)), "GIF"), "unsupported_format"),
        "icon.png": (_encode(source.resize((32, 32)), "ICO"), "unsupported_format"),
    }
    for name, (data, _) in files.items():
        (folder / name).write_bytes(data)
    return {name: reason for name, (_, reason) in files.items()}


def write_exif_orientations(folder: Path) -> tuple[Image.Image, dict[str, int]]:
    """Write the same picture stored under every EXIF orientation; return it upright and {file name: orientation}.

    ``orientation_<n>.png`` holds the upright 48 x 32 picture transformed so that applying
    orientation ``n`` shows it upright again (lossless PNG, so the decoded pixels must equal
    the upright picture exactly). ``orientation_invalid.png`` carries the out-of-range value
    9, which readers ignore: it is stored, and must come back, as it is.
    """
    folder.mkdir(parents=True, exist_ok=True)
    upright = _textured(np.random.default_rng([_SPECIAL_SEED, 200]), (48, 32))
    # The transform orientation n undoes (ImageOps.exif_transpose applies the inverse).
    stored_as = {
        1: None,
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_90,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_270,
    }
    written = {}
    for orientation, transform in stored_as.items():
        exif = Image.Exif()
        exif[0x0112] = orientation
        stored = upright if transform is None else upright.transpose(transform)
        stored.save(folder / f"orientation_{orientation}.png", exif=exif)
        written[f"orientation_{orientation}.png"] = orientation
    exif = Image.Exif()
    exif[0x0112] = 9
    _textured(np.random.default_rng([_SPECIAL_SEED, 201]), (48, 32)).save(folder / "orientation_invalid.png", exif=exif)
    written["orientation_invalid.png"] = 9
    return upright, written


def write_special_images(folder: Path) -> dict[str, str]:
    """Write valid but awkward images that must be accepted; return {file name: kind}.

    Kinds: ``original`` (sharp RGB PNG), ``exact_duplicate`` (a byte copy of it),
    ``near_duplicate`` (it re-encoded as JPEG quality 70 and 5 % brighter), ``blurry``,
    ``low_contrast``, ``exif_rotated`` (stored 96 wide x 64 high with EXIF orientation 6,
    so 64 wide x 96 high once upright), ``cmyk`` (CMYK JPEG), ``grey16`` (16-bit PNG using
    the full 0..65535 range), ``palette_transparent`` (palette PNG whose left half is
    transparent) and ``png_named_jpg``. Each kind other than the duplicates has its own
    content, so only the duplicates are near-duplicates of anything.
    """
    folder.mkdir(parents=True, exist_ok=True)

    def content(index: int, size: tuple[int, int] = (64, 64)) -> Image.Image:
        return _textured(np.random.default_rng([_SPECIAL_SEED, 100 + index]), size)

    original = content(0)
    original.save(folder / "original.png")
    shutil.copyfile(folder / "original.png", folder / "exact_duplicate.png")
    ImageEnhance.Brightness(original).enhance(1.05).save(folder / "near_duplicate.jpg", quality=70)
    content(1).filter(ImageFilter.GaussianBlur(radius=4)).save(folder / "blurry.png")

    noise = np.random.default_rng([_SPECIAL_SEED, 2]).integers(-2, 3, (64, 64, 3))
    Image.fromarray((128 + noise).astype(np.uint8)).save(folder / "low_contrast.png")

    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    content(3, (96, 64)).save(folder / "exif_rotated.jpg", quality=95, exif=exif)

    content(4).convert("CMYK").save(folder / "cmyk.jpg", quality=95)

    grey = np.asarray(content(5).convert("L"), dtype=np.uint16) * 257  # 0..255 -> 0..65535
    Image.fromarray(grey).save(folder / "grey16.png")  # Pillow stores uint16 as 16-bit PNG

    quantized = content(6).quantize(colors=16)
    pixels = np.asarray(quantized).copy()
    pixels[:, :32] = 16  # an index the quantizer did not use, declared transparent below
    palette_image = Image.fromarray(pixels, mode="P")
    # Black under the transparent index: flattening must show white there, not black.
    colours = quantized.getpalette() or []
    palette_image.putpalette(colours + [0] * (3 * 256 - len(colours)))
    palette_image.save(folder / "palette_transparent.png", transparency=16)

    content(7).save(folder / "png_named_jpg.jpg", format="PNG")

    return {
        "original.png": "original",
        "exact_duplicate.png": "exact_duplicate",
        "near_duplicate.jpg": "near_duplicate",
        "blurry.png": "blurry",
        "low_contrast.png": "low_contrast",
        "exif_rotated.jpg": "exif_rotated",
        "cmyk.jpg": "cmyk",
        "grey16.png": "grey16",
        "palette_transparent.png": "palette_transparent",
        "png_named_jpg.jpg": "png_named_jpg",
    }


def _textured(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """Random filled shapes over per-pixel noise: sharp edges, texture, distinct layout."""
    width, height = size
    noise = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    image = Image.fromarray(noise)
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x0, x1 = sorted(rng.integers(0, width, 2).tolist())
        y0, y1 = sorted(rng.integers(0, height, 2).tolist())
        colour = tuple(rng.integers(0, 256, 3).tolist())
        box = (x0, y0, x1 + width // 8, y1 + height // 8)
        if rng.random() < 0.5:
            draw.rectangle(box, fill=colour)
        else:
            draw.ellipse(box, fill=colour)
    return image


def _encode(image: Image.Image, image_format: str, **params: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **params)
    return buffer.getvalue()


def _header_only_png(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` 1-bit grey pixels but holds almost none.

    Decoding it would need width * height bytes in Pillow's 8-bit "1" mode (400 MB for
    20000 x 20000); only a header check can reject it without that allocation.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def _jpeg_declaring(jpeg: bytes, width: int, height: int) -> bytes:
    """``jpeg`` with its frame header (SOF0) claiming ``width`` x ``height``; the data stays small."""
    at = jpeg.index(b"\xff\xc0") + 5  # marker (2), segment length (2), precision (1)
    return jpeg[:at] + struct.pack(">HH", height, width) + jpeg[at + 4 :]


def _zero_png(width: int, height: int) -> bytes:
    """A complete, valid 1-bit PNG of ``width`` x ``height`` black pixels: kilobytes that inflate to megabytes."""
    row = b"\x00" + b"\x00" * -(-width // 8)  # filter byte, then packed pixels

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(row * height, 9))
        + chunk(b"IEND", b"")
    )
