"""The decoded-pixel cache: the decoder's pixels exactly, decoded once, safe to interrupt."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from transfer_lab.data import pixels as pixels_mod
from transfer_lab.data.imaging import load_rgb
from transfer_lab.data.pixels import PixelCache


def _photos(folder, n=7, seed=0):
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        h, w = int(rng.integers(20, 90)), int(rng.integers(20, 90))
        arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        mode, ext = [("RGB", "jpg"), ("L", "png"), ("RGBA", "png"), ("RGB", "png")][i % 4]
        img = Image.fromarray(arr).convert(mode)
        path = folder / f"p{i}.{ext}"
        img.save(path)
        paths.append(str(path))
    return paths


@pytest.fixture
def counted(monkeypatch):
    calls = []

    def load(path, size=None, **kw):
        calls.append(path)
        return load_rgb(path, size, **kw)

    monkeypatch.setattr(pixels_mod, "load_rgb", load)
    return calls


def test_pixels_are_the_decoders_and_decoded_once(tmp_path, counted):
    paths = _photos(tmp_path)
    cache = PixelCache(tmp_path / "cache", 32)
    first = cache.pixels(paths)
    assert first.dtype == np.uint8 and first.shape == (len(paths), 32, 32, 3)
    for row, path in zip(first, paths):
        np.testing.assert_array_equal(row, load_rgb(path, 32))
    assert len(counted) == len(paths)
    again = cache.pixels(list(reversed(paths)))
    np.testing.assert_array_equal(again, first[::-1])
    assert len(counted) == len(paths)  # nothing decoded the second time


def test_only_a_changed_photo_is_decoded_again(tmp_path, counted):
    paths = _photos(tmp_path)
    cache = PixelCache(tmp_path / "cache", 24)
    cache.pixels(paths)
    Image.new("RGB", (40, 30), (200, 10, 10)).save(paths[0])
    st = os.stat(paths[0])
    os.utime(paths[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    counted.clear()
    out = cache.pixels(paths)
    assert counted == [paths[0]]
    np.testing.assert_array_equal(out[0], load_rgb(paths[0], 24))
    assert np.abs(out[0, 5, 5].astype(int) - (200, 10, 10)).max() <= 6  # the new photo (a JPEG: near red)


def test_an_interrupted_build_leaves_the_cache_as_it_was(tmp_path, monkeypatch):
    paths = _photos(tmp_path)
    cache = PixelCache(tmp_path / "cache", 16)
    cache.pixels(paths[:3])
    before = sorted(p.name for p in cache.folder.iterdir())
    index_before = (cache.folder / "index.json").read_text()

    def broken(path, size=None, **kw):
        if path.endswith("p5.png"):
            raise KeyboardInterrupt
        return load_rgb(path, size, **kw)

    monkeypatch.setattr(pixels_mod, "load_rgb", broken)
    with pytest.raises(KeyboardInterrupt):
        cache.pixels(paths)
    assert sorted(p.name for p in cache.folder.iterdir()) == before  # no half-written shard
    assert (cache.folder / "index.json").read_text() == index_before
    monkeypatch.setattr(pixels_mod, "load_rgb", load_rgb)
    np.testing.assert_array_equal(cache.pixels(paths)[5], load_rgb(paths[5], 16))


def test_batches_from_pixels_equal_batches_from_files(tmp_path):
    from transfer_lab.data.tfdata import image_dataset

    paths = _photos(tmp_path, n=9)
    labels = np.arange(9) % 3
    px = PixelCache(tmp_path / "cache", 20).pixels(paths)
    for flip in (False, True):
        from_files = np.concatenate([b.numpy() for b in image_dataset(paths, image_size=20, batch_size=4, flip=flip)])
        from_px = np.concatenate([b.numpy() for b in image_dataset(paths, image_size=20, batch_size=4, flip=flip,
                                                                   pixels=px)])
        np.testing.assert_array_equal(from_px, from_files)
    # shuffled: every photo once an epoch, each with its own label, another order the next epoch
    ds = image_dataset(paths, labels, image_size=20, batch_size=4, shuffle=True, seed=3, pixels=px)
    epochs = []
    for _ in range(2):
        xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
        x, y = np.concatenate(xs), np.concatenate(ys)
        rows = [int(np.flatnonzero((px == xi.astype(np.uint8)).all(axis=(1, 2, 3)))[0]) for xi in x]
        assert sorted(rows) == list(range(9))
        np.testing.assert_array_equal(y, labels[rows])
        epochs.append(rows)
    assert epochs[0] != epochs[1]


def test_pixels_of_another_size_are_refused(tmp_path):
    from transfer_lab.data.tfdata import image_dataset

    paths = _photos(tmp_path, n=2)
    px = PixelCache(tmp_path / "cache", 20).pixels(paths)
    with pytest.raises(ValueError, match="pixel cache is per size"):
        image_dataset(paths, image_size=32, batch_size=2, pixels=px)


def test_a_non_chief_worker_keeps_its_pixels_out_of_the_shared_folder(tmp_path, monkeypatch):
    import json

    from transfer_lab.data.pixels import pixel_cache_folder
    from transfer_lab.params.runtime import RuntimeParams
    from transfer_lab.runtime import strategy

    monkeypatch.setattr(strategy, "current", lambda: None)
    params = RuntimeParams(pixel_cache=str(tmp_path / "pixels"))
    assert pixel_cache_folder(params) == tmp_path / "pixels"  # one process, no cluster: the chief
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1", "b:2"]},
                                                "task": {"type": "worker", "index": 1}}))
    assert not str(pixel_cache_folder(params)).startswith(str(tmp_path))
    assert pixel_cache_folder(RuntimeParams(pixel_cache=None)) is None
