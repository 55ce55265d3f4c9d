"""The two resize modes: squash stretches the whole photo, crop keeps the centred box of the
target's aspect ratio; the pixel cache keeps each mode apart and the classifier's config says which."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from transfer_lab.data.imaging import crop_box, load_rgb, resize_of
from transfer_lab.data.pixels import PixelCache


def _banded(path, w=120, h=60):
    """Left quarter red, right quarter blue, the middle half green: a crop to a square keeps only green."""
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:, : w // 4] = (255, 0, 0)
    arr[:, w // 4: 3 * w // 4] = (0, 255, 0)
    arr[:, 3 * w // 4:] = (0, 0, 255)
    Image.fromarray(arr).save(path)
    return str(path)


def test_crop_keeps_the_centre_and_squash_keeps_everything(tmp_path):
    path = _banded(tmp_path / "wide.png")
    crop, squash = load_rgb(path, 32, resize="crop"), load_rgb(path, 32, resize="squash")
    assert crop.shape == squash.shape == (32, 32, 3)
    assert (crop[..., 1] > 200).all() and crop[..., 0].max() < 50 and crop[..., 2].max() < 50
    assert squash[:, 0, 0].min() > 200 and squash[:, -1, 2].min() > 200  # red and blue edges stretched in


@pytest.mark.parametrize("w,h,tw,th", [(120, 60, 32, 32), (60, 120, 32, 32), (100, 100, 40, 20), (90, 30, 30, 10)])
def test_crop_box_is_centred_and_of_the_target_shape(w, h, tw, th):
    left, top, right, bottom = crop_box(w, h, tw, th)
    assert 0 <= left and 0 <= top and right <= w and bottom <= h
    assert (right - left) / (bottom - top) == pytest.approx(tw / th)
    assert left == pytest.approx(w - right) and top == pytest.approx(h - bottom)
    assert right - left == pytest.approx(w) or bottom - top == pytest.approx(h)  # the largest such box


def test_the_cache_keeps_the_modes_apart(tmp_path):
    paths = [_banded(tmp_path / "a.png"), _banded(tmp_path / "b.png", 50, 90)]
    crop = PixelCache(tmp_path / "cache", 24, "crop")
    squash = PixelCache(tmp_path / "cache", 24)
    assert crop.folder != squash.folder
    for cache, mode in ((crop, "crop"), (squash, "squash")):
        got = cache.pixels(paths)
        for row, path in zip(got, paths):
            np.testing.assert_array_equal(row, load_rgb(path, 24, resize=mode))


def test_resize_of_the_classifier_config():
    assert resize_of({"resize": "crop"}) == "crop"
    assert resize_of({}) == "squash" and resize_of(None) == "squash"  # written before the option: squashed
    with pytest.raises(ValueError, match="resize must be one of squash, crop"):
        resize_of({"resize": "stretch"})
