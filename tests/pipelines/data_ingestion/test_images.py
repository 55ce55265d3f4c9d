"""The one decoder on every kind of good and broken file."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from transfer_lab.data import imaging


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims width x height (a decompression bomb shape)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize(
    "fmt,mode,suffix",
    [
        ("JPEG", "RGB", ".jpg"),
        ("JPEG", "L", ".jpg"),
        ("JPEG", "CMYK", ".jpg"),
        ("PNG", "RGBA", ".png"),
        ("PNG", "P", ".png"),
        ("PNG", "RGB", ".jpg"),  # PNG bytes behind a .jpg name
        ("GIF", "P", ".jpg"),  # GIF bytes behind a .jpg name
        ("BMP", "RGB", ".bmp"),
        ("WEBP", "RGB", ".webp"),
    ],
)
def test_good_images_decode_to_rgb(tmp_path, make_image, fmt, mode, suffix):
    path = make_image(tmp_path / f"x{suffix}", size=(70, 50), fmt=fmt, mode=mode)
    info = imaging.inspect_image(path)
    assert (info.width, info.height) == (70, 50)
    assert info.format == fmt
    arr = imaging.load_rgb(path)
    assert arr.shape == (50, 70, 3) and arr.dtype == np.uint8
    assert imaging.load_rgb(path, 32).shape == (32, 32, 3)


def test_sixteen_bit_and_alpha(tmp_path):
    arr16 = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16)
    Image.fromarray(arr16).save(tmp_path / "deep.png")
    out = imaging.load_rgb(tmp_path / "deep.png")
    assert out.shape == (64, 64, 3) and out.max() > 200  # scaled, not clipped to black/white
    rgba = np.zeros((40, 40, 4), np.uint8)  # fully transparent black -> white background
    Image.fromarray(rgba, "RGBA").save(tmp_path / "clear.png")
    assert imaging.load_rgb(tmp_path / "clear.png").min() == 255


def _rejected(path, **kw) -> imaging.ImageRejected:
    with pytest.raises(imaging.ImageRejected) as err:
        imaging.inspect_image(path, **kw)
    return err.value


def test_broken_files_are_rejected_with_reasons(tmp_path, make_image):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    assert _rejected(empty).reason == imaging.EMPTY

    good = make_image(tmp_path / "good.jpg", size=(200, 150))
    data = good.read_bytes()
    trunc = tmp_path / "trunc.jpg"
    trunc.write_bytes(data[: len(data) // 2])
    assert _rejected(trunc).reason == imaging.TRUNCATED

    png = make_image(tmp_path / "good.png", size=(200, 150), fmt="PNG")
    tpng = tmp_path / "trunc.png"
    tpng.write_bytes(png.read_bytes()[: len(png.read_bytes()) // 2])
    assert _rejected(tpng).reason in (imaging.TRUNCATED, imaging.CORRUPT)

    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(data[:200] + bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8)))
    assert _rejected(corrupt).reason in (imaging.CORRUPT, imaging.TRUNCATED)

    thumbs = tmp_path / "Thumbs.db"
    thumbs.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 500)
    err = _rejected(thumbs)
    assert err.reason == imaging.NOT_IMAGE and "Thumbs.db" in err.detail

    html = tmp_path / "error.jpg"
    html.write_text("<!DOCTYPE html><html><body>404 Not Found</body></html>")
    err = _rejected(html)
    assert err.reason == imaging.NOT_IMAGE and "HTML" in err.detail

    text = tmp_path / "notes.jpg"
    text.write_text("just some text\n" * 20)
    assert _rejected(text).reason == imaging.NOT_IMAGE

    tiny = make_image(tmp_path / "tiny.jpg", size=(20, 300))
    assert _rejected(tiny).reason == imaging.TOO_SMALL
    assert imaging.inspect_image(tiny, min_side=16).width == 20

    bomb = _png_header_only(tmp_path / "bomb.png", 40000, 40000)
    err = _rejected(bomb)
    assert err.reason == imaging.TOO_LARGE
    big = make_image(tmp_path / "big.png", size=(300, 300), fmt="PNG")
    assert _rejected(big, max_pixels=50_000).reason == imaging.TOO_LARGE

    assert _rejected(tmp_path / "missing.jpg").reason == imaging.UNREADABLE


def test_save_png_round_trip_is_exact(tmp_path):
    rng = np.random.default_rng(1)
    arr = rng.uniform(-10, 265, size=(16, 20, 3))
    imaging.save_png(arr, tmp_path / "a.png")
    back = imaging.load_rgb(tmp_path / "a.png")
    assert np.array_equal(back, np.clip(np.rint(arr), 0, 255).astype(np.uint8))
